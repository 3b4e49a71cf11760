"""``cache_aware`` end to end (SPEC §11): real gateways (gunicorn + gevent with 2 workers, and
flask) sharing one real Redis, in front of simulated cached, queueing servers
(``standin.sim``) that report vLLM ``/metrics`` and Ollama ``/api/ps``.

Which server answered is read from the servers' own request records. No timing assertions:
waits are bounded and wait for what the gateway reports in ``/api/health``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from standin import StandIn
from standin.sim import ServerSim, SimParams
from tests.support.procs import Gateway, RedisServer, wait_for, write_config

POLL = 0.2  # LLM_ROUTER_LOAD_POLL_INTERVAL: signals are stale after 3 × POLL
BLOCK = 64
ENTRIES = 200
PREFIX = "ca-e2e:"
WAIT = 15.0
FAST = SimParams(prefill_per_char=0.0, load_seconds=0.0, model="m")


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, StandIn]]:
    servers = {name: StandIn(name=name, sim=ServerSim(FAST.updated(model=model, **extra)))
               for name, model, extra in (("a", "m", {}), ("b", "m", {}), ("c", "m", {}),
                                          ("cold", "om", {"loaded": False}),
                                          ("warm", "om", {}))}
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(autouse=True)
def calm(sims: dict[str, StandIn]) -> Iterator[None]:
    yield
    for server in sims.values():
        assert server.sim is not None
        server.sim.update(override={}, metrics_status=200)


@pytest.fixture(scope="module")
def config(sims: dict[str, StandIn], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("cache-aware"), {
        "m": [{"id": name, "api_host": sims[name].url, "api_type": "vllm"}
              for name in ("a", "b", "c")],
        "om": [{"id": name, "api_host": sims[name].url, "api_type": "ollama"}
               for name in ("cold", "warm")],
    })


def env(redis_server: RedisServer) -> dict[str, str]:
    return {"LLM_ROUTER_BALANCE_STRATEGY": "cache_aware",
            "LLM_ROUTER_REDIS_HOST": "127.0.0.1",
            "LLM_ROUTER_REDIS_PORT": str(redis_server.port),
            "LLM_ROUTER_REDIS_PREFIX": PREFIX,
            "LLM_ROUTER_LOAD_POLL_INTERVAL": str(POLL),
            "LLM_ROUTER_PREFIX_BLOCK_SIZE": str(BLOCK),
            "LLM_ROUTER_PREFIX_CACHE_ENTRIES": str(ENTRIES),
            "LLM_ROUTER_USE_PROMETHEUS": "1"}


@pytest.fixture(scope="module")
def gateways(config: Path, redis_server: RedisServer) -> Iterator[tuple[Gateway, Gateway]]:
    production = Gateway(config, "gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                         LLM_ROUTER_SERVER_WORKERS_COUNT="2", **env(redis_server))
    try:
        development = Gateway(config, "flask", **env(redis_server))
    except BaseException:
        production.stop()
        raise
    yield production, development
    development.stop()
    assert production.stop() == 0, production.output()[-3000:]
    assert "Traceback" not in production.output() + development.output()


# -- helpers ---------------------------------------------------------------------------------------
def calls(server: StandIn) -> int:
    return sum(1 for r in server.requests if r["method"] == "POST")


def ask(gateway: Gateway, sims: dict[str, StandIn], body: dict[str, Any],
        headers: dict[str, str] | None = None, path: str = "/v1/chat/completions") -> str:
    """Send one request; return the name of the server that answered it."""
    before = {name: calls(s) for name, s in sims.items()}
    reply = requests.post(gateway.url + path, json=body, headers=headers or {}, timeout=30)
    assert reply.status_code == 200, reply.text
    served = [name for name, s in sims.items() if calls(s) > before[name]]
    assert len(served) == 1, served
    return served[0]


def chat(*contents: str, model: str = "m", **extra: Any) -> dict[str, Any]:
    roles = ["system"] + ["user", "assistant"] * len(contents)
    return {"model": model, **extra,
            "messages": [{"role": r, "content": c} for r, c in zip(roles, contents, strict=False)]}


def long_text(tag: str, n: int = 40) -> str:
    return " ".join(f"{tag}-{i}" for i in range(n)) * 3


def signals(gateway: Gateway, provider: str) -> dict[str, Any]:
    body = requests.get(f"{gateway.url}/api/health", timeout=5).json()
    for model in body["models"].values():
        for entry in model["providers"]:
            if entry["id"] == provider:
                return dict(entry.get("load") or {})
    return {}


def set_sim(sims: dict[str, StandIn], **per_server: dict[str, Any]) -> None:
    for name, fields in per_server.items():
        sim = sims[name].sim
        assert sim is not None
        sim.update(**fields)


def seen(gateway: Gateway, provider: str, **expected: float) -> None:
    """Wait until the gateway's store holds a fresh poll with ``expected`` values."""
    def fresh() -> bool:
        got = signals(gateway, provider)
        return (got.get("age_s", 99) < 3 * POLL
                and all(got.get(k) == v for k, v in expected.items()))

    wait_for(fresh, WAIT, f"the gateway to see {provider} with {expected}")


# -- tests -----------------------------------------------------------------------------------------
def test_next_turn_goes_where_the_other_instance_sent_the_previous_one(
        gateways: tuple[Gateway, Gateway], sims: dict[str, StandIn]) -> None:
    first, second = gateways
    system = long_text("shared-system")
    for conversation in range(6):
        opening = long_text(f"conv{conversation}-{uuid.uuid4().hex[:6]}")
        where = ask(first, sims, chat(system, opening))
        follow = chat(system, opening, "an answer " * 20, "and a follow-up question")
        assert ask(second, sims, follow) == where
        assert ask(first, sims, follow | {"messages": [*follow["messages"],
                                                       {"role": "assistant", "content": "x"},
                                                       {"role": "user", "content": "y"}]}) \
            == where


def test_a_saturated_provider_gets_no_new_request(gateways: tuple[Gateway, Gateway],
                                                  sims: dict[str, StandIn]) -> None:
    gateway = gateways[0]
    set_sim(sims, b={"override": {"waiting": 6}}, c={"override": {"kv": 0.9}})
    seen(gateway, "b", waiting=6)
    seen(gateway, "c", kv=0.9)
    opening = long_text(f"sat-{uuid.uuid4().hex[:6]}")
    assert ask(gateway, sims, chat("sys", opening)) == "a"
    # now a is saturated and b, c are not: the conversation's next turn leaves its cache
    set_sim(sims, a={"override": {"waiting": 5}}, b={"override": {}}, c={"override": {}})
    seen(gateway, "a", waiting=5)
    seen(gateway, "b", waiting=0)
    seen(gateway, "c", kv=0.0)
    assert ask(gateway, sims, chat("sys", opening, "answer", "next")) != "a"
    assert "a" not in {ask(gateway, sims, chat("sys", f"q{i}-{uuid.uuid4().hex}"))
                       for i in range(6)}


def test_stale_signals_are_ignored_after_three_intervals(gateways: tuple[Gateway, Gateway],
                                                         sims: dict[str, StandIn]) -> None:
    gateway = gateways[1]
    set_sim(sims, a={"override": {"waiting": 9}})
    seen(gateway, "a", waiting=9)
    assert "a" not in {ask(gateway, sims, chat("sys", f"s{i}-{uuid.uuid4().hex}"))
                       for i in range(4)}
    set_sim(sims, a={"metrics_status": 500})  # polls fail: the last signals only age
    wait_for(lambda: signals(gateway, "a").get("age_s", 0) > 3 * POLL, WAIT,
             "a's signals to go stale")
    assert signals(gateway, "a")["waiting"] == 9  # still stored, no longer used
    served = {ask(gateway, sims, chat("sys", f"t{i}-{uuid.uuid4().hex}")) for i in range(6)}
    assert "a" in served


def test_ollama_provider_with_the_model_in_vram_is_preferred(
        gateways: tuple[Gateway, Gateway], sims: dict[str, StandIn]) -> None:
    gateway = gateways[0]
    seen(gateway, "cold", loaded=0)
    seen(gateway, "warm", loaded=1, vram=1.0)
    served = {ask(gateway, sims, chat("sys", f"o{i}-{uuid.uuid4().hex}", model="om"),
                  path="/api/chat") for i in range(6)}
    assert served == {"warm"}


def test_a_session_sticks_and_moves_past_the_load_bound(gateways: tuple[Gateway, Gateway],
                                                        sims: dict[str, StandIn]) -> None:
    gateway = gateways[0]
    session = {"X-Session-ID": f"sess-{uuid.uuid4().hex}"}
    homes = {ask(gateway, sims, chat("sys", f"turn {i} {uuid.uuid4().hex}"), session)
             for i in range(5)}
    assert len(homes) == 1  # distinct prompts, one session: one server
    home = homes.pop()
    set_sim(sims, **{name: {"override": {"kv": 0.7 if name == home else 0.05}}
                     for name in ("a", "b", "c")})
    for name in ("a", "b", "c"):
        seen(gateway, name, kv=0.7 if name == home else 0.05)
    moved = ask(gateway, sims, chat("sys", f"heavy {uuid.uuid4().hex}"), session)
    assert moved != home
    # a session named by the OpenAI ``user`` field sticks the same way, on the other instance
    user = f"user-{uuid.uuid4().hex}"
    body = chat("sys", "first", user=user)
    first = ask(gateways[1], sims, body)
    assert {ask(gateways[1], sims, chat("sys", f"more {i}", user=user))
            for i in range(4)} == {first}


def test_the_prefix_table_honours_its_bound(gateways: tuple[Gateway, Gateway],
                                            sims: dict[str, StandIn],
                                            redis_server: RedisServer) -> None:
    for i in range(8):  # 8 prompts of ~45 blocks each: more than ENTRIES over 3 providers
        ask(gateways[0], sims, chat(f"bound {i} {uuid.uuid4().hex} " * 80))
    client = redis.Redis(port=redis_server.port)
    sizes = {name: client.zcard(f"{PREFIX}pfx:{name}") for name in ("a", "b", "c")}
    assert all(0 < size <= ENTRIES for size in sizes.values()), sizes
    assert max(sizes.values()) == ENTRIES, sizes  # filled up, then trimmed


def test_metrics_show_the_decisions(gateways: tuple[Gateway, Gateway]) -> None:
    text = requests.get(gateways[0].url + "/metrics", timeout=5).text
    for needle in ("llm_router_prefix_match_ratio_bucket", 'llm_router_session_affinity_total',
                   'result="hit"', "llm_router_saturation_skips_total",
                   'llm_router_provider_load{model="m",provider="a"}',
                   'llm_router_load_signal_age_seconds{provider="a"}'):
        assert needle in text, needle
