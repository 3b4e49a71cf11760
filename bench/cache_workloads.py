"""The two workloads of ``python -m bench.cache_aware``, as asyncio closed loops.

- ``multi_turn``: many conversations, each opened with one of a few long shared system
  prompts; every turn resends the whole history (each answer as it was received) plus a new
  user message of ``user_chars``. ``concurrency`` workers each run one conversation's turns
  in order, with a think time between turns (uniform in ``[0, think_s]``: a user reading, an
  agent running a tool; it also keeps the workers from marching in step, which would let a
  round robin land every turn of a conversation on one server by accident), then take the
  next conversation.
- ``hot_spot``: every request is one giant shared prefix plus a short unique question.

Every request is a streamed chat completion; time to first token (TTFT) is the time from send
to the first body chunk. Texts are made of pseudo-random words from a seeded generator, so two
runs send the same prompts.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.client import Connection, build_request
from bench.load import percentiles

TIMEOUT = 120.0


@dataclass(frozen=True)
class MultiTurn:
    conversations: int = 64
    system_prompts: int = 4
    system_chars: int = 3000
    turns: int = 10
    user_chars: int = 800
    think_s: float = 0.5
    concurrency: int = 16


@dataclass(frozen=True)
class HotSpot:
    requests: int = 240
    prefix_chars: int = 40_000
    question_chars: int = 200
    concurrency: int = 24


@dataclass
class Outcome:
    ttfts: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    ended: float = 0.0

    def summary(self) -> dict[str, Any]:
        seconds = (self.ended or time.perf_counter()) - self.started
        out: dict[str, Any] = {"requests": len(self.ttfts) + self.errors, "ok": len(self.ttfts),
                               "errors": self.errors, "seconds": round(seconds, 2),
                               "rps": round(len(self.ttfts) / seconds, 2) if seconds else 0.0}
        out.update(percentiles("ttft", self.ttfts))
        if self.error_samples:
            out["error_samples"] = self.error_samples[:5]
        return out


def answer_of(body: bytes) -> str:
    """The content of an OpenAI stream's deltas."""
    parts = []
    for line in body.split(b"\n"):
        if line.startswith(b"data: {"):
            for choice in json.loads(line[6:]).get("choices") or ():
                parts.append((choice.get("delta") or {}).get("content") or "")
    return "".join(parts)


def text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    size = 0
    while size < chars:
        word = f"w{rng.randrange(100_000)}"
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:chars]


class Sender:
    def __init__(self, port: int, model: str) -> None:
        self.port = port
        self.model = model

    async def send(self, conn: Connection, messages: list[dict[str, str]],
                   outcome: Outcome) -> str:
        """One streamed call; returns the answer's text ('' on failure)."""
        body = json.dumps({"model": self.model, "messages": messages,
                           "stream": True}).encode()
        raw = build_request("POST", "127.0.0.1", self.port, "/v1/chat/completions", body)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(TIMEOUT):
                result = await conn.request(raw)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            conn.close()
            outcome.errors += 1
            outcome.error_samples.append(type(exc).__name__)
            return ""
        if result.status != 200 or b"[DONE]" not in result.body:
            outcome.errors += 1
            outcome.error_samples.append(f"{result.status}: {result.body[:200]!r}")
            return ""
        outcome.ttfts.append(result.first_byte - started)
        return answer_of(result.body)


async def multi_turn(sender: Sender, spec: MultiTurn, seed: int = 1) -> Outcome:
    rng = random.Random(seed)
    systems = [text(rng, spec.system_chars) for _ in range(spec.system_prompts)]
    plans = [(systems[c % spec.system_prompts],
              [(text(rng, spec.user_chars), rng.uniform(0, spec.think_s))
               for _ in range(spec.turns)])
             for c in range(spec.conversations)]
    queue: Iterator[tuple[str, list[tuple[str, float]]]] = iter(plans)
    outcome = Outcome()

    async def worker() -> None:
        conn = Connection("127.0.0.1", sender.port)
        try:
            for system, turns in queue:
                history = [{"role": "system", "content": system}]
                for user, think in turns:
                    await asyncio.sleep(think)
                    history.append({"role": "user", "content": user})
                    answer = await sender.send(conn, history, outcome)
                    history.append({"role": "assistant", "content": answer})
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
    outcome.ended = time.perf_counter()
    return outcome


async def hot_spot(sender: Sender, spec: HotSpot, seed: int = 2) -> Outcome:
    rng = random.Random(seed)
    prefix = text(rng, spec.prefix_chars)
    questions = iter([text(rng, spec.question_chars) for _ in range(spec.requests)])
    outcome = Outcome()

    async def worker() -> None:
        conn = Connection("127.0.0.1", sender.port)
        try:
            for question in questions:
                await sender.send(conn, [{"role": "system", "content": prefix},
                                         {"role": "user", "content": question}], outcome)
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
    outcome.ended = time.perf_counter()
    return outcome
