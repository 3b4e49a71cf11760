"""OpenAI Responses API wire format: ``POST /v1/responses`` (as vLLM, Ollama >= 0.13 and
OpenAI serve it natively), non-stream and SSE.

The stream follows OpenAI's event order, each frame ``event: <type>`` + ``data: <json>`` with
the same ``type`` and a rising ``sequence_number``: ``response.created`` →
``response.in_progress`` → ``response.output_item.added`` → (message)
``response.content_part.added``, ``response.output_text.delta``…, ``response.output_text.done``,
``response.content_part.done`` / (function call) ``response.function_call_arguments.delta``…,
``response.function_call_arguments.done`` → ``response.output_item.done`` →
``response.completed`` (``response.incomplete`` when ``max_output_tokens`` cut it).

Responses this stand-in produced are remembered (bounded) so ``previous_response_id`` can be
checked: an unknown id is the 400 OpenAI gives.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from .behaviour import Behaviour
from .common import (
    TOOL_ARGS_JSON,
    ApiError,
    JSONDict,
    Plan,
    Reply,
    content_text,
    dumps,
    json_reply,
    limit_of,
    make_plan,
    model_of,
    new_id,
    openai_schema,
)

SSE = "text/event-stream"
REMEMBERED = 1000

_known: OrderedDict[str, None] = OrderedDict()
_known_lock = threading.Lock()


def _remember(response_id: str) -> None:
    with _known_lock:
        _known[response_id] = None
        while len(_known) > REMEMBERED:
            _known.popitem(last=False)


def _is_known(response_id: str) -> bool:
    with _known_lock:
        return response_id in _known


def _items(body: JSONDict) -> list[JSONDict]:
    raw = body.get("input")
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    if not isinstance(raw, list):
        raise ApiError(400, "Missing required parameter: 'input'.")
    return [i for i in raw if isinstance(i, dict)]


def _texts(body: JSONDict, items: list[JSONDict]) -> list[str]:
    texts = [body["instructions"]] if isinstance(body.get("instructions"), str) else []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            texts.append(content_text(item.get("content")))
        elif kind == "function_call_output":
            texts.append(content_text(item.get("output")))
    return texts


def _user_turn(items: list[JSONDict]) -> bool:
    last = items[-1] if items else {}
    return last.get("type", "message") == "message" and last.get("role") == "user"


def _tool_name(body: JSONDict) -> str | None:
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("type") == "function":
            name = tool.get("name")
            return name if isinstance(name, str) and name else "tool"
    return None


def _plan(body: JSONDict, behaviour: Behaviour) -> Plan:
    items = _items(body)
    previous = body.get("previous_response_id")
    if previous is not None and not (isinstance(previous, str) and _is_known(previous)):
        raise ApiError(400, f"Previous response with id '{previous}' not found.")
    tool = _tool_name(body) if _user_turn(items) else None
    last_user = next((content_text(i.get("content")) for i in reversed(items)
                      if i.get("type", "message") == "message" and i.get("role") == "user"), "")
    text = body.get("text")
    schema = openai_schema(text.get("format") if isinstance(text, dict) else None)
    return make_plan(behaviour, _texts(body, items), last_user,
                     limit_of(body.get("max_output_tokens")), tool, schema)


def _usage(plan: Plan) -> JSONDict:
    return {"input_tokens": plan.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": plan.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": plan.prompt_tokens + plan.completion_tokens}


def _item(plan: Plan, item_id: str, call_id: str, done: bool) -> JSONDict:
    status = "completed" if done else "in_progress"
    if plan.tool_name is not None:
        return {"type": "function_call", "id": item_id, "call_id": call_id,
                "name": plan.tool_name, "arguments": plan.args_json if done else "",
                "status": status}
    content = [{"type": "output_text", "text": plan.text, "annotations": []}] if done else []
    if done and plan.truncated:
        status = "incomplete"
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": content}


def _response(body: JSONDict, rid: str, created: int, plan: Plan | None,
              items: list[JSONDict]) -> JSONDict:
    status = "in_progress"
    incomplete = None
    if plan is not None:
        status = "incomplete" if plan.truncated else "completed"
        if plan.truncated:
            incomplete = {"reason": "max_output_tokens"}
    return {
        "id": rid, "object": "response", "created_at": created, "status": status,
        "error": None, "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"), "model": model_of(body),
        "output": items, "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None}, "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0), "truncation": "disabled",
        "usage": _usage(plan) if plan is not None else None,
        "user": body.get("user"), "metadata": body.get("metadata") or {},
    }


def responses(body: JSONDict, behaviour: Behaviour) -> Reply:
    """``POST /v1/responses``."""
    plan = _plan(body, behaviour)
    rid, created = new_id("resp_"), int(time.time())
    prefix = "fc_" if plan.tool_name is not None else "msg_"
    item_id, call_id = new_id(prefix), new_id("call_")
    if body.get("store", True) is not False:
        _remember(rid)
    if body.get("stream") is True:
        return Reply(content_type=SSE, frames=_frames(body, plan, rid, created, item_id, call_id))
    done = _item(plan, item_id, call_id, True)
    return json_reply(_response(body, rid, created, plan, [done]))


class _Frames:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def add(self, kind: str, **data: Any) -> None:
        event = {"type": kind, "sequence_number": len(self.frames), **data}
        self.frames.append(b"event: " + kind.encode() + b"\ndata: " + dumps(event) + b"\n\n")


def _frames(body: JSONDict, plan: Plan, rid: str, created: int, item_id: str,
            call_id: str) -> list[bytes]:
    out = _Frames()
    out.add("response.created", response=_response(body, rid, created, None, []))
    out.add("response.in_progress", response=_response(body, rid, created, None, []))
    out.add("response.output_item.added", output_index=0,
            item=_item(plan, item_id, call_id, False))
    where = {"item_id": item_id, "output_index": 0}
    if plan.tool_name is not None:
        for piece in plan.tokens:
            out.add("response.function_call_arguments.delta", **where, delta=piece)
        out.add("response.function_call_arguments.done", **where, arguments=TOOL_ARGS_JSON)
    else:
        empty = {"type": "output_text", "text": "", "annotations": []}
        out.add("response.content_part.added", **where, content_index=0, part=empty)
        for piece in plan.tokens:
            out.add("response.output_text.delta", **where, content_index=0, delta=piece,
                    logprobs=[])
        out.add("response.output_text.done", **where, content_index=0, text=plan.text,
                logprobs=[])
        out.add("response.content_part.done", **where, content_index=0,
                part={**empty, "text": plan.text})
    done = _item(plan, item_id, call_id, True)
    out.add("response.output_item.done", output_index=0, item=done)
    final = _response(body, rid, created, plan, [done])
    out.add(f"response.{final['status']}", response=final)
    return out.frames
