"""One maintenance thread per worker: renews every live lease (one call to the worker's lease
store, ``base.leases``: provider slots and API-key concurrency slots alike) and probes
providers' reachability.

Started by ``create_app`` (after fork, in each worker); a daemon, stopped with ``stop()``.
Leases are renewed every TTL/3.

No probe brings a cooling provider back: a model-list probe (``GET /v1/models``,
``/api/tags``) only shows that a server is reachable, and a server whose model list answers
while generation fails used to be let back in every interval. A provider comes back only by
generating — one live trial request after its cool-down (``base.lb.state``, module docstring).

Reachability (what ``/api/health`` reports before any request has failed): as soon as the
thread starts, every provider is probed once, concurrently; those that do not answer are
recorded in the state store's ``health:unreachable`` hash and probed again every
``HEALTH_INTERVAL`` until they answer. The record only informs health reports; routing still
decides by cool-downs, so a provider that could serve is never skipped on a probe's word.
With Redis the record is shared, so one worker in the cluster probes: the holder of the
``probe`` lock (``hold_lock``, kept for ``PROBE_LOCK_INTERVALS`` intervals, so a holder that
died is replaced within them), like the load poller. Without Redis every worker has its own
record and probes for itself. After a hot reload (which reaches every worker and instance) the
holder probes the new configuration.

A ``LoadPoller`` handed in (strategies that use load signals) is started and stopped with
it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

from llm_router_api.base.lb.chooser import ProviderChooser
from llm_router_api.core.load_poller import LoadPoller
from llm_router_api.formats.upstream import UpstreamAdapter
from llm_router_api.schemas.config import ModelsConfig

log = logging.getLogger("llm_router.background")

#: Hash of providers whose probe failed (member -> 1); read by the health endpoint.
UNREACHABLE_KEY = "health:unreachable"
#: Probes in flight at once: unreachable hosts cost up to the probe timeout each.
PROBE_CONCURRENCY = 8
#: The cluster's one prober holds its lock for this many health intervals.
PROBE_LOCK = "probe"
PROBE_LOCK_INTERVALS = 3


class Maintenance:
    """``models`` returns the configuration in use (it changes with hot reloads); after a
    reload ``reprobe`` has the next round probe every provider of the new configuration."""

    def __init__(self, chooser: ProviderChooser, models: Callable[[], ModelsConfig],
                 adapters: Mapping[str, UpstreamAdapter], lease_ttl: float,
                 health_interval: float, poller: LoadPoller | None = None) -> None:
        self._chooser, self._models, self._adapters = chooser, models, adapters
        self.poller = poller
        #: Every lease this worker holds, of every kind, is in this one store.
        self._leases = chooser.store.leases
        self._lease_ttl = lease_ttl
        self._tick = min(lease_ttl / 3, health_interval)
        self._lease_every = lease_ttl / 3
        self._health_every = health_interval
        self._stop = threading.Event()
        self._reprobe = threading.Event()
        self._token = uuid.uuid4().hex
        self._thread = threading.Thread(target=self._run, name="llm-router-maintenance",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()
        if self.poller is not None:
            self.poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self.poller is not None:
            self.poller.stop()

    def reprobe(self, *_: object) -> None:
        """Probe every provider's reachability in the next round (a new configuration)."""
        self._reprobe.set()

    def _run(self) -> None:
        try:
            self.probe_reachability()
        except Exception:  # the state store may be down; the next rounds try again
            log.exception("startup reachability probe failed")
        since_lease = since_health = 0.0
        while not self._stop.wait(self._tick):
            since_lease += self._tick
            since_health += self._tick
            try:
                if self._reprobe.is_set():
                    self._reprobe.clear()
                    self.probe_reachability()
                if since_lease >= self._lease_every:
                    since_lease = 0.0
                    self._renew()
                if since_health >= self._health_every:
                    since_health = 0.0
                    self.probe_reachability(only_unreachable=True)
            except Exception:  # the state store may be down; keep trying, say so
                log.exception("maintenance round failed")

    def _renew(self) -> None:
        self._leases.renew(self._lease_ttl)

    def probe_reachability(self, only_unreachable: bool = False) -> None:
        """Probe every provider (or only those recorded as unreachable) and record which do
        not answer; only in the cluster's one prober (the holder of the probe lock)."""
        store = self._chooser.store
        if not store.hold_lock(PROBE_LOCK, self._token,
                               PROBE_LOCK_INTERVALS * self._health_every):
            return
        providers = {p.id: p for _, p in self._models().providers()}
        ids: Iterable[str] = providers
        if only_unreachable:
            ids = [pid for pid in store.get_hash(UNREACHABLE_KEY) if pid in providers]
        targets = [providers[pid] for pid in ids if providers[pid].api_type in self._adapters]
        if not targets:
            return
        with ThreadPoolExecutor(min(PROBE_CONCURRENCY, len(targets))) as pool:
            answers = list(pool.map(
                lambda p: self._adapters[p.api_type].health(p), targets))
        down = [p.id for p, ok in zip(targets, answers, strict=True) if not ok]
        up = [p.id for p, ok in zip(targets, answers, strict=True) if ok]
        if down:
            log.warning("providers not answering their probe: %s", ", ".join(sorted(down)))
            store.set_hash(UNREACHABLE_KEY, dict.fromkeys(down, 1.0))
        if up:
            store.delete_hash(UNREACHABLE_KEY, up)
