"""A caller protocol: how one family of clients (OpenAI, Ollama, Anthropic) speaks to us.

It turns the caller's request into the canonical (OpenAI) form, canonical events back into the
caller's wire format, and any ``RouterError`` into the caller's error shape — as a whole body
before a response starts, or as one last stream frame after it started. No Flask here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import orjson

from llm_router_api.errors import RouterError
from llm_router_api.schemas.calls import Op, Protocol


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def renamed(frames: Iterator[bytes], stream: bool, model: str) -> Iterator[bytes]:
    """A forwarded answer whose ``model`` fields name ``model``: used when a fallback model
    served, so the reply names it (SPEC §12). Works for every protocol's body and stream:
    a top-level ``model`` (OpenAI, Ollama, Anthropic bodies) and ``message.model`` (Anthropic's
    ``message_start``), in a whole body, SSE ``data:`` lines or NDJSON lines."""
    for frame in frames:
        if not stream:
            yield _renamed_json(frame, model)
            continue
        lines = frame.split(b"\n")
        for index, line in enumerate(lines):
            if line.startswith(b"data:") and line[5:].strip().startswith(b"{"):
                lines[index] = b"data: " + _renamed_json(line[5:].strip(), model)
            elif line.startswith(b"{"):
                lines[index] = _renamed_json(line, model)
        yield b"\n".join(lines)


def _renamed_json(raw: bytes, model: str) -> bytes:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw  # not ours to judge here; the meter and the caller see it as it came
    if not isinstance(value, dict):
        return raw
    if "model" in value:
        value["model"] = model
    message = value.get("message")
    if isinstance(message, dict) and "model" in message:
        message["model"] = model
    return dumps(value)


class CallerProtocol(ABC):
    protocol: ClassVar[Protocol]
    #: Content type of a streamed answer.
    stream_content_type: ClassVar[str]
    #: Whether ``stream`` is on when the caller does not say.
    stream_default: ClassVar[bool]

    @abstractmethod
    def canonical(self, op: Op, body: dict[str, Any]) -> dict[str, Any]:
        """The caller's request in the canonical (OpenAI) form."""

    @abstractmethod
    def render(self, op: Op, events: Iterator[dict[str, Any]], stream: bool,
               model: str, body: Mapping[str, Any] | None = None) -> Iterator[bytes]:
        """Canonical events as the caller's bytes: frames when streaming, else one body.

        ``model`` is the caller's model name; ``body`` the caller's request as sent. Nothing
        is yielded before the first event arrives, so the upstream is open (and has answered)
        when the first frame exists.
        """

    @abstractmethod
    def error_body(self, error: RouterError, detail: bool = False) -> dict[str, Any]:
        """The caller's JSON error shape."""

    @abstractmethod
    def error_frame(self, error: RouterError) -> bytes:
        """The frames that end a stream that failed after it began."""
