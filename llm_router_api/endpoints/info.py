"""Info endpoints: liveness, version, readiness, and the model lists of OpenAI and Ollama.

None of them calls an upstream, and none shows a host URL or a token.
"""

from __future__ import annotations

from typing import Any

from llm_router_api import __version__
from llm_router_api.auth.access import Access
from llm_router_api.core.background import UNREACHABLE_KEY
from llm_router_api.core.model_handler import Reply
from llm_router_api.endpoints.base import EndpointI, Incoming
from llm_router_api.formats.caller import dumps
from llm_router_api.formats.ollama.vocab import PROTOCOL as OLLAMA
from llm_router_api.schemas.config import ModelConfig


class Ping(EndpointI):
    access = Access.OPEN
    paths = ("{prefix}/ping",)
    methods = ("GET",)

    def handle(self, incoming: Incoming) -> dict[str, str]:
        return {"status": "ok"}


class Version(EndpointI):
    access = Access.OPEN
    paths = ("{prefix}/version", "/api/version")
    methods = ("GET",)

    def handle(self, incoming: Incoming) -> dict[str, str]:
        return {"version": __version__}


class OllamaRoot(EndpointI):
    """Ollama clients probe ``GET /``."""

    access = Access.OPEN
    paths = ("/",)
    methods = ("GET", "HEAD")
    protocol = OLLAMA

    def handle(self, incoming: Incoming) -> Reply:
        return Reply(200, "text/plain; charset=utf-8", b"Ollama is running")


class Health(EndpointI):
    """Readiness as the router sees it: 503 when some model has no healthy provider (every one
    cooling down after failures, or not answering its probe since startup). Each provider also
    shows its last load signals (``load``: the values and their ``age_s``) when the state store
    has any (polled for ``cache_aware``)."""

    access = Access.INFO
    paths = ("{prefix}/health",)
    methods = ("GET",)

    def handle(self, incoming: Incoming) -> Reply:
        chooser = incoming.config.handler.chooser
        models: dict[str, Any] = {}
        ready = True
        unreachable = set(chooser.store.get_hash(UNREACHABLE_KEY))
        drained = chooser.drained()
        for model in incoming.config.models.models.values():
            ids = [p.id for p in model.providers]
            down = chooser.store.cooling(ids) | (unreachable & set(ids))
            in_flight = chooser.store.in_flight(ids)
            signals = chooser.store.signals(ids)
            providers = [{"id": pid, "healthy": pid not in down,
                          "reachable": pid not in unreachable, "drained": pid in drained,
                          "in_flight": in_flight.get(pid, 0), **_load(signals.get(pid))}
                         for pid in ids]
            healthy = len(ids) - len(down)
            ready = ready and healthy > 0
            models[model.name] = {"healthy": healthy > 0, "providers": providers}
        config = {"sha256": incoming.config.sha256, "loaded_at": incoming.config.loaded_at}
        body = {"status": "ok" if ready else "degraded", "models": models, "config": config}
        return Reply(200 if ready else 503, "application/json", dumps(body))


def _load(signals: tuple[dict[str, float], float] | None) -> dict[str, Any]:
    if signals is None:
        return {}
    values, age = signals
    return {"load": {**values, "age_s": round(age, 3)}}


def _created(models_mtime: float) -> int:
    return int(models_mtime)


class OpenAIModels(EndpointI):
    access = Access.INFO
    paths = ("/v1/models",)
    methods = ("GET",)

    def handle(self, incoming: Incoming) -> dict[str, Any]:
        created = _created(incoming.config.models.mtime)
        return {"object": "list",
                "data": [_openai_model(m, created) for m in incoming.config.models.models.values()]}


class OpenAIModel(EndpointI):
    access = Access.INFO
    paths = ("/v1/models/<path:model_id>",)
    methods = ("GET",)

    def handle(self, incoming: Incoming) -> dict[str, Any]:
        model = incoming.config.handler.resolve(incoming.path_params["model_id"])
        return _openai_model(model, _created(incoming.config.models.mtime))


def _openai_model(model: ModelConfig, created: int) -> dict[str, Any]:
    return {"id": model.name, "object": "model", "created": created, "owned_by": "llm-router"}
