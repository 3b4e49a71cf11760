"""Callers that speak OpenAI (``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``).

The canonical format is OpenAI's, so a translated answer only needs finishing touches: one id
for every chunk of a response, the caller's model name, the usage chunk only when the caller
asked for ``stream_options.include_usage``, and base64 embeddings when the caller asked for
``encoding_format: base64`` (the official client's default).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator, Mapping
from typing import Any

from llm_router_api.errors import RouterError
from llm_router_api.formats.caller import CallerFormat, dumps
from llm_router_api.formats.canonical import Usage
from llm_router_api.formats.openai.vocab import (
    DONE_FRAME,
    PROTOCOL,
    conforming,
    error_shape,
    usage_of,
)
from llm_router_api.schemas.calls import Op


class OpenAICaller(CallerFormat):
    protocol = PROTOCOL

    def canonical(self, op: Op, body: dict[str, Any]) -> dict[str, Any]:
        return body

    def render(self, op: Op, events: Iterator[dict[str, Any]], stream: bool,
               model: str, body: Mapping[str, Any] | None = None) -> Iterator[bytes]:
        body = body or {}
        if not stream:
            for event in events:
                event = {**event, "model": model}
                if op == Op.CHAT:
                    event["choices"] = [conforming(c) for c in event.get("choices") or []]
                if op == Op.EMBEDDING and body.get("encoding_format") == "base64":
                    event["data"] = [{**d, "embedding": _base64(d["embedding"])}
                                     for d in event.get("data") or []]
                yield dumps(event)
            return
        options = body.get("stream_options")
        include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
        response_id = ""
        for event in events:
            if not event.get("choices") and not include_usage:
                continue
            response_id = response_id or str(event.get("id") or "")
            yield b"data: " + dumps({**event, "id": response_id, "model": model}) + b"\n\n"
        yield DONE_FRAME

    def error_body(self, error: RouterError, detail: bool = False) -> dict[str, Any]:
        return error_shape(error, detail)

    def error_frame(self, error: RouterError) -> bytes:
        return b"data: " + dumps(error_shape(error)) + b"\n\n" + DONE_FRAME

    def usage_of(self, obj: Any) -> Usage | None:
        return usage_of(obj)


def _base64(vector: Any) -> Any:
    if not isinstance(vector, list):
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
