"""The ``llm-router`` command line, run as an operator runs it: the installed console script,
as a subprocess. ``config discover`` probes stand-ins on free local ports (given with
``--ports``); what it prints is validated by ``config validate`` and then served by a gateway
started with ``llm-router serve``, which also takes a key made by ``keys new``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from llm_router_api.auth.keys import ApiKey, digest
from llm_router_api.cli.known import KNOWN
from standin import StandIn
from tests.support.procs import ROOT, Gateway, free_port, running_standins

CLI = str(Path(sys.executable).parent / "llm-router")
RUN_TIMEOUT = 60


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LLM_ROUTER_")}
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          cwd=ROOT, env={**clean, **(env or {})}, check=False)


# -- help and usage -----------------------------------------------------------------------------
@pytest.mark.parametrize("command", [(), ("serve",), ("config",), ("config", "validate"),
                                     ("config", "discover"), ("keys",), ("keys", "new")])
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    done = run(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Usage: llm-router {' '.join(command)}".rstrip())


@pytest.mark.parametrize("args", [("nope",), ("config", "validate"), ("keys", "new", "--rpm", "0"),
                                  ("config", "discover", "--ports", "ollama=x"),
                                  ("config", "discover", "--ports", "mystery=1234"),
                                  ("keys", "new", "--id", "")])
def test_usage_mistakes_exit_2(args: tuple[str, ...]) -> None:
    done = run(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Usage: llm-router" in done.stderr and done.stdout == ""


# -- config validate ----------------------------------------------------------------------------
def test_a_valid_config_exits_0_with_a_summary() -> None:
    path = ROOT / "resources/configs/models-config.json"
    done = run("config", "validate", str(path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{path}: valid: 3 models, ")
    assert any(line.startswith("  qwen2.5-7b-instruct: 1 provider (vllm)") for line in lines)


def bad_configs(tmp: Path, upstream: str) -> dict[str, Any]:
    provider = {"id": "p", "api_host": upstream, "api_type": "openai"}
    return {
        "unknown fallback": {"g": {"a": {"providers": [provider], "fallback_models": ["b"]}},
                             "active_models": {"g": ["a"]}},
        "missing host": {"g": {"a": {"providers": [{"id": "p", "api_type": "openai"}]}},
                         "active_models": {"g": ["a"]}},
        "not json": "{oops",
        "unset secret": {"g": {"a": {"providers": [{**provider,
                                                    "api_token": "env:NOT_SET_ANYWHERE"}]}},
                         "active_models": {"g": ["a"]}},
    }


@pytest.mark.parametrize("case", ["unknown fallback", "missing host", "not json",
                                  "unset secret", "no such file"])
def test_an_invalid_config_exits_1_with_the_startup_line(tmp_path: Path, case: str) -> None:
    path = tmp_path / "models-config.json"
    if case != "no such file":
        config = bad_configs(tmp_path, "http://127.0.0.1:9")[case]
        path.write_text(config if isinstance(config, str) else json.dumps(config))
    done = run("config", "validate", str(path))
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"{path}: ")
    # the very line startup prints, by both ways of starting the service
    env = {"LLM_ROUTER_MODELS_CONFIG": str(path), "LLM_ROUTER_MINIMUM": "1"}
    served = run("serve", env=env)
    assert served.returncode == 1
    assert served.stderr.strip() == f"llm-router: cannot start: {line}"
    module = subprocess.run([sys.executable, "-m", "llm_router_api.rest_api"], cwd=ROOT,
                            capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
                            env={**os.environ, **env})
    assert module.stderr.strip() == f"llm-router: cannot start: {line}"


# -- config discover ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def standins() -> Iterator[list[StandIn]]:
    with running_standins(3, "found") as servers:
        yield servers


@pytest.fixture(scope="module")
def discovered(standins: list[StandIn]) -> subprocess.CompletedProcess[str]:
    ollama, vllm, sglang = standins
    closed = free_port()
    return run("config", "discover", "--timeout", "2",
               "--ports", f"ollama={ollama.port},vllm={vllm.port}",
               "--ports", f"sglang={sglang.port},lmstudio={closed}")


def test_discover_prints_a_config_of_what_answers(discovered: subprocess.CompletedProcess[str],
                                                  standins: list[StandIn]) -> None:
    assert discovered.returncode == 0, discovered.stderr
    ollama, vllm, sglang = standins
    config = json.loads(discovered.stdout)
    group = config["discovered_models"]
    assert config["active_models"] == {"discovered_models": ["standin:latest", "standin"]}
    assert group["standin:latest"]["providers"] == [
        {"id": f"ollama-{ollama.port}-standin:latest", "api_host": ollama.url,
         "api_type": "ollama"}]
    # the same model on two servers: one model, one provider each
    assert group["standin"]["providers"] == [
        {"id": f"vllm-{vllm.port}-standin", "api_host": vllm.url, "api_type": "vllm"},
        {"id": f"sglang-{sglang.port}-standin", "api_host": sglang.url, "api_type": "openai"}]
    assert "lmstudio on http://127.0.0.1:" in discovered.stderr
    assert "nothing listening" in discovered.stderr


def test_discovered_config_is_valid(discovered: subprocess.CompletedProcess[str],
                                    tmp_path: Path) -> None:
    path = tmp_path / "discovered.json"
    path.write_text(discovered.stdout)
    done = run("config", "validate", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"{path}: valid: 2 models, 3 providers"


@pytest.fixture(scope="module")
def new_key() -> tuple[str, dict[str, Any]]:
    done = run("keys", "new", "--id", "ops", "--rpm", "100", "--concurrency", "4")
    assert done.returncode == 0, done.stderr
    key, entry = done.stdout.splitlines()
    return key, json.loads(entry)


@pytest.fixture(scope="module")
def gateway(discovered: subprocess.CompletedProcess[str], new_key: tuple[str, dict[str, Any]],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    directory = tmp_path_factory.mktemp("discovered")
    config = directory / "models-config.json"
    config.write_text(discovered.stdout)
    keys = directory / "keys.json"
    keys.write_text(json.dumps({"keys": [new_key[1]]}))
    # production mode: gunicorn with a gevent worker (one, so the rotation is deterministic)
    server = Gateway(config, server_type="gunicorn", command=[CLI, "serve"],
                     LLM_ROUTER_SERVER_WORKER_CLASS="gevent", LLM_ROUTER_SERVER_WORKERS_COUNT="1",
                     LLM_ROUTER_API_KEYS_FILE=str(keys), LLM_ROUTER_SHUTDOWN_GRACE="2")
    yield server
    server.stop()
    # the command line imports nothing that gevent must patch first
    assert "MonkeyPatchWarning" not in server.output() and "Traceback" not in server.output()


def chat(gateway: Gateway, model: str, key: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(gateway.url + "/v1/chat/completions", headers=headers, timeout=20,
                         json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def test_llm_router_serve_serves_the_discovered_models(
        gateway: Gateway, standins: list[StandIn], new_key: tuple[str, dict[str, Any]]) -> None:
    for server in standins:
        server.reset()
    for model in ("standin:latest", "standin", "standin"):
        reply = chat(gateway, model, new_key[0])
        assert reply.status_code == 200, reply.text
    assert [s.count for s in standins] == [1, 1, 1]  # balanced across both "standin" servers
    assert standins[0].requests[-1]["path"] == "/api/chat"  # the Ollama one, natively


def test_discover_with_nothing_to_find_exits_1() -> None:
    done = run("config", "discover", "--timeout", "1",
               "--ports", ",".join(f"{s.name}={free_port()}" for s in KNOWN))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("nothing listening") == len(KNOWN)
    assert "no models found on 127.0.0.1" in done.stderr


# -- keys new -----------------------------------------------------------------------------------
def test_keys_new_prints_the_key_once_and_an_entry_with_only_its_digest(
        new_key: tuple[str, dict[str, Any]]) -> None:
    key, entry = new_key
    assert entry == {"id": "ops", "sha256": digest(key), "requests_per_minute": 100,
                     "max_concurrent": 4}
    assert key not in json.dumps(entry)
    assert ApiKey.model_validate(entry).sha256 == digest(key)
    other, _ = run("keys", "new").stdout.splitlines()
    assert other != key and len(key) >= 40


def test_the_new_key_opens_the_gateway_and_nothing_else_does(
        gateway: Gateway, new_key: tuple[str, dict[str, Any]]) -> None:
    assert chat(gateway, "standin", new_key[0]).status_code == 200
    assert chat(gateway, "standin", None).status_code == 401
    assert chat(gateway, "standin", new_key[0] + "x").status_code == 401
