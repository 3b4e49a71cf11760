"""Drain and undrain a provider (admin API).

Registered only when ``LLM_ROUTER_ADMIN_TOKEN`` is set; every call needs
``Authorization: Bearer <admin token>``, else 401.

- ``POST P/admin/providers/<id>/drain``: the provider gets no new request, under any strategy,
  in any worker or instance sharing the state store; requests already on it finish.
- ``POST P/admin/providers/<id>/undrain``: back in rotation.

Both answer ``{"provider", "drained", "in_flight"}``; 404 for an unknown provider. No body.
``GET P/health`` shows ``drained`` per provider.
"""

from __future__ import annotations

from typing import Any, ClassVar

from llm_router_api.core.operator import set_drained
from llm_router_api.endpoints.admin import AdminEndpoint
from llm_router_api.endpoints.base import Incoming


class AdminDrain(AdminEndpoint):
    paths = ("{prefix}/admin/providers/<provider_id>/drain",)
    methods = ("POST",)
    takes_body = False
    drained: ClassVar[bool] = True

    def handle(self, incoming: Incoming) -> Any:
        self.authorize(incoming)
        handler = incoming.config.handler
        return set_drained(handler.chooser, handler.models, incoming.path_params["provider_id"],
                           self.drained, by="admin token")


class AdminUndrain(AdminDrain):
    paths = ("{prefix}/admin/providers/<provider_id>/undrain",)
    drained = False
