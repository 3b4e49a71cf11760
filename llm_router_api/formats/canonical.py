"""The canonical (OpenAI-shaped) inner format: its typed shapes and small helpers, shared by
every caller side and upstream side in ``formats/``.

Canonical events, by operation:

- chat, non-stream: one ``chat.completion`` object; stream: ``chat.completion.chunk`` objects,
  the last one with ``choices: []`` and ``usage`` (adapters always send it; the OpenAI caller
  protocol drops it unless the caller asked for ``stream_options.include_usage``).
- completion: the same with ``text_completion`` objects (``choices[].text``).
- embedding: one OpenAI embedding list (``data[].embedding`` float lists), never a stream.

Tool-call arguments are JSON strings here, as in OpenAI; Ollama and Anthropic carry objects.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, Literal, NotRequired, TypedDict, TypeVar

K = TypeVar("K")


# -- typed shapes -----------------------------------------------------------------------------
class FunctionCall(TypedDict):
    name: str
    #: A JSON string, as in OpenAI (Ollama and Anthropic carry objects).
    arguments: str


class ToolCall(TypedDict):
    id: str
    type: Literal["function"]
    function: FunctionCall
    #: Only on stream deltas: which call of the answer this piece belongs to.
    index: NotRequired[int]


class FunctionSpec(TypedDict, total=False):
    name: str
    description: str
    parameters: dict[str, Any]


class Tool(TypedDict):
    type: Literal["function"]
    function: FunctionSpec


class Message(TypedDict, total=False):
    role: str
    #: Text, or a list of parts (``{"type": "text"}`` / ``{"type": "image_url"}``); ``None``
    #: on an assistant turn that only calls tools.
    content: str | list[dict[str, Any]] | None
    tool_calls: list[ToolCall]
    tool_call_id: str


class TokenCounts(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(frozen=True)
class Usage:
    """Tokens one answer used, in any wire format's terms."""

    input_tokens: int = 0
    output_tokens: int = 0


class TwoWay(Generic[K]):
    """One vocabulary table read both ways: ``pairs`` of (the format's word, the canonical word).
    Where a word appears twice, its first pair is its translation: two native words may mean
    one canonical word, which goes back as the first of them."""

    def __init__(self, pairs: Iterable[tuple[K, K]], native_default: K | None = None,
                 canonical_default: K | None = None) -> None:
        self.to_canonical: dict[K, K] = {}
        self.to_native: dict[K, K] = {}
        for native, canonical in pairs:
            self.to_canonical.setdefault(native, canonical)
            self.to_native.setdefault(canonical, native)
        self._native_default = native_default
        self._canonical_default = canonical_default

    def canonical(self, native: Any) -> Any:
        return self.to_canonical.get(native, self._canonical_default)

    def native(self, canonical: Any) -> Any:
        return self.to_native.get(canonical, self._native_default)

# The first base64 characters of each image format, so a bare base64 image gets a media type.
_IMAGE_MAGIC = {"iVBOR": "image/png", "/9j/": "image/jpeg", "R0lGOD": "image/gif",
                "UklGR": "image/webp"}
DEFAULT_IMAGE_TYPE = "image/png"


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def now() -> int:
    return int(time.time())


def rfc3339_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def text_of(content: Any) -> str:
    """The text of a message ``content``: a string, or a list of parts with ``text``."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(part.get("text", "") for part in content
                   if isinstance(part, dict) and isinstance(part.get("text"), str))


def image_urls(content: Any) -> list[str]:
    """The ``image_url.url`` of each image part of a message ``content``."""
    if not isinstance(content, list):
        return []
    urls = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if isinstance(url, str):
                urls.append(url)
    return urls


def image_type(b64: str) -> str:
    for magic, mime in _IMAGE_MAGIC.items():
        if b64.startswith(magic):
            return mime
    return DEFAULT_IMAGE_TYPE


def data_url(b64: str, mime: str | None = None) -> str:
    return f"data:{mime or image_type(b64)};base64,{b64}"


def split_data_url(url: str) -> tuple[str, str] | None:
    """``(media_type, base64)`` of a ``data:`` URL, None for any other URL."""
    if not url.startswith("data:") or ";base64," not in url:
        return None
    head, b64 = url[5:].split(";base64,", 1)
    return head or DEFAULT_IMAGE_TYPE, b64


def usage(prompt: Any, completion: Any) -> TokenCounts:
    p = prompt if isinstance(prompt, int) else 0
    c = completion if isinstance(completion, int) else 0
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def count(value: Any) -> int:
    """A token count as sent, or 0 when it is not a positive integer."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def loads_arguments(arguments: Any) -> Any:
    """OpenAI's JSON-string tool arguments as an object (``{}`` when unreadable)."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def dumps_arguments(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments or {})


class ChunkMaker:
    """Builds the chunks of one streamed response; every chunk carries the same id."""

    def __init__(self, model: str, op_object: str = "chat.completion.chunk") -> None:
        self.id = new_id("chatcmpl-" if op_object.startswith("chat") else "cmpl-")
        self.object = op_object
        self.model = model
        self.created = now()
        self._role_sent = False

    def _head(self) -> dict[str, Any]:
        return {"id": self.id, "object": self.object, "created": self.created,
                "model": self.model}

    def delta(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        if not self._role_sent and self.object.startswith("chat"):
            delta = {"role": "assistant", **delta}
            self._role_sent = True
        return {**self._head(), "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                             "finish_reason": finish}]}

    def text(self, text: str, finish: str | None = None) -> dict[str, Any]:
        """A ``text_completion`` chunk."""
        return {**self._head(), "choices": [{"index": 0, "text": text, "logprobs": None,
                                             "finish_reason": finish}]}

    def piece(self, text: str, finish: str | None = None) -> dict[str, Any]:
        """A text piece in whichever object this stream carries."""
        if self.object.startswith("chat"):
            return self.delta({"content": text} if text or not finish else {}, finish)
        return self.text(text, finish)

    def usage(self, prompt: Any, completion: Any) -> dict[str, Any]:
        return {**self._head(), "choices": [], "usage": usage(prompt, completion)}


def chat_response(model: str, message: dict[str, Any], finish: str, prompt: Any,
                  completion: Any) -> dict[str, Any]:
    return {"id": new_id("chatcmpl-"), "object": "chat.completion", "created": now(),
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish}],
            "usage": usage(prompt, completion)}


def text_response(model: str, text: str, finish: str, prompt: Any,
                  completion: Any) -> dict[str, Any]:
    return {"id": new_id("cmpl-"), "object": "text_completion", "created": now(),
            "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
            "usage": usage(prompt, completion)}


def prompt_text(prompt: Any) -> str:
    """A completion ``prompt`` as one string (a one-item list is that item)."""
    if isinstance(prompt, list):
        return "".join(p for p in prompt if isinstance(p, str))
    return prompt if isinstance(prompt, str) else ""


class ToolCallCollector:
    """Gathers streamed tool-call deltas (by ``index``) into whole calls."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def add(self, deltas: Any) -> None:
        for delta in deltas or []:
            index = delta.get("index", len(self._calls))
            call = self._calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
            function = delta.get("function") or {}
            call["id"] = delta.get("id") or call["id"]
            call["name"] = function.get("name") or call["name"]
            call["arguments"] += dumps_arguments(function.get("arguments") or "")

    def calls(self) -> list[dict[str, Any]]:
        """OpenAI-shaped whole tool calls, in index order."""
        return [{"id": c["id"] or new_id("call_"), "type": "function",
                 "function": {"name": c["name"], "arguments": c["arguments"] or "{}"}}
                for _, c in sorted(self._calls.items())]

    def __bool__(self) -> bool:
        return bool(self._calls)
