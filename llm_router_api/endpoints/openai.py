"""OpenAI-compatible model calls: chat completions, completions, embeddings."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from llm_router_api.core.model_handler import Reply
from llm_router_api.endpoints.base import EndpointI, Incoming
from llm_router_api.formats.openai.vocab import PROTOCOL
from llm_router_api.schemas.calls import Call, Op
from llm_router_lib.data_models.openai import (
    OpenAIChatRequest,
    OpenAICompletionRequest,
    OpenAIEmbeddingRequest,
)


class OpenAICallEndpoint(EndpointI):
    """Validate, then hand the caller's JSON object to ``ModelHandler`` unchanged."""

    protocol = PROTOCOL
    op: ClassVar[Op]

    def handle(self, incoming: Incoming) -> Reply:
        self.parse(incoming)  # validated; the caller's object itself goes on unchanged
        body = incoming.body
        call = Call(self.protocol, self.op, body["model"], body, body,
                    bool(body.get("stream", False)), request_id=incoming.request_id,
                    on_usage=incoming.on_usage, session=incoming.session)
        return incoming.config.handler.run(call)


class ChatCompletions(OpenAICallEndpoint):
    paths = ("/v1/chat/completions", "{prefix}/chat/completions")
    request_model: ClassVar[type[BaseModel]] = OpenAIChatRequest
    op = Op.CHAT


class Completions(OpenAICallEndpoint):
    paths = ("/v1/completions",)
    request_model: ClassVar[type[BaseModel]] = OpenAICompletionRequest
    op = Op.COMPLETION


class Embeddings(OpenAICallEndpoint):
    paths = ("/v1/embeddings",)
    request_model: ClassVar[type[BaseModel]] = OpenAIEmbeddingRequest
    op = Op.EMBEDDING
