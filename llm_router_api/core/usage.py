"""Token usage of one answer, read from the caller-format bytes as they pass.

A meter is fed every frame the caller receives and never changes or re-encodes one. It parses
only what carries counts: the whole body of a non-stream answer; for a stream, the frames that
hold a ``usage`` object (OpenAI's ``include_usage`` chunk, Anthropic's ``message_start`` /
``message_delta``) or Ollama's last (``"done": true``) line. When a stream carries no usage,
output tokens are the number of frames that carry generated text (one chunk ≈ one token) and
input tokens are unknown (0).

    meter = meter_for(Protocol.OPENAI, stream=True)
    for frame in frames:
        yield meter.feed(frame)     # returns the frame unchanged
    meter.usage                     # Usage(input_tokens, output_tokens)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from llm_router_api.schemas.calls import Protocol

# A frame that carries generated text: a non-empty content / text / arguments string.
_TEXT = re.compile(rb'"(?:content|text|response|arguments|partial_json|thinking)"\s*:\s*"(?!")')
_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_DONE = re.compile(rb'"done"\s*:\s*true')


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


class Meter:
    """Does not measure anything (the default when metrics are off)."""

    def feed(self, frame: bytes) -> bytes:
        return frame

    @property
    def usage(self) -> Usage:
        return Usage()


class BodyMeter(Meter):
    """A non-stream answer: the usage fields of the one JSON body."""

    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol
        self._parts: list[bytes] = []

    def feed(self, frame: bytes) -> bytes:
        self._parts.append(frame)
        return frame

    @property
    def usage(self) -> Usage:
        try:
            body = orjson.loads(b"".join(self._parts))
        except orjson.JSONDecodeError:
            return Usage()
        return usage_of(body) or Usage()


class StreamMeter(Meter):
    """A stream: the last usage a frame reported, else the count of text-carrying frames."""

    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol
        self._pending = b""
        self._input = 0
        self._output = 0
        self._reported: int | None = None

    def feed(self, frame: bytes) -> bytes:
        lines = (self._pending + frame).split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            self._line(line)
        return frame

    def _line(self, line: bytes) -> None:
        if self._protocol is Protocol.OLLAMA and _DONE.search(line):
            found = usage_of(_loads(line))
        elif self._protocol is not Protocol.OLLAMA and _USAGE.search(line):
            found = usage_of(_loads(line.partition(b":")[2]))
        else:
            found = None
            if _TEXT.search(line):
                self._output += 1
        if found is not None:
            self._input = found.input_tokens or self._input
            self._reported = found.output_tokens or self._reported

    @property
    def usage(self) -> Usage:
        if self._pending:
            self._line(self._pending)
            self._pending = b""
        output = self._reported if self._reported is not None else self._output
        return Usage(self._input, output)


def meter_for(protocol: Protocol, stream: bool) -> Meter:
    return StreamMeter(protocol) if stream else BodyMeter(protocol)


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def usage_of(obj: Any) -> Usage | None:
    """The counts in any known answer object: OpenAI, Ollama, Anthropic (also nested events)."""
    if not isinstance(obj, dict):
        return None
    if "prompt_eval_count" in obj or "eval_count" in obj:  # Ollama
        return Usage(_int(obj.get("prompt_eval_count")), _int(obj.get("eval_count")))
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        message = obj.get("message")  # Anthropic's message_start
        return usage_of(message) if isinstance(message, dict) else None
    if "prompt_tokens" in usage or "completion_tokens" in usage:  # OpenAI
        return Usage(_int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")))
    return Usage(_int(usage.get("input_tokens")), _int(usage.get("output_tokens")))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
