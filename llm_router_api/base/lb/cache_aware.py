"""``cache_aware``: send a request where its prompt prefix is cached and the server is idle.

For self-hosted pools (vLLM, Ollama, llama.cpp). Each decision is one atomic store step
(``StateStore.choose_cached``: one Lua call with Redis) over the candidates the chooser allows
(healthy, untried): it scores every available one by ``prefix_weight × prefix_match +
load_weight × (1 - load)``, skips saturated servers while an unsaturated one exists, keeps a
caller-named session on its last provider under a load bound, leases the pick (``max_concurrency``
stays a hard cap) and records the prompt's block hashes there. ``cache_scoring`` states the
rule; the load signals come from ``core.load_poller`` through the store.

The request's prompt hashes and session arrive as a ``RoutingHint`` (``route``); without one
(a custom caller of ``acquire``) the pick is by load alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from llm_router_api.base.lb.cache_scoring import CacheParams
from llm_router_api.base.lb.hint import RoutingHint
from llm_router_api.base.lb.picking import Candidate
from llm_router_api.base.lb.state import Cached, StateStore
from llm_router_api.base.lb.strategy import Acquired, ChooseProviderStrategyI, Routed
from llm_router_api.base.lb.waiting import Waiter
from llm_router_api.schemas.config import ProviderConfig
from llm_router_api.settings import Settings

NO_HINT = RoutingHint()


class CacheAwareStrategy(ChooseProviderStrategyI):
    name: ClassVar[str] = "cache_aware"
    uses_hints: ClassVar[bool] = True
    polls_load: ClassVar[bool] = True
    skips_cooling = True  # the store's pick passes over cooling providers

    def __init__(self, store: StateStore | None = None,
                 params: CacheParams | None = None) -> None:
        super().__init__(store)
        self.params = params or CacheParams()

    @classmethod
    def from_settings(cls, store: StateStore, settings: Settings) -> CacheAwareStrategy:
        return cls(store, CacheParams(
            prefix_weight=settings.cache_aware_prefix_weight,
            load_weight=settings.cache_aware_load_weight,
            saturation_waiting=settings.cache_aware_saturation_waiting,
            saturation_kv=settings.cache_aware_saturation_kv,
            max_signal_age=3 * settings.load_poll_interval,
            affinity_bound=settings.cache_aware_affinity_bound,
            prefix_entries=settings.prefix_cache_entries,
            prefix_ttl=settings.prefix_cache_ttl))

    def state_key(self, model: str) -> str:
        return f"{self.name}:{model}"

    def _choose(self, model: str, providers: Sequence[ProviderConfig], ttl: float | None,
                hint: RoutingHint | None) -> tuple[ProviderConfig, Cached] | None:
        candidates = [Candidate(p.id, self.cap(p)) for p in providers]
        chosen = self.store.choose_cached(self.state_key(model), candidates, hint or NO_HINT,
                                          self.params, ttl)
        if chosen is None:
            return None
        by_id = {p.id: p for p in providers}
        return by_id[chosen[0][0]], chosen

    def route(self, model: str, providers: Sequence[ProviderConfig], ttl: float,
              hint: RoutingHint | None, waiter: Waiter | None = None) -> Routed | None:
        # No ``queues``: the chooser never passes a waiter; a request that finds every
        # provider full asks again every ``state.POLL_INTERVAL``.
        chosen = self._choose(model, providers, ttl, hint)
        if chosen is None:
            return None
        provider, (grant, outcome) = chosen
        if grant[1] is None:
            return None
        return Acquired(provider, grant[1], grant.seq, grant.trial), outcome

    def get_provider(self, model: str,
                     providers: Sequence[ProviderConfig]) -> ProviderConfig | None:
        """The pick (state advanced) without a lease; ``ProviderChooser`` uses ``route``."""
        chosen = self._choose(model, providers, None, None)
        return None if chosen is None else chosen[0]

    def acquire(self, model: str, providers: Sequence[ProviderConfig],
                ttl: float, waiter: Waiter | None = None) -> Acquired | None:
        routed = self.route(model, providers, ttl, None)
        return None if routed is None else routed[0]
