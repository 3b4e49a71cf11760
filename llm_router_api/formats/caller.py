"""A caller format: how one family of clients (OpenAI, Ollama, Anthropic) speaks to us.

It turns the caller's request into the canonical (OpenAI) form, canonical events back into the
caller's wire format, any ``RouterError`` into the caller's error shape — as a whole body
before a response starts (``error_body``), or as one last stream frame after it started
(``error_frame``) — and reads token usage out of the caller-format bytes it produced (the
meters in ``core/usage.py``). No Flask here. ``formats/registry.py`` lists the caller formats.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import orjson

from llm_router_api.errors import RouterError
from llm_router_api.formats.canonical import Usage
from llm_router_api.schemas.calls import Op, Protocol

# A frame that carries usage in an SSE stream: ``data: {... "usage": {...}}``.
_SSE_USAGE = re.compile(rb'"usage"\s*:\s*\{')


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


# A JSON key ``"model"`` with a string value. Inside a JSON string a quote is escaped, so
# generated text that merely mentions ``"model": "x"`` never matches.
_MODEL_KEY = re.compile(rb'"model"(\s*):(\s*)"(?:[^"\\]|\\.)*"')


def renamed(frames: Iterator[bytes], model: str) -> Iterator[bytes]:
    """A forwarded answer whose ``model`` fields name ``model``, the public name (SPEC §10,
    §12): never the provider's ``model_path`` or its own spelling of it. Works on every
    protocol's bytes, body or stream, without parsing them: a top-level ``model`` (OpenAI,
    Ollama, Anthropic bodies and frames) and ``message.model`` (Anthropic's
    ``message_start``). One regex pass per frame; a frame's other bytes stay as they came."""
    value = b'"model":' + dumps(model)
    for frame in frames:
        yield _MODEL_KEY.sub(value, frame) if b'"model"' in frame else frame


class CallerFormat(ABC):
    #: The protocol's name (its folder's ``vocab.PROTOCOL``): its key in the registry.
    protocol: ClassVar[Protocol]
    #: Content type of a streamed answer.
    stream_content_type: ClassVar[str] = "text/event-stream"
    #: JSON string fields whose non-empty value in a stream frame is generated text (a meter
    #: counts such frames as one token each when the stream reports no usage).
    text_fields: ClassVar[tuple[str, ...]] = ("content", "text", "arguments")

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

    @abstractmethod
    def usage_of(self, obj: Any) -> Usage | None:
        """The token counts in one answer object (a body, or one stream event), if any."""

    def usage_json(self, line: bytes) -> bytes | None:
        """The JSON text of one stream line that carries usage, else ``None`` (SSE here: a
        ``data:`` line with a ``usage`` object)."""
        return line.partition(b":")[2] if _SSE_USAGE.search(line) else None

    def renamed(self, frames: Iterator[bytes], stream: bool, model: str) -> Iterator[bytes]:
        """A forwarded answer naming ``model`` (see the module's ``renamed``)."""
        return renamed(frames, model)

    def owns_path(self, path: str, prefix: str) -> bool:
        """Whether an unrouted ``path`` (a 404 or 405) gets this format's error shape."""
        return False
