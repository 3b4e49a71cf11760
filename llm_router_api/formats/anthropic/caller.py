"""Callers that speak Anthropic's Messages API (``POST /v1/messages``).

``stream`` defaults to false. A stream is Anthropic's SSE sequence: ``message_start``, ``ping``,
per content block ``content_block_start`` / ``content_block_delta``\\* / ``content_block_stop``,
then ``message_delta`` (stop reason, usage) and ``message_stop``. ``system`` becomes a system
message, ``tool_use`` / ``tool_result`` blocks become tool calls / tool messages, ``image``
blocks become image parts, ``stop_sequences`` → ``stop``. A failure after the stream began is one
``event: error`` with ``{"type": "error", "error": {...}}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from llm_router_api.errors import RouterError
from llm_router_api.formats.anthropic.vocab import (
    PATH,
    PROTOCOL,
    SAMPLING,
    anthropic_usage,
    canonical_call,
    canonical_tool,
    canonical_tool_choice,
    empty_tool_use,
    error_shape,
    image_url,
    stop_reason,
    tool_use_block,
    usage_of,
)
from llm_router_api.formats.caller import CallerFormat, dumps
from llm_router_api.formats.canonical import ToolCall, Usage, new_id
from llm_router_api.schemas.calls import Op

PING = b'event: ping\ndata: {"type":"ping"}\n\n'


class AnthropicCaller(CallerFormat):
    protocol = PROTOCOL
    text_fields = ("text", "partial_json", "thinking")

    def canonical(self, op: Op, body: dict[str, Any]) -> dict[str, Any]:
        turns = body.get("messages") or []
        # ``system`` (a string or blocks with ``cache_control``) and every ``role: "system"``
        # turn inside ``messages`` (Claude Code's mid-conversation system beta) become the
        # one system prompt, in order: every provider type takes a single one first.
        system = [_text(body.get("system"))] + [
            _text(t.get("content")) for t in turns if t.get("role") == "system"]
        messages = canonical_messages([t for t in turns if t.get("role") != "system"])
        prompt = "\n\n".join(s for s in system if s)
        if prompt:
            messages.insert(0, {"role": "system", "content": prompt})
        request: dict[str, Any] = {"model": body.get("model"), "messages": messages,
                                   "stream": body.get("stream") is True}
        for key in ("max_tokens", *SAMPLING):
            if body.get(key) is not None:
                request[key] = body[key]
        if body.get("stop_sequences"):
            request["stop"] = body["stop_sequences"]
        if body.get("tools"):
            request["tools"] = [canonical_tool(t) for t in body["tools"]]
            request.update(canonical_tool_choice(body.get("tool_choice")))
        user = (body.get("metadata") or {}).get("user_id")
        if isinstance(user, str):
            request["user"] = user
        response_format = output_format(body)
        if response_format is not None:
            request["response_format"] = response_format
        # ``thinking``, ``context_management``, ``output_config`` (its effort), ``cache_control``
        # and tools' extra fields (``defer_loading``) have no meaning for other provider types:
        # they reach Anthropic providers (forwarded) and are dropped when translating.
        return request

    def render(self, op: Op, events: Iterator[dict[str, Any]], stream: bool,
               model: str, body: Mapping[str, Any] | None = None) -> Iterator[bytes]:
        if not stream:
            for event in events:
                yield dumps(_message(event, model))
            return
        yield from _SSE(model).frames(events)

    def error_body(self, error: RouterError, detail: bool = False) -> dict[str, Any]:
        return error_shape(error, detail)

    def error_frame(self, error: RouterError) -> bytes:
        return _event("error", error_shape(error))

    def usage_of(self, obj: Any) -> Usage | None:
        return usage_of(obj)

    def owns_path(self, path: str, prefix: str) -> bool:
        return path.startswith(PATH)


# -- Anthropic -> canonical -------------------------------------------------------------------
def output_format(body: dict[str, Any]) -> dict[str, Any] | None:
    """Anthropic's structured output (``output_format`` or ``output_config.format``:
    ``{"type": "json_schema", "schema"}``) as OpenAI's ``response_format``."""
    config = body.get("output_config")
    fmt = body.get("output_format")
    if fmt is None and isinstance(config, dict):
        fmt = config.get("format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    schema = fmt.get("schema")
    return {"type": "json_schema",
            "json_schema": {"name": "output", "schema": schema if isinstance(schema, dict)
                            else {"type": "object"}}}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content
                         if isinstance(b, dict) and b.get("type") == "text")
    return ""


def canonical_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        blocks = [b for b in content or [] if isinstance(b, dict)]
        out += [{"role": "tool", "tool_call_id": b.get("tool_use_id", ""),
                 "content": _text(b.get("content"))}
                for b in blocks if b.get("type") == "tool_result"]
        item = _turn(role, blocks)
        if item is not None:
            out.append(item)
    return out


def _turn(role: Any, blocks: list[dict[str, Any]]) -> dict[str, Any] | None:
    parts: list[dict[str, Any]] = []
    calls: list[ToolCall] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": image_url(block)}})
        elif kind == "tool_use":
            calls.append(canonical_call(block))
    if not parts and not calls:
        return None
    item: dict[str, Any] = {"role": role}
    has_image = any(p["type"] == "image_url" for p in parts)
    item["content"] = parts if has_image else "".join(p["text"] for p in parts)
    if calls:
        item["tool_calls"] = calls
        item["content"] = item["content"] or None
    return item


# -- canonical -> Anthropic -------------------------------------------------------------------
def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + dumps(data) + b"\n\n"


def _message(event: dict[str, Any], model: str) -> dict[str, Any]:
    choice = (event.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    content += [tool_use_block(call) for call in message.get("tool_calls") or []]
    return {"id": new_id("msg_"), "type": "message", "role": "assistant", "model": model,
            "content": content,
            "stop_reason": stop_reason(choice.get("finish_reason")),
            "stop_sequence": None, "usage": anthropic_usage(event.get("usage"))}


class _SSE:
    """Canonical chunks → Anthropic's event sequence for one message."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.index = -1
        self.open: str | None = None  # "text" or the OpenAI index of the open tool call
        self.finish: Any = None
        self.usage: Any = None

    def frames(self, events: Iterator[dict[str, Any]]) -> Iterator[bytes]:
        started = False
        for event in events:
            if not started:
                started = True
                yield self._start()
            self.usage = event.get("usage") or self.usage
            for choice in event.get("choices") or []:
                self.finish = choice.get("finish_reason") or self.finish
                yield from self._delta(choice.get("delta") or {})
        if not started:
            return
        yield self._close()
        yield _event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(self.finish),
                      "stop_sequence": None},
            "usage": anthropic_usage(self.usage)})
        yield _event("message_stop", {"type": "message_stop"})

    def _start(self) -> bytes:
        message: dict[str, Any] = {
            "id": new_id("msg_"), "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0}}
        return _event("message_start", {"type": "message_start", "message": message}) + PING

    def _delta(self, delta: dict[str, Any]) -> Iterator[bytes]:
        if delta.get("content"):
            if self.open != "text":
                yield self._close() + self._open("text", {"type": "text", "text": ""})
            yield self._block_delta({"type": "text_delta", "text": delta["content"]})
        for call in delta.get("tool_calls") or []:
            key = f"tool{call.get('index', 0)}"
            function = call.get("function") or {}
            if self.open != key:
                block = empty_tool_use(call.get("id") or "", function.get("name", ""))
                yield self._close() + self._open(key, block)
            if function.get("arguments"):
                yield self._block_delta({"type": "input_json_delta",
                                         "partial_json": function["arguments"]})

    def _open(self, key: str, block: dict[str, Any]) -> bytes:
        self.index += 1
        self.open = key
        return _event("content_block_start", {"type": "content_block_start",
                                              "index": self.index, "content_block": block})

    def _block_delta(self, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"type": "content_block_delta",
                                              "index": self.index, "delta": delta})

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        return _event("content_block_stop", {"type": "content_block_stop", "index": self.index})
