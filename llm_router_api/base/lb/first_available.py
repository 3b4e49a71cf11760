"""``first_available``: the first provider in config order with a free slot.

A provider takes at most ``max_concurrency`` requests at once (default 1 under this strategy).
When every slot is taken, ``ProviderChooser`` waits up to ``LLM_ROUTER_ACQUIRE_TIMEOUT`` and then
answers 503 with ``Retry-After``; it never hangs.
"""

from __future__ import annotations

from llm_router_api.base.lb.strategy import RuleStrategy


class FirstAvailableStrategy(RuleStrategy):
    name = "first_available"
    rule = "first"
    default_max_concurrency = 1
