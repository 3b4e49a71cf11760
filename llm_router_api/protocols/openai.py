"""Callers that speak OpenAI (``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llm_router_api.errors import RouterError
from llm_router_api.protocols.base import CallerProtocol, dumps
from llm_router_api.protocols.shapes import openai_error
from llm_router_api.schemas.calls import Op, Protocol

DONE_FRAME = b"data: [DONE]\n\n"


class OpenAIProtocol(CallerProtocol):
    protocol = Protocol.OPENAI
    stream_content_type = "text/event-stream"
    stream_default = False

    def canonical(self, op: Op, body: dict[str, Any]) -> dict[str, Any]:
        return body

    def render(self, op: Op, events: Iterator[dict[str, Any]], stream: bool,
               model: str) -> Iterator[bytes]:
        if not stream:
            for event in events:
                yield dumps(event)
            return
        for event in events:
            yield b"data: " + dumps(event) + b"\n\n"
        yield DONE_FRAME

    def error_body(self, error: RouterError, detail: bool = False) -> dict[str, Any]:
        return openai_error(error, detail)

    def error_frame(self, error: RouterError) -> bytes:
        return b"data: " + dumps(openai_error(error)) + b"\n\n" + DONE_FRAME
