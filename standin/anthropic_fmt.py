"""Anthropic Messages API wire format: ``POST /v1/messages``."""

from __future__ import annotations

from typing import Any

from .behaviour import Behaviour
from .common import (
    TOOL_ARGS,
    ApiError,
    JSONDict,
    Plan,
    Reply,
    call_args,
    content_text,
    count_words,
    dumps,
    first_tool_name,
    json_reply,
    json_tokens,
    last_user_text,
    limit_of,
    make_plan,
    messages_of,
    model_of,
    new_id,
    tool_to_call,
)
from .schema import instance

SSE = "text/event-stream"
GARBAGE_FRAME = b'event: message_start\ndata: {"type": message_start <<not json>>\n\n'
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_body(status: int, message: str) -> bytes:
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return dumps({"type": "error", "error": {"type": kind, "message": message}})


def _event(name: str, data: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + dumps(data) + b"\n\n"


def _stop_reason(plan: Plan) -> str:
    if plan.tool_name is not None:
        return "tool_use"
    return "max_tokens" if plan.truncated else "end_turn"


def _plan(body: JSONDict, behaviour: Behaviour) -> Plan:
    limit = limit_of(body.get("max_tokens"))
    if limit is None:
        raise ApiError(400, "max_tokens: Field required")
    messages = messages_of(body)
    if not messages:
        raise ApiError(400, "messages: Field required")
    forced = forced_tool(body)
    tool = tool_to_call(body.get("tools"), messages, behaviour, forced)
    args = call_args(behaviour, body.get("tools"), tool) if tool else None
    return make_plan(behaviour, _texts(body), last_user_text(messages), limit, tool,
                     tool_input=args)


def _texts(body: JSONDict) -> list[str]:
    texts = [content_text(body.get("system"))]
    return texts + [content_text(m.get("content")) for m in messages_of(body)]


def forced_tool(body: JSONDict) -> str | None:
    """The tool ``tool_choice`` forces (``{"type": "tool", "name"}``, or ``any``: the first)."""
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return None
    if choice.get("type") == "tool" and isinstance(choice.get("name"), str):
        return str(choice["name"])
    if choice.get("type") == "any":
        return first_tool_name(body.get("tools"))
    return None


def tool_input(body: JSONDict, name: str, default: Any = None) -> Any:
    """The input of a call to tool ``name``: when ``tool_choice`` forced that tool (as a
    structured-output client does), an instance of its ``input_schema``; else the stand-in's
    fixed input."""
    if forced_tool(body) != name:
        return TOOL_ARGS if default is None else default
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("name") == name:
            schema = tool.get("input_schema")
            if isinstance(schema, dict) and schema.get("properties"):
                return instance(schema)
    return TOOL_ARGS


def count_tokens(body: JSONDict, behaviour: Behaviour) -> Reply:
    """``POST /v1/messages/count_tokens``: words of the system prompt, messages and tools."""
    if not messages_of(body):
        raise ApiError(400, "messages: Field required")
    tools = [content_text(t.get("description")) for t in body.get("tools") or []
             if isinstance(t, dict)]
    return json_reply({"input_tokens": count_words(_texts(body) + tools)})


def messages(body: JSONDict, behaviour: Behaviour) -> Reply:
    """``POST /v1/messages``, streaming when ``stream`` is true."""
    plan = _plan(body, behaviour)
    model, mid = model_of(body), new_id("msg_")
    if body.get("stream") is True:
        return Reply(content_type=SSE, frames=_frames(plan, model, mid, body))
    block: JSONDict = {"type": "text", "text": plan.text}
    if plan.tool_name is not None:
        block = {
            "type": "tool_use",
            "id": new_id("toolu_"),
            "name": plan.tool_name,
            "input": tool_input(body, plan.tool_name, plan.args),
        }
    return json_reply(
        {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [block],
            "stop_reason": _stop_reason(plan),
            "stop_sequence": None,
            "usage": {"input_tokens": plan.prompt_tokens, "output_tokens": plan.completion_tokens},
        }
    )


def _frames(plan: Plan, model: str, mid: str, body: JSONDict) -> list[bytes]:
    start: JSONDict = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": plan.prompt_tokens, "output_tokens": 1},
    }
    if plan.tool_name is None:
        block: JSONDict = {"type": "text", "text": ""}
        prefix = (
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
            b'"delta":{"type":"text_delta","text":'
        )
    else:
        block = {"type": "tool_use", "id": new_id("toolu_"), "name": plan.tool_name, "input": {}}
        prefix = (
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
            b'"delta":{"type":"input_json_delta","partial_json":'
        )
    frames = [
        _event("message_start", {"type": "message_start", "message": start}),
        _event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block},
        ),
        b'event: ping\ndata: {"type": "ping"}\n\n',
    ]
    pieces = plan.tokens
    if plan.tool_name is not None and forced_tool(body) == plan.tool_name:
        pieces = json_tokens(tool_input(body, plan.tool_name))
    frames += [prefix + dumps(tok) + b"}}\n\n" for tok in pieces]
    frames += [
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": _stop_reason(plan), "stop_sequence": None},
                "usage": {"output_tokens": plan.completion_tokens},
            },
        ),
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ]
    return frames
