"""``ProviderChooser``: acquire a provider of a model as a lease, and release it exactly once.

Lifecycle of one attempt::

    lease = chooser.acquire(model, exclude=tried, deadline=...)   # may wait, bounded
    ... call lease.provider ...
    chooser.release(lease, failure=None | error, latency=seconds)  # idempotent

``acquire`` offers the strategy only healthy, not-yet-tried, not-drained providers; the
strategy picks one and takes a lease with the provider's ``max_concurrency`` as a hard cap
(``strategy.acquire``). When every candidate is busy it waits in the model's fair queue
(``waiting``: arrival order across workers and instances, woken by a release, not polled) until
the deadline, then raises ``NoProviderAvailable`` (503 with ``Retry-After``) and gives its place
up. ``release`` drops the lease (waking the head of the queue), tells the strategy, and cools
the provider down when the failure says so. Every lease is held in the worker's one lease store
(``store.leases``, ``base.leases``), with the API keys' concurrency slots: it releases each
exactly once and renews them all (one background thread per worker, every TTL/3).

Health is the store's (``state``, module docstring): a failure cools the provider down,
doubling while it keeps failing; after the cool-down one live trial request at a time is let
through, and only a success of a request that began after the latest failure brings the
provider back. Each lease carries the health marks seen when it was granted.

Drain: ``drain(provider_id)`` takes a provider out of rotation for maintenance. It is filtered
out here, with the candidates, so it gets no new request under any strategy (built-in or
custom); requests already on it finish normally. The drained set lives in the state store
(hash ``drained``: provider id -> wall time it was drained), so every worker and instance
sharing the store honours it; ``undrain`` puts it back. Each chooser re-reads the set at most
every ``DRAIN_REFRESH`` seconds (at once after its own drain/undrain), so a routing decision
stays one store call and a drain reaches every worker and instance within ``DRAIN_REFRESH``.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field

from llm_router_api.base.lb.balanced import LoadBalancedStrategy
from llm_router_api.base.lb.hint import RoutingHint, RoutingOutcome
from llm_router_api.base.lb.state import FAILURES, POLL_INTERVAL, StateStore
from llm_router_api.base.lb.strategy import ChooseProviderStrategyI
from llm_router_api.base.lb.waiting import WAIT_SLICE, Waiter
from llm_router_api.base.leases import PROVIDER, Held
from llm_router_api.errors import NoProviderAvailable, RouterError, UpstreamError
from llm_router_api.schemas.config import ModelConfig, ProviderConfig

FAILURES_KEY = FAILURES
#: Hash: provider id -> wall time it was drained (no new requests until undrained).
DRAINED_KEY = "drained"
#: Hash: provider id -> wall time its latest cool-down ends (for reports; routing asks
#: ``store.cooling``).
COOL_UNTIL_KEY = "health:cool_until"
#: Seconds a chooser keeps the drained set it read (one store read per worker per period, not
#: per request); a drain is honoured everywhere within this time.
DRAIN_REFRESH = 0.5


@dataclass(frozen=True)
class Lease:
    id: str
    model: str
    provider: ProviderConfig
    started: float = field(default_factory=time.monotonic)
    #: The provider's failure sequence number at grant time (``None``: unknown).
    seq: int | None = None
    #: The provider was half-open: this request is its trial.
    trial: bool = False
    #: What a hint-aware strategy decided (``cache_aware``), for observers.
    routing: RoutingOutcome | None = None


@dataclass(frozen=True)
class ChooserLimits:
    acquire_timeout: float = 30.0
    lease_ttl: float = 30.0
    cooldown: float = 10.0
    max_cooldown: float = 60.0


class ProviderChooser:
    def __init__(self, strategy: ChooseProviderStrategyI | None = None, *,
                 store: StateStore | None = None, limits: ChooserLimits | None = None) -> None:
        self.strategy = strategy if strategy is not None else LoadBalancedStrategy(store)
        self.store = store if store is not None else self.strategy.store
        self.limits = limits or ChooserLimits()
        self._drained_seen: tuple[float, frozenset[str]] = (float("-inf"), frozenset())

    # -- acquire -------------------------------------------------------------------------------
    def acquire(self, model: ModelConfig, exclude: Collection[str] = (),
                deadline: float | None = None, hint: RoutingHint | None = None) -> Lease:
        if deadline is None:
            deadline = time.monotonic() + self.limits.acquire_timeout
        # A strategy with queues waits in line (``waiting``): woken by releases, in order.
        waiter = Waiter(model.name) if self.strategy.queues else None
        try:
            while True:
                lease = self._attempt(model, exclude, waiter, hint)
                if lease is not None:
                    waiter = None  # the store took the ticket out of the queue
                    return lease
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NoProviderAvailable("every provider of this model is busy",
                                              retry_after=max(1.0, self.limits.cooldown / 2))
                if waiter is None:
                    time.sleep(min(remaining, POLL_INTERVAL))
                else:
                    self.store.wait_turn(waiter, min(remaining, WAIT_SLICE))
        finally:
            if waiter is not None:  # timed out, or failed: the place must not block the queue
                self.store.leave_queue(waiter)

    def _attempt(self, model: ModelConfig, exclude: Collection[str], waiter: Waiter | None,
                 hint: RoutingHint | None) -> Lease | None:
        untried = self.untried(model, exclude)
        if not self.strategy.skips_cooling:  # a custom strategy: health marks read before
            healthy = self.healthy(untried)
            return self._try(model, healthy, self.store.health_marks([p.id for p in healthy]),
                             hint, waiter)
        lease = self._try(model, untried, hint=hint, waiter=waiter)  # one store call if free
        if lease is None:
            self.healthy(untried)  # raises at once when every one is cooling down
        return lease

    def untried(self, model: ModelConfig, exclude: Collection[str] = ()) -> list[ProviderConfig]:
        """Providers not in ``exclude`` and not drained; raises when none is left."""
        untried = [p for p in model.providers if p.id not in exclude]
        if not untried:
            raise NoProviderAvailable("every provider of this model has been tried",
                                      retry_after=self.limits.cooldown)
        drained = self._drained_now()
        if drained:
            untried = [p for p in untried if p.id not in drained]
            if not untried:
                raise NoProviderAvailable("every provider of this model left is drained",
                                          retry_after=self.limits.cooldown)
        return untried

    def healthy(self, untried: list[ProviderConfig]) -> list[ProviderConfig]:
        """Those not cooling down; raises when every one is."""
        cooling = self.store.cooling([p.id for p in untried])
        healthy = [p for p in untried if p.id not in cooling]
        if not healthy:
            raise NoProviderAvailable("every provider of this model is cooling down",
                                      retry_after=self.limits.cooldown)
        return healthy

    def _try(self, model: ModelConfig, candidates: list[ProviderConfig],
             marks: dict[str, tuple[float, int]] | None = None,
             hint: RoutingHint | None = None, waiter: Waiter | None = None) -> Lease | None:
        routed = self.strategy.route(model.name, candidates, self.limits.lease_ttl, hint, waiter)
        if routed is None:
            return None
        acquired, routing = routed
        provider, lease_id = acquired
        self.store.leases.hold(lease_id, Held(PROVIDER, provider.id, model.name))
        seq, trial = getattr(acquired, "seq", None), getattr(acquired, "trial", False)
        if seq is None and marks is not None and provider.id in marks:
            failures, seq = marks[provider.id]
            trial = failures > 0
        return Lease(lease_id, model.name, provider, seq=seq, trial=trial, routing=routing)

    # -- release -------------------------------------------------------------------------------
    def release(self, lease: Lease, failure: RouterError | None = None,
                latency: float | None = None, stream: bool = False) -> None:
        if self.store.leases.take(lease.id) is None:
            return  # already released
        if failure is None and (lease.trial or lease.seq is None):
            # A successful half-open trial brings the provider back before its slot is freed,
            # so the waiter that release wakes finds every slot open (and passes the turn on).
            # Otherwise there is nothing a success could clear.
            self.store.record_success(lease.provider.id, lease.seq)
        self.store.release_lease(lease.provider.id, lease.id, queue=lease.model)  # wakes a waiter
        self.strategy.put_provider(lease.model, lease.provider)
        if isinstance(failure, UpstreamError) and failure.failover:
            self.mark_failed(lease.provider, failure.retry_after, lease.seq)
        elif failure is None and latency is not None:
            self.strategy.observe_latency(lease.model, lease.provider, latency, stream)

    # -- health --------------------------------------------------------------------------------
    def mark_failed(self, provider: ProviderConfig, retry_after: float | None = None,
                    seq: int | None = None) -> float | None:
        """Cool down; each failure in a row doubles the time, up to ``max_cooldown``. A
        failure of a request granted before the latest failure (older ``seq``) is not counted
        again. Returns the cool-down in seconds (``None``: not counted).

        ``LLM_ROUTER_COOLDOWN=0`` turns health tracking off: failures are not counted, so a
        provider is never cooled down nor half-open — unless the upstream itself asked for a
        pause (``Retry-After`` on a 408/429)."""
        if not self.limits.cooldown and not retry_after:
            return None
        seconds = self.store.record_failure(provider.id, seq, self.limits.cooldown,
                                            self.limits.max_cooldown, retry_after)
        if seconds:  # for reports (the console's time left); routing asks the store
            self.store.set_hash(COOL_UNTIL_KEY, {provider.id: time.time() + seconds})
        return seconds

    def mark_healthy(self, provider_id: str) -> None:
        """Reset the provider's health at once (tests, operators): failures 0, no cool-down."""
        self.store.record_success(provider_id, None)

    # -- drain ---------------------------------------------------------------------------------
    def drain(self, provider_id: str) -> None:
        """No new request goes to ``provider_id`` (any strategy); in-flight ones finish."""
        self.store.set_hash(DRAINED_KEY, {provider_id: time.time()})
        self._drained_seen = (float("-inf"), frozenset())  # read again at the next acquire

    def undrain(self, provider_id: str) -> None:
        self.store.delete_hash(DRAINED_KEY, [provider_id])
        self._drained_seen = (float("-inf"), frozenset())

    def _drained_now(self) -> frozenset[str]:
        """The drained set, read from the store at most every ``DRAIN_REFRESH`` seconds, by
        one caller: the others keep the last set while that read is on its way (at c=32 every
        greenlet that found it stale read it). A drain or undrain meanwhile (which resets the
        read time) is not overwritten by a read that began before it."""
        read_at, drained = self._drained_seen
        now = time.monotonic()
        if now - read_at >= DRAIN_REFRESH:
            reading = (now, drained)
            self._drained_seen = reading
            drained = frozenset(self.store.get_hash(DRAINED_KEY))
            if self._drained_seen is reading:
                self._drained_seen = (now, drained)
        return drained

    def drained(self) -> dict[str, float]:
        """Drained provider ids -> wall time they were drained."""
        return self.store.get_hash(DRAINED_KEY)

    def renew(self) -> None:
        """Renew every lease the worker's lease store holds (provider and key slots alike),
        re-creating lost ones; the maintenance thread does this every TTL/3."""
        self.store.leases.renew(self.limits.lease_ttl)

    def live_leases(self) -> int:
        """Provider leases this worker holds."""
        return self.store.leases.count(PROVIDER)
