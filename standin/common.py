"""Pieces shared by the three wire formats: replies, ids, token plans, embeddings.

Token accounting (deterministic, not a real tokenizer):

* a *prompt token* is one whitespace-separated word of the request's texts
  (all message texts, the system prompt, or the ``prompt`` string);
* the reply is ``Behaviour.tokens`` tokens ``"tok0 "``, ``"tok1 "``, ... or, with
  ``echo``, the words of the last user message (each word plus one space);
* a tool call always counts as ``len(TOOL_ARG_FRAGMENTS)`` completion tokens.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .behaviour import Behaviour
from .schema import instance

JSONDict = dict[str, Any]

TOOL_ARGS: JSONDict = {"location": "Paris"}
TOOL_ARGS_JSON = '{"location":"Paris"}'
TOOL_ARG_FRAGMENTS = ('{"', "location", '":"', "Paris", '"}')
FALLBACK_MODEL = "standin"

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class ApiError(Exception):
    """A client error that the protocol reports with its native error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class Reply:
    """What to send: a fixed-length body, or (``frames`` set) a chunked stream."""

    status: int = 200
    content_type: str = "application/json"
    body: bytes = b""
    frames: list[bytes] | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class Plan:
    """The completion to render: text tokens, or a tool call when ``tool_name`` is set."""

    tokens: list[str]
    truncated: bool
    prompt_tokens: int
    tool_name: str | None = None
    #: The tool call's arguments (``Behaviour.tool_args``, else ``TOOL_ARGS``).
    args: JSONDict = field(default_factory=lambda: dict(TOOL_ARGS))

    @property
    def args_json(self) -> str:
        return _encode(self.args)

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens)

    @property
    def text(self) -> str:
        return "".join(self.tokens)


Handler = Callable[[JSONDict, Behaviour], Reply]


def dumps(obj: Any) -> bytes:
    """Compact JSON (as the real servers emit it), UTF-8 encoded."""
    return _encode(obj).encode()


def json_reply(obj: Any, status: int = 200) -> Reply:
    return Reply(status=status, body=dumps(obj))


def new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def rfc3339_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def model_of(body: JSONDict) -> str:
    model = body.get("model")
    return model if isinstance(model, str) and model else FALLBACK_MODEL


def content_text(content: Any) -> str:
    """Text of a message ``content``: a string or a list of typed parts/blocks."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts: list[str] = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict):
            if isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif "content" in part:
                parts.append(content_text(part["content"]))
    return " ".join(p for p in parts if p)


def messages_of(body: JSONDict) -> list[JSONDict]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, dict)]


def last_user_text(messages: list[JSONDict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            text = content_text(message.get("content"))
            if text.strip():
                return text
    return ""


def is_user_turn(messages: list[JSONDict]) -> bool:
    """True when the last message is the user's own (not a tool result)."""
    if not messages or messages[-1].get("role") != "user":
        return False
    content = messages[-1].get("content")
    if isinstance(content, list):
        return not any(isinstance(p, dict) and p.get("type") == "tool_result" for p in content)
    return True


def _tool_names(tools: Any) -> list[str]:
    names = []
    for tool in tools if isinstance(tools, list) else []:
        if isinstance(tool, dict):
            function = tool.get("function")
            name = function.get("name") if isinstance(function, dict) else tool.get("name")
            names.append(name if isinstance(name, str) else "")
    return names


def has_tool_result(messages: list[JSONDict]) -> bool:
    """Whether any turn carries a tool result (OpenAI/Ollama ``role: tool``, Anthropic
    ``tool_result`` blocks)."""
    for message in messages:
        content = message.get("content")
        if message.get("role") == "tool" or (isinstance(content, list) and any(
                isinstance(p, dict) and p.get("type") == "tool_result" for p in content)):
            return True
    return False


def tool_to_call(tools: Any, messages: list[JSONDict], behaviour: Behaviour,
                 forced: str | None = None) -> str | None:
    """The tool this answer calls: the one ``forced`` by the request's tool choice; the
    behaviour's ``tool_name`` while the conversation has no tool result (and offers it); else
    the first tool on a user turn; else none."""
    if forced is not None:
        return forced
    if behaviour.tool_name:
        offered = behaviour.tool_name in _tool_names(tools)
        return behaviour.tool_name if offered and not has_tool_result(messages) else None
    return first_tool_name(tools) if is_user_turn(messages) else None


def call_args(behaviour: Behaviour, tools: Any, name: str | None) -> JSONDict:
    """The input of a call to tool ``name``: the behaviour's ``tool_args``; else, when that
    tool's schema requires fields the fixed input lacks (a structured-output tool, say), a
    valid instance of the schema, as a model following it would give; else the fixed one."""
    if behaviour.tool_args:
        value = json.loads(behaviour.tool_args)
        return value if isinstance(value, dict) else dict(TOOL_ARGS)
    schema = _tool_schema(tools, name)
    required = schema.get("required") if isinstance(schema, dict) else None
    if isinstance(required, list) and not set(required) <= set(TOOL_ARGS):
        value = instance(schema)
        return value if isinstance(value, dict) else dict(TOOL_ARGS)
    return dict(TOOL_ARGS)


def _tool_schema(tools: Any, name: str | None) -> Any:
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        inner = tool.get("function")
        function: JSONDict = inner if isinstance(inner, dict) else tool
        if function.get("name") == name:
            return function.get("parameters", function.get("input_schema"))
    return None


def first_tool_name(tools: Any) -> str | None:
    """Name of the first tool, OpenAI/Ollama (``function.name``) or Anthropic (``name``)."""
    if not isinstance(tools, list) or not tools or not isinstance(tools[0], dict):
        return None
    tool = tools[0]
    function = tool.get("function")
    name = function.get("name") if isinstance(function, dict) else tool.get("name")
    return name if isinstance(name, str) and name else "tool"


def count_words(texts: list[str]) -> int:
    return sum(len(t.split()) for t in texts)


@functools.lru_cache(maxsize=64)
def _default_tokens(n: int) -> tuple[str, ...]:
    return tuple(f"tok{i} " for i in range(n))


def reply_tokens(behaviour: Behaviour, user_text: str) -> list[str]:
    if behaviour.echo:
        words = user_text.split()
        if words:
            return [w + " " for w in words]
    return list(_default_tokens(behaviour.tokens))


def limit_of(value: Any) -> int | None:
    """A token cap from a request field, or None when absent/unlimited."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


#: ``make_plan(schema=...)`` default: no structured output asked for.
NO_SCHEMA: Any = object()


def make_plan(
    behaviour: Behaviour,
    texts: list[str],
    user_text: str,
    limit: int | None,
    tool_name: str | None = None,
    schema: Any = NO_SCHEMA,
    tool_input: JSONDict | None = None,
) -> Plan:
    """The answer: a tool call (when a tool is offered on a user turn), a JSON text valid
    against ``schema`` (structured output: ``{}`` for plain JSON mode), or text tokens."""
    prompt_tokens = count_words(texts)
    if tool_name is not None and (behaviour.tool_call or behaviour.tool_name):
        args = tool_input if tool_input is not None else (
            json.loads(behaviour.tool_args) if behaviour.tool_args else None)
        if args is not None and args != TOOL_ARGS:
            return Plan(json_tokens(args), False, prompt_tokens, tool_name, args)
        return Plan(list(TOOL_ARG_FRAGMENTS), False, prompt_tokens, tool_name)
    if schema is not NO_SCHEMA:
        return Plan(json_tokens(instance(schema)), False, prompt_tokens)
    tokens = reply_tokens(behaviour, user_text)
    truncated = limit is not None and len(tokens) > limit
    if limit is not None and truncated:
        tokens = tokens[:limit]
    return Plan(tokens, truncated, prompt_tokens)


def inputs_of(value: Any) -> list[str]:
    """Embedding inputs as strings (a string, a list of strings, or token arrays)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return [json.dumps(value)]
        return [v if isinstance(v, str) else json.dumps(v) for v in value]
    return []


def embed_vector(text: str, dim: int) -> list[float]:
    """A deterministic pseudo-embedding of ``text`` with values in [-1, 1]."""
    out: list[float] = []
    block = 0
    while len(out) < dim:
        digest = hashlib.blake2b(f"{block}:{text}".encode(), digest_size=64).digest()
        out.extend(round(byte / 127.5 - 1.0, 6) for byte in digest)
        block += 1
    return out[:dim]


def embed_base64(vector: list[float]) -> str:
    """OpenAI's ``encoding_format: base64``: little-endian float32, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def json_tokens(value: Any) -> list[str]:
    """A JSON text cut into a few stream pieces (joined, they are the text)."""
    text = _encode(value)
    step = max(1, len(text) // 4 + 1)
    return [text[i:i + step] for i in range(0, len(text), step)]


def openai_schema(response_format: Any) -> Any:
    """The schema an OpenAI ``response_format`` (or Responses ``text.format``) asks for:
    ``{}`` for ``json_object``, ``NO_SCHEMA`` for text or nothing."""
    if not isinstance(response_format, dict):
        return NO_SCHEMA
    kind = response_format.get("type")
    if kind == "json_object":
        return {}
    if kind == "json_schema":
        inner = response_format.get("json_schema", response_format)  # Responses: flat
        schema = inner.get("schema") if isinstance(inner, dict) else None
        return schema if isinstance(schema, dict) else {}
    return NO_SCHEMA


def ollama_schema(fmt: Any) -> Any:
    """The schema Ollama's ``format`` asks for: ``"json"`` → ``{}``, or the schema itself."""
    if fmt == "json":
        return {}
    return fmt if isinstance(fmt, dict) else NO_SCHEMA
