"""Ollama's vocabulary, written once for both sides (caller and upstream): routes, option
names, done reasons, ``format``, tool calls, the error shape and where usage is.

Ollama puts sampling fields in ``options`` under its own names (``num_predict``,
``repeat_penalty``), says why it stopped in ``done_reason``, carries tool-call arguments as
objects and reports tokens as ``prompt_eval_count`` / ``eval_count`` on its last (``"done":
true``) object.
"""

from __future__ import annotations

from typing import Any

from llm_router_api.errors import RouterError
from llm_router_api.formats.canonical import (
    ToolCall,
    TwoWay,
    Usage,
    count,
    dumps_arguments,
    loads_arguments,
    new_id,
)
from llm_router_api.schemas.calls import Op, Protocol

#: The caller protocol this format is (its key in ``formats/registry.py`` ``CALLERS``).
PROTOCOL = Protocol("ollama")
ROUTES = {Op.CHAT: "/api/chat", Op.COMPLETION: "/api/generate", Op.EMBEDDING: "/api/embed"}
# Ollama's routes, served at /api/... and at P/... (P = LLM_ROUTER_EP_PREFIX).
CALLER_ROUTES = ("chat", "generate", "embed", "tags", "show", "ps", "pull", "version")
STREAM_CONTENT_TYPE = "application/x-ndjson"

# Ollama ``options`` and their canonical (OpenAI / vLLM) names; ``num_predict`` goes back as
# ``max_tokens``.
OPTIONS: TwoWay[str] = TwoWay([
    ("num_predict", "max_tokens"), ("num_predict", "max_completion_tokens"),
    ("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k"), ("seed", "seed"),
    ("stop", "stop"), ("presence_penalty", "presence_penalty"),
    ("frequency_penalty", "frequency_penalty"), ("repeat_penalty", "repetition_penalty"),
    ("min_p", "min_p"), ("typical_p", "typical_p"),
])
# Provider ``options`` keys that are top-level Ollama request fields, not ``options``.
TOP_LEVEL = frozenset({"format", "keep_alive", "think", "raw", "template", "truncate",
                       "dimensions"})
# Ollama ``done_reason`` and canonical ``finish_reason``: anything else is ``stop``.
DONE_REASONS: TwoWay[str] = TwoWay([("length", "length")], "stop", "stop")


def done_reason(finish: Any) -> str:
    """A canonical ``finish_reason`` as Ollama's ``done_reason``."""
    return str(DONE_REASONS.native(str(finish)))


def finish_reason(obj: dict[str, Any], tools: bool) -> str:
    """The canonical ``finish_reason`` of Ollama's last object."""
    return "tool_calls" if tools else str(DONE_REASONS.canonical(obj.get("done_reason") or ""))


def canonical_options(options: Any) -> dict[str, Any]:
    """Ollama ``options`` as canonical sampling fields (``num_predict`` < 0: no limit)."""
    if not isinstance(options, dict):
        return {}
    out = {OPTIONS.to_canonical[k]: v for k, v in options.items()
           if k in OPTIONS.to_canonical and v is not None}
    if isinstance(out.get("max_tokens"), int) and out["max_tokens"] < 0:
        del out["max_tokens"]  # -1 / -2: no limit
    return out


def ollama_options(request: dict[str, Any]) -> dict[str, Any]:
    """Canonical sampling fields as Ollama ``options``."""
    options = {OPTIONS.to_native[k]: v for k, v in request.items()
               if k in OPTIONS.to_native and v is not None}
    if isinstance(options.get("stop"), str):
        options["stop"] = [options["stop"]]
    return options


def option_name(key: str) -> str:
    """A provider ``options`` key under Ollama's name (unknown keys as they are)."""
    return OPTIONS.to_native.get(key, key)


def canonical_format(fmt: Any) -> dict[str, Any] | None:
    """Ollama ``format`` (``"json"`` or a JSON schema) as OpenAI ``response_format``."""
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt}}
    return None


def ollama_format(response_format: Any) -> Any:
    """OpenAI ``response_format`` as Ollama ``format``: ``"json"`` or a JSON schema."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else "json"
    return None


# -- tool calls, both ways --------------------------------------------------------------------
def ollama_call(call: dict[str, Any] | ToolCall) -> dict[str, Any]:
    """A canonical tool call as Ollama's (arguments an object, no id)."""
    function: Any = call.get("function") or {}
    return {"function": {"name": function.get("name", ""),
                         "arguments": loads_arguments(function.get("arguments"))}}


def canonical_call(call: dict[str, Any], call_id: str | None = None,
                   index: int | None = None) -> ToolCall:
    """An Ollama tool call as a canonical one (arguments a JSON string); ``index`` on a stream
    delta."""
    function = call.get("function") or {}
    out: ToolCall = {"id": call_id or call.get("id") or new_id("call_"), "type": "function",
                     "function": {"name": function.get("name", ""),
                                  "arguments": dumps_arguments(function.get("arguments"))}}
    if index is not None:
        out["index"] = index
    return out


# -- errors and usage -------------------------------------------------------------------------
def error_shape(error: RouterError, detail: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"error": error.message}
    if detail and error.detail is not None:
        body["detail"] = error.detail
    return body


def usage_of(obj: Any) -> Usage | None:
    """The counts on an Ollama answer object (its last line when streamed)."""
    if not isinstance(obj, dict) or not ("prompt_eval_count" in obj or "eval_count" in obj):
        return None
    return Usage(count(obj.get("prompt_eval_count")), count(obj.get("eval_count")))
