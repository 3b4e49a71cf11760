"""The console's actions (SPEC §14), each an admin call, each logged with who took it.

- ``POST P/ui/api/providers/<id>/drain`` and ``/undrain``: as ``POST P/admin/providers/<id>/
  drain`` (``endpoints.drain``).
- ``PUT P/ui/api/weights`` ``{"model", "provider", "weight"}``: one provider's runtime weight
  (strategies with runtime weights, i.e. ``dynamic_weighted``; 400 otherwise).
- ``POST P/ui/api/reload``: reload the configuration when this gateway can (the snapshot's
  ``config.can_reload``); 404 when it cannot.

The page asks for confirmation before each; the server logs each on ``llm_router.operator``
with the console session's id (or ``admin token``).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, PositiveFloat

from llm_router_api.core.model_handler import Reply
from llm_router_api.core.operator import set_drained, set_weight
from llm_router_api.endpoints.base import Incoming
from llm_router_api.endpoints.console import UI, ConsoleEndpoint, reply
from llm_router_api.errors import NotFound, ValidationFailed

log = logging.getLogger("llm_router.operator")


class ConsoleDrain(ConsoleEndpoint):
    paths = (UI + "/api/providers/<provider_id>/drain",)
    methods = ("POST",)
    takes_body = False
    drained: ClassVar[bool] = True

    def act(self, incoming: Incoming, who: str) -> Reply:
        handler = self.services.handler
        return reply(set_drained(handler.chooser, handler.models,
                                 incoming.path_params["provider_id"], self.drained, by=who))


class ConsoleUndrain(ConsoleDrain):
    paths = (UI + "/api/providers/<provider_id>/undrain",)
    drained = False


class WeightChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    provider: str
    weight: PositiveFloat


class ConsoleWeight(ConsoleEndpoint):
    paths = (UI + "/api/weights",)
    methods = ("PUT",)
    request_model = WeightChange

    def act(self, incoming: Incoming, who: str) -> Reply:
        change = self.parse(incoming, WeightChange)
        handler = self.services.handler
        return reply(set_weight(handler.chooser, handler.models, change.model, change.provider,
                                change.weight, by=who))


class ConsoleReload(ConsoleEndpoint):
    paths = (UI + "/api/reload",)
    methods = ("POST",)
    takes_body = False

    def act(self, incoming: Incoming, who: str) -> Any:
        reloader = getattr(self.services.extras.get("parts"), "reloader", None)
        if reloader is None:
            raise NotFound("this gateway cannot reload its configuration")
        log.info("operator action: reload by=%s", who,
                 extra={"fields": {"action": "reload", "by": who}})
        try:
            generation = reloader.reload_and_announce(f"console ({who})")
        except Exception as exc:  # the reloader's rejection: the startup message
            if type(exc).__name__ != "ConfigRejected":
                raise
            raise ValidationFailed(str(exc), code="invalid_config") from None
        return reply({"status": "reloaded", "sha256": getattr(generation, "sha256", ""),
                      "loaded_at": getattr(generation, "loaded_at", None)})
