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

import functools
import re
from typing import Any

import orjson

from llm_router_api.formats.caller import CallerFormat
from llm_router_api.formats.canonical import Usage
from llm_router_api.formats.registry import caller
from llm_router_api.schemas.calls import Protocol

__all__ = ["BodyMeter", "Meter", "StreamMeter", "Usage", "meter_for"]


class Meter:
    """Does not measure anything (the default when metrics are off)."""

    def feed(self, frame: bytes) -> bytes:
        return frame

    @property
    def usage(self) -> Usage:
        return Usage()


class BodyMeter(Meter):
    """A non-stream answer: the usage fields of the one JSON body."""

    def __init__(self, fmt: CallerFormat) -> None:
        self._format = fmt
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
        return self._format.usage_of(body) or Usage()


class StreamMeter(Meter):
    """A stream: the last usage a frame reported, else the count of text-carrying frames."""

    def __init__(self, fmt: CallerFormat) -> None:
        self._format = fmt
        # A frame that carries generated text: a non-empty string in one of the format's
        # text fields.
        self._text = _text_pattern(fmt.text_fields)
        self._pending = b""
        self._input = 0
        self._output = 0
        self._reported: int | None = None

    def feed(self, frame: bytes) -> bytes:
        lines = (self._pending + frame).split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            if line:  # the blank line that ends an SSE event says nothing
                self._line(line)
        return frame

    def _line(self, line: bytes) -> None:
        raw = self._format.usage_json(line)
        found = None
        if raw is not None:
            found = self._format.usage_of(_loads(raw))
        elif self._text.search(line):
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


@functools.lru_cache(maxsize=16)
def _text_pattern(fields: tuple[str, ...]) -> re.Pattern[bytes]:
    """Matches a frame that carries generated text: a non-empty string in one of ``fields``."""
    names = b"|".join(re.escape(f.encode()) for f in fields)
    return re.compile(rb'"(?:' + names + rb')"\s*:\s*"(?!")')


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def meter_for(protocol: Protocol, stream: bool) -> Meter:
    fmt = caller(protocol)
    return StreamMeter(fmt) if stream else BodyMeter(fmt)
