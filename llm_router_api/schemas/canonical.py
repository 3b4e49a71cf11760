"""Small helpers on the canonical (OpenAI) format, shared by caller protocols and adapters.

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
from datetime import datetime, timezone
from typing import Any

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


def usage(prompt: Any, completion: Any) -> dict[str, int]:
    p = prompt if isinstance(prompt, int) else 0
    c = completion if isinstance(completion, int) else 0
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


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
