"""The real Claude Code CLI against the gateway (SPEC §10): ``claude -p`` answers through it on
every provider type, with one tool round trip (the model asks for ``Bash``, Claude Code runs it
and sends the result back, the model answers with text).

Claude Code is installed by the test when missing, with npm, into the gitignored
``.cache/agents/claude-code-<version>`` (``npm install`` needs the npm registry the first time;
an install that fails FAILS the test). Versions: 2.1.197 (the newest whose package accepts
node 20) and 2.1.332 (the newest at the time of writing; its package asks for node 22 but ships
a native binary, which runs here). Claude Code runs with a private HOME and config directory,
``ANTHROPIC_BASE_URL`` = the gateway, a dummy key, non-essential traffic, telemetry and the
auto-updater off, and every proxy variable pointing at a local trap that counts connections:
nothing may reach another host (the trap must see none).

Production mode: gunicorn with gevent workers and Redis-shared state.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from standin import StandIn
from tests.support.procs import ROOT, Gateway, RedisServer, write_config

VERSIONS = ("2.1.197", "2.1.332")
PROVIDERS = ("openai", "vllm", "ollama", "anthropic")
CACHE = Path(os.environ.get("LLM_ROUTER_TEST_AGENTS_CACHE", ROOT / ".cache" / "agents"))
INSTALL_TIMEOUT = 600
RUN_TIMEOUT = 180
MARKER = "CC-ROUNDTRIP-OK"
COMMAND = f"echo {MARKER} | tee marker.txt"


def claude_binary(version: str) -> Path:
    """The ``claude`` executable of ``version``, installed into the cache when missing. The
    package's postinstall (which only copies the native binary over a stub) need not run:
    the platform package's binary is used directly."""
    prefix = CACHE / f"claude-code-{version}"
    found = glob.glob(str(prefix / "node_modules/@anthropic-ai/claude-code-*/claude"))
    if not found:
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed to install Claude Code"
        prefix.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix),
             f"@anthropic-ai/claude-code@{version}"],
            capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)
        assert done.returncode == 0, f"npm install failed:\n{done.stdout}\n{done.stderr}"
        found = glob.glob(str(prefix / "node_modules/@anthropic-ai/claude-code-*/claude"))
    assert found, f"no native claude binary for this platform under {prefix}"
    return Path(found[0])


class Trap:
    """A local TCP listener every proxy variable points at: counts connection attempts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.hits = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def gateway(upstream: StandIn, redis_server: RedisServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    models = {f"m-{kind}": [{"id": f"p-{kind}", "api_host": upstream.url, "api_type": kind,
                             "model_path": f"up-{kind}", "max_output_tokens": 4096,
                             "tool_calling": True}] for kind in PROVIDERS}
    config = write_config(tmp_path_factory.mktemp("claude"), models)
    server = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                     LLM_ROUTER_SERVER_WORKERS_COUNT="2", LLM_ROUTER_REDIS_HOST="127.0.0.1",
                     LLM_ROUTER_REDIS_PORT=str(redis_server.port))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def trap() -> Iterator[Trap]:
    server = Trap()
    yield server
    server.close()


def run_claude(binary: Path, gateway: Gateway, model: str, home: Path,
               trap: Trap) -> dict[str, Any]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"), "XDG_CONFIG_HOME": str(home / ".config"),
        "ANTHROPIC_BASE_URL": gateway.url, "ANTHROPIC_API_KEY": "dummy-key",
        "ANTHROPIC_MODEL": model, "ANTHROPIC_SMALL_FAST_MODEL": model,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1",
        "HTTPS_PROXY": trap.url, "HTTP_PROXY": trap.url, "https_proxy": trap.url,
        "http_proxy": trap.url, "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    done = subprocess.run(
        [str(binary), "-p", "write the marker file", "--allowedTools", "Bash",
         "--output-format", "json"],
        env=env, cwd=home, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    assert done.returncode == 0, f"claude failed:\n{done.stdout}\n{done.stderr}"
    return dict(json.loads(done.stdout))


def _tool_result_sent(request: dict[str, Any]) -> bool:
    """Whether an upstream request carries the Bash output back (in its own format)."""
    return any(MARKER in json.dumps(m) and (m.get("role") == "tool" or "tool_result" in
                                            json.dumps(m))
               for m in request["json"].get("messages") or [])


@pytest.mark.parametrize("kind", PROVIDERS)
@pytest.mark.parametrize("version", VERSIONS)
def test_claude_code_answers_through_the_gateway_with_a_tool_round_trip(
        gateway: Gateway, fresh_upstream: StandIn, trap: Trap, tmp_path: Path,
        version: str, kind: str) -> None:
    binary = claude_binary(version)
    fresh_upstream.set_behaviour(tool_name="Bash", tool_args=json.dumps(
        {"command": COMMAND, "description": "write the marker"}))
    before = trap.hits
    result = run_claude(binary, gateway, f"m-{kind}", tmp_path, trap)
    assert result["is_error"] is False and result["subtype"] == "success", result
    assert result["result"].strip() == "tok0 tok1 tok2 tok3 tok4"
    assert result["num_turns"] >= 2  # the tool turn, then the answer
    assert (tmp_path / "marker.txt").read_text().strip() == MARKER  # Claude Code ran Bash
    path = "/api/chat" if kind == "ollama" else (
        "/v1/messages" if kind == "anthropic" else "/v1/chat/completions")
    calls = [r for r in fresh_upstream.requests if r["path"] == path]
    assert any(_tool_result_sent(r) for r in calls), "the tool result never reached the model"
    first = calls[0]["json"]
    if kind == "anthropic":  # forwarded as Claude Code sent it, beta header included
        assert "claude-code" in calls[0]["headers"].get("anthropic-beta", "")
        assert first["max_tokens"] <= 4096
    else:  # one system message, first; the rest user / assistant / tool turns
        roles = [m["role"] for m in first["messages"]]
        assert roles[0] == "system" and "system" not in roles[1:]
    assert trap.hits == before, "Claude Code tried to reach another host"
    assert " status=4" not in gateway.output() and " status=5" not in gateway.output()
