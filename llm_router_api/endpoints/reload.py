"""Hot reload by an admin call (SPEC §12), and what configuration a worker runs.

Registered only when ``LLM_ROUTER_ADMIN_TOKEN`` is set; every call needs
``Authorization: Bearer <admin token>``, else 401.

- ``POST P/admin/reload`` (no body needed): this worker re-reads and validates the
  models-config, keys file and prompt library together and switches to them, then tells every
  other worker and instance (``core.reload``). 200 with the new configuration's summary; 400
  with startup's one-line message (code ``invalid_config``) when anything is wrong — then
  nothing changed anywhere.
- ``GET P/admin/config``: the configuration this worker runs: ``sha256`` of its models-config,
  its models, when it was loaded, and the worker's ``pid`` (to check every worker switched).
"""

from __future__ import annotations

import os
from typing import Any

from llm_router_api.core.generation import Generation
from llm_router_api.core.reload import ConfigRejected, Reloader
from llm_router_api.endpoints.admin import AdminEndpoint
from llm_router_api.endpoints.base import Incoming
from llm_router_api.errors import ValidationFailed


def summary(generation: Generation) -> dict[str, Any]:
    return {"sha256": generation.sha256, "models": list(generation.models.models),
            "loaded_at": generation.loaded_at, "generation": generation.number,
            "pid": os.getpid()}


class AdminReload(AdminEndpoint):
    paths = ("{prefix}/admin/reload",)
    methods = ("POST",)
    takes_body = False

    def handle(self, incoming: Incoming) -> dict[str, Any]:
        self.authorize(incoming)
        reloader: Reloader = self.services.extras["parts"].reloader
        try:
            generation = reloader.reload_and_announce("admin call")
        except ConfigRejected as exc:
            raise ValidationFailed(str(exc), code="invalid_config") from None
        return {"status": "reloaded", **summary(generation)}


class AdminConfig(AdminEndpoint):
    paths = ("{prefix}/admin/config",)
    methods = ("GET",)

    def handle(self, incoming: Incoming) -> dict[str, Any]:
        self.authorize(incoming)
        return summary(incoming.config)
