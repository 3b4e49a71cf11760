"""Rolling per-provider windows for the operator console, shared through the state store.

Why not Prometheus: its multiprocess files are per instance, and the console must show what every
worker and instance sharing the state store did. So each worker counts its own calls in memory
(``WindowStats``, a ``CallObserver``: no I/O on the request path) and, once a second, writes its
counts into the store: one hash per 10-second bucket, ``console:stats:<bucket>``, with members
``<worker>|<provider>|<metric>`` holding that worker's totals for the bucket (one ``HSET`` per
flush, whatever the traffic). ``read_window`` sums the last ``WINDOW_BUCKETS`` buckets over every
worker. Each flush that starts a new bucket deletes the buckets that fell out of the window, so
the store holds at most a few hashes.

Metrics per provider and bucket: ``req`` (attempts started), ``err`` (attempts failed),
``tin`` / ``tout`` (tokens), ``pfx`` / ``pfxn`` (the summed prefix-match ratio of
``cache_aware`` decisions and their number: the mean is the prefix-hit ratio), ``lat<i>`` and
``ttft<i>`` (attempts finishing in latency bin i: total time of an attempt, and time to first
token of a stream). Quantiles are read from the
bins: p50/p95 are the upper edge of the bin that holds them (so "≤ 0.5 s").

``last_usage()`` hands the web layer the tokens of the model call that just finished on this
thread, for the recent-requests list.
"""

from __future__ import annotations

import bisect
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from llm_router_api.base.lb.chooser import Lease
from llm_router_api.base.lb.state import StateStore
from llm_router_api.core.observer import CallObserver
from llm_router_api.core.usage import Meter, Usage, meter_for
from llm_router_api.schemas.calls import Protocol

BUCKET_SECONDS = 10
WINDOW_BUCKETS = 6  # one minute
#: Upper edges (s) of the latency bins; the last bin is everything above.
LATENCY_EDGES = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
KEY = "console:stats:{}"
#: Hash: ``at`` -> wall time of the last successful hot reload (any worker, any instance).
RELOAD_KEY = "console:reload"

_thread_usage = threading.local()


def last_usage() -> Usage | None:
    """The tokens of the last model call finished on this thread, once (then forgotten)."""
    usage: Usage | None = getattr(_thread_usage, "usage", None)
    _thread_usage.usage = None
    return usage


def latency_bin(seconds: float) -> int:
    return bisect.bisect_left(LATENCY_EDGES, seconds)


class WindowStats(CallObserver):
    """Counts this worker's attempts per provider and bucket; ``flush`` writes them out."""

    def __init__(self, store: StateStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock
        self._worker = uuid.uuid4().hex[:10]
        self._lock = threading.Lock()
        self._counts: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._dirty: set[int] = set()
        self._last_bucket = 0

    # -- recording (the request path: memory only) ----------------------------------------------
    def _add(self, provider_id: str, metric: str, amount: float = 1.0) -> None:
        bucket = int(self._clock() // BUCKET_SECONDS)
        with self._lock:
            self._counts[bucket][f"{self._worker}|{provider_id}|{metric}"] += amount
            self._dirty.add(bucket)

    def attempt_started(self, lease: Lease, strategy: str, failover: bool) -> None:
        self._add(lease.provider.id, "req")
        if lease.routing is not None:  # cache_aware: how much of the prompt it had cached
            self._add(lease.provider.id, "pfx", lease.routing.prefix_match)
            self._add(lease.provider.id, "pfxn")

    def first_token(self, lease: Lease, seconds: float) -> None:
        self._add(lease.provider.id, f"ttft{latency_bin(seconds)}")

    def attempt_failed(self, lease: Lease, error: BaseException) -> None:
        self._add(lease.provider.id, "err")

    def finished(self, lease: Lease, usage: Usage) -> None:
        seconds = time.monotonic() - lease.started
        self._add(lease.provider.id, f"lat{latency_bin(seconds)}")
        if usage.input_tokens:
            self._add(lease.provider.id, "tin", usage.input_tokens)
        if usage.output_tokens:
            self._add(lease.provider.id, "tout", usage.output_tokens)
        _thread_usage.usage = usage

    def meter(self, protocol: Protocol, stream: bool) -> Meter:
        """A counting meter, so tokens are known without Prometheus."""
        return meter_for(protocol, stream)

    def config_reloaded(self, ok: bool) -> None:
        if ok:  # the console shows when the configuration was last reloaded, anywhere
            self.store.set_hash(RELOAD_KEY, {"at": self._clock()})

    # -- flushing (``console.Ticker`` calls it once a second) ------------------------------------
    def flush(self) -> None:
        """Write this worker's changed buckets; drop those out of the window."""
        now_bucket = int(self._clock() // BUCKET_SECONDS)
        with self._lock:
            dirty = {b: dict(self._counts[b]) for b in self._dirty}
            self._dirty.clear()
            for old in [b for b in self._counts if b <= now_bucket - WINDOW_BUCKETS]:
                del self._counts[old]
        for bucket, values in sorted(dirty.items()):
            if bucket > now_bucket - WINDOW_BUCKETS:
                self.store.set_hash(KEY.format(bucket), values)
        if now_bucket != self._last_bucket:
            first = max(self._last_bucket, now_bucket - 3 * WINDOW_BUCKETS) - WINDOW_BUCKETS
            for old in range(first, now_bucket - WINDOW_BUCKETS + 1):
                self.store.delete_hash(KEY.format(old))
            self._last_bucket = now_bucket


def counter(stored: str) -> Any:
    """A summed ``ProviderWindow`` counter, stored under the metric name ``stored``."""
    return field(default=0.0, metadata={"stored": stored})


@dataclass
class ProviderWindow:
    """One provider's last minute, summed over every worker and instance."""

    requests: float = counter("req")
    errors: float = counter("err")
    tokens_in: float = counter("tin")
    tokens_out: float = counter("tout")
    prefix_match: float = counter("pfx")
    prefix_decisions: float = counter("pfxn")
    latency: list[float] | None = None
    ttft: list[float] | None = None

    @property
    def prefix_hit_ratio(self) -> float | None:
        """The mean prefix-match ratio of the ``cache_aware`` decisions (``None``: none)."""
        return self.prefix_match / self.prefix_decisions if self.prefix_decisions else None

    def add(self, metric: str, value: float) -> None:
        summed = COUNTERS.get(metric)
        if summed is not None:
            setattr(self, summed, getattr(self, summed) + value)
        elif metric.startswith(("lat", "ttft")):
            name = "ttft" if metric.startswith("ttft") else "latency"
            bins = getattr(self, name) or [0.0] * (len(LATENCY_EDGES) + 1)
            bins[int(metric[len("ttft" if name == "ttft" else "lat"):])] += value
            setattr(self, name, bins)


#: The stored names of the summed counters and their ``ProviderWindow`` fields.
COUNTERS = {f.metadata["stored"]: f.name for f in fields(ProviderWindow) if "stored" in f.metadata}


def read_window(store: StateStore, provider_ids: Iterable[str],
                now: float | None = None) -> tuple[dict[str, ProviderWindow], float]:
    """Per provider, its window; and the seconds the window covers (for per-minute rates)."""
    now = time.time() if now is None else now
    bucket = int(now // BUCKET_SECONDS)
    wanted = set(provider_ids)
    windows: dict[str, ProviderWindow] = {}
    for b in range(bucket - WINDOW_BUCKETS + 1, bucket + 1):
        for member, value in store.get_hash(KEY.format(b)).items():
            parts = member.split("|")
            if len(parts) != 3 or parts[1] not in wanted:
                continue
            windows.setdefault(parts[1], ProviderWindow()).add(parts[2], value)
    covered = (WINDOW_BUCKETS - 1) * BUCKET_SECONDS + (now - bucket * BUCKET_SECONDS)
    return windows, covered


def quantile(bins: list[float] | None, q: float) -> float | None:
    """The upper edge of the bin holding quantile ``q`` (the last bin: its lower edge)."""
    if not bins or not sum(bins):
        return None
    rank = q * sum(bins)
    seen = 0.0
    for index, count in enumerate(bins):
        seen += count
        if seen >= rank and count:
            return LATENCY_EDGES[min(index, len(LATENCY_EDGES) - 1)]
    return LATENCY_EDGES[-1]
