"""The load patterns: closed loop, open loop, streams and many slow concurrent streams.

Every loop here stops by itself: each is bounded by a duration *and* a request count, and every
request by a timeout. Latencies are wall-clock ``perf_counter`` seconds measured in the loader.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.client import Connection, Result

DONE = b"data: [DONE]"
MAX_ERROR_SAMPLES = 5


@dataclass(frozen=True)
class Target:
    """Where to send, what to send (cycled), and how to tell a good answer."""

    host: str
    port: int
    requests: Sequence[bytes]
    expect_frames: int | None = None  # a stream: this many ``data:`` frames, then [DONE]

    def check(self, result: Result) -> str | None:
        """An error kind, or ``None`` when the answer is good."""
        if result.status != 200:
            return f"http_{result.status}"
        if self.expect_frames is None:
            return None if b'"choices"' in result.body else "not_a_completion"
        if not result.body.rstrip().endswith(DONE):
            return "stream_without_done"
        frames = result.body.count(b"data:") - 1
        if frames != self.expect_frames:
            return f"stream_frames_{frames}_not_{self.expect_frames}"
        return None


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    ttfbs: list[float] = field(default_factory=list)
    from_due: list[float] = field(default_factory=list)  # open loop: end minus due time
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    error_samples: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    ended: float = 0.0

    def error(self, kind: str, detail: str = "") -> None:
        self.errors[kind] += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(f"{kind}: {detail}" if detail else kind)

    def summary(self, stream: bool = False) -> dict[str, Any]:
        seconds = (self.ended or time.perf_counter()) - self.started
        ok = len(self.latencies)
        out: dict[str, Any] = {
            "requests": ok + sum(self.errors.values()),
            "ok": ok,
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "seconds": round(seconds, 3),
            "rps": round(ok / seconds, 1) if seconds > 0 else 0.0,
        }
        out.update(percentiles("latency", self.latencies))
        if stream:
            out.update(percentiles("ttfb", self.ttfbs))
        if self.from_due:
            out.update(percentiles("from_due", self.from_due))
        if self.error_samples:
            out["error_samples"] = self.error_samples
        return out


def percentiles(name: str, values: list[float]) -> dict[str, float | None]:
    """p50/p90/p99/max/mean in milliseconds (nearest rank); ``None`` without samples."""
    if not values:
        return {f"{name}_{k}_ms": None for k in ("p50", "p90", "p99", "max", "mean")}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    return {
        f"{name}_p50_ms": round(rank(0.50) * 1000, 3),
        f"{name}_p90_ms": round(rank(0.90) * 1000, 3),
        f"{name}_p99_ms": round(rank(0.99) * 1000, 3),
        f"{name}_max_ms": round(ordered[-1] * 1000, 3),
        f"{name}_mean_ms": round(sum(ordered) / len(ordered) * 1000, 3),
    }


async def _one(conn: Connection, target: Target, raw: bytes, timeout: float, tally: Tally,
               started: float, due: float | None = None) -> bool:
    """One request on ``conn`` sent at ``started``; records it; False when it failed."""
    try:
        async with asyncio.timeout(timeout):
            result = await conn.request(raw)
    except TimeoutError:
        conn.close()
        tally.error("timeout")
        return False
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        conn.close()
        tally.error(type(exc).__name__, str(exc)[:200])
        return False
    kind = target.check(result)
    if kind is not None:
        tally.error(kind, result.body[:200].decode("utf-8", "replace"))
        return False
    tally.latencies.append(result.end - started)
    tally.ttfbs.append(result.first_byte - started)
    if due is not None:
        tally.from_due.append(result.end - due)
    return True


async def closed_loop(target: Target, concurrency: int, duration: float, max_requests: int,
                      timeout: float) -> Tally:
    """``concurrency`` connections, each sending its next request as soon as one is answered."""
    tally = Tally()
    deadline = tally.started + duration
    budget = [max_requests]

    async def worker(index: int) -> None:
        conn = Connection(target.host, target.port)
        n = index
        try:
            while budget[0] > 0 and time.perf_counter() < deadline:
                budget[0] -= 1
                raw = target.requests[n % len(target.requests)]
                n += 1
                if not await _one(conn, target, raw, timeout, tally, time.perf_counter()):
                    await asyncio.sleep(0.01)  # do not spin on a refusing server
        finally:
            conn.close()

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    tally.ended = time.perf_counter()
    return tally


async def open_loop(target: Target, rate: float, duration: float, max_connections: int,
                    timeout: float) -> tuple[Tally, dict[str, Any]]:
    """A fixed offered rate: request i is due at ``start + i / rate`` whatever came before.

    ``latency`` counts from when the request was written; ``from_due`` counts from its *due*
    time, so a server that falls behind is charged for the queue (no coordinated omission) --
    and so is the loader's own timer lateness, reported as ``dispatch_lag``. Connections are
    reused when idle, opened when none is (at most ``max_connections``).
    """
    tally = Tally()
    idle: list[Connection] = []
    slots = asyncio.Semaphore(max_connections)
    count = max(1, int(rate * duration))
    lateness: list[float] = []

    async def one(due: float, raw: bytes) -> None:
        async with slots:
            conn = idle.pop() if idle else Connection(target.host, target.port)
            ok = await _one(conn, target, raw, timeout, tally, time.perf_counter(), due)
            if ok and conn.is_open:
                idle.append(conn)
            else:
                conn.close()

    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    tally.started = start
    for i in range(count):
        due = start + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        lateness.append(time.perf_counter() - due)
        tasks.append(asyncio.create_task(one(due, target.requests[i % len(target.requests)])))
    await asyncio.gather(*tasks)
    tally.ended = time.perf_counter()
    for conn in idle:
        conn.close()
    extra = {"offered_rps": rate, "max_connections": max_connections,
             **percentiles("dispatch_lag", lateness)}
    return tally, extra


async def slow_streams(target: Target, count: int, ramp: float, timeout: float,
                       on_peak: Callable[[], None] | None = None) -> tuple[Tally, dict[str, Any]]:
    """``count`` streams at once, one connection each, started evenly over ``ramp`` seconds.

    ``on_peak`` runs once, when every stream has received its first byte (or at the latest
    when the first one ends), to sample memory while the most streams are held.
    """
    tally = Tally()
    active = [0, 0]  # now, peak
    sampled = [False]

    def sample() -> None:
        if not sampled[0] and on_peak is not None:
            sampled[0] = True
            on_peak()

    async def one(index: int) -> None:
        await asyncio.sleep(ramp * index / count)
        conn = Connection(target.host, target.port)
        started = time.perf_counter()
        try:
            await conn.open()
            active[0] += 1
            active[1] = max(active[1], active[0])
            if active[0] == count:
                sample()
            await _one(conn, target, target.requests[index % len(target.requests)], timeout,
                       tally, started)
        except OSError as exc:
            tally.error(type(exc).__name__, str(exc)[:200])
            return
        finally:
            conn.close()
        active[0] -= 1
        sample()

    await asyncio.gather(*(one(i) for i in range(count)))
    tally.ended = time.perf_counter()
    return tally, {"target": count, "peak_concurrent": active[1]}
