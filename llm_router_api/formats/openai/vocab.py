"""OpenAI's vocabulary (also vLLM's, which speaks it): routes, the stream's end, vLLM's extra
sampling fields, the error shape and where usage is. The canonical inner format is OpenAI's, so
most of OpenAI's names are the canonical ones (``formats/canonical.py``).
"""

from __future__ import annotations

from typing import Any

import orjson

from llm_router_api.errors import RouterError
from llm_router_api.formats.canonical import Usage, count
from llm_router_api.schemas.calls import Op, Protocol

#: The caller protocol this format is (the canonical one).
PROTOCOL = Protocol.OPENAI
ROUTES = {
    Op.CHAT: "/v1/chat/completions",
    Op.COMPLETION: "/v1/completions",
    Op.EMBEDDING: "/v1/embeddings",
}
#: vLLM's token counter (``messages`` with the chat template applied, or a ``prompt``).
TOKENIZE_PATH = "/tokenize"
DONE_LINE = b"data: [DONE]"
DONE_FRAME = DONE_LINE + b"\n\n"

# Sampling fields only vLLM understands (vLLM's "extra parameters").
VLLM_ONLY = frozenset({
    "top_k", "min_p", "repetition_penalty", "typical_p", "length_penalty", "min_tokens",
    "ignore_eos", "skip_special_tokens", "spaces_between_special_tokens", "use_beam_search",
    "best_of", "guided_json", "guided_regex", "guided_choice", "guided_grammar",
    "guided_decoding_backend", "chat_template_kwargs", "truncate_prompt_tokens",
})


def error_shape(error: RouterError, detail: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message": error.message,
        "type": error.error_type,
        "param": error.param,
        "code": error.code,
    }
    if detail and error.detail is not None:
        body["detail"] = error.detail
    return {"error": body}


def usage_of(obj: Any) -> Usage | None:
    """The counts on a response, or on a stream's usage chunk."""
    usage = obj.get("usage") if isinstance(obj, dict) else None
    if not isinstance(usage, dict):
        return None
    return Usage(count(usage.get("prompt_tokens")), count(usage.get("completion_tokens")))


def conforming(choice: Any) -> Any:
    """A ``chat.completion`` choice with the fields OpenAI's schema requires, null when none:
    ``logprobs``, ``message.content`` and ``message.refusal`` (translated answers, and some
    OpenAI-compatible servers, never carry a refusal)."""
    if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
        return choice
    message = {"content": None, **choice["message"]}
    message.setdefault("refusal", None)
    return {**choice, "message": message, "logprobs": choice.get("logprobs")}


def conforming_body(raw: bytes) -> bytes:
    """A forwarded non-stream ``chat.completion`` body, completed the same way; parsed only
    when a required field is missing (``refusal`` is the one servers leave out)."""
    if b'"refusal"' in raw and b'"logprobs"' in raw:
        return raw
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        return raw
    body["choices"] = [conforming(choice) for choice in body["choices"]]
    return orjson.dumps(body)
