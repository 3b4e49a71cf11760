"""Anthropic's Messages API vocabulary, written once for both sides (caller and upstream): stop
reasons, tool definitions, tool choice, ``tool_use`` blocks, image blocks, the error shape and
where usage is.
"""

from __future__ import annotations

from typing import Any

from llm_router_api.errors import RouterError
from llm_router_api.formats.canonical import (
    Tool,
    ToolCall,
    TwoWay,
    Usage,
    count,
    data_url,
    dumps_arguments,
    loads_arguments,
    new_id,
    split_data_url,
)
from llm_router_api.schemas.calls import Protocol

#: The caller protocol this format is (its key in ``formats/registry.py`` ``CALLERS``).
PROTOCOL = Protocol("anthropic")
PATH = "/v1/messages"
COUNT_PATH = "/v1/messages/count_tokens"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
# Fields Anthropic's Messages API takes; provider ``options`` outside these are not sent.
FIELDS = frozenset({"max_tokens", "temperature", "top_p", "top_k", "stop_sequences",
                    "metadata", "system", "tools", "tool_choice", "thinking", "service_tier"})
# Canonical sampling fields Anthropic takes under the same name.
SAMPLING = ("temperature", "top_p", "top_k")
# Anthropic ``stop_reason`` and canonical ``finish_reason``; the first pair naming a word is
# its translation (``stop`` goes back as ``end_turn``).
STOP_REASONS: TwoWay[str] = TwoWay([
    ("end_turn", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), ("stop_sequence", "stop"), ("pause_turn", "stop"),
    ("tool_use", "function_call"),
], "end_turn", "stop")
# Anthropic's tool_choice ``type`` and OpenAI's string tool_choice.
TOOL_CHOICES: TwoWay[str] = TwoWay([("auto", "auto"), ("any", "required"), ("none", "none")],
                                   "auto", None)
# Anthropic's error types by HTTP status.
ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
    422: "invalid_request_error", 429: "rate_limit_error",
    503: "overloaded_error", 529: "overloaded_error",
}


def stop_reason(finish: Any) -> str:
    return str(STOP_REASONS.native(str(finish)))


def finish_reason(stop: Any) -> str:
    return str(STOP_REASONS.canonical(stop or ""))


def stop_sequences(stop: Any) -> list[str]:
    """Canonical ``stop`` (a string or a list) as Anthropic's ``stop_sequences``."""
    return [stop] if isinstance(stop, str) else list(stop)


# -- tools, both ways -------------------------------------------------------------------------
def canonical_tool(tool: dict[str, Any]) -> Tool:
    """An Anthropic tool definition (``input_schema``) as OpenAI's function tool."""
    tool_fn: Tool = {"type": "function", "function": {
        "name": tool.get("name", ""),
        "parameters": tool.get("input_schema") or {"type": "object"}}}
    if tool.get("description"):
        tool_fn["function"]["description"] = tool["description"]
    return tool_fn


def anthropic_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI function tool as Anthropic's tool definition."""
    function = tool.get("function") or tool
    out = {"name": function.get("name", ""),
           "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}
    if function.get("description"):
        out["description"] = function["description"]
    return out


def canonical_tool_choice(choice: Any) -> dict[str, Any]:
    """Anthropic ``tool_choice`` as OpenAI's ``tool_choice`` / ``parallel_tool_calls``."""
    if not isinstance(choice, dict):
        return {}
    kind = choice.get("type")
    out: dict[str, Any] = {}
    if kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name", "")}}
    elif kind in TOOL_CHOICES.to_canonical:
        out["tool_choice"] = TOOL_CHOICES.canonical(kind)
    if choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False
    return out


def anthropic_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    """OpenAI ``tool_choice`` / ``parallel_tool_calls`` as Anthropic's ``tool_choice``."""
    if choice is None and parallel is not False:
        return None
    out: dict[str, Any]
    if isinstance(choice, dict):
        out = {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
    else:
        out = {"type": TOOL_CHOICES.native(str(choice))}
    if parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


# Structured output on Anthropic: one forced tool whose input is the answer (SPEC §10).
OUTPUT_TOOL = "json_output"
OPEN_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}


def output_tool(response_format: Any) -> dict[str, Any] | None:
    """The synthetic tool that carries OpenAI ``response_format`` (``json_object``: an open
    object schema; ``json_schema``: its schema), or None for text / no format."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        schema: Any = OPEN_OBJECT
    elif kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or OPEN_OBJECT
    else:
        return None
    return {"name": OUTPUT_TOOL, "description": "Give the answer as this tool's input: "
            "a JSON value matching its schema.", "input_schema": schema}


def tool_use_block(call: dict[str, Any] | ToolCall) -> dict[str, Any]:
    """A canonical tool call as a ``tool_use`` content block (arguments an object)."""
    function: Any = call.get("function") or {}
    return {"type": "tool_use", "id": call.get("id") or new_id("toolu_"),
            "name": function.get("name", ""),
            "input": loads_arguments(function.get("arguments"))}


def canonical_call(block: dict[str, Any]) -> ToolCall:
    """A ``tool_use`` content block as a canonical tool call (arguments a JSON string)."""
    return {"id": block.get("id") or new_id("call_"), "type": "function",
            "function": {"name": block.get("name", ""),
                         "arguments": dumps_arguments(block.get("input"))}}


def is_tool_use(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") == "tool_use"


def empty_tool_use(call_id: str, name: str) -> dict[str, Any]:
    """The ``content_block_start`` block of a streamed tool call."""
    return {"type": "tool_use", "id": call_id or new_id("toolu_"), "name": name, "input": {}}


# -- images, both ways ------------------------------------------------------------------------
def image_url(block: dict[str, Any]) -> str:
    """An ``image`` block's source as a URL (a ``data:`` URL for base64)."""
    source = block.get("source") or {}
    if source.get("type") == "url":
        return str(source.get("url", ""))
    return data_url(str(source.get("data", "")), source.get("media_type"))


def image_block(url: str) -> dict[str, Any]:
    parts = split_data_url(url)
    if parts is None:
        return {"type": "image", "source": {"type": "url", "url": url}}
    return {"type": "image", "source": {"type": "base64", "media_type": parts[0],
                                        "data": parts[1]}}


# -- errors and usage -------------------------------------------------------------------------
def error_shape(error: RouterError, detail: bool = False) -> dict[str, Any]:
    kind = ERROR_TYPES.get(error.http_status, "api_error")
    inner: dict[str, Any] = {"type": kind, "message": error.message}
    if detail and error.detail is not None:
        inner["detail"] = error.detail
    return {"type": "error", "error": inner}


def anthropic_usage(usage: Any) -> dict[str, int]:
    """Canonical token counts as Anthropic's ``usage``."""
    usage = usage if isinstance(usage, dict) else {}
    return {"input_tokens": usage.get("prompt_tokens", 0),
            "output_tokens": usage.get("completion_tokens", 0)}


def usage_of(obj: Any) -> Usage | None:
    """The counts on a message, a ``message_start`` (nested) or a ``message_delta`` event."""
    if not isinstance(obj, dict):
        return None
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        message = obj.get("message")
        return usage_of(message) if isinstance(message, dict) else None
    return Usage(count(usage.get("input_tokens")), count(usage.get("output_tokens")))
