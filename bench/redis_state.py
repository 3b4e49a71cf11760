"""``python -m bench.redis_state``: what the Redis-shared state costs, against a private Redis.

Three figures (docs/performance.md, "Shared state in Redis"):

1. **Admission cost against the tokens-per-minute window.** A key with a tokens-per-minute budget
   is charged N times (0, 10,000, 100,000 answers), then admitted M times; per admission: the
   time in the caller and in Redis (``INFO commandstats``), and the fields the window holds.
   A last row has charges in every one-second bucket of the minute (the most a window holds).
   The same for the in-process limiter (the fallback). Flat means O(1).
2. **The slot queue.** Two gateway instances x two gunicorn gevent workers share Redis; one
   provider with ``max_concurrency`` 4 in front of a stand-in that answers after 100 ms; 24
   callers send requests back to back. Per request: latency, the wait for a slot (latency minus
   the uncontended latency), status codes, and Redis commands sent per served request
   (``MONITOR``; commands our Lua scripts run inside Redis are not round trips, not counted).
3. **Memory per 1,000 requests in flight** (``INFO memory``): a provider lease, a key
   concurrency lease and a requests-per-minute entry each.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis

from bench import procs
from llm_router_api.auth.keys import ApiKey
from llm_router_api.auth.limits import BUCKET, BUCKETS, Limiter, MemoryLimiter, TokenBuckets
from llm_router_api.auth.redis_limits import RedisLimiter
from llm_router_api.base.lb.picking import Candidate
from llm_router_api.base.lb.redis_store import RedisStore

SLOT_TIME = 0.1
FULL_MINUTE = -1  # a window row: every one-second bucket of the minute holds charges


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.redis_state", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--windows", default="0,10000,100000",
                   help="answers charged to the key before measuring (0,10000,100000)")
    p.add_argument("--admissions", type=int, default=2000, help="admissions measured (2000)")
    p.add_argument("--callers", type=int, default=24, help="queue: callers (24)")
    p.add_argument("--slots", type=int, default=4, help="queue: max_concurrency (4)")
    p.add_argument("--duration", type=float, default=15.0, help="queue: seconds of load (15)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return p.parse_args(argv)


class Redis(procs.Process):
    def __init__(self) -> None:
        self.port = procs.free_port()
        binary = shutil.which("redis-server") or "redis-server"
        super().__init__([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", tempfile.mkdtemp(prefix="bench-redis-")],
                         procs._clean_env(), "redis")
        self.client = redis.Redis(port=self.port, decode_responses=True)
        deadline = time.monotonic() + procs.START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def script_usec(self) -> tuple[int, float]:
        stats = self.client.info("commandstats").get("cmdstat_evalsha", {})
        return int(stats.get("calls", 0)), float(stats.get("usec", 0))


# -- 1. admission ---------------------------------------------------------------------------------
def admission(server: Redis, windows: list[int], count: int) -> list[dict[str, Any]]:
    rows = []
    for size in [*windows, FULL_MINUTE]:
        for kind in ("redis", "memory"):
            limiter: Limiter = (RedisLimiter(redis.Redis(port=server.port), f"b{size}:", 30)
                                if kind == "redis" else MemoryLimiter(30))
            key = ApiKey(id="k", key="bench-key-0001", tokens_per_minute=10 ** 12)
            if size == FULL_MINUTE:
                fill_every_bucket(server, limiter, f"b{size}:auth:k:tokens")
            for _ in range(max(0, size)):
                limiter.record_tokens("k", 10)
            calls0, usec0 = server.script_usec()
            times = []
            for _ in range(count):
                start = time.perf_counter()
                limiter.admit(key)
                times.append(time.perf_counter() - start)
            calls1, usec1 = server.script_usec()
            row: dict[str, Any] = {
                "window": size, "store": kind,
                "admit_p50_us": round(statistics.median(times) * 1e6, 1),
                "admit_p99_us": round(sorted(times)[int(0.99 * len(times))] * 1e6, 1)}
            if kind == "redis":
                row["in_redis_us"] = round((usec1 - usec0) / max(1, calls1 - calls0), 1)
                row["window_fields"] = int(server.client.hlen(f"b{size}:auth:k:tokens"))
            rows.append(row)
    return rows


def fill_every_bucket(server: Redis, limiter: Limiter, redis_key: str) -> None:
    """The worst case: charges in each of the 61 one-second buckets of the window (as a key
    answered without pause for a minute leaves them)."""
    if isinstance(limiter, MemoryLimiter):
        buckets = limiter._tokens.setdefault("k", TokenBuckets())
        now = time.monotonic()
        for age in range(BUCKETS - 1, -1, -1):
            buckets.add(now - age * BUCKET, 10)
        return
    seconds = int(server.client.time()[0])
    server.client.hset(redis_key, mapping={str(seconds - age): 10 for age in range(BUCKETS)})
    server.client.expire(redis_key, 120)


# -- 2. the slot queue ----------------------------------------------------------------------------
def queue(server: Redis, callers: int, slots: int, duration: float) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    port = procs.free_port()
    upstream = procs.Process([sys.executable, "-m", "standin", "--port", str(port),
                              "--first-delay", str(SLOT_TIME)], procs._clean_env(), "standin")
    upstream.wait_ready(f"http://127.0.0.1:{port}/v1/models", "the stand-in")
    config = directory / "models-config.json"
    config.write_text(json.dumps({
        "q": {procs.MODEL: {"providers": [{"id": "q", "api_host": f"http://127.0.0.1:{port}",
                                           "api_type": "openai", "max_concurrency": slots}]}},
        "active_models": {"q": [procs.MODEL]}}))
    env = {"LLM_ROUTER_REDIS_HOST": "127.0.0.1", "LLM_ROUTER_REDIS_PORT": str(server.port)}
    gateways = [procs.start_gateway("gevent", config, 2, 8, env) for _ in range(2)]
    monitor_log = directory / "monitor.log"
    try:
        alone = [call(gateways[0][1]) for _ in range(10)][-5:]
        uncontended = statistics.median(t for _, t in alone)
        with monitor_log.open("w") as out:
            monitor = subprocess.Popen(["redis-cli", "-p", str(server.port), "monitor"],
                                       stdout=out)
            time.sleep(0.5)
            results = closed_loop([g[1] for g in gateways], callers, duration)
            monitor.terminate()
            monitor.wait(10)
    finally:
        for gateway, _ in gateways:
            gateway.stop()
        upstream.stop()
    sent = sum(1 for line in monitor_log.read_text().splitlines()[1:] if " lua] " not in line)
    served = [t for status, t in results if status == 200]
    waits = sorted(max(0.0, t - uncontended) for t in served)
    statuses: dict[str, int] = {}
    for status, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {"callers": callers, "slots": slots, "slot_s": SLOT_TIME, "served": len(served),
            "statuses": statuses, "uncontended_ms": round(uncontended * 1000, 1),
            "wait_p50_ms": round(statistics.median(waits) * 1000),
            "wait_p99_ms": round(waits[int(0.99 * len(waits))] * 1000),
            "wait_max_ms": round(waits[-1] * 1000),
            "redis_commands_per_served": round(sent / max(1, len(served)), 2)}


def call(port: int) -> tuple[int, float]:
    body = json.dumps({"model": procs.MODEL, "messages": [{"role": "user", "content": "hi"}]})
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/v1/chat/completions", body,
                           {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - start
    except OSError:
        return 0, time.perf_counter() - start
    finally:
        connection.close()


def closed_loop(ports: list[int], callers: int, duration: float) -> list[tuple[int, float]]:
    results: list[tuple[int, float]] = []
    end = time.monotonic() + duration

    def caller(index: int) -> None:
        turn = index
        while time.monotonic() < end:
            results.append(call(ports[turn % len(ports)]))
            turn += 1

    threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + 120)
    return results


# -- 3. memory ------------------------------------------------------------------------------------
def memory(server: Redis, in_flight: int = 1000) -> dict[str, Any]:
    server.client.flushall()
    store = RedisStore(redis.Redis(port=server.port, decode_responses=True), "mem:")
    limiter = RedisLimiter(redis.Redis(port=server.port), "mem:", 30)
    key = ApiKey(id="k", key="bench-key-0002", requests_per_minute=10 ** 6,
                 max_concurrent=10 ** 6)
    warm = store.choose_lease("balanced", "s", [Candidate("p0")], 30)  # scripts, connections
    limiter.release(limiter.admit(key))
    if warm is not None and warm[1] is not None:
        store.release_lease(warm[0], warm[1])
    server.client.flushall()
    before = int(server.client.info("memory")["used_memory"])
    for _ in range(in_flight):
        store.choose_lease("balanced", "s", [Candidate("p0")], 30)
        limiter.admit(key)
    after = int(server.client.info("memory")["used_memory"])
    store.close()
    return {"in_flight": in_flight, "used_memory_bytes": after - before,
            "kb_per_1000": round((after - before) / in_flight * 1000 / 1024)}


def report(result: dict[str, Any]) -> str:
    lines = ["Admission cost against the tokens-per-minute window (per admission)",
             f"{'answers in window':>18} {'store':>7} {'p50 us':>8} {'p99 us':>8} "
             f"{'in Redis us':>12} {'window fields':>14}"]
    for row in result["admission"]:
        window = "full minute" if row["window"] == FULL_MINUTE else f"{row['window']:,}"
        lines.append(f"{window:>18} {row['store']:>7} {row['admit_p50_us']:>8} "
                     f"{row['admit_p99_us']:>8} {row.get('in_redis_us', '-'):>12} "
                     f"{row.get('window_fields', '-'):>14}")
    q = result["queue"]
    lines += ["", f"Slot queue: {q['callers']} callers on {q['slots']} slots of "
                  f"{q['slot_s'] * 1000:.0f} ms, 2 instances x 2 gevent workers",
              f"  served {q['served']}, statuses {q['statuses']}, uncontended "
              f"{q['uncontended_ms']} ms",
              f"  wait for a slot: p50 {q['wait_p50_ms']} ms, p99 {q['wait_p99_ms']} ms, "
              f"max {q['wait_max_ms']} ms",
              f"  Redis commands sent per served request: {q['redis_commands_per_served']}"]
    m = result["memory"]
    lines += ["", f"Redis memory per 1,000 requests in flight (provider lease + key lease + "
                  f"RPM entry): {m['kb_per_1000']} KiB"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server = Redis()
    try:
        result = {
            "admission": admission(server, [int(w) for w in args.windows.split(",")],
                                   args.admissions),
            "memory": memory(server),
            "queue": queue(server, args.callers, args.slots, args.duration),
        }
    finally:
        server.stop()
    print(report(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    served_all = set(result["queue"]["statuses"]) == {"200"}
    return 0 if served_all else 1


if __name__ == "__main__":
    sys.exit(main())
