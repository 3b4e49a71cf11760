"""The processes under test: the stand-in upstream and the gateway, and their memory.

Each runs as its own process (its own GIL), in its own session so it can be stopped with its
children. Worker memory is read from ``/proc/<pid>/status`` (``VmRSS``); gunicorn's workers are
found as the children of its master via ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0
MODEL = "bench-model"

#: Server modes: name -> (LLM_ROUTER_SERVER_TYPE, LLM_ROUTER_SERVER_WORKER_CLASS).
MODES: dict[str, tuple[str, str]] = {
    "gevent": ("gunicorn", "gevent"),
    "gthread": ("gunicorn", "gthread"),
    "waitress": ("waitress", ""),
    "flask": ("flask", ""),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (inherited by the children we start)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Process:
    """A child process logging to a temp file, stopped (with its group) by ``stop()``."""

    def __init__(self, args: list[str], env: dict[str, str], name: str,
                 cwd: Path | None = None) -> None:
        fd, path = tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")
        os.close(fd)
        self.log_path = Path(path)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=cwd or ROOT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, url: str, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{what} exited:\n{self.output()[-4000:]}")
            try:
                with urllib.request.urlopen(url, timeout=1) as reply:  # noqa: S310 - loopback
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{what} did not start in {START_TIMEOUT:.0f} s:\n"
                           f"{self.output()[-4000:]}")

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        self._log.close()


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_ROUTER_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_standin(tokens: int) -> tuple[Process, int]:
    """``python -m standin`` on a free port: the upstream, in its own process."""
    port = free_port()
    proc = Process([sys.executable, "-m", "standin", "--port", str(port), "--name", "bench",
                    "--tokens", str(tokens)], _clean_env(), "standin")
    proc.wait_ready(f"http://127.0.0.1:{port}/v1/models", "the stand-in")
    return proc, port


def write_models_config(directory: Path, upstream_port: int) -> Path:
    config = {
        "bench_models": {MODEL: {"providers": [{
            "id": "bench-standin", "api_host": f"http://127.0.0.1:{upstream_port}",
            "api_type": "openai"}]}},
        "active_models": {"bench_models": [MODEL]},
    }
    path = directory / "models-config.json"
    path.write_text(json.dumps(config))
    return path


def start_gateway(mode: str, config: Path, workers: int, threads: int,
                  extra_env: dict[str, str] | None = None,
                  cwd: Path | None = None) -> tuple[Process, int]:
    """``python -m llm_router_api.rest_api`` in ``mode``, ready when ``/api/ping`` answers."""
    server_type, worker_class = MODES[mode]
    port = free_port()
    env = _clean_env()
    env.update({
        "LLM_ROUTER_MODELS_CONFIG": str(config),
        "LLM_ROUTER_SERVER_TYPE": server_type,
        "LLM_ROUTER_SERVER_WORKER_CLASS": worker_class,
        "LLM_ROUTER_SERVER_HOST": "127.0.0.1",
        "LLM_ROUTER_SERVER_PORT": str(port),
        "LLM_ROUTER_SERVER_WORKERS_COUNT": str(workers),
        "LLM_ROUTER_SERVER_THREADS_COUNT": str(threads),
        "LLM_ROUTER_MINIMUM": "1",
        "LLM_ROUTER_LOG_LEVEL": "WARNING",
        "LLM_ROUTER_EP_PREFIX": "/api",
    })
    env.update(extra_env or {})
    proc = Process([sys.executable, "-m", "llm_router_api.rest_api"], env, f"gateway-{mode}",
                   cwd=cwd)
    proc.wait_ready(f"http://127.0.0.1:{port}/api/ping", f"the {mode} gateway")
    return proc, port


# -- memory ---------------------------------------------------------------------------------------
def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from ``/proc/*/stat``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces, so split after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return sorted(found)


def worker_pids(proc: Process, mode: str) -> list[int]:
    """gunicorn: the workers (children of the master); otherwise the server process itself."""
    if MODES[mode][0] == "gunicorn":
        return children(proc.pid)
    return [proc.pid]


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def rss_of(pids: list[int]) -> list[float | None]:
    return [rss_mb(pid) for pid in pids]


def count_log_problems(text: str) -> dict[str, int]:
    """Lines in the gateway's log that point at trouble (warnings are on in the benchmark)."""
    needles = {"traceback": "Traceback", "error": " ERROR ", "worker_timeout": "WORKER TIMEOUT"}
    return {key: text.count(needle) for key, needle in needles.items()}
