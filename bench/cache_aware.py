"""``python -m bench.cache_aware``: ``balanced`` against ``cache_aware`` over simulated servers.

Four simulated vLLM-like servers (``standin.sim``: a bounded LRU prefix cache, a fixed number of
slots with a queue, time to first token = queue wait + uncached prompt characters × a prefill
cost, vLLM ``/metrics``) run in one process; the gateway runs in production mode (gunicorn +
gevent, 2 workers, a private Redis). For each strategy, a fresh gateway (fresh Redis prefix)
runs the multi-turn workload and then the hot-spot one (``bench.cache_workloads``), the servers'
caches cleared before each. The table shows TTFT p50/p99, the servers' prefix-cache hit ratio
(cached prompt characters / all prompt characters) and throughput, side by side.
docs/load-balancing.md explains the parameters and why they are plausible for a vLLM server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import procs
from bench.cache_workloads import HotSpot, MultiTurn, Outcome, Sender, hot_spot, multi_turn
from bench.client import build_request, fetch
from standin.sim import SimParams

RESULTS = procs.ROOT / "bench" / "results"
SERVERS = 4
STRATEGIES = ("balanced", "cache_aware")
#: The simulated servers (see docs/load-balancing.md for why these are plausible).
SIM = SimParams(slots=8, prefill_per_char=50e-6, cache_chars=240_000, block_chars=64,
                model=procs.MODEL)
#: The servers echo the user's words as their answer (as long as the question), one word per
#: stream chunk every TOKEN_DELAY seconds.
TOKENS, TOKEN_DELAY = 16, 0.005


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.cache_aware", description=__doc__)
    p.add_argument("--quick", action="store_true", help="a smaller run (a smoke test)")
    p.add_argument("--json", type=Path, default=None, help="where to write the JSON")
    p.add_argument("--workloads", default="multi-turn,hot-spot",
                   help="comma-separated workloads (default: both)")
    return p.parse_args(argv)


def start_redis() -> tuple[procs.Process, int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port = procs.free_port()
    proc = procs.Process([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", tempfile.gettempdir()],
                         procs._clean_env(), "redis")
    deadline = time.monotonic() + procs.START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            time.sleep(0.05)
    proc.stop()
    raise RuntimeError("redis-server did not start")


def start_sims() -> tuple[procs.Process, list[int]]:
    args = [sys.executable, "-m", "standin", "--sim", "--count", str(SERVERS), "--port", "0",
            "--name", "sim", "--tokens", str(TOKENS), "--token-delay", str(TOKEN_DELAY), "--echo",
            "--slots", str(SIM.slots), "--prefill-per-char", repr(SIM.prefill_per_char),
            "--cache-chars", str(SIM.cache_chars), "--block-chars", str(SIM.block_chars),
            "--model", SIM.model]
    proc = procs.Process(args, procs._clean_env(), "sims")
    deadline = time.monotonic() + procs.START_TIMEOUT
    while time.monotonic() < deadline:
        ports = [int(line.rsplit(":", 1)[1]) for line in proc.output().splitlines()
                 if " listening on " in line]
        if len(ports) == SERVERS:
            return proc, ports
        if not proc.alive():
            break
        time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"the simulated servers did not start:\n{proc.output()[-2000:]}")


def write_config(directory: Path, ports: list[int]) -> Path:
    config = {"bench_models": {procs.MODEL: {"providers": [
        {"id": f"sim{i}", "api_host": f"http://127.0.0.1:{port}", "api_type": "vllm"}
        for i, port in enumerate(ports)]}},
        "active_models": {"bench_models": [procs.MODEL]}}
    path = directory / "models-config.json"
    path.write_text(json.dumps(config))
    return path


async def sim_call(port: int, fields: dict[str, Any]) -> dict[str, Any]:
    raw = build_request("POST", "127.0.0.1", port, "/_sim", json.dumps(fields).encode())
    reply = await fetch("127.0.0.1", port, raw)
    return dict(json.loads(reply.body))


async def servers_view(ports: list[int]) -> dict[str, Any]:
    """The servers' prefix-cache hit ratio (cached / all prompt characters) and their shares."""
    stats = [await sim_call(port, {}) for port in ports]
    prompt = sum(s["prompt_chars"] for s in stats)
    return {"cache_hit_ratio": round(sum(s["cached_chars"] for s in stats) / prompt, 4)
            if prompt else 0.0,
            "per_server": [{"requests": s["requests"], "hit_ratio": round(s["hit_ratio"], 4)}
                           for s in stats]}


async def run_strategy(strategy: str, config: Path, redis_port: int, ports: list[int],
                       workloads: dict[str, Any]) -> dict[str, Any]:
    gateway, port = procs.start_gateway("gevent", config, 2, 8, {
        "LLM_ROUTER_BALANCE_STRATEGY": strategy, "LLM_ROUTER_REDIS_HOST": "127.0.0.1",
        "LLM_ROUTER_REDIS_PORT": str(redis_port),
        "LLM_ROUTER_REDIS_PREFIX": f"bench-{strategy}-{time.time_ns()}:",
        "LLM_ROUTER_ACQUIRE_TIMEOUT": "120", "LLM_ROUTER_USE_PROMETHEUS": "1"})
    sender = Sender(port, procs.MODEL)
    out: dict[str, Any] = {}
    try:
        for name, (run, spec) in workloads.items():
            for sim_port in ports:
                await sim_call(sim_port, {"clear": True})
            print(f"[bench] {strategy}: {name} ...", file=sys.stderr, flush=True)
            outcome: Outcome = await run(sender, spec)
            out[name] = {**outcome.summary(), **await servers_view(ports),
                         "router": await router_view(port)}
    finally:
        gateway.stop()
        out["log_problems"] = procs.count_log_problems(gateway.output())
    return out


async def router_view(port: int) -> dict[str, float]:
    """What the gateway says it did (cumulative over the gateway's life): the mean prefix
    match of its choices and the saturation skips (``cache_aware`` only)."""
    reply = await fetch("127.0.0.1", port, build_request("GET", "127.0.0.1", port, "/metrics"))
    sums: dict[str, float] = {}
    for line in reply.body.decode().splitlines():
        for name in ("llm_router_prefix_match_ratio_sum", "llm_router_prefix_match_ratio_count",
                     "llm_router_saturation_skips_total"):
            if line.startswith(name + "{") or line.startswith(name + " "):
                sums[name] = sums.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    count = sums.get("llm_router_prefix_match_ratio_count", 0.0)
    return {"decisions": count,
            "mean_prefix_match": round(sums.get("llm_router_prefix_match_ratio_sum", 0.0)
                                       / count, 4) if count else 0.0,
            "saturation_skips": sums.get("llm_router_saturation_skips_total", 0.0)}


def table(result: dict[str, Any]) -> str:
    header = ["workload", "strategy", "requests", "TTFT p50 ms", "TTFT p99 ms", "cache hit",
              "req/s", "errors"]
    rows = []
    for workload in result["workloads"]:
        for strategy in STRATEGIES:
            r = result["strategies"][strategy][workload]
            rows.append([workload, strategy, str(r["requests"]), f"{r['ttft_p50_ms']:.1f}",
                         f"{r['ttft_p99_ms']:.1f}", f"{r['cache_hit_ratio'] * 100:.1f}%",
                         f"{r['rps']:.1f}", str(r["errors"])])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
              for row in rows]
    for workload in result["workloads"]:
        b = result["strategies"]["balanced"][workload]
        c = result["strategies"]["cache_aware"][workload]
        lines.append(f"{workload}: cache_aware TTFT p50 {b['ttft_p50_ms'] / c['ttft_p50_ms']:.2f}x "
                     f"better, p99 {b['ttft_p99_ms'] / c['ttft_p99_ms']:.2f}x, throughput "
                     f"{c['rps'] / b['rps']:.2f}x")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    multi = MultiTurn(conversations=16, turns=4, think_s=0.1) if args.quick else MultiTurn()
    hot = HotSpot(requests=48) if args.quick else HotSpot()
    every = {"multi-turn": (multi_turn, multi), "hot-spot": (hot_spot, hot)}
    workloads = {name: every[name] for name in args.workloads.split(",") if name in every}
    redis_proc, redis_port = start_redis()
    sims, ports = start_sims()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ca-") as tmp:
            config = write_config(Path(tmp), ports)
            strategies = {s: await run_strategy(s, config, redis_port, ports, workloads)
                          for s in STRATEGIES}
    finally:
        sims.stop()
        redis_proc.stop()
    return {"meta": {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "servers": SERVERS,
                     "sim": {**asdict(SIM), "tokens": TOKENS, "token_delay_s": TOKEN_DELAY},
                     "mode": "gunicorn + gevent, 2 workers, Redis",
                     "workloads": {name: asdict(spec) for name, (_, spec) in workloads.items()}},
            "workloads": list(workloads), "strategies": strategies}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    procs.raise_fd_limit()
    result = asyncio.run(main_async(args))
    path = args.json or RESULTS / f"cache-aware-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"\nJSON: {path}")
    errors = sum(r[w]["errors"] for r in result["strategies"].values()
                 for w in result["workloads"])
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
