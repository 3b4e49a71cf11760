"""``balanced``: the provider with the fewest requests in flight (live leases); ties go to the
least recently chosen one. Chosen and leased in one atomic store step."""

from __future__ import annotations

from llm_router_api.base.lb.strategy import RuleStrategy


class LoadBalancedStrategy(RuleStrategy):
    name = "balanced"
    rule = "balanced"
