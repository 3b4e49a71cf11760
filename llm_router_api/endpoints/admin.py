"""Admin endpoints: runtime weights of ``dynamic_weighted``.

Registered only when ``LLM_ROUTER_ADMIN_TOKEN`` is set; every call needs
``Authorization: Bearer <admin token>`` (compared in constant time), else 401.

- ``GET P/admin/weights``: per model and provider the configured, runtime and effective weight
  and the measured moving averages.
- ``PUT P/admin/weights`` ``{"model": "m", "weights": {"provider-id": 2.5, ...}}``: set runtime
  weights (positive numbers); they live in the state store (shared through Redis) until reset.
- ``DELETE P/admin/weights``: reset every runtime weight to the configured one.
"""

from __future__ import annotations

import hmac
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, PositiveFloat

from llm_router_api.auth.access import Access
from llm_router_api.auth.keys import bearer_token
from llm_router_api.base.lb.strategy import ChooseProviderStrategyI
from llm_router_api.endpoints.base import EndpointI, Incoming
from llm_router_api.errors import Unauthorized, ValidationFailed, echo

WEIGHTS_PATH = "{prefix}/admin/weights"


class WeightsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    weights: dict[str, PositiveFloat]


class AdminEndpoint(EndpointI):
    """Base of the admin endpoints (no paths of its own, so it is not mounted)."""

    admin_only = True
    access = Access.ADMIN  # the admin token, checked here, not a caller key

    def handle(self, incoming: Incoming) -> Any:
        self.authorize(incoming)
        strategy = incoming.config.handler.chooser.strategy
        if not strategy.supports_runtime_weights:
            raise ValidationFailed(f"the balance strategy '{strategy.name}' has no runtime "
                                   "weights; use LLM_ROUTER_BALANCE_STRATEGY=dynamic_weighted")
        return self.act(incoming, strategy)

    def act(self, incoming: Incoming, strategy: ChooseProviderStrategyI) -> Any:
        raise NotImplementedError

    def authorize(self, incoming: Incoming) -> None:
        token = bearer_token(incoming.headers)
        if not hmac.compare_digest(token.encode(), self.settings.admin_token.encode()):
            raise Unauthorized("missing or invalid admin token")

    def view(self, incoming: Incoming, strategy: ChooseProviderStrategyI) -> dict[str, Any]:
        models = incoming.config.models.models
        return {"strategy": strategy.name,
                "models": {name: strategy.runtime_weights(name, model.providers)
                           for name, model in models.items()}}


class AdminWeightsGet(AdminEndpoint):
    paths = (WEIGHTS_PATH,)
    methods = ("GET",)

    def act(self, incoming: Incoming, strategy: ChooseProviderStrategyI) -> Any:
        return self.view(incoming, strategy)


class AdminWeightsPut(AdminEndpoint):
    paths = (WEIGHTS_PATH,)
    methods = ("PUT",)
    request_model: ClassVar[type[BaseModel]] = WeightsUpdate

    def act(self, incoming: Incoming, strategy: ChooseProviderStrategyI) -> Any:
        update = self.parse(incoming, WeightsUpdate)
        model = incoming.config.handler.resolve(update.model)
        known = {p.id for p in model.providers}
        for provider_id in update.weights:
            if provider_id not in known:
                field = f"weights.{echo(provider_id)}"
                raise ValidationFailed(f"{field}: model '{model.name}' has no such provider",
                                       param=field)
        strategy.set_runtime_weights(model.name, update.weights)
        return self.view(incoming, strategy)


class AdminWeightsReset(AdminEndpoint):
    paths = (WEIGHTS_PATH,)
    methods = ("DELETE",)

    def act(self, incoming: Incoming, strategy: ChooseProviderStrategyI) -> Any:
        for name in incoming.config.models.models:
            strategy.reset_runtime_weights(name)
        return self.view(incoming, strategy)
