"""A test strategy for the gateway process (``LLM_ROUTER_BALANCE_STRATEGY=...:ConfigOrder``):
always the first candidate in config order, so failover paths are deterministic."""

from __future__ import annotations

from collections.abc import Sequence

from llm_router_api.base.lb.strategy import ChooseProviderStrategyI
from llm_router_api.schemas.config import ProviderConfig


class ConfigOrder(ChooseProviderStrategyI):
    name = "config_order"

    def get_provider(self, model: str,
                     providers: Sequence[ProviderConfig]) -> ProviderConfig | None:
        return providers[0]
