"""Anthropic-compatible endpoints: ``POST /v1/messages`` (``stream`` defaults to false; also
``?beta=true`` as Claude Code sends it) and ``POST /v1/messages/count_tokens``."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from llm_router_api.core.model_handler import Reply
from llm_router_api.core.token_count import count_tokens
from llm_router_api.endpoints.base import EndpointI, Incoming
from llm_router_api.formats.anthropic.vocab import PROTOCOL
from llm_router_api.schemas.calls import Call, Op
from llm_router_lib.data_models.anthropic import (
    AnthropicCountTokensRequest,
    AnthropicMessagesRequest,
)

# Caller headers that Anthropic providers need to see (beta features).
FORWARDED_HEADERS = ("anthropic-beta",)


class AnthropicEndpoint(EndpointI):
    protocol = PROTOCOL

    def call(self, incoming: Incoming, stream: bool) -> Call:
        body = incoming.body
        headers = {k.lower(): v for k, v in incoming.headers.items()}
        extra = {k: headers[k] for k in FORWARDED_HEADERS if k in headers}
        return Call(self.protocol, Op.CHAT, body["model"], body,
                    self.caller_format.canonical(Op.CHAT, body), stream,
                    request_id=incoming.request_id,
                    on_usage=incoming.on_usage, extra_headers=extra,
                    session=incoming.session)


class AnthropicMessages(AnthropicEndpoint):
    paths = ("/v1/messages",)
    request_model: ClassVar[type[BaseModel]] = AnthropicMessagesRequest

    def handle(self, incoming: Incoming) -> Reply:
        self.parse(incoming)
        return incoming.config.handler.run(self.call(incoming, incoming.body.get("stream") is True))


class AnthropicCountTokens(AnthropicEndpoint):
    """``{"input_tokens": N}``: counted by an Anthropic or vLLM provider of the model, else
    estimated (``core/token_count.py``). Not a generation: no slot, no key limits."""

    paths = ("/v1/messages/count_tokens",)
    request_model: ClassVar[type[BaseModel]] = AnthropicCountTokensRequest
    generates = False

    def handle(self, incoming: Incoming) -> dict[str, Any]:
        self.parse(incoming)
        tokens, _ = count_tokens(incoming.config.handler, self.call(incoming, False))
        return {"input_tokens": tokens}
