"""Hot reload end to end (SPEC §12): real gunicorn masters with 2 workers, two instances sharing
a real Redis, a gunicorn master without Redis watching its file, and single-process servers.

Every trigger (admin call, SIGHUP, file change) must reach every worker of every instance on
the Redis prefix; an invalid configuration changes nothing and says why; a stream crossing a
reload finishes on its old configuration; kept providers keep their state; a removed
provider's lease is released. Which worker runs what is read from each worker's own log line
(``configuration reloaded (...) in pid N: sha256 S``) and from ``GET P/admin/config``.

A gateway answers ``/ping`` as soon as *one* gunicorn worker is up; every worker imports and
builds the app itself (no preload), so on a loaded machine another may still be booting (or
not even forked) then. Such a worker would read the files after a test changed them and start
on the new configuration without any "configuration reloaded" line. So the fixtures wait until
every worker logged ``llm-router ready in pid N`` before a test changes anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from llm_router_api.base.lb.redis_store import RedisStore
from standin import StandIn
from tests.support.procs import ROOT, Gateway, RedisServer, running_standins, wait_for

ADMIN_TOKEN = "admin-secret-for-reload"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
KEY1, KEY2 = "sk-reload-test-key-1", "sk-reload-test-key-2"
#: Every worker switches within 2 s; tests wait up to 3x that.
SWITCH_BOUND = 6.0
#: How long every worker of a master may take to boot (bounded, generous: a loaded machine).
BOOT_BOUND = 60.0
READY = re.compile(r"llm-router ready in pid (?P<pid>\d+): sha256 (?P<sha>[0-9a-f]{64})")
RELOADED = re.compile(r"configuration reloaded \((?P<origin>[^)]*)\) in pid (?P<pid>\d+): "
                      r"sha256 (?P<sha>[0-9a-f]{64})")
REFUSED = re.compile(r"configuration reload \((?P<origin>[^)]*)\) refused in pid (?P<pid>\d+)")
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


# -- files ------------------------------------------------------------------------------------
def provider(pid: str, upstream: StandIn, **extra: Any) -> dict[str, Any]:
    return {"id": pid, "api_host": upstream.url, "api_type": "openai", **extra}


def write_models(directory: Path, models: dict[str, list[dict[str, Any]]]) -> str:
    """Write the instance's models-config.json (atomically); returns its sha256."""
    config = {"test_models": {m: {"providers": p} for m, p in models.items()},
              "active_models": {"test_models": list(models)}}
    data = json.dumps(config).encode()
    tmp = directory / "models-config.json.tmp"
    tmp.write_bytes(data)
    tmp.replace(directory / "models-config.json")
    return hashlib.sha256(data).hexdigest()


def write_keys(directory: Path, *keys: str) -> None:
    entries = [{"id": f"k{n}", "key": key} for n, key in enumerate(keys, start=1)]
    (directory / "keys.json").write_text(json.dumps({"keys": entries}))


def instance_dir(root: Path, name: str, with_prompts: bool = False) -> Path:
    directory = root / name
    directory.mkdir()
    if with_prompts:
        shutil.copytree(ROOT / "resources" / "prompts", directory / "prompts")
    return directory


def instance_env(directory: Path, **extra: str) -> dict[str, str]:
    env = {"LLM_ROUTER_ADMIN_TOKEN": ADMIN_TOKEN, "LLM_ROUTER_USE_PROMETHEUS": "1",
           "LLM_ROUTER_COOLDOWN": "30", "LLM_ROUTER_EXTERNAL_TIMEOUT": "10", **extra}
    if (directory / "prompts").is_dir():
        env.update(LLM_ROUTER_MINIMUM="0", LLM_ROUTER_PROMPTS_DIR=str(directory / "prompts"),
                   LLM_ROUTER_DEFAULT_EP_LANGUAGE="en")
    if (directory / "keys.json").exists():
        env["LLM_ROUTER_API_KEYS_FILE"] = str(directory / "keys.json")
    return env


def start(directory: Path, server_type: str, **env: str) -> Gateway:
    return Gateway(directory / "models-config.json", server_type=server_type,
                   **instance_env(directory, **env))


# -- what the workers run ---------------------------------------------------------------------
def workers(gateway: Gateway) -> set[int]:
    """The gunicorn master's worker pids (the gateway process is the master)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == gateway.proc.pid:
            found.add(int(stat.parent.name))
    return found


def ready_workers(gateway: Gateway) -> dict[int, str]:
    """pid -> sha256 of every process of the gateway that logged its "ready" line."""
    return {int(m["pid"]): m["sha"] for m in READY.finditer(gateway.output())}


def wait_workers_ready(gateway: Gateway, count: int) -> set[int]:
    """The master's ``count`` workers, once each has built its app and follows reloads."""
    def ready() -> bool:
        pids = workers(gateway)
        return len(pids) == count and pids <= set(ready_workers(gateway))

    wait_for(ready, BOOT_BOUND, f"the {count} workers of {gateway.url} to be ready")
    return workers(gateway)


def reloads(gateway: Gateway) -> list[tuple[int, str, str]]:
    """(pid, origin, sha256) of every reload the gateway's processes logged, in order."""
    return [(int(m["pid"]), m["origin"], m["sha"]) for m in RELOADED.finditer(gateway.output())]


def refusals(gateway: Gateway) -> Counter[int]:
    return Counter(int(m["pid"]) for m in REFUSED.finditer(gateway.output()))


def wait_switched(gateway: Gateway, pids: set[int], sha: str, before: int) -> None:
    """Every pid logged a reload to ``sha`` after the first ``before`` reload lines."""
    def done() -> bool:
        return pids <= {pid for pid, _, s in reloads(gateway)[before:] if s == sha}

    wait_for(done, SWITCH_BOUND, f"every worker of {gateway.url} to switch to {sha[:12]}")


def configs_seen(gateway: Gateway, rounds: int = 20) -> dict[int, str]:
    """pid -> sha256 as ``GET P/admin/config`` answers (a new connection each time)."""
    seen = {}
    for _ in range(rounds):
        body = requests.get(f"{gateway.url}/api/admin/config", headers=ADMIN, timeout=5).json()
        seen[body["pid"]] = body["sha256"]
    return seen


def metric(gateway: Gateway, name: str) -> dict[str, float]:
    """Samples of one series: label text -> value."""
    text = requests.get(f"{gateway.url}/metrics", timeout=5).text
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line.rpartition(" ")
            found[labels[len(name):]] = float(value)
    return found


def reload_count(gateway: Gateway, result: str) -> float:
    return metric(gateway, "llm_router_config_reloads_total").get(f'{{result="{result}"}}', 0.0)


def model_ids(gateway: Gateway) -> set[str]:
    return {m["id"] for m in requests.get(f"{gateway.url}/v1/models", timeout=5).json()["data"]}


def admin_reload(gateway: Gateway) -> requests.Response:
    return requests.post(f"{gateway.url}/api/admin/reload", headers=ADMIN, timeout=10)


class Stream:
    """A chat stream read in a thread: ``lines`` grow as frames arrive."""

    def __init__(self, gateway: Gateway, headers: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self.error: BaseException | None = None
        self._response = requests.post(f"{gateway.url}/v1/chat/completions", stream=True,
                                       json={**CHAT, "stream": True}, headers=headers,
                                       timeout=30)
        assert self._response.status_code == 200, self._response.text
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self._response.iter_lines():
                if line:
                    self.lines.append(line.decode())
        except BaseException as exc:
            self.error = exc

    def finish(self) -> str:
        self._thread.join(30)
        assert not self._thread.is_alive() and self.error is None
        return "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                       for line in self.lines if line.startswith("data: {"))


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ups() -> Iterator[list[StandIn]]:
    with running_standins(2, "reload-up") as servers:
        yield servers


@pytest.fixture
def fresh(ups: list[StandIn]) -> list[StandIn]:
    for server in ups:
        server.reset()
    return ups


@dataclass
class Pair:
    a: Gateway
    b: Gateway
    a_dir: Path
    b_dir: Path
    prefix: str
    redis_port: int

    def store(self) -> RedisStore:
        return redis_store_on(self.redis_port, self.prefix)

    def write_both(self, models: dict[str, list[dict[str, Any]]]) -> str:
        sha = write_models(self.a_dir, models)
        assert write_models(self.b_dir, models) == sha
        return sha

    def all_workers(self) -> dict[Gateway, set[int]]:
        return {self.a: workers(self.a), self.b: workers(self.b)}


def redis_store_on(port: int, prefix: str) -> RedisStore:
    from llm_router_api.settings import load_settings

    return RedisStore.from_settings(load_settings({}, redis_host="127.0.0.1", redis_port=port,
                                                  redis_prefix=prefix))


@pytest.fixture(scope="module")
def pair(ups: list[StandIn], redis_server: RedisServer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Instance A (gunicorn + gevent, prompts and a keys file) and B (gunicorn + gthread),
    2 workers each, sharing one Redis prefix; each has its own copy of the files."""
    root = tmp_path_factory.mktemp("reload-pair")
    prefix = f"reload{uuid.uuid4().hex[:6]}:"
    a_dir, b_dir = instance_dir(root, "a", with_prompts=True), instance_dir(root, "b")
    for directory in (a_dir, b_dir):
        write_models(directory, {"m": [provider("a", ups[0]), provider("b", ups[1])]})
    write_keys(a_dir, KEY1)
    shared = {"LLM_ROUTER_REDIS_HOST": "127.0.0.1", "LLM_ROUTER_REDIS_PORT": str(redis_server.port),
              "LLM_ROUTER_REDIS_PREFIX": prefix, "LLM_ROUTER_SERVER_WORKERS_COUNT": "2"}
    a = start(a_dir, "gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent", **shared)
    try:
        b = start(b_dir, "gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gthread", **shared)
    except BaseException:
        a.stop()
        raise
    try:
        for gateway in (a, b):
            wait_workers_ready(gateway, 2)
    except BaseException:
        a.stop()
        b.stop()
        raise
    yield Pair(a, b, a_dir, b_dir, prefix, redis_server.port)
    for gateway in (a, b):
        assert gateway.stop() in (0, -15)
        assert "Traceback" not in gateway.output()


def switched_everywhere(pair: Pair, sha: str, before: dict[Gateway, int]) -> None:
    for gateway, pids in pair.all_workers().items():
        assert len(pids) == 2
        wait_switched(gateway, pids, sha, before[gateway])
        assert set(configs_seen(gateway).values()) == {sha}
        health = requests.get(f"{gateway.url}/api/health", timeout=5).json()
        assert health["config"]["sha256"] == sha


def marks(pair: Pair) -> dict[Gateway, int]:
    return {pair.a: len(reloads(pair.a)), pair.b: len(reloads(pair.b))}


# -- two instances sharing Redis --------------------------------------------------------------
def test_admin_reload_switches_every_worker_of_both_instances(pair: Pair,
                                                              fresh: list[StandIn]) -> None:
    """Models, keys and the metrics change on all 4 workers of both instances."""
    before = marks(pair)
    successes = reload_count(pair.a, "success")
    sha = pair.write_both({"m": [provider("a", fresh[0]), provider("b", fresh[1])],
                           "m2": [provider("c", fresh[1])]})
    write_keys(pair.a_dir, KEY1, KEY2)
    reply = admin_reload(pair.a)
    assert reply.status_code == 200, reply.text
    assert reply.json()["sha256"] == sha and reply.json()["models"] == ["m", "m2"]
    switched_everywhere(pair, sha, before)
    for gateway in (pair.a, pair.b):
        for _ in range(6):
            assert model_ids(gateway) == {"m", "m2"}
        tags = requests.get(f"{gateway.url}/api/tags", timeout=5).json()
        assert {t["name"] for t in tags["models"]} == {"m", "m2"}
    for _ in range(4):  # the new key works on every worker of A
        answer = requests.post(f"{pair.a.url}/v1/chat/completions", json={**CHAT, "model": "m2"},
                               headers={"Authorization": f"Bearer {KEY2}"}, timeout=10)
        assert answer.status_code == 200, answer.text
    assert metric(pair.a, "llm_router_config_info") == {f'{{sha256="{sha}"}}': 1.0}
    assert reload_count(pair.a, "success") == successes + 2  # each worker of A once


def startup_error(directory: Path) -> str:
    """What the gateway prints when it cannot start with these files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_ROUTER_")}
    env.update(instance_env(directory),
               LLM_ROUTER_MODELS_CONFIG=str(directory / "models-config.json"))
    done = subprocess.run([sys.executable, "-m", "llm_router_api.rest_api"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("llm-router: cannot start: ")
    return line[len("llm-router: cannot start: "):]


def break_models(directory: Path) -> None:
    config = json.loads((directory / "models-config.json").read_text())
    config["test_models"]["m"]["providers"][0]["colour"] = "blue"  # an unknown key
    (directory / "models-config.json").write_text(json.dumps(config))


def break_keys(directory: Path) -> None:
    (directory / "keys.json").write_text('{"keys": [{"id": "x", "sha256": "not-a-digest"}]}')


def break_prompts(directory: Path) -> None:
    (directory / "prompts" / "builtin" / "system" / "en" / "translate.prompt").unlink()


@pytest.mark.parametrize("breakage", [break_models, break_keys, break_prompts],
                         ids=["models-config", "keys-file", "prompt-library"])
def test_an_invalid_reload_changes_nothing_and_says_why(pair: Pair, fresh: list[StandIn],
                                                        breakage: Any) -> None:
    sha = pair.write_both({"m": [provider("a", fresh[0]), provider("b", fresh[1])]})
    write_keys(pair.a_dir, KEY1)
    before = marks(pair)
    assert admin_reload(pair.a).status_code == 200
    switched_everywhere(pair, sha, before)
    backup = pair.a_dir.parent / "backup"
    shutil.rmtree(backup, ignore_errors=True)
    shutil.copytree(pair.a_dir, backup)
    errors, refused = reload_count(pair.a, "error"), sum(refusals(pair.a).values())
    b_reloads = len(reloads(pair.b))
    try:
        breakage(pair.a_dir)
        expected = startup_error(pair.a_dir)
        reply = admin_reload(pair.a)
        assert reply.status_code == 400
        error = reply.json()["error"]
        assert error["message"] == expected and error["code"] == "invalid_config"
        assert reload_count(pair.a, "error") == errors + 1
        assert sum(refusals(pair.a).values()) == refused + 1  # the log line
        # Nothing changed, anywhere: models, keys, the configuration every worker runs.
        assert set(configs_seen(pair.a).values()) == {sha}
        assert model_ids(pair.a) == {"m"} and model_ids(pair.b) == {"m"}
        assert len(reloads(pair.b)) == b_reloads  # nothing was announced
        chat = requests.post(f"{pair.a.url}/v1/chat/completions", json=CHAT, timeout=10,
                             headers={"Authorization": f"Bearer {KEY1}"})
        assert chat.status_code == 200
        assert ADMIN_TOKEN not in reply.text
    finally:
        shutil.rmtree(pair.a_dir)
        shutil.copytree(backup, pair.a_dir)


def test_a_stream_crossing_a_reload_finishes_and_its_removed_provider_is_released(
        pair: Pair, fresh: list[StandIn]) -> None:
    """The stream runs on provider a; a reload (asked of the other instance) removes a. The
    stream ends intact, its lease is released in Redis, new requests go to b."""
    before = marks(pair)
    sha = pair.write_both({"m": [provider("a", fresh[0])]})
    assert admin_reload(pair.b).status_code == 200
    switched_everywhere(pair, sha, before)
    fresh[0].set_behaviour(tokens=50, token_delay=0.1)
    store = pair.store()
    try:
        stream = Stream(pair.a, headers={"Authorization": f"Bearer {KEY1}"})
        wait_for(lambda: len(stream.lines) >= 2, 10, "the stream to begin")
        assert store.in_flight(["a"]) == {"a": 1}
        before = marks(pair)
        sha = pair.write_both({"m": [provider("b", fresh[1])]})
        assert admin_reload(pair.b).status_code == 200
        switched_everywhere(pair, sha, before)
        assert len(stream.lines) < 50, "the reload must happen while the stream runs"
        assert stream.finish() == "".join(f"tok{i} " for i in range(50))
        assert stream.lines[-1] == "data: [DONE]"
        wait_for(lambda: store.in_flight(["a"]) == {"a": 0}, 5, "a's lease to be released")
        served = fresh[1].count
        chat = requests.post(f"{pair.a.url}/v1/chat/completions", json=CHAT, timeout=10,
                             headers={"Authorization": f"Bearer {KEY1}"})
        assert chat.status_code == 200 and fresh[1].count == served + 1
    finally:
        store.close()


def test_kept_providers_keep_their_state(pair: Pair, fresh: list[StandIn]) -> None:
    """b cools down after failing; a reload that keeps b (changing its weight and adding a
    model) keeps the cool-down and the failure count, on every worker of both instances."""
    before = marks(pair)
    sha = pair.write_both({"m": [provider("a", fresh[0]), provider("b", fresh[1])]})
    assert admin_reload(pair.a).status_code == 200
    switched_everywhere(pair, sha, before)
    fresh[1].set_behaviour(mode="status", status_code=500)
    store = pair.store()
    try:
        def b_failed() -> bool:
            requests.post(f"{pair.b.url}/v1/chat/completions", json=CHAT, timeout=10)
            return "b" in store.cooling(["a", "b"])

        wait_for(b_failed, 10, "provider b to fail once")
        failures = store.get_hash("health:failures")["b"]
        before = marks(pair)
        sha = pair.write_both({"m": [provider("a", fresh[0]), provider("b", fresh[1], weight=3)],
                               "m3": [provider("d", fresh[0])]})
        assert admin_reload(pair.a).status_code == 200
        switched_everywhere(pair, sha, before)
        assert store.cooling(["b"]) == {"b"}
        assert store.get_hash("health:failures")["b"] == failures
        for gateway in (pair.a, pair.b):
            for _ in range(4):
                health = requests.get(f"{gateway.url}/api/health", timeout=5).json()
                states = {p["id"]: p["healthy"] for p in health["models"]["m"]["providers"]}
                assert states == {"a": True, "b": False}
        calls = fresh[1].count
        for _ in range(4):
            assert requests.post(f"{pair.b.url}/v1/chat/completions", json=CHAT,
                                 timeout=10).status_code == 200
        assert fresh[1].count == calls  # still cooling: no request reached b
    finally:
        store.clear_cool_down("b")
        store.delete_hash("health:failures")
        store.close()


def test_sighup_to_a_master_reloads_both_instances_and_keeps_its_workers(
        pair: Pair, fresh: list[StandIn]) -> None:
    """Not gunicorn's default (new workers, streams cut): the same workers switch, and a
    stream crossing the SIGHUP finishes."""
    before = marks(pair)
    sha = pair.write_both({"m": [provider("a", fresh[0])]})
    assert admin_reload(pair.a).status_code == 200
    switched_everywhere(pair, sha, before)
    fresh[0].set_behaviour(tokens=50, token_delay=0.1)
    pids = pair.all_workers()
    stream = Stream(pair.a, headers={"Authorization": f"Bearer {KEY1}"})
    wait_for(lambda: len(stream.lines) >= 2, 10, "the stream to begin")
    before = marks(pair)
    sha = pair.write_both({"m": [provider("a", fresh[0])], "m4": [provider("e", fresh[1])]})
    os.kill(pair.a.proc.pid, signal.SIGHUP)
    switched_everywhere(pair, sha, before)
    assert len(stream.lines) < 50, "the reload must happen while the stream runs"
    assert stream.finish() == "".join(f"tok{i} " for i in range(50))
    assert pair.all_workers() == pids
    assert model_ids(pair.a) == model_ids(pair.b) == {"m", "m4"}
    origins = {origin for _, origin, s in reloads(pair.a)[before[pair.a]:] if s == sha}
    assert origins == {"signal"}


# -- one gunicorn master without Redis, watching its file -------------------------------------
@pytest.fixture(scope="module")
def watched(ups: list[StandIn],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Path]]:
    directory = instance_dir(tmp_path_factory.mktemp("reload-watch"), "w")
    write_models(directory, {"m": [provider("a", ups[0])]})
    # gevent: the master is monkey-patched too, and its watch must still run.
    gateway = start(directory, "gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                    LLM_ROUTER_SERVER_WORKERS_COUNT="2", LLM_ROUTER_CONFIG_WATCH="1")
    try:
        wait_workers_ready(gateway, 2)
    except BaseException:
        gateway.stop()
        raise
    yield gateway, directory
    assert gateway.stop() in (0, -15)
    assert "Traceback" not in gateway.output()


def test_a_changed_file_reloads_every_worker_without_redis(watched: tuple[Gateway, Path],
                                                           fresh: list[StandIn]) -> None:
    gateway, directory = watched
    pids = workers(gateway)
    assert len(pids) == 2
    before = len(reloads(gateway))
    sha = write_models(directory, {"m": [provider("a", fresh[0])], "w2": [provider("b", fresh[1])]})
    wait_switched(gateway, pids, sha, before)
    assert set(configs_seen(gateway).values()) == {sha}
    assert model_ids(gateway) == {"m", "w2"}
    assert metric(gateway, "llm_router_config_info") == {f'{{sha256="{sha}"}}': 1.0}
    # An invalid file is refused by every worker, which keep what they run.
    errors, refused = reload_count(gateway, "error"), refusals(gateway)
    (directory / "models-config.json").write_text('{"active_models": {"nope": ["m"]}}')
    wait_for(lambda: all(refusals(gateway)[pid] > refused[pid] for pid in pids), SWITCH_BOUND,
             "every worker to refuse the broken file")
    assert reload_count(gateway, "error") == errors + 2
    assert set(configs_seen(gateway).values()) == {sha} and model_ids(gateway) == {"m", "w2"}


def test_without_redis_sighup_and_the_admin_call_reach_every_worker(
        watched: tuple[Gateway, Path], fresh: list[StandIn]) -> None:
    gateway, directory = watched
    pids = workers(gateway)
    before = len(reloads(gateway))
    sha = write_models(directory, {"m": [provider("a", fresh[0])], "w3": [provider("b", fresh[1])]})
    wait_switched(gateway, pids, sha, before)  # the watch
    before = len(reloads(gateway))
    os.kill(gateway.proc.pid, signal.SIGHUP)  # same file: every worker still reloads it
    wait_switched(gateway, pids, sha, before)
    assert workers(gateway) == pids
    before = len(reloads(gateway))
    reply = admin_reload(gateway)
    assert reply.status_code == 200
    wait_switched(gateway, pids, sha, before)
    origins = {pid: origin for pid, origin, _ in reloads(gateway)[before:]}
    assert sorted(origins.values()) == ["admin call", "signal"]  # the other worker followed


# -- single-process servers -------------------------------------------------------------------
@pytest.mark.parametrize("server_type", ["waitress", "flask"])
def test_sighup_to_a_single_process_server(server_type: str, fresh: list[StandIn],
                                           tmp_path: Path) -> None:
    directory = instance_dir(tmp_path, server_type)
    write_models(directory, {"m": [provider("a", fresh[0])]})
    gateway = start(directory, server_type)
    try:
        fresh[0].set_behaviour(tokens=40, token_delay=0.1)
        stream = Stream(gateway)
        wait_for(lambda: len(stream.lines) >= 2, 10, "the stream to begin")
        sha = write_models(directory, {"m": [provider("a", fresh[0])],
                                       "s2": [provider("b", fresh[1])]})
        os.kill(gateway.proc.pid, signal.SIGHUP)
        wait_switched(gateway, {gateway.proc.pid}, sha, 0)
        assert model_ids(gateway) == {"m", "s2"}
        assert len(stream.lines) < 40, "the reload must happen while the stream runs"
        assert stream.finish() == "".join(f"tok{i} " for i in range(40))
        assert metric(gateway, "llm_router_config_info") == {f'{{sha256="{sha}"}}': 1.0}
    finally:
        assert gateway.stop() in (0, -15)
    assert "Traceback" not in gateway.output()
