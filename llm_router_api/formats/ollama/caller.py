"""Callers that speak Ollama (``/api/chat``, ``/api/generate``, ``/api/embed``).

``stream`` defaults to true. Streams are NDJSON (``application/x-ndjson``); the last line has
``"done": true``, ``done_reason`` and the token counts. Ollama's ``options`` become canonical
sampling fields (``num_predict`` → ``max_tokens``, ``repeat_penalty`` → ``repetition_penalty``),
``format`` becomes ``response_format``, images become image parts, tool-call argument objects
become JSON strings. A failure after the stream began is one last line ``{"error": "..."}``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

from llm_router_api.errors import RouterError
from llm_router_api.formats.caller import CallerFormat, dumps
from llm_router_api.formats.canonical import ToolCallCollector, Usage, data_url, rfc3339_now
from llm_router_api.formats.ollama.vocab import (
    CALLER_ROUTES,
    PROTOCOL,
    STREAM_CONTENT_TYPE,
    canonical_call,
    canonical_format,
    canonical_options,
    done_reason,
    error_shape,
    ollama_call,
    usage_of,
)
from llm_router_api.schemas.calls import Op

_DONE = re.compile(rb'"done"\s*:\s*true')


class OllamaCaller(CallerFormat):
    protocol = PROTOCOL
    stream_content_type = STREAM_CONTENT_TYPE
    text_fields = ("content", "response", "thinking")

    def canonical(self, op: Op, body: dict[str, Any]) -> dict[str, Any]:
        request: dict[str, Any] = {"model": body.get("model")}
        if op == Op.EMBEDDING:
            request["input"] = body.get("input")
            if body.get("dimensions") is not None:
                request["dimensions"] = body["dimensions"]
            return request
        request["stream"] = body.get("stream", True) is not False
        if op == Op.CHAT:
            request["messages"] = canonical_messages(body.get("messages") or [])
            if body.get("tools"):
                request["tools"] = body["tools"]
        else:
            system, prompt = body.get("system"), body.get("prompt") or ""
            request["prompt"] = f"{system}\n\n{prompt}" if system else prompt
            for key in ("suffix", "images"):  # images: base64 strings, as Ollama sends them
                if body.get(key):
                    request[key] = body[key]
        request.update(canonical_options(body.get("options")))
        response_format = canonical_format(body.get("format"))
        if response_format is not None:
            request["response_format"] = response_format
        return request

    def render(self, op: Op, events: Iterator[dict[str, Any]], stream: bool,
               model: str, body: Mapping[str, Any] | None = None) -> Iterator[bytes]:
        started = time.monotonic_ns()
        if op == Op.EMBEDDING:
            for event in events:
                yield dumps(_embed_body(event, model, started))
            return
        key = "message" if op == Op.CHAT else "response"
        if not stream:
            for event in events:
                yield dumps(_whole_body(op, event, model, started))
            return
        yield from _lines(key, events, model, started)

    def error_body(self, error: RouterError, detail: bool = False) -> dict[str, Any]:
        return error_shape(error, detail)

    def error_frame(self, error: RouterError) -> bytes:
        return dumps(error_shape(error)) + b"\n"

    def usage_of(self, obj: Any) -> Usage | None:
        return usage_of(obj)

    def usage_json(self, line: bytes) -> bytes | None:
        """NDJSON: the last (``"done": true``) line carries the counts."""
        return line if _DONE.search(line) else None

    def owns_path(self, path: str, prefix: str) -> bool:
        return any(path.startswith(tuple(f"{root}/{route}" for route in CALLER_ROUTES))
                   for root in dict.fromkeys(("/api", prefix)))


# -- Ollama -> canonical ----------------------------------------------------------------------
def canonical_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ollama messages as OpenAI's; tool results get the id of the call they answer."""
    out: list[dict[str, Any]] = []
    pending: list[tuple[str, str]] = []  # (id, name) of calls not answered yet
    for position, message in enumerate(messages):
        role = message.get("role")
        item: dict[str, Any] = {"role": role, "content": _content(message)}
        calls = message.get("tool_calls") or []
        if calls:
            item["tool_calls"] = [canonical_call(c, f"call_{position}_{i}")
                                  for i, c in enumerate(calls)]
            pending = [(c["id"], c["function"]["name"]) for c in item["tool_calls"]]
        if role == "tool":
            item["tool_call_id"] = _answered(pending, message.get("tool_name"), position)
        out.append(item)
    return out


def _content(message: dict[str, Any]) -> Any:
    text = message.get("content") or ""
    images = message.get("images") or []
    if not images:
        return text
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    return parts + [{"type": "image_url", "image_url": {"url": data_url(b64)}}
                    for b64 in images if isinstance(b64, str)]


def _answered(pending: list[tuple[str, str]], name: Any, position: int) -> str:
    for index, (call_id, call_name) in enumerate(pending):
        if not name or name == call_name:
            del pending[index]
            return call_id
    return f"call_{position}"


# -- canonical -> Ollama ----------------------------------------------------------------------
def _stats(usage: Any, started: int) -> dict[str, Any]:
    usage = usage if isinstance(usage, dict) else {}
    elapsed = time.monotonic_ns() - started
    return {"total_duration": elapsed, "load_duration": 0,
            "prompt_eval_count": usage.get("prompt_tokens", 0), "prompt_eval_duration": 0,
            "eval_count": usage.get("completion_tokens", 0), "eval_duration": elapsed}


def _whole_body(op: Op, event: dict[str, Any], model: str, started: int) -> dict[str, Any]:
    choice = (event.get("choices") or [{}])[0]
    body: dict[str, Any] = {"model": model, "created_at": rfc3339_now()}
    if op == Op.CHAT:
        message = choice.get("message") or {}
        out: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
        if message.get("tool_calls"):
            out["tool_calls"] = [ollama_call(c) for c in message["tool_calls"]]
        body["message"] = out
    else:
        body["response"] = choice.get("text") or ""
    return {**body, "done": True, "done_reason": done_reason(choice.get("finish_reason")),
            **_stats(event.get("usage"), started)}


def _lines(key: str, events: Iterator[dict[str, Any]], model: str,
           started: int) -> Iterator[bytes]:
    tools = ToolCallCollector()
    finish: Any = None
    usage: Any = None
    for event in events:
        usage = event.get("usage") or usage
        for choice in event.get("choices") or []:
            finish = choice.get("finish_reason") or finish
            delta = choice.get("delta") or {}
            text = delta.get("content") if key == "message" else choice.get("text")
            tools.add(delta.get("tool_calls"))
            if text:
                piece = {"role": "assistant", "content": text} if key == "message" else text
                yield _line(model, key, piece, {"done": False})
    if tools:
        calls = [ollama_call(c) for c in tools.calls()]
        message = {"role": "assistant", "content": "", "tool_calls": calls}
        yield _line(model, key, message, {"done": False})
    empty: Any = {"role": "assistant", "content": ""} if key == "message" else ""
    yield _line(model, key, empty, {"done": True, "done_reason": done_reason(finish),
                                    **_stats(usage, started)})


def _line(model: str, key: str, value: Any, tail: dict[str, Any]) -> bytes:
    return dumps({"model": model, "created_at": rfc3339_now(), key: value, **tail}) + b"\n"


def _embed_body(event: dict[str, Any], model: str, started: int) -> dict[str, Any]:
    data = sorted(event.get("data") or [], key=lambda d: d.get("index", 0))
    usage = event.get("usage") or {}
    return {"model": model, "embeddings": [d.get("embedding") for d in data],
            "total_duration": time.monotonic_ns() - started, "load_duration": 0,
            "prompt_eval_count": usage.get("prompt_tokens", 0)}
