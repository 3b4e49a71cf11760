"""``balanced``: the provider with the fewest requests in flight; ties go to the least recently
chosen one."""

from __future__ import annotations

from collections.abc import Sequence

from llm_router_api.base.lb.strategy import ChooseProviderStrategyI
from llm_router_api.schemas.config import ProviderConfig


class LoadBalancedStrategy(ChooseProviderStrategyI):
    name = "balanced"

    def get_provider(self, model: str,
                     providers: Sequence[ProviderConfig]) -> ProviderConfig | None:
        in_flight = self.store.in_flight([p.id for p in providers])
        last_chosen = self.store.get_hash(f"balanced:last:{model}")
        chosen = min(providers, key=lambda p: (in_flight.get(p.id, 0),
                                               last_chosen.get(p.id, 0.0)))
        sequence = self.store.incr(f"balanced:last:{model}", "__seq__")
        self.store.set_hash(f"balanced:last:{model}", {chosen.id: sequence})
        return chosen
