"""Ollama-compatible endpoints, always at ``/api/...`` (and at ``P/...`` for another prefix).

``/api/chat``, ``/api/generate``, ``/api/embed`` call the model (``stream`` defaults to true);
``/api/show`` and ``/api/ps`` describe served models in Ollama's schema. Errors are Ollama's
``{"error": "..."}``.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel

from llm_router_api.auth.access import Access
from llm_router_api.core.model_handler import Reply
from llm_router_api.endpoints.base import EndpointI, Incoming
from llm_router_api.errors import UpstreamError, ValidationFailed
from llm_router_api.formats.caller import dumps
from llm_router_api.formats.canonical import rfc3339_now
from llm_router_api.formats.ollama.upstream import OllamaAdapter
from llm_router_api.formats.ollama.vocab import PROTOCOL
from llm_router_api.schemas.calls import Call, Op
from llm_router_api.schemas.config import ModelConfig
from llm_router_lib.data_models.ollama import (
    OllamaChatRequest,
    OllamaEmbeddingsRequest,
    OllamaEmbedRequest,
    OllamaGenerateRequest,
    OllamaShowRequest,
)

log = logging.getLogger("llm_router.ollama")
# ``/api/ps`` reports served models as loaded for this long.
PS_EXPIRY = timedelta(days=365)


class OllamaCallEndpoint(EndpointI):
    protocol = PROTOCOL
    op: ClassVar[Op]
    #: The body field that, when empty, makes the call a model load (no upstream call).
    load_field: ClassVar[str] = ""

    def handle(self, incoming: Incoming) -> Reply:
        self.parse(incoming)
        body = incoming.body
        stream = self.op != Op.EMBEDDING and body.get("stream", True) is not False
        canonical = self.caller_format.canonical(self.op, body) if not self._loads(body) else {}
        call = Call(self.protocol, self.op, body["model"], body, canonical, stream,
                    request_id=incoming.request_id, on_usage=incoming.on_usage,
                    session=incoming.session)
        if self._loads(body):
            return self._loaded(incoming, call)
        return incoming.config.handler.run(call)

    def _loads(self, body: dict[str, Any]) -> bool:
        return bool(self.load_field) and not body.get(self.load_field)

    def _loaded(self, incoming: Incoming, call: Call) -> Reply:
        """Ollama's load / unload call (no prompt / no messages): sent to every Ollama provider
        of the model; answered here for the other provider types, which load nothing. It
        takes no generation slot. ``done_reason`` is ``unload`` when ``keep_alive`` is 0."""
        handler = incoming.config.handler
        model = handler.resolve(call.model)
        ollama = [p for p in model.providers if p.api_type == "ollama"]
        failures = []
        for provider in ollama:
            adapter = handler.adapter(provider)
            assert isinstance(adapter, OllamaAdapter)  # the registry's adapter for "ollama"
            try:
                adapter.load(provider, model.upstream_name(provider), call)
            except UpstreamError as exc:
                log.warning("load call on provider %s failed: %s", provider.id, exc.message)
                failures.append(exc)
        if ollama and len(failures) == len(ollama):
            raise failures[0]  # none could load it: the caller hears why
        unload = call.body.get("keep_alive") in (0, "0", 0.0, "0s", "0m")
        key = "message" if self.op == Op.CHAT else "response"
        value: Any = {"role": "assistant", "content": ""} if self.op == Op.CHAT else ""
        body = {"model": call.model, "created_at": rfc3339_now(), key: value, "done": True,
                "done_reason": "unload" if unload else "load"}
        stream = call.stream
        if stream:
            return Reply(200, self.caller_format.stream_content_type, dumps(body) + b"\n")
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
    protocol = PROTOCOL
    request_model: ClassVar[type[BaseModel]] = OllamaEmbeddingsRequest

    def handle(self, incoming: Incoming) -> Reply:
        self.parse(incoming)
        body = {k: v for k, v in incoming.body.items() if k != "prompt"}
        body["input"] = incoming.body["prompt"]
        call = Call(self.protocol, Op.EMBEDDING, body["model"], body,
                    self.caller_format.canonical(Op.EMBEDDING, body), False,
                    request_id=incoming.request_id, on_usage=incoming.on_usage)
        reply = incoming.config.handler.run(call)
        assert isinstance(reply.body, bytes)  # a non-stream answer is one body
        reply.body = dumps({"embedding": orjson.loads(reply.body)["embeddings"][0]})
        return reply


def _modified(mtime: float) -> str:
    return datetime.fromtimestamp(mtime, tz=timezone.utc).isoformat()


def _capabilities(model: ModelConfig) -> list[str]:
    """``completion`` unless every provider only embeds, ``tools`` when a provider is marked
    ``tool_calling``, ``embedding`` when one is marked ``is_embedding``."""
    providers = model.providers
    found = [] if all(p.is_embedding for p in providers) else ["completion"]
    if any(p.tool_calling for p in providers):
        found.append("tools")
    if any(p.is_embedding for p in providers):
        found.append("embedding")
    return found


def _model_info(model: ModelConfig, family: str) -> dict[str, Any]:
    """``general.architecture`` and, when a provider declares ``input_size``,
    ``<family>.context_length`` (the smallest: what every provider can take)."""
    info: dict[str, Any] = {"general.architecture": family}
    sizes = [p.input_size for p in model.providers if p.input_size]
    if sizes:
        info[f"{family}.context_length"] = min(sizes)
    return info


class OllamaInfo(EndpointI):
    """Ollama's descriptions of the served models (no upstream call)."""

    access = Access.INFO
    methods = ("GET",)
    protocol = PROTOCOL


class Tags(OllamaInfo):
    """``GET /api/tags``: every served model, so ``ollama list``-style clients work."""

    paths = ("{prefix}/tags", "/api/tags")

    def handle(self, incoming: Incoming) -> dict[str, Any]:
        modified = _modified(incoming.config.models.mtime)
        return {"models": [ollama_tag(m, modified)
                           for m in incoming.config.models.models.values()]}


class OllamaShow(OllamaInfo):
    """``POST /api/show``: a served model's details in Ollama's schema (404 if not served)."""

    paths = ("/api/show", "{prefix}/show")
    methods = ("POST",)
    request_model: ClassVar[type[BaseModel]] = OllamaShowRequest

    def handle(self, incoming: Incoming) -> dict[str, Any]:
        request = self.parse(incoming, OllamaShowRequest)
        name = request.model or request.name
        if not name:
            raise ValidationFailed("model: Field required", param="model")
        model = incoming.config.handler.resolve(name)
        tag = ollama_tag(model, _modified(incoming.config.models.mtime))
        family = tag["details"]["family"]
        return {"modelfile": "", "parameters": "", "template": "", "license": "",
                "details": tag["details"], "model_info": _model_info(model, family),
                "capabilities": _capabilities(model), "modified_at": tag["modified_at"]}


class OllamaPs(OllamaInfo):
    """``GET /api/ps``: the served models that are loaded. A model with Ollama providers whose
    ``/api/ps`` the load poller read (the ``cache_aware`` strategy polls it; signals younger
    than three poll intervals) is listed only when one of them reports it loaded; any other
    model (no Ollama provider, or nothing known) is listed, as a gateway model is always
    ready to serve."""

    paths = ("/api/ps", "{prefix}/ps")

    def handle(self, incoming: Incoming) -> dict[str, Any]:
        modified = _modified(incoming.config.models.mtime)
        expires = (datetime.now(timezone.utc) + PS_EXPIRY).isoformat()
        loaded = self._loaded_flags(incoming)
        models = []
        for model in incoming.config.models.models.values():
            flags = [loaded[p.id] for p in model.providers if p.id in loaded]
            if flags and not any(flags):
                continue  # every Ollama provider that reported says it is not loaded
            tag = ollama_tag(model, modified)
            del tag["modified_at"]
            models.append({**tag, "expires_at": expires, "size_vram": 0})
        return {"models": models}

    def _loaded_flags(self, incoming: Incoming) -> dict[str, bool]:
        """Ollama provider id -> whether its last fresh ``/api/ps`` listed its model."""
        ids = [p.id for _, p in incoming.config.models.providers() if p.api_type == "ollama"]
        if not ids:
            return {}
        fresh = 3 * self.settings.load_poll_interval
        try:
            signals = self.parts.chooser.store.signals(ids)
        except Exception:  # noqa: BLE001 - the store is down: nothing is known, list them all
            log.debug("no load signals for /api/ps", exc_info=True)
            return {}
        return {pid: bool(values.get("loaded")) for pid, (values, age) in signals.items()
                if age <= fresh and "loaded" in values}


def ollama_tag(model: ModelConfig, modified_at: str) -> dict[str, Any]:
    family = model.providers[0].api_type
    return {
        "name": model.name,
        "model": model.name,
        "modified_at": modified_at,
        "size": 0,
        "digest": hashlib.sha256(model.name.encode()).hexdigest(),
        "details": {"parent_model": "", "format": "", "family": family, "families": [family],
                    "parameter_size": "", "quantization_level": ""},
    }
