"""One maintenance thread per worker: renews live leases.

Started by ``create_app`` (after fork, in each worker); a daemon, stopped with ``stop()``.
Leases are renewed every TTL/3 (at least every ``HEALTH_INTERVAL``).

There is no health probe any more: a model-list probe (``GET /v1/models``, ``/api/tags``) only
shows that a server is reachable, and a server whose model list answers while generation fails
was let back in every interval. A provider now comes back only by generating — one live trial
request after its cool-down (``base.lb.state``, module docstring).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from llm_router_api.base.lb.chooser import ProviderChooser
from llm_router_api.providers.base import ProviderAdapter
from llm_router_api.schemas.config import ModelsConfig

log = logging.getLogger("llm_router.background")


class Maintenance:
    def __init__(self, chooser: ProviderChooser, models: ModelsConfig,
                 adapters: Mapping[str, ProviderAdapter], lease_ttl: float,
                 health_interval: float) -> None:
        self._chooser = chooser
        self._models = models
        self._adapters = adapters
        self._tick = min(lease_ttl / 3, health_interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llm-router-maintenance",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            try:
                self._chooser.renew()
            except Exception:  # the state store may be down; keep trying, say so
                log.exception("maintenance round failed")
