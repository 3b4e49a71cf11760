"""Operator actions shared by the admin API and the console: drain, undrain, runtime weight.

Each action checks its target exists in the current configuration (404 / 400 otherwise),
changes the shared state (the state store, so every worker and instance sees it) and writes one
log line on ``llm_router.operator``: what, which provider, and who (``admin token`` or
``console session <id>``). No Flask here.
"""

from __future__ import annotations

import logging
from typing import Any

from llm_router_api.base.lb.chooser import ProviderChooser
from llm_router_api.errors import NotFound, ValidationFailed
from llm_router_api.schemas.config import ModelsConfig

log = logging.getLogger("llm_router.operator")


def check_provider(models: ModelsConfig, provider_id: str) -> None:
    if provider_id not in {p.id for _, p in models.providers()}:
        raise NotFound(f"no provider '{provider_id[:256]}' in the configuration",
                       param="provider")


def set_drained(chooser: ProviderChooser, models: ModelsConfig, provider_id: str,
                drained: bool, by: str) -> dict[str, Any]:
    """Drain (no new requests, in-flight ones finish) or undrain ``provider_id``."""
    check_provider(models, provider_id)
    if drained:
        chooser.drain(provider_id)
    else:
        chooser.undrain(provider_id)
    action = "drain" if drained else "undrain"
    log.info("operator action: %s provider=%s by=%s", action, provider_id, by,
             extra={"fields": {"action": action, "provider": provider_id, "by": by}})
    return {"provider": provider_id, "drained": drained,
            "in_flight": chooser.store.in_flight([provider_id]).get(provider_id, 0)}


def set_weight(chooser: ProviderChooser, models: ModelsConfig, model_name: str,
               provider_id: str, weight: float, by: str) -> dict[str, Any]:
    """Set one provider's runtime weight (strategies with runtime weights only)."""
    strategy = chooser.strategy
    if not strategy.supports_runtime_weights:
        raise ValidationFailed(f"the balance strategy '{strategy.name}' has no runtime weights")
    model = models.resolve(model_name)
    if model is None:
        raise NotFound(f"model '{model_name[:256]}' is not served here", param="model")
    if provider_id not in {p.id for p in model.providers}:
        raise ValidationFailed(f"model '{model.name}' has no provider '{provider_id[:256]}'",
                               param="provider")
    if not weight > 0:
        raise ValidationFailed("weight must be a positive number", param="weight")
    strategy.set_runtime_weights(model.name, {provider_id: weight})
    log.info("operator action: weight model=%s provider=%s weight=%s by=%s", model.name,
             provider_id, weight, by, extra={"fields": {
                 "action": "weight", "model": model.name, "provider": provider_id,
                 "weight": weight, "by": by}})
    return {"model": model.name, "provider": provider_id, "runtime_weight": weight}
