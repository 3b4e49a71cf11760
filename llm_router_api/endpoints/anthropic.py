"""Anthropic-compatible endpoint: ``POST /v1/messages`` (``stream`` defaults to false)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from llm_router_api.core.model_handler import Reply
from llm_router_api.endpoints.base import EndpointI, Incoming
from llm_router_api.protocols.anthropic import AnthropicProtocol
from llm_router_api.schemas.calls import Call, Op, Protocol
from llm_router_lib.data_models.anthropic import AnthropicMessagesRequest

CALLER = AnthropicProtocol()
# Caller headers that Anthropic providers need to see (beta features).
FORWARDED_HEADERS = ("anthropic-beta",)


class AnthropicMessages(EndpointI):
    paths = ("/v1/messages",)
    protocol = Protocol.ANTHROPIC
    request_model: ClassVar[type[BaseModel]] = AnthropicMessagesRequest

    def handle(self, incoming: Incoming) -> Reply:
        self.parse(incoming)
        body = incoming.body
        headers = {k.lower(): v for k, v in incoming.headers.items()}
        extra = {k: headers[k] for k in FORWARDED_HEADERS if k in headers}
        call = Call(Protocol.ANTHROPIC, Op.CHAT, body["model"], body,
                    CALLER.canonical(Op.CHAT, body), body.get("stream") is True,
                    request_id=incoming.request_id,
                    on_usage=incoming.on_usage, extra_headers=extra,
                    session=incoming.session)
        return incoming.config.handler.run(call)
