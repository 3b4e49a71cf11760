"""``RoutingHints``: what ``cache_aware`` is told about one call (``base.lb.hint.RoutingHint``).

The prompt is rendered from the canonical (OpenAI-shaped) request in the order a server's chat
template lays it out: tool definitions first (templates put them in the system turn, and
Anthropic's and OpenAI's prompt caches treat ``tools → system → messages`` as the prefix), then
every message (the system prompt is the first) with its role, text, tool calls and tool-call id;
a plain ``prompt`` (completions) is its own text. Its full blocks are hashed in a chain seeded
with the public name of the model being tried (a fallback model has its own chain;
``base.lb.prefix``); at most ``MAX_BLOCKS`` are tracked.

The session is the first of: the ``X-Session-ID`` header (``Call.session``), Anthropic
``metadata.user_id``, Responses ``previous_response_id``, OpenAI ``prompt_cache_key``, OpenAI
``user``. It is hashed with the model name, so no caller value is stored as such.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from llm_router_api.base.lb.hint import RoutingHint
from llm_router_api.base.lb.prefix import block_hashes
from llm_router_api.schemas.calls import Call, Op

#: Blocks tracked per prompt (a longer prompt's tail is not tracked): keeps a decision cheap.
MAX_BLOCKS = 4000
#: Body fields that name a session, most specific first.
SESSION_FIELDS = (("metadata", "user_id"), ("previous_response_id",), ("prompt_cache_key",),
                  ("user",))


class RoutingHints:
    def __init__(self, block_size: int) -> None:
        self.block_size = block_size

    def __call__(self, call: Call, model: str) -> RoutingHint | None:
        if call.op is Op.EMBEDDING:
            return RoutingHint(session=session_key(call, model))
        text = render_prompt(call.canonical)[: MAX_BLOCKS * self.block_size]
        return RoutingHint(block_hashes(text, self.block_size, model), session_key(call, model))


def render_prompt(canonical: dict[str, Any]) -> str:
    parts: list[str] = []
    tools = canonical.get("tools")
    if tools:
        parts.append("<tools>" + _text(tools))
    for message in canonical.get("messages") or ():
        if not isinstance(message, dict):
            continue
        parts.append(f"<{message.get('role', '')}>" + _text(message.get("content")))
        for name in ("tool_calls", "tool_call_id", "name"):
            if message.get(name):
                parts.append(f"<{name}>" + _text(message[name]))
    prompt = canonical.get("prompt")
    if prompt is not None:
        parts.append(_text(prompt))
    return "".join(parts)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def session_key(call: Call, model: str) -> str:
    raw = call.session or _body_session(call.body)
    if not raw:
        return ""
    return hashlib.blake2b(f"{model}\0{raw}".encode(), digest_size=12).hexdigest()


def _body_session(body: dict[str, Any]) -> str:
    for path in SESSION_FIELDS:
        value: Any = body
        for name in path:
            value = value.get(name) if isinstance(value, dict) else None
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return ""
