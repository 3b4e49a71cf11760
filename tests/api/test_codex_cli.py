"""Acceptance: OpenAI's Codex CLI (``codex exec``) answers through the gateway on every
provider type, including a real tool round trip: the stand-in asks Codex's shell tool
(``exec_command``) to write a file, Codex runs it and sends the output back as a
``function_call_output``, and the model's final answer comes through.

Codex is installed by npm into ``.cache/npm`` (gitignored) when missing; a failed install
fails the test (it needs the npm registry once). Codex runs with a private ``CODEX_HOME`` and
``HOME``, a model provider whose ``base_url`` is the gateway (``wire_api = "responses"``),
update checks, analytics and plugins off, and every proxy variable pointing at a closed
loopback port (``NO_PROXY`` only for 127.0.0.1), so nothing it does can reach another host.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from standin import StandIn
from tests.support.procs import Gateway, free_port, write_config

ROOT = Path(__file__).resolve().parents[2]
NPM_DIR = ROOT / ".cache" / "npm"
CODEX_VERSION = "0.171.0"
CODEX = NPM_DIR / "node_modules" / ".bin" / "codex"
KINDS = ("openai", "vllm", "ollama", "anthropic")
MODELS = (*(f"m-{k}" for k in KINDS), "m-native")
KEY = "codex-gateway-key-123456"


def installed_version() -> str:
    manifest = NPM_DIR / "node_modules" / "@openai" / "codex" / "package.json"
    if not CODEX.exists() or not manifest.exists():
        return ""
    return str(json.loads(manifest.read_text()).get("version", ""))


@pytest.fixture(scope="module")
def codex() -> Path:
    if installed_version() != CODEX_VERSION:
        NPM_DIR.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["npm", "install", "--prefix", str(NPM_DIR), "--no-audit", "--no-fund",
             f"@openai/codex@{CODEX_VERSION}"], capture_output=True, text=True, timeout=600,
            check=False)
        if done.returncode != 0 or installed_version() != CODEX_VERSION:
            pytest.fail(f"could not install @openai/codex@{CODEX_VERSION}:\n{done.stderr}")
    return CODEX


@pytest.fixture(scope="module")
def gateway(upstream: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    models = {f"m-{k}": [{"id": f"p-{k}", "api_host": upstream.url, "api_type": k,
                          "model_path": f"up-{k}"}] for k in KINDS}
    models["m-native"] = [{"id": "p-native", "api_host": upstream.url, "api_type": "vllm",
                           "model_path": "up-native", "responses": "native"}]
    server = Gateway(write_config(tmp_path_factory.mktemp("codex"), models),
                     server_type="gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                     LLM_ROUTER_SERVER_WORKERS_COUNT="2", LLM_ROUTER_API_KEYS=KEY,
                     LLM_ROUTER_COOLDOWN="0")
    yield server
    server.stop()
    assert "Traceback" not in server.output()


def codex_env(home: Path, gateway: Gateway) -> dict[str, str]:
    (home / "codex").mkdir(parents=True)
    (home / "codex" / "config.toml").write_text(f"""
model_provider = "gateway"
check_for_update_on_startup = false
approval_policy = "never"
sandbox_mode = "danger-full-access"

[model_providers.gateway]
name = "llm-router"
base_url = "{gateway.url}/v1"
wire_api = "responses"
env_key = "GATEWAY_API_KEY"

[analytics]
enabled = false

[features]
plugins = false
""")
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: any outside call fails
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "CODEX_")) and "proxy" not in k.lower()}
    env.update({"HOME": str(home), "CODEX_HOME": str(home / "codex"),
                "GATEWAY_API_KEY": KEY, "HTTPS_PROXY": closed, "HTTP_PROXY": closed,
                "ALL_PROXY": closed, "https_proxy": closed, "http_proxy": closed,
                "all_proxy": closed, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
    return env


@pytest.mark.parametrize("model", MODELS)
def test_codex_exec_with_a_shell_tool_round_trip(codex: Path, gateway: Gateway,
                                                 upstream: StandIn, tmp_path: Path,
                                                 model: str) -> None:
    upstream.reset()
    upstream.set_behaviour(tool_args=json.dumps({"cmd": "echo $((6*7))-proof | tee proof.txt"}))
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [str(codex), "exec", "--skip-git-repo-check", "-m", model, "write the proof file"],
        cwd=work, env=codex_env(tmp_path / "home", gateway), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=180, check=False)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert (work / "proof.txt").read_text().strip() == "42-proof", log  # Codex ran the tool
    assert "tok0 tok1 tok2 tok3 tok4" in done.stdout, log  # the final answer came through
    bodies = [r["json"] for r in upstream.requests]
    assert len(bodies) >= 2 and all(b["model"] == model.replace("m-", "up-") for b in bodies)
    # the next turn carried the tool's output back (the command itself says "$((6*7))")
    assert "42-proof" in json.dumps(bodies[-1])
    assert f'route=/v1/responses model={model}' in gateway.output()
