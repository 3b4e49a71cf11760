"""``python -m bench.run --production``: the gateway's CPU per request and per streamed chunk.

The production profile: gunicorn + gevent (``--workers``, 2), a private ``redis-server`` for the
shared state, Prometheus metrics on. For each *side* (``--compare A B``: two commits or two
settings; without it, the working tree) it measures, round after round (sides alternate within a
round so both see the same machine), against the direct call to the stand-in in the same round:

- ``plain_c32``: non-stream, 32 connections: req/s and the gateway's CPU per request, read from
  ``/proc/<pid>/schedstat`` (nanoseconds on a CPU) of the master and every worker, before and
  after the cell, divided by the answers;
- ``plain_c1``: non-stream, one connection: added latency p50/p99;
- ``stream_c1``: a stream with no pacing, one connection: added time to first byte p50/p99;
- ``paced``: the stand-in answers after 50 ms, then 20 chunks 5 ms apart (``--paced-*``),
  8 concurrent streams: CPU per stream and per relayed chunk, total time against direct;
- Redis commands per request (``INFO stats`` before and after) and worker RSS.

Two sides are not the gateway: ``floor`` (``bench/floor.py``, a featureless relay on the same
server) and ``litellm``, the LiteLLM proxy (``litellm --config``, ``--workers`` uvicorn workers)
in its default configuration, with a generated model list that sends the bench's model to the
same stand-in: no Redis, no callbacks, no master key, nothing fetched from the internet.

The best of the rounds (lowest CPU, lowest added time) is what the table shows; every round is
in the JSON. ``--profile`` also runs ``py-spy record`` on each worker for one non-stream c=32
cell and one paced cell per side (not counted in the figures) and writes speedscope JSON and
flame-graph SVGs next to the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procs
from bench.client import build_request, fetch, set_behaviour
from bench.load import Tally, Target, closed_loop

PACED_FIRST_DELAY = 0.05
PACED_TOKEN_DELAY = 0.005
PACED_CONCURRENCY = 8
#: The side that is ``bench/floor.py`` (a featureless relay on gunicorn + gevent), not the gateway.
FLOOR = "floor"
#: The side that is the LiteLLM proxy (``pip install .[bench]``), not the gateway.
LITELLM = "litellm"
#: LiteLLM's own settings for the bench: nothing from the internet (the model cost map, blog
#: posts and catalogs from the package), no feedback banner, and no master key (the gateway's
#: side has no keys either; LiteLLM refuses to start without one unless told).
LITELLM_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
    "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
    # warnings and up, as the gateway's side (LLM_ROUTER_LOG_LEVEL): no access log line per request
    "LITELLM_LOG": "WARNING",
}


@dataclass
class Side:
    """One build (a source tree) with its extra environment, and its gateway while it runs."""

    label: str
    tree: Path
    env: dict[str, str]
    temporary: bool = False
    gateway: procs.Process | None = None
    port: int = 0
    rounds: list[dict[str, Any]] = field(default_factory=list)


def parse_side(spec: str, scratch: Path) -> Side:
    """``REF`` or ``REF:KEY=VALUE,KEY=VALUE``; REF ``.`` is the working tree as it is."""
    ref, _, settings = spec.partition(":")
    env = dict(item.split("=", 1) for item in settings.split(",") if "=" in item)
    if ref in ("", ".", FLOOR, LITELLM):
        return Side(spec, procs.ROOT, env)
    tree = scratch / f"tree-{len(list(scratch.iterdir()))}"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), ref], cwd=procs.ROOT,
                   check=True, capture_output=True, timeout=120)
    return Side(spec, tree, env, temporary=True)


def drop_side(side: Side) -> None:
    if side.temporary:
        subprocess.run(["git", "worktree", "remove", "--force", str(side.tree)], cwd=procs.ROOT,
                       capture_output=True, timeout=120)


# -- /proc ----------------------------------------------------------------------------------------
def cpu_ns(pids: list[int]) -> int:
    """Nanoseconds these processes (all their threads) have spent on a CPU."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    return total


def gateway_pids(gateway: procs.Process) -> list[int]:
    """The side's whole process tree: the master, its workers and their children."""
    pids = [gateway.pid]
    for pid in pids:
        pids.extend(procs.children(pid))
    return pids


def kind(side: Side) -> str:
    """``floor``, ``litellm`` or ``gateway`` (the gateway at some commit)."""
    ref = side.label.partition(":")[0]
    return ref if ref in (FLOOR, LITELLM) else "gateway"


def start_floor(workers: int, upstream_port: int) -> tuple[procs.Process, int]:
    port = procs.free_port()
    env = {**os.environ, "BENCH_UPSTREAM": f"127.0.0.1:{upstream_port}"}
    proc = procs.Process([sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", str(workers),
                          "--worker-connections", "2000", "-b", f"127.0.0.1:{port}",
                          "--log-level", "warning", "bench.floor:app"], env, "floor")
    proc.wait_ready(f"http://127.0.0.1:{port}/api/ping", "the floor relay")
    return proc, port


def write_litellm_config(directory: Path, upstream_port: int) -> Path:
    """LiteLLM's model list: the bench's model is ``openai/<model>`` at the stand-in."""
    config = {"model_list": [{"model_name": procs.MODEL, "litellm_params": {
        "model": f"openai/{procs.MODEL}", "api_base": f"http://127.0.0.1:{upstream_port}/v1",
        "api_key": "bench-dummy-key"}}]}
    path = directory / "litellm-config.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


def start_litellm(workers: int, config: Path, env: dict[str, str]) -> tuple[procs.Process, int]:
    """``litellm --config`` with ``workers`` uvicorn workers, ready when ``/health/liveliness``
    answers (each worker has loaded the config by then: the master only forks them)."""
    command = Path(sys.executable).parent / "litellm"
    if not command.exists():
        raise RuntimeError(f"{command} not found: pip install .[bench]")
    port = procs.free_port()
    proc = procs.Process([str(command), "--config", str(config), "--host", "127.0.0.1",
                          "--port", str(port), "--num_workers", str(workers)],
                         {**os.environ, **LITELLM_ENV, **env}, "litellm")
    proc.wait_ready(f"http://127.0.0.1:{port}/health/liveliness", "the LiteLLM proxy")
    return proc, port


# -- Redis ----------------------------------------------------------------------------------------
def start_redis(directory: Path) -> tuple[procs.Process, int]:
    port = procs.free_port()
    proc = procs.Process(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--dir", str(directory)],
                         dict(os.environ), "redis")
    deadline = time.monotonic() + procs.START_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return proc, port
        time.sleep(0.05)
    proc.stop()
    raise RuntimeError("redis-server did not start")


def redis_commands(port: int) -> dict[str, int]:
    """Calls per command since the Redis started (an inline ``INFO commandstats``)."""
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        sock.sendall(b"INFO commandstats\r\n")
        data = b""
        header, _, rest = b"", b"", b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            header, _, rest = data.partition(b"\r\n")
            if header.startswith(b"$") and len(rest) >= int(header[1:]) + 2:
                break
    calls: dict[str, int] = {}
    for line in rest.decode().splitlines():
        if line.startswith("cmdstat_"):
            name, _, stats = line[len("cmdstat_"):].partition(":")
            calls[name] = int(stats.split("calls=")[1].split(",")[0])
    return calls


def per_request(before: dict[str, int], after: dict[str, int], requests: int,
                ) -> dict[str, float]:
    """Commands per request, by command (not counting the bench's own ``INFO``)."""
    out = {name: round((n - before.get(name, 0)) / requests, 2) for name, n in after.items()
           if name != "info" and n != before.get(name, 0)}
    out["total"] = round(sum(out.values()), 2)
    return out


# -- the run --------------------------------------------------------------------------------------
class Production:
    def __init__(self, args: argparse.Namespace, upstream_port: int, redis_port: int,
                 out_dir: Path) -> None:
        self.args = args
        self.upstream_port = upstream_port
        self.redis_port = redis_port
        self.out_dir = out_dir
        self.frames = 0

    async def behave(self, **fields: Any) -> None:
        await set_behaviour(self.upstream_port, **fields)

    def targets(self, port: int) -> tuple[Target, Target]:
        from bench.run import Endpoints  # noqa: PLC0415 - bench.run imports this module

        ends = Endpoints.at(port, self.frames)
        return ends.plain, ends.stream

    def start(self, side: Side, config: Path, index: int) -> None:
        if kind(side) == FLOOR:
            side.gateway, side.port = start_floor(self.args.workers, self.upstream_port)
            return
        if kind(side) == LITELLM:
            litellm_config = write_litellm_config(config.parent, self.upstream_port)
            side.gateway, side.port = start_litellm(self.args.workers, litellm_config, side.env)
            return
        env = {"LLM_ROUTER_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
               "LLM_ROUTER_REDIS_PREFIX": f"bench{index}:",
               "LLM_ROUTER_USE_PROMETHEUS": "1",
               "PYTHONPATH": str(side.tree), **side.env}
        side.gateway, side.port = procs.start_gateway("gevent", config, self.args.workers,
                                                      self.args.threads, env, cwd=side.tree)

    async def cpu_cell(self, side: Side | None, target: Target, concurrency: int,
                       stream: bool) -> dict[str, Any]:
        """One closed-loop cell; with a side, the gateway's CPU and Redis commands around it."""
        args = self.args
        pids = gateway_pids(side.gateway) if side and side.gateway else []
        cpu0, redis0 = cpu_ns(pids), redis_commands(self.redis_port)
        tally: Tally = await closed_loop(target, concurrency, args.duration, args.max_requests,
                                         args.timeout)
        cpu1, redis1 = cpu_ns(pids), redis_commands(self.redis_port)
        out = tally.summary(stream)
        if side is not None and out["ok"]:
            out["cpu_ms_per_request"] = round((cpu1 - cpu0) / 1e6 / out["ok"], 4)
            if kind(side) != LITELLM:  # it has no Redis (the gateway sides' own would count)
                by_command = per_request(redis0, redis1, out["ok"])
                out["redis_commands_per_request"] = by_command.pop("total")
                out["redis_commands_by_name"] = by_command
            if stream and self.frames:
                out["cpu_ms_per_chunk"] = round(out["cpu_ms_per_request"] / self.frames, 4)
        return out

    async def round(self, sides: list[Side], number: int) -> None:
        direct_plain, direct_stream = self.targets(self.upstream_port)
        cells: dict[str, dict[str, Any]] = {s.label: {} for s in sides}
        direct: dict[str, Any] = {}
        await self.behave(token_delay=0.0, first_delay=0.0)
        for name, conc, stream in (("plain_c32", 32, False), ("plain_c1", 1, False),
                                   ("stream_c1", 1, True)):
            direct[name] = await self.cpu_cell(None, direct_stream if stream else direct_plain,
                                               conc, stream)
            for side in sides:
                plain, streamed = self.targets(side.port)
                cells[side.label][name] = await self.cpu_cell(
                    side, streamed if stream else plain, conc, stream)
        await self.behave(first_delay=PACED_FIRST_DELAY, token_delay=PACED_TOKEN_DELAY)
        direct["paced"] = await self.cpu_cell(None, direct_stream, PACED_CONCURRENCY, True)
        for side in sides:
            cells[side.label]["paced"] = await self.cpu_cell(side, self.targets(side.port)[1],
                                                             PACED_CONCURRENCY, True)
        await self.behave(token_delay=0.0, first_delay=0.0)
        for side in sides:
            figures = cells[side.label]
            added(figures, direct)
            figures["rss_mb"] = procs.rss_of(procs.children(side.gateway.pid)) \
                if side.gateway else []
            figures["round"] = number
            side.rounds.append({"direct": direct, "gateway": figures})
        print(f"[bench] round {number}: " + "; ".join(
            f"{s.label}: {short(s.rounds[-1]['gateway'])}" for s in sides),
            file=sys.stderr, flush=True)

    async def profile(self, side: Side, index: int) -> list[str]:
        """py-spy on every worker during one c=32 cell and one paced cell (not counted)."""
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists() or side.gateway is None:
            return ["py-spy not found: pip install .[bench]"]
        written: list[str] = []
        plain, streamed = self.targets(side.port)
        seconds = max(2, int(self.args.duration))
        for name, target, conc, _stream, delays in (
                ("plain_c32", plain, 32, False, (0.0, 0.0)),
                ("paced", streamed, PACED_CONCURRENCY, True,
                 (PACED_FIRST_DELAY, PACED_TOKEN_DELAY))):
            await self.behave(first_delay=delays[0], token_delay=delays[1])
            spies = []
            for n, pid in enumerate(procs.children(side.gateway.pid)):
                for fmt, ext in (("speedscope", "json"), ("flamegraph", "svg")):
                    path = self.out_dir / f"profile-side{index}-{name}-worker{n}.{ext}"
                    spies.append(subprocess.Popen(
                        [spy, "record", "--pid", str(pid), "--duration", str(seconds),
                         "--rate", "500", "--format", fmt, "--output", str(path), "--nonblocking"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                    written.append(str(path))
            await asyncio.sleep(0.3)
            await closed_loop(target, conc, seconds + 0.5, self.args.max_requests,
                              self.args.timeout)
            for spy_proc in spies:
                try:
                    spy_proc.wait(seconds + 30)
                except subprocess.TimeoutExpired:
                    spy_proc.kill()
                    spy_proc.wait(10)
        await self.behave(first_delay=0.0, token_delay=0.0)
        return [p for p in written if Path(p).exists()]


def added(figures: dict[str, Any], direct: dict[str, Any]) -> None:
    for name, cell in figures.items():
        base = direct.get(name, {})
        for key in ("latency_p50_ms", "latency_p99_ms", "ttfb_p50_ms", "ttfb_p99_ms"):
            if cell.get(key) is not None and base.get(key) is not None:
                cell["added_" + key] = round(cell[key] - base[key], 3)
        if base.get("latency_mean_ms"):
            cell["latency_mean_ratio"] = round(cell["latency_mean_ms"] / base["latency_mean_ms"],
                                               4)


#: (cell, figure, lower is better) shown in the table and reduced to the best round.
HEADLINE = (
    ("plain_c32", "cpu_ms_per_request", "non-stream c=32: gateway CPU ms/request (<= 0.6)"),
    ("plain_c32", "rps", "non-stream c=32: req/s"),
    ("plain_c32", "redis_commands_per_request", "non-stream c=32: Redis commands/request"),
    ("plain_c1", "added_latency_p50_ms", "non-stream c=1: added p50 ms"),
    ("stream_c1", "added_ttfb_p50_ms", "stream c=1: added TTFB p50 ms (<= 0.8)"),
    ("paced", "cpu_ms_per_chunk", "paced stream c=8: gateway CPU ms/chunk (<= 0.08)"),
    ("paced", "latency_mean_ratio", "paced stream: total time / direct (<= 1.01)"),
)


def short(g: dict[str, Any]) -> str:
    return (f"{g['plain_c32'].get('cpu_ms_per_request')} ms/req, "
            f"{g['paced'].get('cpu_ms_per_chunk')} ms/chunk, "
            f"ttfb +{g['stream_c1'].get('added_ttfb_p50_ms')} ms")


def best(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cell, key, _ in HEADLINE:
        values = [r["gateway"][cell].get(key) for r in rounds]
        values = [v for v in values if v is not None]
        if values:
            out[f"{cell}.{key}"] = max(values) if key == "rps" else min(values)
    return out


def errors_of(rounds: list[dict[str, Any]]) -> int:
    return sum(cell.get("errors", 0) for r in rounds for part in ("direct", "gateway")
               for cell in r[part].values() if isinstance(cell, dict))


def error_kinds(rounds: list[dict[str, Any]]) -> tuple[dict[str, int], list[str]]:
    """The side's errors by kind over every round, and the first few samples of them."""
    kinds: dict[str, int] = {}
    samples: list[str] = []
    for r in rounds:
        for name, cell in r["gateway"].items():
            if isinstance(cell, dict):
                for error, n in cell.get("error_kinds", {}).items():
                    kinds[error] = kinds.get(error, 0) + n
                samples += [f"{name} {sample}" for sample in cell.get("error_samples", [])]
    return kinds, samples[:3]


#: (figure, title): each other side's figure as a multiple of the first side's.
MULTIPLES = (("plain_c32.cpu_ms_per_request", "CPU/request"), ("plain_c32.rps", "req/s"),
             ("stream_c1.added_ttfb_p50_ms", "added TTFB"),
             ("paced.cpu_ms_per_chunk", "CPU/chunk"))


def multiple(title: str, ratio: float) -> str:
    """``CPU/request 8.18``; a fraction also as one over its inverse (``req/s 0.13 = 1/7.8``)."""
    return f"{title} {ratio:.2f}" + (f" = 1/{1 / ratio:.1f}" if 0 < ratio < 1 else "")


KIND_NOTES = {
    FLOOR: "floor: bench/floor.py, a featureless relay on the same gunicorn + gevent",
    LITELLM: "litellm: the LiteLLM proxy, default configuration (uvicorn workers, no Redis, "
             "no callbacks, no master key, log level WARNING)",
}


def table(result: dict[str, Any]) -> str:
    labels = list(result["sides"])
    width = max(12, *(len(label) for label in labels))
    kinds = {side.get("kind", "gateway") for side in result["sides"].values()}
    lines = ["Production profile (gunicorn + gevent, Redis, metrics on), best of "
             f"{result['rounds']} rounds",
             *(f"  {note}" for name, note in KIND_NOTES.items() if name in kinds),
             f"{'figure':52}" + "".join(f"{label:>{width + 2}}" for label in labels)]
    for cell, key, title in HEADLINE:
        row = f"{title:52}"
        for label in labels:
            value = result["sides"][label]["best"].get(f"{cell}.{key}")
            row += f"{'-' if value is None else value:>{width + 2}}"
        lines.append(row)
    first = result["sides"][labels[0]]["best"]
    for label in labels[1:]:
        ours = result["sides"][label]["best"]
        ratios = [multiple(title, ours[key] / first[key]) for key, title in MULTIPLES
                  if ours.get(key) is not None and first.get(key)]
        lines.append(f"{label} as a multiple of {labels[0]}: " + ", ".join(ratios))
    for label in labels:
        side = result["sides"][label]
        problems = {k: v for k, v in side.get("log_problems", {}).items() if v}
        kinds_text = f" {side['error_kinds']}" if side.get("error_kinds") else ""
        lines.append(f"{label}: errors {side['errors']}{kinds_text}, "
                     f"leaked leases {side['leaked_leases']}, log lines of note {problems or 0}, "
                     f"worker RSS MB {side['rounds'][-1]['gateway']['rss_mb']}")
        lines += [f"  e.g. {sample}" for sample in side.get("error_samples", [])]
    return "\n".join(lines)


async def in_flight(port: int, workers: int) -> int:
    worst = 0
    raw = build_request("GET", "127.0.0.1", port, "/api/health")
    for _ in range(max(4, workers * 4)):
        reply = await fetch("127.0.0.1", port, raw)
        for model in json.loads(reply.body).get("models", {}).values():
            for provider in model.get("providers", []):
                worst = max(worst, int(provider.get("in_flight", 0)))
    return worst


async def run(args: argparse.Namespace, meta: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="bench-prod-"))
    sides = [parse_side(spec, scratch) for spec in (args.compare or ["."])]
    if len({s.label for s in sides}) != len(sides):
        for n, side in enumerate(sides):
            side.label = f"{n}:{side.label}"
    standin, upstream_port = procs.start_standin(args.tokens)
    redis, redis_port = start_redis(scratch)
    result: dict[str, Any] = {"meta": meta, "rounds": args.rounds, "sides": {}}
    try:
        bench = Production(args, upstream_port, redis_port, out_dir)
        await bench.behave(token_delay=0.0, first_delay=0.0)
        probe = build_request("POST", "127.0.0.1", upstream_port, "/v1/chat/completions",
                              json.dumps({"model": procs.MODEL, "stream": True, "messages": [
                                  {"role": "user", "content": "x"}]}).encode())
        bench.frames = (await fetch("127.0.0.1", upstream_port, probe)).body.count(b"data:") - 1
        result["frames"] = bench.frames
        config = procs.write_models_config(scratch, upstream_port)
        for n, side in enumerate(sides):
            bench.start(side, config, n)
        for side in sides:
            plain, streamed = bench.targets(side.port)
            for target in (plain, streamed):
                await closed_loop(target, 4, 60.0, args.warmup, args.timeout)
        for number in range(1, args.rounds + 1):
            await bench.round(sides, number)
        for n, side in enumerate(sides):
            assert side.gateway is not None
            entry: dict[str, Any] = {
                "kind": kind(side), "tree": str(side.tree), "env": side.env,
                "best": best(side.rounds), "errors": errors_of(side.rounds),
                "rounds": side.rounds,
                # LiteLLM has no lease to leak (nor /api/health); the floor answers with none
                "leaked_leases": 0 if kind(side) == LITELLM
                else await in_flight(side.port, args.workers)}
            entry["error_kinds"], entry["error_samples"] = error_kinds(side.rounds)
            if args.profile:
                entry["profiles"] = await bench.profile(side, n)
            side.gateway.stop()
            text = side.gateway.output()
            entry["log_problems"] = procs.count_log_problems(text)
            if kind(side) == LITELLM:  # uvicorn's and LiteLLM's "ERROR:" lines
                entry["log_problems"]["error"] += text.count("ERROR:")
            entry["log_file"] = str(side.gateway.log_path)
            result["sides"][side.label] = entry
    finally:
        for side in sides:
            if side.gateway is not None:
                side.gateway.stop()
            drop_side(side)
        redis.stop()
        standin.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    result["errors"] = sum(s["errors"] for s in result["sides"].values())
    result["leaked_leases"] = sum(s["leaked_leases"] for s in result["sides"].values())
    return result
