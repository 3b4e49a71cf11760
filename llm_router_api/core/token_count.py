"""Anthropic's ``count_tokens`` for any provider type (SPEC §10).

Exact where a provider can count: Anthropic providers get the call forwarded
(``/v1/messages/count_tokens``), vLLM providers are asked ``POST /tokenize`` with the chat
``messages`` (and ``tools``; the chat template applied). Otherwise — Ollama and OpenAI providers
have no counting endpoint, or every counting provider failed — an estimate:
``ceil(characters / 4)`` of the system prompt, every message's text and each tool's name,
description and JSON schema, plus 3 tokens per message for the chat template's markers
(``ESTIMATE_*`` below). The estimate is what most tokenizers give English text and code.

A count takes no generation slot: no lease, so ``max_concurrency`` is not consumed and it never
waits behind generations; it is bounded by ``COUNT_TIMEOUT``; a provider's failure only moves
to the next provider (or the estimate): it never cools a provider down and is no provider
error in the metrics.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from llm_router_api.core.model_handler import ModelHandler
from llm_router_api.formats.canonical import text_of
from llm_router_api.schemas.calls import Call

log = logging.getLogger("llm_router.count_tokens")

#: Seconds a provider may take to count before the next one (or the estimate) answers.
COUNT_TIMEOUT = 10.0
ESTIMATE_CHARS_PER_TOKEN = 4
ESTIMATE_TOKENS_PER_MESSAGE = 3
#: Provider types that count exactly, in the order they are asked.
COUNTERS = ("anthropic", "vllm")


def count_tokens(handler: ModelHandler, call: Call) -> tuple[int, str]:
    """``(input tokens, how)`` for ``call`` (an Anthropic ``/v1/messages`` body): ``how`` is
    the provider id that counted, or ``"estimate"``."""
    model = handler.resolve(call.model)
    ordered = sorted((p for p in model.providers if p.api_type in COUNTERS),
                     key=lambda p: COUNTERS.index(p.api_type))
    for provider in ordered:
        timed = call.with_deadline(time.monotonic() + COUNT_TIMEOUT)
        try:
            adapter = handler.adapter(provider)
            count = adapter.count_tokens(provider, model.upstream_name(provider), timed)
        except Exception as exc:  # noqa: BLE001 - any failure: the next counter, no cool-down
            log.debug("provider %s could not count tokens: %s", provider.id, exc)
            continue
        if count is not None:
            return count, provider.id
    return estimate(call.canonical), "estimate"


def estimate(request: dict[str, Any]) -> int:
    """The documented estimate (module docstring) for a canonical chat request."""
    messages = request.get("messages") or []
    chars = sum(len(text_of(m.get("content"))) for m in messages if isinstance(m, dict))
    for message in messages:
        for call in (message.get("tool_calls") or []) if isinstance(message, dict) else []:
            chars += len(json.dumps(call.get("function") or {}))
    for tool in request.get("tools") or []:
        chars += len(json.dumps(tool.get("function") or {})) if isinstance(tool, dict) else 0
    return (math.ceil(chars / ESTIMATE_CHARS_PER_TOKEN)
            + ESTIMATE_TOKENS_PER_MESSAGE * len(messages))
