"""The console's actions (SPEC §14), each an admin call, each logged with who took it.

- ``POST P/ui/api/providers/<id>/drain`` and ``/undrain``: as ``POST P/admin/providers/<id>/
  drain`` (``endpoints.drain``).
- ``PUT P/ui/api/weights`` ``{"model", "provider", "weight"}``: one provider's runtime weight
  (strategies with runtime weights, i.e. ``dynamic_weighted``; 400 otherwise).
- ``POST P/ui/api/reload``: hot reload (as ``POST P/admin/reload``): this worker re-reads and
  validates the files and tells every other worker and instance; 400 ``invalid_config`` with
  startup's message when they are wrong (then nothing changed).

The page asks for confirmation before each; the server logs each on ``llm_router.operator``
with the console session's id (or ``admin token``).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, PositiveFloat

from llm_router_api.core.model_handler import Reply
from llm_router_api.core.operator import set_drained, set_weight
from llm_router_api.core.reload import ConfigRejected, Reloader
from llm_router_api.endpoints.base import Incoming
from llm_router_api.endpoints.console import UI, ConsoleEndpoint, reply
from llm_router_api.errors import ValidationFailed

log = logging.getLogger("llm_router.operator")


class ConsoleDrain(ConsoleEndpoint):
    paths = (UI + "/api/providers/<provider_id>/drain",)
    methods = ("POST",)
    takes_body = False
    drained: ClassVar[bool] = True

    def act(self, incoming: Incoming, who: str) -> Reply:
        handler = incoming.config.handler
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
        handler = incoming.config.handler
        return reply(set_weight(handler.chooser, handler.models, change.model, change.provider,
                                change.weight, by=who))


class ConsoleReload(ConsoleEndpoint):
    paths = (UI + "/api/reload",)
    methods = ("POST",)
    takes_body = False

    def act(self, incoming: Incoming, who: str) -> Any:
        reloader: Reloader = self.services.extras["parts"].reloader
        log.info("operator action: reload by=%s", who,
                 extra={"fields": {"action": "reload", "by": who}})
        try:
            generation = reloader.reload_and_announce(f"console, {who}")
        except ConfigRejected as exc:  # nothing changed anywhere; startup's message
            raise ValidationFailed(str(exc), code="invalid_config") from None
        return reply({"status": "reloaded", "sha256": generation.sha256,
                      "loaded_at": generation.loaded_at, "generation": generation.number})
