"""Start real processes for tests: the gateway under any server type, and a private Redis."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import requests

from standin import StandIn

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
#: What each worker logs once its app is built (``web.app.create_app``).
READY_LINE = re.compile(r"llm-router ready in pid (\d+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def write_config(directory: Path, models: Mapping[str, list[dict[str, Any]]],
                 name: str = "models-config.json") -> Path:
    """A models-config.json with one group holding ``models`` (public name -> providers)."""
    config = {"test_models": {m: {"providers": p} for m, p in models.items()},
              "active_models": {"test_models": list(models)}}
    path = directory / name
    path.write_text(json.dumps(config))
    return path


class Process:
    """A child process whose output goes to a file, stopped on ``stop()``."""

    def __init__(self, args: list[str], env: Mapping[str, str], name: str) -> None:
        self.log_path = Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log")[1])
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(args, env=dict(env), stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=ROOT,
                                     start_new_session=True)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        self._log.close()
        return int(self.proc.returncode)


class Gateway(Process):
    """``python -m llm_router_api.rest_api`` (or ``command``, such as ``llm-router serve``) with
    the given settings, ready when /ping answers."""

    def __init__(self, config: Path, server_type: str = "flask", prefix: str = "/api",
                 command: list[str] | None = None, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.prefix = prefix
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_ROUTER_")}
        full_env.update({
            "LLM_ROUTER_MODELS_CONFIG": str(config),
            "LLM_ROUTER_SERVER_TYPE": server_type,
            "LLM_ROUTER_SERVER_HOST": "127.0.0.1",
            "LLM_ROUTER_SERVER_PORT": str(self.port),
            "LLM_ROUTER_EP_PREFIX": prefix,
            "LLM_ROUTER_MINIMUM": env.pop("LLM_ROUTER_MINIMUM", "1"),
            "PYTHONUNBUFFERED": "1",
        })
        full_env.update(env)
        # Under gunicorn, /ping answers as soon as ONE worker is up; the others may still be
        # starting (each builds its app after fork). Tests count on every worker, so readiness
        # also waits for each worker's "ready in pid" line (when INFO lines are logged).
        self.workers = 0
        if server_type == "gunicorn" and full_env.get("LLM_ROUTER_LOG_LEVEL", "INFO") in (
                "INFO", "DEBUG"):
            self.workers = int(full_env.get("LLM_ROUTER_SERVER_WORKERS_COUNT", "2"))
        super().__init__(command or [sys.executable, "-m", "llm_router_api.rest_api"],
                         full_env, f"gateway-{server_type}")
        try:
            wait_for(self._ready, START_TIMEOUT, f"the {server_type} gateway to start")
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"gateway did not start:\n{self.output()}") from None

    def _ready(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"gateway exited:\n{self.output()}")
        if len(self.ready_pids()) < self.workers:
            return False
        try:
            return requests.get(f"{self.url}{self.prefix}/ping", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def ready_pids(self) -> set[int]:
        """Pids of the workers (or the one process) that logged they are ready to serve."""
        return {int(pid) for pid in READY_LINE.findall(self.output())}


class RedisServer(Process):
    """A private ``redis-server`` on a free port that keeps nothing on disk."""

    def __init__(self, port: int | None = None, *extra: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (.ci/run installs it)")
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="redis-")
        super().__init__([binary, "--port", str(self.port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--dir", self.dir,
                          "--enable-debug-command", "local", *extra],
                         os.environ, "redis")
        wait_for(self._ready, START_TIMEOUT, "redis-server to start")

    def _ready(self) -> bool:
        return pongs(self.port)


def pongs(port: int) -> bool:
    """Whether a Redis (or Sentinel) on ``port`` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisSentinel(Process):
    """A private ``redis-sentinel`` on a free port watching ``master`` at ``primary_port``, with
    a short ``down-after`` so a killed primary is failed over in seconds."""

    def __init__(self, primary_port: int, master: str = "mymaster",
                 down_after_ms: int = 1000) -> None:
        binary = shutil.which("redis-sentinel")
        if binary is None:
            raise RuntimeError("redis-sentinel is not installed (run-tests.sh installs it)")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="sentinel-")
        conf = Path(self.dir) / "sentinel.conf"  # Sentinel rewrites it: a file of its own
        conf.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
                        f"sentinel monitor {master} 127.0.0.1 {primary_port} 1\n"
                        f"sentinel down-after-milliseconds {master} {down_after_ms}\n"
                        f"sentinel failover-timeout {master} 10000\n")
        super().__init__([binary, str(conf)], os.environ, "sentinel")
        wait_for(lambda: pongs(self.port), START_TIMEOUT, "redis-sentinel to start")


@contextlib.contextmanager
def running_standins(count: int, name: str) -> Iterator[list[StandIn]]:
    """``count`` stand-in upstreams named ``<name>0``, ``<name>1``, ... for the block."""
    servers = [StandIn(name=f"{name}{i}") for i in range(count)]
    for server in servers:
        server.start()
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()
