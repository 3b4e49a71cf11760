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
