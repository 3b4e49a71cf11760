"""Strategy names (``LLM_ROUTER_BALANCE_STRATEGY``) to classes; ``package.module:Class`` too."""

from __future__ import annotations

import importlib

from llm_router_api.base.lb.balanced import LoadBalancedStrategy
from llm_router_api.base.lb.cache_aware import CacheAwareStrategy
from llm_router_api.base.lb.first_available import FirstAvailableStrategy
from llm_router_api.base.lb.state import StateStore
from llm_router_api.base.lb.strategy import ChooseProviderStrategyI
from llm_router_api.base.lb.weighted import DynamicWeightedStrategy, WeightedStrategy
from llm_router_api.settings import Settings

STRATEGIES: dict[str, type[ChooseProviderStrategyI]] = {
    cls.name: cls for cls in (LoadBalancedStrategy, WeightedStrategy, DynamicWeightedStrategy,
                              FirstAvailableStrategy, CacheAwareStrategy)
}


def strategy_class(name: str) -> type[ChooseProviderStrategyI]:
    if name in STRATEGIES:
        return STRATEGIES[name]
    if ":" not in name:
        raise ValueError(f"unknown strategy '{name}'")
    module_name, class_name = name.split(":", 1)
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load strategy '{name}': {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, ChooseProviderStrategyI)):
        raise ValueError(f"'{name}' is not a ChooseProviderStrategyI")
    return cls


def build_strategy(name: str, store: StateStore,
                   settings: Settings | None = None) -> ChooseProviderStrategyI:
    cls = strategy_class(name)
    return cls(store) if settings is None else cls.from_settings(store, settings)
