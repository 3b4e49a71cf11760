"""Builds the service's parts from the settings: store, strategy, chooser, adapters, handler,
and the first configuration generation with the ``Reloader`` that replaces it (hot reload).

No Flask here; ``web.app.create_app`` calls ``assemble`` and mounts the endpoints.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from llm_router_api.auth.guard import Guard
from llm_router_api.base.lb.chooser import ChooserLimits, ProviderChooser
from llm_router_api.base.lb.registry import build_strategy
from llm_router_api.base.lb.state import MemoryStore, StateStore
from llm_router_api.builtins.prompts import PromptLibrary
from llm_router_api.core.background import Maintenance
from llm_router_api.core.console import Console
from llm_router_api.core.fanout import FanOut
from llm_router_api.core.generation import ConfigHolder, first_generation, load_inputs
from llm_router_api.core.load_poller import LoadPoller
from llm_router_api.core.model_handler import HandlerLimits, ModelHandler
from llm_router_api.core.observer import CallObserver
from llm_router_api.core.reload import Reloader, read_signals, signals_for
from llm_router_api.core.routing import RoutingHints
from llm_router_api.core.stats import WindowStats
from llm_router_api.formats.registry import build_adapters
from llm_router_api.formats.upstream import UpstreamAdapter
from llm_router_api.http.transport import Transport, Urllib3Transport
from llm_router_api.schemas.config import ModelsConfig
from llm_router_api.settings import MAX_COOLDOWN, Settings

if TYPE_CHECKING:
    from llm_router_api.core.metrics import PrometheusMetrics

log = logging.getLogger("llm_router")


@dataclass
class Parts:
    """The service's parts: the one container the web layer and the endpoints get.

    ``config`` holds the current configuration generation (models, handler, keys, prompts),
    which hot reload replaces; everything else lives as long as the app. Lifecycle:
    ``assemble`` builds them (nothing running), ``start`` starts the background threads,
    ``close`` (idempotent; also run at interpreter exit once started) stops them and closes
    the connections.
    """

    settings: Settings
    config: ConfigHolder
    chooser: ProviderChooser
    transport: Transport
    maintenance: Maintenance
    reloader: Reloader
    guard: Guard
    metrics: PrometheusMetrics | None = None
    #: The console's rolling windows (only with an admin token: the console exists only then).
    stats: WindowStats | None = None
    #: The operator console (with its windows: only with an admin token).
    console: Console | None = None
    _exit_hook: Callable[[], None] | None = field(default=None, init=False, repr=False,
                                                  compare=False)

    @property
    def models(self) -> ModelsConfig:
        return self.config.current.models

    @property
    def handler(self) -> ModelHandler:
        return self.config.current.handler

    @property
    def prompts(self) -> PromptLibrary | None:
        """``None`` in proxy-only mode (``LLM_ROUTER_MINIMUM``): the built-ins are not served."""
        return self.config.current.prompts

    def start(self) -> None:
        self.maintenance.start()
        self.reloader.start()
        if self.console is not None:
            self.console.start()
        self._exit_hook = self.close  # the very object registered, so it can be unregistered
        atexit.register(self._exit_hook)

    def close(self) -> None:
        if self._exit_hook is not None:
            atexit.unregister(self._exit_hook)
            self._exit_hook = None
        self.reloader.stop()
        self.maintenance.stop()
        if self.console is not None:
            self.console.close()
        self.transport.close()
        self.guard.close()
        self.chooser.store.close()  # and the lease store: releases on their way are sent first


def build_store(settings: Settings) -> StateStore:
    if not settings.uses_redis:
        if settings.server_type == "gunicorn" and settings.server_workers_count > 1:
            log.warning("LLM_ROUTER_REDIS_HOST is not set: the %d gunicorn workers do not share "
                        "load-balancing state", settings.server_workers_count)
        return MemoryStore()
    from llm_router_api.base.lb.redis_store import RedisStore

    return RedisStore.from_settings(settings)


def tokens_of(models: ModelsConfig) -> tuple[str, ...]:
    return tuple(p.token for _, p in models.providers() if p.token)


def mask_tokens(adapters: Mapping[str, UpstreamAdapter], models: ModelsConfig) -> None:
    """After a reload: the new configuration's tokens are masked too (old ones stay masked;
    requests started on the old configuration may still be answering)."""
    for adapter in adapters.values():
        adapter.tokens = tuple(sorted(set(adapter.tokens) | set(tokens_of(models))))


def assemble(settings: Settings, chooser: ProviderChooser | None = None) -> Parts:
    signals = signals_for(settings)  # read before the files, so no later reload is missed
    seen = read_signals(signals)
    inputs = load_inputs(settings)
    if inputs.prompts is None:
        log.info("LLM_ROUTER_MINIMUM is on: the prompt library is not loaded and the built-in "
                 "utilities (P/builtin/...) are not registered")
    if chooser is None:
        store = build_store(settings)
        limits = ChooserLimits(acquire_timeout=settings.acquire_timeout,
                               lease_ttl=settings.lease_ttl, cooldown=settings.cooldown,
                               max_cooldown=max(MAX_COOLDOWN, settings.cooldown))
        chooser = ProviderChooser(build_strategy(settings.balance_strategy, store, settings),
                                  store=store, limits=limits)
    transport = Urllib3Transport(ca_bundle=settings.ca_bundle, http_proxy=settings.http_proxy,
                                 https_proxy=settings.https_proxy, no_proxy=settings.no_proxy)
    adapters = build_adapters(transport, settings.external_timeout, tokens_of(inputs.models))
    metrics = build_metrics(settings, inputs.models, chooser)
    observer: CallObserver | None = metrics
    stats = None
    if settings.admin_token:  # the console exists only then; its windows wrap the metrics
        stats = WindowStats(chooser.store)
        observer = FanOut(metrics, stats)
    strategy = chooser.strategy
    handler = ModelHandler(inputs.models, chooser, adapters,
                           HandlerLimits(max_attempts=settings.max_attempts,
                                         acquire_timeout=settings.acquire_timeout,
                                         first_byte_deadline=settings.first_byte_deadline),
                           observer=observer,
                           hints=(RoutingHints(settings.prefix_block_size)
                                  if strategy.uses_hints else None))
    config = ConfigHolder(first_generation(inputs, handler))
    poller = (LoadPoller(chooser.store, transport, lambda: config.current.models,
                         settings.load_poll_interval) if strategy.polls_load else None)
    # One lease store per worker: the guard's concurrency slots live with the provider slots.
    guard = Guard.from_settings(settings, config.current.keys, chooser.store.leases)
    maintenance = Maintenance(chooser, lambda: config.current.models, adapters,
                              chooser.limits.lease_ttl, settings.health_interval, poller)
    reloader = Reloader(config, lambda: load_inputs(settings), signals, seen,
                        observer=handler.observer,
                        on_swap=[maintenance.reprobe,
                                 lambda generation: mask_tokens(adapters, generation.models)])
    console = Console(settings, stats) if stats is not None else None
    return Parts(settings, config, chooser, transport, maintenance, reloader, guard, metrics,
                 stats, console)


def build_metrics(settings: Settings, models: ModelsConfig,
                  chooser: ProviderChooser) -> PrometheusMetrics | None:
    """Prometheus series when ``LLM_ROUTER_USE_PROMETHEUS`` is on (prometheus-client is only
    imported then, after the launcher has set ``PROMETHEUS_MULTIPROC_DIR``)."""
    if not settings.use_prometheus:
        return None
    from llm_router_api.core.metrics import PrometheusMetrics

    return PrometheusMetrics(models, chooser.store, settings.prometheus_multiproc_dir)
