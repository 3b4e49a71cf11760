"""One maintenance thread per worker: renews live leases and probes cooling providers.

Started by ``create_app`` (after fork, in each worker); a daemon, stopped with ``stop()``.
Leases are renewed every TTL/3. Every ``HEALTH_INTERVAL`` each cooling provider is probed with
its adapter's cheap health call: success brings it back at once; otherwise it returns when
its cool-down ends, and the next failure doubles the cool-down. A ``LoadPoller`` handed in
(strategies that use load signals) is started and stopped with it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from llm_router_api.base.lb.chooser import ProviderChooser
from llm_router_api.core.load_poller import LoadPoller
from llm_router_api.providers.base import ProviderAdapter
from llm_router_api.schemas.config import ModelsConfig

log = logging.getLogger("llm_router.background")


class Maintenance:
    def __init__(self, chooser: ProviderChooser, models: ModelsConfig,
                 adapters: Mapping[str, ProviderAdapter], lease_ttl: float,
                 health_interval: float, poller: LoadPoller | None = None) -> None:
        self._chooser = chooser
        self.poller = poller
        self._models = models
        self._adapters = adapters
        self._tick = min(lease_ttl / 3, health_interval)
        self._lease_every = lease_ttl / 3
        self._health_every = health_interval
        self._stop = threading.Event()
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

    def _run(self) -> None:
        since_lease = since_health = 0.0
        while not self._stop.wait(self._tick):
            since_lease += self._tick
            since_health += self._tick
            try:
                if since_lease >= self._lease_every:
                    since_lease = 0.0
                    self._chooser.renew()
                if since_health >= self._health_every:
                    since_health = 0.0
                    self.probe_cooling()
            except Exception:  # the state store may be down; keep trying, say so
                log.exception("maintenance round failed")

    def probe_cooling(self) -> None:
        providers = {p.id: p for _, p in self._models.providers()}
        for provider_id in self._chooser.store.cooling(list(providers)):
            provider = providers[provider_id]
            adapter = self._adapters.get(provider.api_type)
            if adapter is not None and adapter.health(provider):
                log.info("provider %s is healthy again", provider_id)
                self._chooser.mark_healthy(provider_id)
