"""``ChooseProviderStrategyI``: how one provider is picked among a model's candidates.

A strategy sees only candidates the chooser allows (healthy, not yet tried in this request) and
returns one of them, or ``None`` when it will not pick any. ``put_provider`` is called exactly once
for every provider ``get_provider`` returned: when its slot could not be taken, or when the
request that used it ends, however it ends. ``observe_latency`` reports a finished call's time to
first token (stream) or total time (non-stream), for strategies that adapt. State lives in the
``StateStore`` handed in, so the same strategy works in one process (memory) or across workers
and instances (Redis).

``acquire`` is what ``ProviderChooser`` calls: pick *and* lease, with each provider's cap. The
default does ``get_provider`` then ``store.acquire_lease`` (and ``put_provider`` when the slot is
taken, then tries the others), so a custom strategy only writes ``get_provider``. The built-in
strategies override ``acquire`` with one atomic ``store.choose_lease`` (one Redis round trip),
which also keeps the model's waiting queue fair (``waiting``): they set ``queues``. A strategy
without it is asked again every ``state.POLL_INTERVAL`` while a request waits.

``route`` is ``acquire`` with the request's ``RoutingHint`` (prompt block hashes, session) and
what was decided (a ``RoutingOutcome`` for observers, or ``None``); the chooser calls it. By
default it is ``acquire``, hint ignored; ``cache_aware`` overrides it. ``from_settings`` builds a
strategy (default: ``cls(store)``); a strategy with knobs of its own reads them there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar

from llm_router_api.base.lb.hint import RoutingHint, RoutingOutcome
from llm_router_api.base.lb.picking import Candidate
from llm_router_api.base.lb.state import Grant, MemoryStore, StateStore
from llm_router_api.base.lb.waiting import Waiter
from llm_router_api.schemas.config import ProviderConfig
from llm_router_api.settings import Settings


class Acquired(tuple[ProviderConfig, str]):
    """``(provider, lease_id)``, with the provider's health marks when the store gave them
    (``Grant``): ``seq`` (``None``: unknown, the chooser read them before) and ``trial``."""

    seq: int | None
    trial: bool

    def __new__(cls, provider: ProviderConfig, lease_id: str, seq: int | None = None,
                trial: bool = False) -> Acquired:
        acquired = super().__new__(cls, (provider, lease_id))
        acquired.seq = seq
        acquired.trial = trial
        return acquired


#: ``(acquired, what was decided or None)`` from ``route``.
Routed = tuple[Acquired, RoutingOutcome | None]


class ChooseProviderStrategyI(ABC):
    name: ClassVar[str] = "custom"
    #: Slots per provider when its config sets no ``max_concurrency`` (``None``: unlimited).
    default_max_concurrency: ClassVar[int | None] = None
    #: Whether ``runtime_weights`` / ``set_runtime_weights`` work (``PUT P/admin/weights``).
    supports_runtime_weights: ClassVar[bool] = False
    #: ``acquire`` itself passes over providers cooling down (the chooser then skips its own
    #: up-front check, so a free slot costs one store call).
    skips_cooling: ClassVar[bool] = False
    #: Whether ``route`` uses a ``RoutingHint`` (the core only builds one then).
    uses_hints: ClassVar[bool] = False
    #: Whether the providers' load signals should be polled for this strategy.
    polls_load: ClassVar[bool] = False
    #: ``acquire`` honours a ``Waiter`` (a fair queue, woken by releases) rather than ignoring it.
    queues: ClassVar[bool] = False

    def __init__(self, store: StateStore | None = None) -> None:
        self.store: StateStore = store if store is not None else MemoryStore()

    @classmethod
    def from_settings(cls, store: StateStore, settings: Settings) -> ChooseProviderStrategyI:
        return cls(store)

    @abstractmethod
    def get_provider(self, model: str,
                     providers: Sequence[ProviderConfig]) -> ProviderConfig | None:
        """Pick one of ``providers`` for ``model`` (never empty), or ``None``."""

    def put_provider(self, model: str, provider: ProviderConfig) -> None:  # noqa: B027
        """The request that used ``provider`` has ended. Default: nothing to undo."""

    def observe_latency(self, model: str, provider: ProviderConfig,  # noqa: B027
                        seconds: float, stream: bool = False) -> None:
        """A finished call's time to first token (stream) or total time (non-stream)."""

    def cap(self, provider: ProviderConfig) -> int | None:
        """The hard limit of live leases on ``provider``."""
        return provider.max_concurrency or self.default_max_concurrency

    def acquire(self, model: str, providers: Sequence[ProviderConfig],
                ttl: float, waiter: Waiter | None = None) -> Acquired | None:
        """Pick a provider and lease one of its slots; ``None`` when every one is full (or, with
        ``waiter`` and ``queues``, when others waited first)."""
        left = list(providers)
        while left:
            provider = self.get_provider(model, left)
            if provider is None:
                return None
            lease_id = self.store.acquire_lease(provider.id, self.cap(provider), ttl)
            if lease_id is not None:
                return Acquired(provider, lease_id)
            self.put_provider(model, provider)
            left = [p for p in left if p.id != provider.id]
        return None

    def route(self, model: str, providers: Sequence[ProviderConfig], ttl: float,
              hint: RoutingHint | None, waiter: Waiter | None = None) -> Routed | None:
        """``acquire`` with the request's hint; also says what was decided, if anything."""
        acquired = self.acquire(model, providers, ttl, waiter)
        return None if acquired is None else (acquired, None)

    # -- runtime weights (strategies with ``supports_runtime_weights``) -------------------------
    def runtime_weights(self, model: str,
                        providers: Sequence[ProviderConfig]) -> dict[str, dict[str, float | None]]:
        """Per provider: configured, runtime and effective weight (and measured latency)."""
        raise NotImplementedError(f"strategy '{self.name}' has no runtime weights")

    def set_runtime_weights(self, model: str, weights: Mapping[str, float]) -> None:
        raise NotImplementedError(f"strategy '{self.name}' has no runtime weights")

    def reset_runtime_weights(self, model: str) -> None:
        raise NotImplementedError(f"strategy '{self.name}' has no runtime weights")


class RuleStrategy(ChooseProviderStrategyI):
    """A built-in strategy: one ``picking`` rule applied by the store, atomically with the lease."""

    rule: ClassVar[str]
    skips_cooling = True  # the store's pick passes over cooling providers
    queues = True

    def state_key(self, model: str) -> str:
        return f"{self.name}:{model}"

    def weights(self, model: str, providers: Sequence[ProviderConfig]) -> list[float]:
        return [p.weight for p in providers]

    def candidates(self, model: str, providers: Sequence[ProviderConfig]) -> list[Candidate]:
        return [Candidate(p.id, self.cap(p), w)
                for p, w in zip(providers, self.weights(model, providers), strict=True)]

    def _choose(self, model: str, providers: Sequence[ProviderConfig], ttl: float | None,
                waiter: Waiter | None = None) -> tuple[ProviderConfig, Grant] | None:
        chosen = self.store.choose_lease(self.rule, self.state_key(model),
                                         self.candidates(model, providers), ttl, waiter)
        if chosen is None:
            return None
        by_id = {p.id: p for p in providers}
        return by_id[chosen[0]], chosen

    def get_provider(self, model: str,
                     providers: Sequence[ProviderConfig]) -> ProviderConfig | None:
        """The pick (state advanced) without a lease; ``ProviderChooser`` uses ``acquire``."""
        chosen = self._choose(model, providers, None)
        return None if chosen is None else chosen[0]

    def acquire(self, model: str, providers: Sequence[ProviderConfig],
                ttl: float, waiter: Waiter | None = None) -> Acquired | None:
        chosen = self._choose(model, providers, ttl, waiter)
        if chosen is None:
            return None
        provider, grant = chosen
        lease_id = grant[1]
        if lease_id is None:
            return None
        return Acquired(provider, lease_id, getattr(grant, "seq", None),
                        getattr(grant, "trial", False))
