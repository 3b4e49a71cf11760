"""The Responses API's vocabulary: input items ↔ canonical chat messages, flat function tools
↔ canonical tools, ``tool_choice``, ``text.format`` → ``response_format``, usage, the error
shape (OpenAI's), and the SSE frame.

Translating to a chat provider (SPEC §10):

- ``instructions`` and every ``system`` / ``developer`` message are merged, in order, into ONE
  system message placed first (providers that take a single system prompt need that; for
  OpenAI-compatible ones it changes nothing a model could tell apart);
- ``function_call`` items become the ``tool_calls`` of one assistant turn (consecutive calls
  join the same turn, after any assistant text just before them); ``function_call_output``
  items become ``tool`` messages; ``reasoning`` and ``item_reference`` items are dropped;
- ``namespace`` tools are offered as their member functions, named ``<namespace>__<name>``;
  a call to such a name comes back as ``{"name": <name>, "namespace": <namespace>}``;
- built-in tool types (``web_search``, ``file_search``, ``code_interpreter``, ``computer_use``,
  ``custom``, ...) cannot run on a translated provider: they are dropped (``DROPPED`` lists
  them for the endpoint's metric and log), never a 400.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from llm_router_api.errors import RouterError
from llm_router_api.formats.caller import dumps
from llm_router_api.formats.canonical import Usage, count, dumps_arguments, text_of
from llm_router_api.schemas.calls import Protocol

#: The caller protocol this format is (its key in ``formats/registry.py`` ``CALLERS``).
PROTOCOL = Protocol("responses")
PATH = "/v1/responses"
NAMESPACE_SEPARATOR = "__"
SYSTEM_ROLES = frozenset({"system", "developer"})
TEXT_PARTS = frozenset({"input_text", "output_text", "text", "summary_text", "refusal"})
# Tool types a translated provider cannot run (the metric's label values; others: "other").
BUILTIN_TYPES = frozenset({
    "web_search", "web_search_preview", "file_search", "code_interpreter", "computer_use",
    "computer_use_preview", "image_generation", "mcp", "local_shell", "shell", "custom",
    "apply_patch", "tool_search"})
TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
#: A terminal event's ``"type"`` in a stream's bytes (text inside a delta is JSON-escaped, so
#: a model that writes these words cannot fake one).
TERMINAL_TYPE = re.compile(rb'"type"\s*:\s*"response\.(?:completed|incomplete|failed)"')
# Echoed settings of a response object, with OpenAI's defaults when the request had none.
ECHOED: dict[str, Any] = {
    "instructions": None, "max_output_tokens": None, "parallel_tool_calls": True,
    "previous_response_id": None, "temperature": 1.0, "top_p": 1.0,
    "store": True, "user": None, "service_tier": "default", "truncation": "disabled",
    "max_tool_calls": None, "prompt_cache_key": None, "safety_identifier": None,
    "top_logprobs": 0, "background": False,
}


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """``input`` as a list of items (a string is one user message)."""
    raw = body.get("input")
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    return [i for i in raw or [] if isinstance(i, dict)]


def item_type(item: dict[str, Any]) -> str:
    kind = item.get("type")
    return kind if isinstance(kind, str) else "message"


def tool_names(tools: Any) -> dict[str, tuple[str, str]]:
    """Provider-side function name → (namespace, member name) for namespace members."""
    names: dict[str, tuple[str, str]] = {}
    for tool in tools or []:
        if isinstance(tool, dict) and tool.get("type") == "namespace":
            for member in tool.get("tools") or []:
                if isinstance(member, dict) and isinstance(member.get("name"), str):
                    names[flat_name(tool.get("name"), member["name"])] = (
                        str(tool.get("name")), member["name"])
    return names


def flat_name(namespace: Any, name: str) -> str:
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name


# -- request -> canonical ---------------------------------------------------------------------
def canonical_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    system: list[str] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        system.append(body["instructions"])
    messages: list[dict[str, Any]] = []
    for item in input_items(body):
        kind = item_type(item)
        if kind == "message":
            if item.get("role") in SYSTEM_ROLES:
                text = text_of(_parts(item.get("content")))
                if text:
                    system.append(text)
                continue
            messages.append(_message(item))
        elif kind == "function_call":
            _add_call(messages, item)
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": str(item.get("call_id") or ""),
                             "content": _output_text(item.get("output"))})
        # reasoning, item_reference and built-in tool items: nothing a chat provider reads
    if system:
        messages.insert(0, {"role": "system", "content": "\n\n".join(system)})
    return messages


def _parts(content: Any) -> Any:
    if isinstance(content, str) or not isinstance(content, list):
        return content
    return [{"type": "text", "text": p.get("text", "")} for p in content
            if isinstance(p, dict) and p.get("type") in TEXT_PARTS
            and isinstance(p.get("text"), str)]


def _message(item: dict[str, Any]) -> dict[str, Any]:
    role = "assistant" if item.get("role") == "assistant" else "user"
    content = item.get("content")
    if not isinstance(content, list):
        return {"role": role, "content": content if isinstance(content, str) else ""}
    parts: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") in TEXT_PARTS and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif part.get("type") == "input_image" and isinstance(part.get("image_url"), str):
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
    if any(p["type"] == "image_url" for p in parts):
        return {"role": role, "content": parts}
    return {"role": role, "content": "".join(p["text"] for p in parts)}


def _add_call(messages: list[dict[str, Any]], item: dict[str, Any]) -> None:
    name = flat_name(item.get("namespace"), str(item.get("name") or ""))
    call = {"id": str(item.get("call_id") or item.get("id") or ""), "type": "function",
            "function": {"name": name,
                         "arguments": dumps_arguments(item.get("arguments") or "{}")}}
    last = messages[-1] if messages else None
    if last is not None and last.get("role") == "assistant":
        last.setdefault("tool_calls", []).append(call)
        last["content"] = last.get("content") or None
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    return text_of(_parts(output))


def canonical_tools(tools: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Function tools as canonical tools (namespace members flattened), and the types of the
    tools dropped because a chat provider cannot run them."""
    out: list[dict[str, Any]] = []
    dropped: list[str] = []
    for tool in tools or []:
        if not isinstance(tool, dict):
            continue
        kind = tool.get("type")
        if kind == "function":
            out.append(_function(tool, None))
        elif kind == "namespace":
            out += [_function(m, tool.get("name")) for m in tool.get("tools") or []
                    if isinstance(m, dict) and m.get("type", "function") == "function"]
        else:
            dropped.append(kind if kind in BUILTIN_TYPES else "other")
    return out, dropped


def _function(tool: dict[str, Any], namespace: Any) -> dict[str, Any]:
    function: dict[str, Any] = {"name": flat_name(namespace, str(tool.get("name") or ""))}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    function["parameters"] = (tool["parameters"] if isinstance(tool.get("parameters"), dict)
                              else {"type": "object", "properties": {}})
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def canonical_tool_choice(choice: Any, names: Iterable[str]) -> Any:
    """``auto``/``none``/``required`` as they are; ``{type: function, name}`` as OpenAI chat's
    ``{type: function, function: {name}}``; anything else (built-in tool choices): ``None``."""
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = flat_name(choice.get("namespace"), str(choice.get("name") or ""))
        if name in set(names):
            return {"type": "function", "function": {"name": name}}
    return None


def response_format(text: Any) -> dict[str, Any] | None:
    """``text.format`` as the canonical ``response_format``."""
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict):
        return None
    kind = fmt.get("type")
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema: dict[str, Any] = {"name": fmt.get("name") or "response",
                                  "schema": fmt.get("schema")}
        for key in ("description", "strict"):
            if fmt.get(key) is not None:
                schema[key] = fmt[key]
        return {"type": "json_schema", "json_schema": schema}
    return None


# -- answers ------------------------------------------------------------------------------------
def responses_usage(usage: Any) -> dict[str, Any]:
    """Canonical (chat) usage as the Responses usage object."""
    usage = usage if isinstance(usage, dict) else {}
    given = count(usage.get("prompt_tokens"))
    made = count(usage.get("completion_tokens"))
    cached = count((usage.get("prompt_tokens_details") or {}).get("cached_tokens"))
    reasoning = count((usage.get("completion_tokens_details") or {}).get("reasoning_tokens"))
    return {"input_tokens": given,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": made, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": given + made}


def usage_of(obj: Any) -> Usage | None:
    """The counts of a response object, or of a terminal stream event."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("response"), dict):
        obj = obj["response"]
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        return None
    return Usage(count(usage.get("input_tokens")), count(usage.get("output_tokens")))


def error_shape(error: RouterError, detail: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"message": error.message, "type": error.error_type,
                            "param": error.param, "code": error.code}
    if detail and error.detail is not None:
        body["detail"] = error.detail
    return {"error": body}


def frame(event: dict[str, Any]) -> bytes:
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + dumps(event) + b"\n\n"
