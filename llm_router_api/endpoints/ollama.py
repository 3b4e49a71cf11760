"""Ollama-compatible endpoints, always at ``/api/...`` (and at ``P/...`` for another prefix).

``/api/chat``, ``/api/generate``, ``/api/embed`` call the model (``stream`` defaults to true);
``/api/show`` and ``/api/ps`` describe served models in Ollama's schema. Errors are Ollama's
``{"error": "..."}``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel

from llm_router_api.core.model_handler import Reply
from llm_router_api.endpoints.base import EndpointI, Incoming
from llm_router_api.endpoints.info import _ollama_tag
from llm_router_api.errors import ValidationFailed
from llm_router_api.protocols.base import dumps
from llm_router_api.protocols.ollama import OllamaProtocol
from llm_router_api.schemas.calls import Call, Op, Protocol
from llm_router_api.schemas.canonical import rfc3339_now
from llm_router_api.schemas.config import ModelConfig
from llm_router_lib.data_models.ollama import (
    OllamaChatRequest,
    OllamaEmbeddingsRequest,
    OllamaEmbedRequest,
    OllamaGenerateRequest,
    OllamaShowRequest,
)

CALLER = OllamaProtocol()
# ``/api/ps`` reports served models as loaded for this long.
PS_EXPIRY = timedelta(days=365)


class OllamaCallEndpoint(EndpointI):
    protocol = Protocol.OLLAMA
    op: ClassVar[Op]
    #: The body field that, when empty, makes the call a model load (no upstream call).
    load_field: ClassVar[str] = ""

    def handle(self, incoming: Incoming) -> Reply:
        self.parse(incoming)
        body = incoming.body
        stream = self.op != Op.EMBEDDING and body.get("stream", True) is not False
        if self.load_field and not body.get(self.load_field):
            return self._loaded(incoming, body["model"], stream)
        call = Call(Protocol.OLLAMA, self.op, body["model"], body,
                    CALLER.canonical(self.op, body), stream, request_id=incoming.request_id,
                    on_usage=incoming.on_usage, session=incoming.session)
        return incoming.config.handler.run(call)

    def _loaded(self, incoming: Incoming, model: str, stream: bool) -> Reply:
        """What Ollama answers to an empty request: the model is (already) loaded."""
        incoming.config.handler.resolve(model)
        key = "message" if self.op == Op.CHAT else "response"
        value: Any = {"role": "assistant", "content": ""} if self.op == Op.CHAT else ""
        body = {"model": model, "created_at": rfc3339_now(), key: value, "done": True,
                "done_reason": "load"}
        if stream:
            return Reply(200, CALLER.stream_content_type, dumps(body) + b"\n")
        return Reply(200, "application/json", dumps(body))


class OllamaChat(OllamaCallEndpoint):
    paths = ("/api/chat", "{prefix}/chat")
    request_model: ClassVar[type[BaseModel]] = OllamaChatRequest
    op = Op.CHAT
    load_field = "messages"


class OllamaGenerate(OllamaCallEndpoint):
    paths = ("/api/generate", "{prefix}/generate")
    request_model: ClassVar[type[BaseModel]] = OllamaGenerateRequest
    op = Op.COMPLETION
    load_field = "prompt"


class OllamaEmbed(OllamaCallEndpoint):
    paths = ("/api/embed", "{prefix}/embed")
    request_model: ClassVar[type[BaseModel]] = OllamaEmbedRequest
    op = Op.EMBEDDING


class OllamaLegacyEmbeddings(EndpointI):
    """``POST /api/embeddings`` (``{"model", "prompt"}`` -> ``{"embedding": [...]}``): served as
    an ``/api/embed`` call with one input, its one vector answered in the older shape."""

    paths = ("/api/embeddings", "{prefix}/embeddings")
    protocol = Protocol.OLLAMA
    request_model: ClassVar[type[BaseModel]] = OllamaEmbeddingsRequest

    def handle(self, incoming: Incoming) -> Reply:
        self.parse(incoming)
        body = {k: v for k, v in incoming.body.items() if k != "prompt"}
        body["input"] = incoming.body["prompt"]
        call = Call(Protocol.OLLAMA, Op.EMBEDDING, body["model"], body,
                    CALLER.canonical(Op.EMBEDDING, body), False,
                    request_id=incoming.request_id, on_usage=incoming.on_usage)
        reply = incoming.config.handler.run(call)
        assert isinstance(reply.body, bytes)  # a non-stream answer is one body
        reply.body = dumps({"embedding": orjson.loads(reply.body)["embeddings"][0]})
        return reply


def _modified(mtime: float) -> str:
    return datetime.fromtimestamp(mtime, tz=timezone.utc).isoformat()


def _capabilities(model: ModelConfig) -> list[str]:
    """Embedding models embed; the rest complete, and tools reach every provider type."""
    if any(p.is_embedding for p in model.providers):
        return ["embedding"]
    return ["completion", "tools"]


class OllamaShow(EndpointI):
    """``POST /api/show``: a served model's details in Ollama's schema (404 if not served)."""

    access = "info"
    paths = ("/api/show", "{prefix}/show")
    protocol = Protocol.OLLAMA
    request_model: ClassVar[type[BaseModel]] = OllamaShowRequest

    def handle(self, incoming: Incoming) -> dict[str, Any]:
        request = self.parse(incoming, OllamaShowRequest)
        name = request.model or request.name
        if not name:
            raise ValidationFailed("model: Field required", param="model")
        model = incoming.config.handler.resolve(name)
        tag = _ollama_tag(model, _modified(incoming.config.models.mtime))
        family = tag["details"]["family"]
        return {"modelfile": "", "parameters": "", "template": "", "license": "",
                "details": tag["details"], "model_info": {"general.architecture": family},
                "capabilities": _capabilities(model), "modified_at": tag["modified_at"]}


class OllamaPs(EndpointI):
    """``GET /api/ps``: every served model, reported as loaded."""

    access = "info"
    paths = ("/api/ps", "{prefix}/ps")
    methods = ("GET",)
    protocol = Protocol.OLLAMA

    def handle(self, incoming: Incoming) -> dict[str, Any]:
        modified = _modified(incoming.config.models.mtime)
        expires = (datetime.now(timezone.utc) + PS_EXPIRY).isoformat()
        models = []
        for model in incoming.config.models.models.values():
            tag = _ollama_tag(model, modified)
            del tag["modified_at"]
            models.append({**tag, "expires_at": expires, "size_vram": 0})
        return {"models": models}
