"""Type checks of a canonical (OpenAI) request, once, before any translator reads it.

Translators (``formats/<format>/upstream.py``, the caller formats' renderers)
read fields of the canonical request as the types OpenAI documents. A well-formed but wrong
value (``"stop": 5``, ``"tools": "x"``, a tool call whose ``function`` is a string) must be a
400 naming the field, never a ``TypeError`` deep inside a translator (a 500). ``check_request``
walks every field a translator reads and raises ``ValidationFailed`` with ``param`` set to its
path (``messages.0.tool_calls.1.function``, as
the request models name fields). Fields no translator reads are not checked:
they are forwarded to the upstream, which judges them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from llm_router_api.errors import ValidationFailed
from llm_router_api.schemas.calls import Op

Check = Callable[[Any], bool]


def _string(value: Any) -> bool:
    return isinstance(value, str)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _boolean(value: Any) -> bool:
    return isinstance(value, bool)


def _object(value: Any) -> bool:
    return isinstance(value, dict)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


# top-level scalar fields a translator reads -> (check, what it must be)
SCALARS: dict[str, tuple[Check, str]] = {
    "max_tokens": (_integer, "an integer"),
    "max_completion_tokens": (_integer, "an integer"),
    "temperature": (_number, "a number"),
    "top_p": (_number, "a number"),
    "top_k": (_integer, "an integer"),
    "seed": (_integer, "an integer"),
    "presence_penalty": (_number, "a number"),
    "frequency_penalty": (_number, "a number"),
    "repetition_penalty": (_number, "a number"),
    "min_p": (_number, "a number"),
    "typical_p": (_number, "a number"),
    "stream": (_boolean, "true or false"),
    "parallel_tool_calls": (_boolean, "true or false"),
    "dimensions": (_integer, "an integer"),
    "suffix": (_string, "a string"),
    "user": (_string, "a string"),
    "stream_options": (_object, "an object"),
    "images": (_strings, "a list of strings (base64 images)"),
}


# Structured-output kinds every provider type can honour (SPEC §10); another is a 400 naming
# the field, never a silent drop.
RESPONSE_FORMATS = ("text", "json_object", "json_schema")


def fail(path: str, what: str) -> ValidationFailed:
    return ValidationFailed(f"{path} must be {what}", param=path)


def need(value: Any, check: Check, path: str, what: str) -> None:
    """``value`` (when present, i.e. not ``None``) must pass ``check``."""
    if value is not None and not check(value):
        raise fail(path, what)


def objects(items: Any, path: str,
            what: str = "an object") -> Iterator[tuple[str, dict[str, Any]]]:
    """Each item of the list ``items`` with its path (``messages.3``); each must be an object."""
    for i, item in enumerate(items or ()):
        where = f"{path}.{i}"
        if not isinstance(item, dict):
            raise fail(where, what)
        yield where, item


def check_request(op: Op, request: Mapping[str, Any]) -> None:
    """Raise ``ValidationFailed`` naming the first field of ``request`` a translator could not
    read (see the module docstring)."""
    for name, (check, what) in SCALARS.items():
        need(request.get(name), check, name, what)
    stop = request.get("stop")
    need(stop, lambda v: isinstance(v, str) or _strings(v), "stop",
         "a string or a list of strings")
    _response_format(request.get("response_format"))
    if op == Op.CHAT:
        _messages(request.get("messages"))
        _tools(request.get("tools"))
        _tool_choice(request.get("tool_choice"))
    elif op == Op.COMPLETION:
        need(request.get("prompt"), lambda v: isinstance(v, str | list), "prompt",
             "a string or a list")
    else:
        need(request.get("input"), lambda v: isinstance(v, str | list), "input",
             "a string or a list")


def _response_format(value: Any) -> None:
    need(value, _object, "response_format", "an object")
    if value is None:
        return
    need(value.get("type"), lambda v: v in RESPONSE_FORMATS, "response_format.type",
         "one of " + ", ".join(RESPONSE_FORMATS))
    schema = value.get("json_schema")
    need(schema, _object, "response_format.json_schema", "an object")
    if schema is not None:
        need(schema.get("schema"), _object, "response_format.json_schema.schema", "an object")


def _messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise fail("messages", "a list of messages")
    for path, message in objects(messages, "messages"):
        need(message.get("role"), _string, f"{path}.role", "a string")
        need(message.get("tool_call_id"), _string, f"{path}.tool_call_id", "a string")
        _content(message.get("content"), f"{path}.content")
        calls = message.get("tool_calls")
        need(calls, lambda v: isinstance(v, list), f"{path}.tool_calls", "a list")
        for j, call in enumerate(calls or ()):
            _tool_call(call, f"{path}.tool_calls.{j}")


def _content(content: Any, path: str) -> None:
    need(content, lambda v: isinstance(v, str | list), path,
         "a string or a list of content parts")
    if not isinstance(content, list):
        return
    for where, part in objects(content, path, "an object (a content part)"):
        need(part.get("type"), _string, f"{where}.type", "a string")
        need(part.get("text"), _string, f"{where}.text", "a string")
        image = part.get("image_url")
        need(image, lambda v: isinstance(v, str | dict), f"{where}.image_url",
             "an object with a url")
        if isinstance(image, dict):
            need(image.get("url"), _string, f"{where}.image_url.url", "a string")


def _tool_call(call: Any, path: str) -> None:
    if not isinstance(call, dict):
        raise fail(path, "an object")
    need(call.get("id"), _string, f"{path}.id", "a string")
    function = call.get("function")
    if not isinstance(function, dict):
        raise fail(f"{path}.function", "an object with name and arguments")
    need(function.get("name"), _string, f"{path}.function.name", "a string")
    need(function.get("arguments"), lambda v: isinstance(v, str | dict),
         f"{path}.function.arguments", "a JSON string or an object")


def _tools(tools: Any) -> None:
    need(tools, lambda v: isinstance(v, list), "tools", "a list of tools")
    for path, tool in objects(tools, "tools"):
        function = tool.get("function", tool)
        if not isinstance(function, dict):
            raise fail(f"{path}.function", "an object")
        need(function.get("name"), _string, f"{path}.function.name", "a string")
        need(function.get("description"), _string, f"{path}.function.description",
             "a string")
        need(function.get("parameters"), _object, f"{path}.function.parameters",
             "an object (a JSON schema)")


def _tool_choice(choice: Any) -> None:
    need(choice, lambda v: isinstance(v, str | dict), "tool_choice",
         "a string or an object")
    if isinstance(choice, dict) and "function" in choice:
        function = choice["function"]
        if not isinstance(function, dict):
            raise fail("tool_choice.function", "an object")
        need(function.get("name"), _string, "tool_choice.function.name", "a string")
