"""``python -m bench.run``: the gateway against the direct upstream, every server mode, one run.

For each server mode it starts the gateway in front of one stand-in upstream (both separate
processes) and measures, cell by cell, the direct call to the stand-in (the limit) and then
the same call through the gateway. See README.md (Performance) for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procs, production
from bench.client import build_request, fetch, set_behaviour
from bench.load import Tally, Target, closed_loop, open_loop, slow_streams
from bench.report import table

RESULTS = procs.ROOT / "bench" / "results"

# (full, --quick) defaults; an explicit option always wins.
DEFAULTS: dict[str, tuple[Any, Any]] = {
    "duration": (10.0, 2.0),
    "rate": (500.0, 100.0),
    "warmup": (300, 30),
    "slow_streams": (1000, 50),
    "slow_seconds": (10.0, 3.0),
    "soak": (600.0, 10.0),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 s cells, 100 req/s open loop, 50 slow streams of 3 s, "
                        "10 s soak")
    p.add_argument("--modes", default="gevent,gthread,waitress,flask",
                   help="comma-separated server modes (default: all four)")
    p.add_argument("--json", type=Path, default=None,
                   help="where to write the JSON (default: bench/results/bench-<time>.json)")
    p.add_argument("--duration", type=float, help="seconds per closed-loop/stream cell (10)")
    p.add_argument("--concurrency", default="1,8,32", help="closed-loop concurrencies (1,8,32)")
    p.add_argument("--rate", type=float, help="open-loop offered requests/s (500)")
    p.add_argument("--open-connections", type=int, default=256,
                   help="most connections the open loop may use (256)")
    p.add_argument("--tokens", type=int, default=20, help="content chunks per answer (20)")
    p.add_argument("--stream-concurrency", type=int, default=4,
                   help="concurrent streams in the stream cell (4)")
    p.add_argument("--stream-token-delay", type=float, default=0.01,
                   help="upstream seconds between stream chunks in the stream cell (0.01)")
    p.add_argument("--slow-streams", type=int, help="concurrent slow streams (1000)")
    p.add_argument("--slow-seconds", type=float, help="length of each slow stream (10)")
    p.add_argument("--slow-modes", default="gevent",
                   help="modes that get the slow-stream test ('all' or a list; gevent)")
    p.add_argument("--soak", type=float, help="soak seconds (600)")
    p.add_argument("--soak-modes", default="gevent",
                   help="modes that get the soak ('all' or a list; gevent)")
    p.add_argument("--soak-concurrency", type=int, default=8, help="soak connections (8)")
    p.add_argument("--warmup", type=int, help="warm-up requests per target (300)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    p.add_argument("--threads", type=int, default=8, help="gthread/waitress threads (8)")
    p.add_argument("--max-requests", type=int, default=2_000_000,
                   help="hard cap on requests per cell (2000000)")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, s (30)")
    prod = p.add_argument_group("production profile (bench/production.py)")
    prod.add_argument("--production", action="store_true",
                      help="gunicorn + gevent with Redis and metrics on: CPU per request and "
                           "per streamed chunk, against direct, round by round")
    prod.add_argument("--compare", nargs="+", metavar="SIDE",
                      help="two or more sides, each REF[:KEY=VALUE,...] (REF: a commit, '.' "
                           "the working tree, 'floor' the featureless relay, 'litellm' the "
                           "LiteLLM proxy); implies --production")
    prod.add_argument("--rounds", type=int, help="rounds, best kept (3 / 1 with --quick)")
    prod.add_argument("--profile", action="store_true",
                      help="py-spy flame graphs of every worker, written next to the JSON")
    args = p.parse_args(argv)
    args.production = args.production or bool(args.compare)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    for name, (full, quick) in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    args.mode_list = _names(args.modes)
    args.slow_list = list(procs.MODES) if args.slow_modes == "all" else _names(args.slow_modes)
    args.soak_list = list(procs.MODES) if args.soak_modes == "all" else _names(args.soak_modes)
    args.concurrency_list = [int(c) for c in args.concurrency.split(",") if c.strip()]
    for name in args.mode_list:
        if name not in procs.MODES:
            p.error(f"unknown mode {name!r}; choose from {', '.join(procs.MODES)}")
    return args


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


@dataclass(frozen=True)
class Endpoints:
    """The same two calls, direct (stand-in) and through the gateway."""

    plain: Target
    stream: Target

    @classmethod
    def at(cls, port: int, frames: int | None) -> Endpoints:
        path = "/v1/chat/completions"
        message = {"role": "user", "content": "Say hello to the benchmark."}
        plain = json.dumps({"model": procs.MODEL, "messages": [message]}).encode()
        stream = json.dumps({"model": procs.MODEL, "messages": [message],
                             "stream": True}).encode()
        return cls(
            Target("127.0.0.1", port, [build_request("POST", "127.0.0.1", port, path, plain)]),
            Target("127.0.0.1", port, [build_request("POST", "127.0.0.1", port, path, stream)],
                   expect_frames=frames),
        )


class Bench:
    def __init__(self, args: argparse.Namespace, upstream_port: int) -> None:
        self.args = args
        self.upstream_port = upstream_port
        self.frames: int | None = None
        self.last_log: Path | None = None
        self.last_problems: dict[str, int] = {}

    async def behave(self, **fields: Any) -> None:
        await set_behaviour(self.upstream_port, **fields)

    async def probe_frames(self) -> int:
        """How many ``data:`` frames one direct stream has (the gateway must pass them all)."""
        await self.behave(token_delay=0.0)
        target = Endpoints.at(self.upstream_port, None).stream
        reply = await fetch("127.0.0.1", self.upstream_port, target.requests[0])
        return reply.body.count(b"data:") - 1

    # -- one mode --------------------------------------------------------------------------------
    async def mode(self, mode: str, config: Path) -> dict[str, Any]:
        args = self.args
        gateway, port = procs.start_gateway(mode, config, args.workers, args.threads)
        try:
            return await self._measure(mode, gateway, port)
        finally:
            gateway.stop()
            problems = procs.count_log_problems(gateway.output())
            self.last_log = gateway.log_path
            self.last_problems = problems

    async def _measure(self, mode: str, gateway: procs.Process, port: int) -> dict[str, Any]:
        args = self.args
        direct = Endpoints.at(self.upstream_port, self.frames)
        via = Endpoints.at(port, self.frames)
        pids = procs.worker_pids(gateway, mode)
        out: dict[str, Any] = {"server": dict(zip(("type", "worker_class"), procs.MODES[mode],
                                                  strict=True)),
                               "worker_pids": pids}
        rss: dict[str, Any] = {"start": procs.rss_of(pids)}
        await self.behave(token_delay=0.0)
        for target in (direct.plain, via.plain, direct.stream, via.stream):
            await closed_loop(target, 4, 60.0, args.warmup, args.timeout)
        rss["rest"] = procs.rss_of(pids)

        closed: dict[str, Any] = {}
        for c in args.concurrency_list:
            sampler = Sampler(pids) if c == max(args.concurrency_list) else None
            closed[str(c)] = await self.pair(
                functools.partial(closed_loop, concurrency=c, duration=args.duration,
                                  max_requests=args.max_requests, timeout=args.timeout),
                direct.plain, via.plain, sampler)
            if sampler is not None:
                rss["load"] = sampler.peak()
        out["closed"] = closed

        out["open"] = await self.open_pair(direct.plain, via.plain)

        await self.behave(token_delay=args.stream_token_delay)
        out["stream"] = await self.pair(
            lambda t: closed_loop(t, args.stream_concurrency, args.duration, args.max_requests,
                                  args.timeout),
            direct.stream, via.stream, None, stream=True)
        out["stream"].update(concurrency=args.stream_concurrency,
                             token_delay_s=args.stream_token_delay, frames=self.frames)

        if mode in args.slow_list:
            out["slow_streams"] = await self.slow(direct.stream, via.stream, pids)
            rss["slow_streams"] = out["slow_streams"].pop("rss")
        rss["before_soak"] = procs.rss_of(pids)
        if mode in args.soak_list:
            out["soak"] = await self.soak(via, pids)
            rss["timeline"] = out["soak"].pop("rss_timeline")
            rss["after_soak"] = procs.rss_of(pids)
            rss["growth_pct"] = growth(rss["before_soak"], rss["after_soak"])
        out["rss_mb"] = rss
        out["leaked_leases"] = await self.in_flight(port)
        if procs.worker_pids(gateway, mode) != pids:
            out["workers_replaced"] = True  # a worker died or was restarted by gunicorn
        return out

    async def pair(self, run: Callable[[Target], Any], direct: Target, via: Target,
                   sampler: Sampler | None, stream: bool = False) -> dict[str, Any]:
        """The same cell direct and then through the gateway, with the differences."""
        d: Tally = await run(direct)
        if sampler is not None:
            sampler.start()
        try:
            g: Tally = await run(via)
        finally:
            if sampler is not None:
                await sampler.stop()
        return compare(d.summary(stream), g.summary(stream))

    async def open_pair(self, direct: Target, via: Target) -> dict[str, Any]:
        args = self.args
        d, dx = await open_loop(direct, args.rate, args.duration, args.open_connections,
                                args.timeout)
        g, gx = await open_loop(via, args.rate, args.duration, args.open_connections,
                                args.timeout)
        result = compare({**d.summary(), **dx}, {**g.summary(), **gx})
        result["offered_rps"] = args.rate
        return result

    async def slow(self, direct: Target, via: Target, pids: list[int]) -> dict[str, Any]:
        args = self.args
        frames = self.frames or args.tokens
        await self.behave(token_delay=args.slow_seconds / frames)
        ramp = min(5.0, args.slow_seconds / 2)
        timeout = args.slow_seconds * 3 + 30
        d, dx = await slow_streams(direct, args.slow_streams, ramp, timeout)
        peak: list[list[float | None]] = []
        g, gx = await slow_streams(via, args.slow_streams, ramp, timeout,
                                   on_peak=lambda: peak.append(procs.rss_of(pids)))
        await self.behave(token_delay=0.0)
        result = compare({**d.summary(True), **dx}, {**g.summary(True), **gx})
        result.update(streams=args.slow_streams, seconds=args.slow_seconds,
                      rss=peak[0] if peak else None)
        return result

    async def soak(self, via: Endpoints, pids: list[int]) -> dict[str, Any]:
        """Non-stream and stream calls for ``--soak`` seconds; memory sampled ten times."""
        args = self.args
        await self.behave(token_delay=0.0)
        streams = max(1, args.soak_concurrency // 4)
        timeline: list[dict[str, Any]] = []
        started = time.monotonic()

        async def sample() -> None:
            while True:
                timeline.append({"t": round(time.monotonic() - started, 1),
                                 "rss": procs.rss_of(pids)})
                await asyncio.sleep(max(1.0, args.soak / 10))

        sampler = asyncio.create_task(sample())
        try:
            plain, stream = await asyncio.gather(
                closed_loop(via.plain, args.soak_concurrency - streams, args.soak,
                            args.max_requests * 10, args.timeout),
                closed_loop(via.stream, streams, args.soak, args.max_requests * 10,
                            args.timeout))
        finally:
            sampler.cancel()
        return {"seconds": args.soak, "plain": plain.summary(), "stream": stream.summary(True),
                "errors": plain.summary()["errors"] + stream.summary()["errors"],
                "rss_timeline": timeline}

    async def in_flight(self, port: int) -> int:
        """Most in-flight leases any worker reports at rest (must be 0: no slot leaked)."""
        worst = 0
        raw = build_request("GET", "127.0.0.1", port, "/api/health")
        for _ in range(max(4, self.args.workers * 4)):
            reply = await fetch("127.0.0.1", port, raw)
            body = json.loads(reply.body)
            for model in body.get("models", {}).values():
                for provider in model.get("providers", []):
                    worst = max(worst, int(provider.get("in_flight", 0)))
        return worst


class Sampler:
    """Samples worker RSS every 0.25 s while a cell runs; ``peak()`` is the max per worker."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.samples: list[list[float | None]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.samples.append(procs.rss_of(self.pids))
            await asyncio.sleep(0.25)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def peak(self) -> list[float | None]:
        peaks: list[float | None] = []
        for i in range(len(self.pids)):
            values = [s[i] for s in self.samples if s[i] is not None]
            peaks.append(max(values) if values else None)  # type: ignore[type-var]
        return peaks


def compare(direct: dict[str, Any], gateway: dict[str, Any]) -> dict[str, Any]:
    """Both summaries and what the gateway adds: latency deltas (ms) and ratios."""
    out: dict[str, Any] = {"direct": direct, "gateway": gateway}
    for key in ("latency_p50_ms", "latency_p99_ms", "ttfb_p50_ms", "ttfb_p99_ms"):
        if direct.get(key) is not None and gateway.get(key) is not None:
            out["added_" + key] = round(gateway[key] - direct[key], 3)
    if direct.get("rps"):
        out["rps_ratio"] = round(gateway["rps"] / direct["rps"], 3)
    if direct.get("latency_mean_ms"):
        out["latency_mean_ratio"] = round(gateway["latency_mean_ms"] / direct["latency_mean_ms"],
                                          4)
    return out


def growth(before: list[float | None], after: list[float | None]) -> list[float | None]:
    return [round((a - b) / b * 100, 2) if a is not None and b else None
            for b, a in zip(before, after, strict=True)]


def count_errors(node: Any) -> int:
    """Every gateway- and direct-side error in a result tree."""
    if isinstance(node, dict):
        if "direct" in node or "gateway" in node:
            return sum(count_errors(node.get(k)) for k in ("direct", "gateway"))
        if "requests" in node:
            return int(node.get("errors") or 0)
        return sum(count_errors(v) for k, v in node.items() if k != "errors")
    return 0


def machine() -> dict[str, Any]:
    cpu = ""
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=procs.ROOT,
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except OSError:
        commit = ""
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "loadavg_start": os.getloadavg(),
            "commit": commit}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    fds = procs.raise_fd_limit()
    result: dict[str, Any] = {"meta": {**machine(), "fd_limit": fds,
                                       "loader": "asyncio raw HTTP/1.1 (bench/client.py)",
                                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                       "args": _jsonable(vars(args))},
                              "modes": {}}
    standin, upstream_port = procs.start_standin(args.tokens)
    try:
        bench = Bench(args, upstream_port)
        bench.frames = await bench.probe_frames()
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            config = procs.write_models_config(Path(tmp), upstream_port)
            for mode in args.mode_list:
                print(f"[bench] measuring {mode} ...", file=sys.stderr, flush=True)
                result["modes"][mode] = await bench.mode(mode, config)
                result["modes"][mode]["log_problems"] = bench.last_problems
                result["modes"][mode]["log_file"] = str(bench.last_log)
    finally:
        standin.stop()
    result["meta"]["loadavg_end"] = os.getloadavg()
    result["errors"] = sum(count_errors(m) for m in result["modes"].values())
    result["leaked_leases"] = sum(m["leaked_leases"] for m in result["modes"].values())
    return result


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = args.json or RESULTS / f"bench-{'prod-' if args.production else ''}{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if args.production:
        procs.raise_fd_limit()
        meta = {**machine(), "started": stamp, "args": _jsonable(vars(args))}
        result = asyncio.run(production.run(args, meta, path.parent))
        result["meta"]["loadavg_end"] = os.getloadavg()
    else:
        result = asyncio.run(main_async(args))
    path.write_text(json.dumps(result, indent=2))
    print(production.table(result) if args.production else table(result))
    print(f"\nJSON: {path}")
    return 0 if result["errors"] == 0 and result["leaked_leases"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
