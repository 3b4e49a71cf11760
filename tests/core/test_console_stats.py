"""The console's rolling windows (core.stats): per-worker counts flushed into the store, summed
over workers, rolled out after a minute, old buckets deleted, quantiles from bins."""

from __future__ import annotations

from llm_router_api.base.lb.chooser import Lease
from llm_router_api.base.lb.state import MemoryStore, StateStore
from llm_router_api.core.stats import (
    BUCKET_SECONDS,
    KEY,
    WINDOW_BUCKETS,
    WindowStats,
    quantile,
    read_window,
)
from llm_router_api.core.usage import Usage
from llm_router_api.errors import UpstreamTimeout
from llm_router_api.schemas.config import ProviderConfig

P0 = ProviderConfig(id="p0", api_host="http://127.0.0.1:1", api_type="openai")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def attempt(stats: WindowStats, ttft: float | None = None, failed: bool = False) -> None:
    lease = Lease("l", "m", P0)
    stats.attempt_started(lease, "balanced", False)
    if ttft is not None:
        stats.first_token(lease, ttft)
    if failed:
        stats.attempt_failed(lease, UpstreamTimeout())
    else:
        stats.finished(lease, Usage(3, 7))


def test_two_workers_sum_and_the_minute_rolls_out() -> None:
    store: StateStore = MemoryStore()
    clock = Clock(1_000_000.0)
    a, b = WindowStats(store, clock), WindowStats(store, clock)
    for _ in range(3):
        attempt(a, ttft=0.2)
    attempt(b, failed=True)
    assert read_window(store, ["p0"], clock.now)[0] == {}  # nothing until a flush
    a.flush()
    b.flush()
    window = read_window(store, ["p0"], clock.now)[0]["p0"]
    assert (window.requests, window.errors, window.tokens_in, window.tokens_out) == (4, 1, 9, 21)
    assert quantile(window.ttft, 0.5) == 0.25 and quantile(window.latency, 0.95) == 0.025
    clock.now += BUCKET_SECONDS * (WINDOW_BUCKETS + 1)
    assert read_window(store, ["p0"], clock.now)[0] == {}  # out of the window
    attempt(a)
    a.flush()  # a new bucket: the ones out of the window are deleted
    old = int((clock.now - BUCKET_SECONDS * (WINDOW_BUCKETS + 1)) // BUCKET_SECONDS)
    assert store.get_hash(KEY.format(old)) == {}
    assert read_window(store, ["p0"], clock.now)[0]["p0"].requests == 1


def test_quantiles_are_bin_bounds() -> None:
    assert quantile(None, 0.5) is None
    bins = [0.0] * 13
    bins[2], bins[6] = 90, 10  # 90 within 100 ms, 10 within 2 s
    assert quantile(bins, 0.5) == 0.1 and quantile(bins, 0.95) == 2.0
