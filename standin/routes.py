"""Which handler answers which path, and each protocol's error/garbage shapes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from . import anthropic_fmt, ollama_fmt, openai_fmt, responses_fmt
from .behaviour import Behaviour
from .common import ApiError, Handler, JSONDict, Reply

GARBAGE_BODY = b'{"id": "garbage", "choices": [<<this is not json>>'
_NO_BODY = object()


@dataclass(frozen=True)
class Protocol:
    name: str
    error_body: Callable[[int, str], bytes]
    garbage_frame: bytes
    #: The frames a stream of this protocol ends with when the server fails mid-way.
    error_frames: Callable[[str], list[bytes]]


def _openai_error_frames(message: str) -> list[bytes]:
    return [b"data: " + openai_fmt.error_body(500, message) + b"\n\n", openai_fmt.DONE]


def _ollama_error_frames(message: str) -> list[bytes]:
    return [ollama_fmt.error_body(500, message) + b"\n"]


def _anthropic_error_frames(message: str) -> list[bytes]:
    return [b"event: error\ndata: " + anthropic_fmt.error_body(500, message) + b"\n\n"]


OPENAI = Protocol("openai", openai_fmt.error_body, openai_fmt.GARBAGE_FRAME,
                  _openai_error_frames)
OLLAMA = Protocol("ollama", ollama_fmt.error_body, ollama_fmt.GARBAGE_FRAME,
                  _ollama_error_frames)
ANTHROPIC = Protocol("anthropic", anthropic_fmt.error_body, anthropic_fmt.GARBAGE_FRAME,
                     _anthropic_error_frames)


def leak_message(headers: dict[str, str], path: str) -> str:
    """What a careless upstream says: the credentials and address it was called with."""
    host = headers.get("host", "")
    return (f"bad request, Authorization={headers.get('authorization', '')} "
            f"x-api-key={headers.get('x-api-key', '')} host={host} url=http://{host}{path}")


def leaking(reply: Reply, proto: Protocol, message: str, die_after: int) -> Reply:
    """``reply`` with the leak inside: a stream's error event after ``die_after`` frames, or
    the first token of a whole body."""
    if reply.frames is not None:
        return replace(reply, frames=reply.frames[:die_after] + proto.error_frames(message))
    escaped = json.dumps(message)[1:-1].encode()
    return replace(reply, body=reply.body.replace(b"tok0 ", escaped, 1))


def _health(body: JSONDict, behaviour: Behaviour) -> Reply:
    return Reply(body=b"")


ROUTES: dict[str, dict[str, Handler]] = {
    "/v1/chat/completions": {"POST": openai_fmt.chat},
    "/v1/completions": {"POST": openai_fmt.completions},
    "/v1/embeddings": {"POST": openai_fmt.embeddings},
    "/v1/models": {"GET": openai_fmt.models},
    "/v1/responses": {"POST": responses_fmt.responses},
    "/tokenize": {"POST": openai_fmt.tokenize},
    "/health": {"GET": _health},
    "/api/chat": {"POST": ollama_fmt.chat},
    "/api/generate": {"POST": ollama_fmt.generate},
    "/api/embed": {"POST": ollama_fmt.embed},
    "/api/embeddings": {"POST": ollama_fmt.embeddings_legacy},
    "/api/tags": {"GET": ollama_fmt.tags},
    "/api/version": {"GET": ollama_fmt.version},
    "/": {"GET": ollama_fmt.root},
    "/v1/messages": {"POST": anthropic_fmt.messages},
    "/v1/messages/count_tokens": {"POST": anthropic_fmt.count_tokens},
}


def protocol_for(path: str) -> Protocol:
    if path.startswith("/v1/messages"):
        return ANTHROPIC
    if path == "/" or path.startswith("/api/"):
        return OLLAMA
    return OPENAI


def parse_json(body: bytes) -> Any:
    """The decoded JSON body; None when empty; the ``_NO_BODY`` marker when invalid."""
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _NO_BODY


def recorded_json(parsed: Any) -> Any:
    return None if parsed is _NO_BODY else parsed


def error_reply(
    proto: Protocol, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> Reply:
    return Reply(status=status, body=proto.error_body(status, message), headers=headers)


def answer(method: str, path: str, parsed: Any, behaviour: Behaviour) -> Reply:
    """Run the handler for ``method path`` (mode ``ok``), mapping ApiError to error bodies."""
    proto = protocol_for(path)
    methods = ROUTES.get(path)
    try:
        if methods is None:
            raise ApiError(404, f"no route for {path}")
        handler = methods.get(method)
        if handler is None:
            raise ApiError(405, f"method {method} not allowed on {path}")
        if parsed is _NO_BODY:
            raise ApiError(400, "request body is not valid JSON")
        if parsed is not None and not isinstance(parsed, dict):
            raise ApiError(400, "request body must be a JSON object")
        return handler(parsed or {}, behaviour)
    except ApiError as exc:
        return error_reply(proto, exc.status, exc.message)


def garbage(reply: Reply, proto: Protocol) -> Reply:
    """A 200 of the same kind (stream or not) whose payload does not parse."""
    if reply.frames is not None:
        return replace(reply, status=200, frames=[proto.garbage_frame] * 2)
    return Reply(status=200, body=GARBAGE_BODY)
