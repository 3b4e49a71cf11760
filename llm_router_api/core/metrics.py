"""``PrometheusMetrics``: every ``llm_router_*`` series (README.md, Observability, lists them).

Built by ``core.assemble`` when ``LLM_ROUTER_USE_PROMETHEUS`` is on (prometheus-client is only
imported then). It is the handler's ``CallObserver`` for provider-level series, and the web
layer reports each finished request to ``request_started`` / ``request_finished``.

Label values are bounded: ``model`` and ``provider`` come from the configuration (the lease),
``route`` is a URL rule template (``<unmatched>`` for every path no rule matched), ``method`` is
one of ``METHODS`` or ``OTHER``, ``strategy`` is a strategy class's ``name``.

Multiprocess mode (gunicorn): the launcher sets ``PROMETHEUS_MULTIPROC_DIR`` before this module
is imported, so each worker writes its values to files there; ``render`` merges them with
``MultiProcessCollector`` so each series appears once, summed over workers. The in-flight gauge
sums live workers; the health gauge shows the most recent value any live worker wrote.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from llm_router_api.base.lb.chooser import Lease
from llm_router_api.base.lb.hint import RoutingOutcome
from llm_router_api.base.lb.state import StateStore
from llm_router_api.core.observer import CallObserver, error_kind
from llm_router_api.core.usage import Meter, Usage, meter_for
from llm_router_api.errors import UpstreamError
from llm_router_api.schemas.calls import Protocol
from llm_router_api.schemas.config import ModelsConfig

NAMESPACE = "llm_router"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Seconds; LLM answers take from milliseconds to minutes.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    120.0, 300.0)
MERGE_ATTEMPTS = 3
MATCH_BUCKETS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
#: Values of the ``result`` label of ``llm_router_config_reloads_total``.
RELOAD_RESULTS = ("success", "error")
#: Labelled series ``_series`` keeps at hand (past it, ``labels`` is asked each time).
MAX_CACHED_SERIES = 10_000
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


def method_label(method: str) -> str:
    return method if method in METHODS else "OTHER"


class PrometheusMetrics(CallObserver):
    def __init__(self, models: ModelsConfig, store: StateStore, multiproc_dir: str = "") -> None:
        self._models = models
        self._store = store
        self._multiproc_dir = multiproc_dir
        self._series_cache: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.config_info = ConfigInfo(models.sha256)
        self._define()
        self._preset()

    # -- definitions -----------------------------------------------------------------------------
    def _define(self) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(name, doc, labels, namespace=NAMESPACE, registry=self.registry)

        def histogram(name: str, doc: str, labels: tuple[str, ...],
                      buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, labels, namespace=NAMESPACE, registry=self.registry,
                             buckets=buckets)

        mp = ("model", "provider")
        self.requests = counter("requests", "HTTP requests answered.",
                                ("route", "method", "status"))
        self.request_duration = histogram(
            "request_duration_seconds", "Time from request start to the last byte sent.",
            ("route", "method"), DURATION_BUCKETS)
        self.in_flight = Gauge("requests_in_flight", "Requests being answered now.",
                               namespace=NAMESPACE, registry=self.registry,
                               multiprocess_mode="livesum")
        self.provider_calls = counter("provider_calls", "Attempts on a provider.", mp)
        self.tools_dropped = counter(
            "responses_tools_dropped",
            "Responses API tools of a built-in type not offered to a translated provider.",
            ("type",))
        self.provider_errors = counter(
            "provider_errors", "Failed attempts on a provider, by kind.", (*mp, "kind"))
        self.provider_latency = histogram(
            "provider_latency_seconds",
            "Time from acquiring the provider to the last byte of its answer.", mp,
            DURATION_BUCKETS)
        self.ttft = histogram("provider_ttft_seconds",
                              "Time from acquiring the provider to its first stream frame.", mp,
                              TTFT_BUCKETS)
        self.tokens = counter("tokens", "Tokens by direction (in: prompt, out: completion).",
                              (*mp, "direction"))
        self.failovers = counter(
            "failovers", "Attempts made because an earlier attempt of the request failed; "
            "provider is the one that took over.", mp)
        self.healthy = Gauge("provider_healthy", "1 when the provider is not cooling down.",
                             mp, namespace=NAMESPACE, registry=self.registry,
                             multiprocess_mode="livemostrecent")
        self.leases = Gauge("provider_leases",
                            "Live leases (requests in flight) on the provider, as the "
                            "load-balancing state holds them.", mp, namespace=NAMESPACE,
                            registry=self.registry, multiprocess_mode="livemostrecent")
        self.fallbacks = counter(
            "model_fallbacks", "Requests that moved from a model none of whose providers could "
            "serve to the next model of its fallback chain.", ("model", "fallback"))
        self.selections = counter("strategy_selections",
                                  "Providers chosen by the load-balancing strategy.",
                                  ("strategy", "model", "provider"))
        self.reloads = counter("config_reloads",
                               "Hot reloads of the configuration by this process's workers, "
                               "by result (error: refused, nothing changed).", ("result",))
        self.registry.register(self.config_info)
        self._define_cache_aware(counter, histogram, mp)

    def _define_cache_aware(self, counter: Any, histogram: Any, mp: tuple[str, ...]) -> None:
        """The ``cache_aware`` series (SPEC §11), fed from each lease's ``RoutingOutcome``."""
        self.prefix_match = histogram(
            "prefix_match_ratio", "Share of the prompt's blocks the chosen provider was last "
            "sent (cache_aware).", mp, MATCH_BUCKETS)
        self.affinity = counter("session_affinity", "Session affinity decisions: hit (kept "
                                "on its provider) or break (moved).", ("model", "result"))
        self.saturation_skips = counter(
            "saturation_skips", "Saturated providers passed over by cache_aware.", ("model",))
        self.provider_load = Gauge(
            "provider_load", "Load (0..1) of the provider as cache_aware last saw it.", mp,
            namespace=NAMESPACE, registry=self.registry, multiprocess_mode="livemostrecent")
        self.signal_age = Gauge(
            "load_signal_age_seconds", "Age of the provider's load signals at the last "
            "cache_aware decision.", ("provider",), namespace=NAMESPACE,
            registry=self.registry, multiprocess_mode="livemostrecent")

    def _preset(self) -> None:
        """Zero series for every configured provider, so rates and alerts see them at once."""
        for model, provider in self._models.providers():
            labels = (model.name, provider.id)
            self.provider_calls.labels(*labels)
            self.failovers.labels(*labels)
            for direction in ("in", "out"):
                self.tokens.labels(*labels, direction)
        for model_name, fallback in self._models.fallback_pairs():
            self.fallbacks.labels(model_name, fallback)
        for result in RELOAD_RESULTS:
            self.reloads.labels(result)
        self.refresh_health()

    def _series(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, looked up once: prometheus-client checks the values and
        takes a lock on every ``labels`` call (about 1.3 us, several times per request). Every
        label value is bounded (module docstring), and so is this table."""
        key = (id(metric), values)
        series = self._series_cache.get(key)
        if series is None:
            series = metric.labels(*values)
            if len(self._series_cache) < MAX_CACHED_SERIES:
                self._series_cache[key] = series
        return series

    # -- provider level (CallObserver) -----------------------------------------------------------
    def attempt_started(self, lease: Lease, strategy: str, failover: bool) -> None:
        labels = (lease.model, lease.provider.id)
        self._series(self.selections, strategy, *labels).inc()
        self._series(self.provider_calls, *labels).inc()
        if failover:
            self.failovers.labels(*labels).inc()
        if lease.routing is not None:
            self._routed(lease.model, lease.routing)

    def _routed(self, model: str, routing: RoutingOutcome) -> None:
        self.prefix_match.labels(model, routing.provider_id).observe(routing.prefix_match)
        if routing.affinity:
            self.affinity.labels(model, routing.affinity).inc()
        if routing.saturation_skips:
            self.saturation_skips.labels(model).inc(routing.saturation_skips)
        for provider_id, load in routing.loads.items():
            self.provider_load.labels(model, provider_id).set(load)
        for provider_id, age in routing.signal_ages.items():
            self.signal_age.labels(provider_id).set(age)

    def first_token(self, lease: Lease, seconds: float) -> None:
        self._series(self.ttft, lease.model, lease.provider.id).observe(seconds)

    def attempt_failed(self, lease: Lease, error: BaseException) -> None:
        self.provider_errors.labels(lease.model, lease.provider.id, error_kind(error)).inc()
        if isinstance(error, UpstreamError) and error.failover:  # the chooser cools it down
            self.healthy.labels(lease.model, lease.provider.id).set(0)

    def finished(self, lease: Lease, usage: Usage) -> None:
        labels = (lease.model, lease.provider.id)
        self._series(self.provider_latency, *labels).observe(time.monotonic() - lease.started)
        if usage.input_tokens:
            self._series(self.tokens, *labels, "in").inc(usage.input_tokens)
        if usage.output_tokens:
            self._series(self.tokens, *labels, "out").inc(usage.output_tokens)

    def tool_dropped(self, kind: str) -> None:
        self.tools_dropped.labels(kind[:64]).inc()

    def model_fell_back(self, model: str, fallback: str) -> None:
        self.fallbacks.labels(model, fallback).inc()  # both configured names (bounded)

    def meter(self, protocol: Protocol, stream: bool) -> Meter:
        return meter_for(protocol, stream)

    # -- configuration (hot reload) --------------------------------------------------------------
    def config_loaded(self, models: ModelsConfig) -> None:
        """Series for the new configuration's providers; ``config_info`` names its sha256.
        (Series of removed providers keep their last values until the process restarts.)"""
        self._models = models
        self.config_info.sha256 = models.sha256
        self._preset()

    def config_reloaded(self, ok: bool) -> None:
        self.reloads.labels(RELOAD_RESULTS[0] if ok else RELOAD_RESULTS[1]).inc()

    # -- request level (called by the web layer) -------------------------------------------------
    def request_started(self) -> None:
        self.in_flight.inc()

    def request_finished(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method_label(method)
        self._series(self.requests, route, method, str(status)).inc()
        self._series(self.request_duration, route, method).observe(seconds)
        self.in_flight.dec()

    # -- exposition ------------------------------------------------------------------------------
    def refresh_health(self) -> None:
        """Health and live leases of every provider, from the load-balancing state."""
        ids = [p.id for _, p in self._models.providers()]
        cooling = self._store.cooling(ids)
        leases = self._store.in_flight(ids)
        for model, provider in self._models.providers():
            self.healthy.labels(model.name, provider.id).set(0 if provider.id in cooling else 1)
            self.leases.labels(model.name, provider.id).set(leases.get(provider.id, 0))

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition: every worker's values when in multiprocess mode."""
        self.refresh_health()
        if not self._multiproc_dir:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        registry.register(WorkerFilesCollector(self._multiproc_dir))
        registry.register(self.config_info)
        return generate_latest(registry), CONTENT_TYPE_LATEST


class ConfigInfo:
    """``llm_router_config_info{sha256}`` 1: the sha256 of the models-config in use, only that
    one (a collector, not a stored gauge, so a replaced configuration's series disappears
    even in multiprocess mode, where stored values outlive their labels)."""

    def __init__(self, sha256: str) -> None:
        self.sha256 = sha256

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(f"{NAMESPACE}_config_info",
                                   "The configuration in use: 1 for the SHA-256 of its "
                                   "models-config file.", labels=["sha256"])
        if self.sha256:
            family.add_metric([self.sha256], 1)
        yield family


class WorkerFilesCollector:
    """``MultiProcessCollector`` over the files that are ready: a worker that is booting has
    created its file but not yet sized it, and reading that empty file would fail the scrape."""

    def __init__(self, directory: str) -> None:
        self._directory = Path(directory)

    def collect(self) -> Iterable[Metric]:
        for attempt in range(MERGE_ATTEMPTS):
            try:
                return prom_multiprocess.MultiProcessCollector.merge(self._ready(),
                                                                     accumulate=True)
            except (OSError, struct.error):  # a file went away or changed while being read
                if attempt == MERGE_ATTEMPTS - 1:
                    raise
        return []

    def _ready(self) -> list[str]:
        files = []
        for path in self._directory.glob("*.db"):
            try:
                if path.stat().st_size > 0:
                    files.append(str(path))
            except FileNotFoundError:  # a dead worker's gauge file, just removed
                continue
        return files
