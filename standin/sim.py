"""A simulated cached, queueing LLM server: the stand-in's ``sim`` mode (``StandIn(sim=...)``,
``python -m standin --sim``).

What it models, as a vLLM server with automatic prefix caching and continuous batching looks
from outside:

- ``slots`` requests run at once; the others wait in a FIFO queue (``num_requests_waiting``).
- The prompt (every message's role and text, the tools, or the ``prompt``, in order) is cut
  into ``block_chars``-character blocks, chained like KV-cache block hashes. The leading blocks
  found in the cache are reused; the rest is prefilled at ``prefill_per_char`` seconds per
  character. Time to first token = queue wait + uncached characters × ``prefill_per_char``.
- The cache is an LRU of ``cache_chars / block_chars`` blocks; a finished request's blocks go
  back deepest first, so a prompt's tail is evicted before its head (as vLLM frees blocks).
  The answer it generates is cached too (rendered as the next turn will send it back,
  ``assistant: <text>``), as vLLM caches the full blocks of generated tokens.
- After the first token the stream runs at the behaviour's ``token_delay`` and the slot stays
  taken until the answer ends.
- ``GET /metrics`` speaks vLLM's names (``vllm:num_requests_waiting``,
  ``vllm:num_requests_running``, ``vllm:kv_cache_usage_perc``: the blocks the running requests
  hold, a shared prefix counted once as vLLM shares its blocks, over the cache size, plus
  prefix-cache query/hit counters in characters);
  ``GET /api/ps`` speaks Ollama's (the model with ``size`` and ``size_vram``, or nothing when it
  is not loaded; a request to an unloaded model first waits ``load_seconds`` and loads it).
- ``POST /_sim`` changes any parameter below at run time (``slots`` only before the first
  request; ``{"clear": true}`` forgets the cache and counters); ``override`` pins reported
  signals (``{"waiting": 7}``) for tests; ``metrics_status`` makes ``/metrics`` and
  ``/api/ps`` fail with that status. ``GET /_sim``: the counters (requests, prompt and cached
  characters, hit ratio) and the parameters.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from .behaviour import Behaviour
from .common import content_text, last_user_text, limit_of, messages_of, reply_tokens

SIM_PATHS = frozenset({"/metrics", "/api/ps", "/_sim"})
MODEL_CALLS = frozenset({"/v1/chat/completions", "/v1/completions", "/api/chat",
                         "/api/generate", "/v1/messages"})


@dataclass(frozen=True)
class SimParams:
    slots: int = 4
    prefill_per_char: float = 25e-6
    cache_chars: int = 400_000
    block_chars: int = 64
    model: str = "sim"
    loaded: bool = True
    vram_fraction: float = 1.0
    model_size: int = 4_920_000_000
    load_seconds: float = 2.0
    metrics_status: int = 200
    override: dict[str, float] = field(default_factory=dict)

    def updated(self, **fields: Any) -> SimParams:
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"unknown sim field(s): {', '.join(unknown)}")
        made = dataclasses.replace(self, **fields)
        if made.slots < 1 or made.block_chars < 1 or made.cache_chars < made.block_chars:
            raise ValueError("slots and block_chars must be >= 1, cache_chars >= block_chars")
        if not isinstance(made.override, dict):
            raise ValueError("override must be an object of signal values")
        return made


def prompt_text(body: dict[str, Any]) -> str:
    """The prompt as the simulated server sees it (its own rendering, not the router's)."""
    parts: list[str] = []
    system = body.get("system")
    if system:
        parts.append("system: " + content_text(system) + "\n")
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            parts.append(f"{message.get('role')}: {content_text(message.get('content'))}\n")
    if body.get("tools"):
        parts.append("tools: " + json.dumps(body["tools"], sort_keys=True) + "\n")
    if isinstance(body.get("prompt"), str):
        parts.append(body["prompt"])
    return "".join(parts)


def answer_text(body: dict[str, Any], behaviour: Behaviour) -> str:
    """The text the stand-in will answer (its tokens, cut at ``max_tokens``)."""
    tokens = reply_tokens(behaviour, last_user_text(messages_of(body)))
    limit = limit_of(body.get("max_tokens"))
    return "".join(tokens if limit is None else tokens[:limit])


class ServerSim:
    def __init__(self, params: SimParams | None = None) -> None:
        self.params = params or SimParams()
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._slots: asyncio.Semaphore | None = None
        self.waiting = 0
        self.running = 0
        self._in_use: Counter[bytes] = Counter()  # blocks held by running requests (shared once)
        self.requests = 0
        self.prompt_chars = 0
        self.cached_chars = 0

    def clear(self) -> None:
        """Forget the cache and the counters (between benchmark runs)."""
        self._cache.clear()
        self.requests = self.prompt_chars = self.cached_chars = 0

    def update(self, **fields: Any) -> SimParams:
        self.params = self.params.updated(**fields)
        return self.params

    # -- serving -----------------------------------------------------------------------------
    @asynccontextmanager
    async def serve(self, body: dict[str, Any],
                    behaviour: Behaviour | None = None) -> AsyncIterator[None]:
        """Hold a slot for one request: queue, then load and prefill; the body streams inside."""
        text = prompt_text(body)
        answer = "assistant: " + answer_text(body, behaviour or Behaviour()) + "\n"
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.params.slots)
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        blocks = self._blocks(text)
        self._in_use.update(blocks)
        try:
            if not self.params.loaded:
                await asyncio.sleep(self.params.load_seconds)
                self.params = self.params.updated(loaded=True)
            cached = self._lookup(blocks) * self.params.block_chars
            self.requests += 1
            self.prompt_chars += len(text)
            self.cached_chars += cached
            await asyncio.sleep((len(text) - cached) * self.params.prefill_per_char)
            self._insert(self._blocks(text + answer))
            yield
        finally:
            self.running -= 1
            self._in_use.subtract(blocks)
            self._in_use += Counter()  # drop the blocks no running request holds
            self._slots.release()

    def _blocks(self, text: str) -> list[bytes]:
        size, previous, blocks = self.params.block_chars, b"", []
        for start in range(0, len(text) - size + 1, size):
            previous = hashlib.blake2b(previous + text[start:start + size].encode(),
                                       digest_size=16).digest()
            blocks.append(previous)
        return blocks

    def _lookup(self, blocks: list[bytes]) -> int:
        hits = 0
        for block in blocks:
            if block not in self._cache:
                break
            self._cache.move_to_end(block)
            hits += 1
        return hits

    def _insert(self, blocks: list[bytes]) -> None:
        capacity = self.params.cache_chars // self.params.block_chars
        for block in reversed(blocks):
            self._cache[block] = None
            self._cache.move_to_end(block)
        while len(self._cache) > capacity:
            self._cache.popitem(last=False)

    # -- what it reports ---------------------------------------------------------------------
    def signals(self) -> dict[str, float]:
        kv = min(1.0, len(self._in_use) * self.params.block_chars / self.params.cache_chars)
        values = {"waiting": float(self.waiting), "running": float(self.running), "kv": kv}
        values.update({k: float(v) for k, v in self.params.override.items()})
        return values

    def metrics_text(self) -> str:
        signals, label = self.signals(), f'{{model_name="{self.params.model}"}}'
        lines = []
        for name, key in (("vllm:num_requests_running", "running"),
                          ("vllm:num_requests_waiting", "waiting"),
                          ("vllm:kv_cache_usage_perc", "kv")):
            lines += [f"# TYPE {name} gauge", f"{name}{label} {signals[key]}"]
        for name, value in (("vllm:prefix_cache_queries_total", self.prompt_chars),
                            ("vllm:prefix_cache_hits_total", self.cached_chars)):
            lines += [f"# TYPE {name} counter", f"{name}{label} {float(value)}"]
        return "\n".join(lines) + "\n"

    def ps_body(self) -> dict[str, Any]:
        p = self.params
        if not p.loaded:
            return {"models": []}
        return {"models": [{"name": p.model, "model": p.model, "size": p.model_size,
                            "size_vram": int(p.model_size * p.vram_fraction),
                            "digest": hashlib.sha256(p.model.encode()).hexdigest(),
                            "details": {"format": "gguf"},
                            "expires_at": "2099-01-01T00:00:00Z"}]}

    def stats(self) -> dict[str, Any]:
        return {"requests": self.requests, "prompt_chars": self.prompt_chars,
                "cached_chars": self.cached_chars,
                "hit_ratio": self.cached_chars / self.prompt_chars if self.prompt_chars else 0.0,
                "waiting": self.waiting, "running": self.running,
                "params": dataclasses.asdict(self.params)}
