"""OpenAI's vocabulary (also vLLM's, which speaks it): routes, the stream's end, vLLM's extra
sampling fields, the error shape and where usage is. The canonical inner format is OpenAI's, so
most of OpenAI's names are the canonical ones (``formats/canonical.py``).
"""

from __future__ import annotations

from typing import Any

from llm_router_api.errors import RouterError
from llm_router_api.formats.canonical import Usage, count
from llm_router_api.schemas.calls import Op

ROUTES = {
    Op.CHAT: "/v1/chat/completions",
    Op.COMPLETION: "/v1/completions",
    Op.EMBEDDING: "/v1/embeddings",
}
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
