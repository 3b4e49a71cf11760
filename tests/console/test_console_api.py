"""The console's HTTP surface without a browser: absent without an admin token, admin-only,
CSRF header on state-changing calls, cookie flags, no path out of the assets, runtime weights,
and drain through the admin API under every strategy across two instances sharing Redis."""

from __future__ import annotations

import fnmatch
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import tomllib

from llm_router_api.auth.sessions import SessionSigner
from llm_router_api.base.lb.chooser import DRAIN_REFRESH
from standin import StandIn
from standin.sim import ServerSim, SimParams
from tests.support.procs import Gateway, RedisServer, running_standins, write_config

ADMIN = "console-admin-token-456"
CSRF = {"X-LLM-Router-Console": "1"}
BEARER = {"Authorization": f"Bearer {ADMIN}"}
STRATEGIES = ["balanced", "weighted", "dynamic_weighted", "first_available",
              "tests.api.order_strategy:ConfigOrder"]


@pytest.fixture(scope="module")
def ups() -> Iterator[list[StandIn]]:
    with running_standins(3, "api") as servers:
        yield servers


@pytest.fixture(scope="module")
def config(ups: list[StandIn], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("console-api"), {
        "m": [{"id": f"p{i}", "api_host": s.url, "api_type": "openai"}
              for i, s in enumerate(ups)]})


@pytest.fixture(scope="module")
def gateway(config: Path) -> Iterator[Gateway]:
    gw = Gateway(config, server_type="flask", LLM_ROUTER_ADMIN_TOKEN=ADMIN,
                 LLM_ROUTER_BALANCE_STRATEGY="dynamic_weighted")
    yield gw
    gw.stop()


def signed_in(gateway: Gateway, **headers: str) -> requests.Session:
    session = requests.Session()
    reply = session.post(f"{gateway.url}/api/ui/api/session", json={"token": ADMIN},
                         headers=headers, timeout=10)
    assert reply.status_code == 200
    return session


def test_no_console_without_an_admin_token(config: Path) -> None:
    gw = Gateway(config, server_type="flask")
    try:
        for path in ("/api/ui/", "/api/ui/static/console.js", "/api/ui/api/snapshot"):
            reply = requests.get(gw.url + path, timeout=10)
            assert reply.status_code == 404 and reply.json()["error"]["message"]
        assert requests.post(gw.url + "/api/admin/providers/p0/drain",
                             timeout=10).status_code == 404
    finally:
        gw.stop()


def test_every_console_call_is_an_admin_call(gateway: Gateway) -> None:
    ui = f"{gateway.url}/api/ui/api"
    for method, path in (("GET", "/snapshot"), ("GET", "/events"), ("GET", "/recent"),
                         ("POST", "/providers/p0/drain"), ("PUT", "/weights")):
        for headers in ({}, {"Authorization": "Bearer wrong"},
                        {"Cookie": "llm_router_console=forged.9999999999.00"}):
            reply = requests.request(method, ui + path, headers={**headers, **CSRF},
                                     timeout=10)
            assert reply.status_code == 401, (method, path, headers)
            assert reply.json()["error"]["type"] == "authentication_error"
    assert requests.get(ui + "/snapshot", headers=BEARER, timeout=10).status_code == 200


def test_a_state_changing_call_with_a_cookie_needs_the_console_header(gateway: Gateway) -> None:
    session = signed_in(gateway)
    drain = f"{gateway.url}/api/ui/api/providers/p2/drain"
    assert session.post(drain, timeout=10).status_code == 401  # what a cross-site form could do
    assert session.post(drain, headers=CSRF, timeout=10).json()["drained"] is True
    undrain = session.post(drain.replace("/drain", "/undrain"), headers=CSRF, timeout=10)
    assert undrain.json()["drained"] is False
    assert session.get(f"{gateway.url}/api/ui/api/snapshot", timeout=10).status_code == 200


def test_the_cookie_is_strict_and_secure_behind_tls(gateway: Gateway) -> None:
    plain = requests.post(f"{gateway.url}/api/ui/api/session", json={"token": ADMIN},
                          timeout=10).headers["Set-Cookie"]
    assert "HttpOnly" in plain and "SameSite=Strict" in plain and "Secure" not in plain
    tls = requests.post(f"{gateway.url}/api/ui/api/session", json={"token": ADMIN},
                        headers={"X-Forwarded-Proto": "https"}, timeout=10).headers["Set-Cookie"]
    assert "Secure" in tls and "Max-Age=" in tls
    assert ADMIN not in plain and ADMIN not in tls


def test_sessions_are_signed_and_expire() -> None:
    signer = SessionSigner(ADMIN, ttl=60)
    value, session = signer.issue(now=1000.0)
    assert signer.verify(value, now=1030.0) == session
    assert signer.verify(value, now=1061.0) is None  # expired
    sid, expires, signature = value.split(".")
    assert signer.verify(f"{sid}.{int(expires) + 3600}.{signature}", now=1030.0) is None
    assert SessionSigner("another-admin-token").verify(value, now=1030.0) is None


def test_assets_cannot_reach_outside_their_folder(gateway: Gateway) -> None:
    for path in ("/api/ui/static/..%2f..%2fsettings.py", "/api/ui/static/missing.js",
                 "/api/ui/static/console.py"):
        assert requests.get(gateway.url + path, timeout=10).status_code == 404
    js = requests.get(gateway.url + "/api/ui/static/console.js", timeout=10)
    assert js.status_code == 200 and js.headers["Content-Type"].startswith("text/javascript")


def test_runtime_weight_from_the_console(gateway: Gateway) -> None:
    session = signed_in(gateway)
    url = f"{gateway.url}/api/ui/api/weights"
    bad = session.put(url, json={"model": "m", "provider": "nope", "weight": 2}, headers=CSRF,
                      timeout=10)
    assert bad.status_code == 400 and "nope" in bad.json()["error"]["message"]
    assert session.put(url, json={"model": "m", "provider": "p1", "weight": -1}, headers=CSRF,
                       timeout=10).status_code == 400
    ok = session.put(url, json={"model": "m", "provider": "p1", "weight": 7.5}, headers=CSRF,
                     timeout=10)
    assert ok.status_code == 200
    snapshot = session.get(f"{gateway.url}/api/ui/api/snapshot", timeout=10).json()
    p1 = next(p for p in snapshot["models"][0]["providers"] if p["id"] == "p1")
    assert p1["runtime_weight"] == 7.5 and p1["weight"] == 1.0
    assert "operator action: weight model=m provider=p1" in gateway.output()


def test_recent_requests_hold_no_body(gateway: Gateway) -> None:
    marker = uuid.uuid4().hex
    reply = requests.post(gateway.url + "/v1/chat/completions", timeout=10,
                          headers={"X-Request-ID": f"recent-{marker}"},
                          json={"model": "m", "messages": [{"role": "user",
                                                            "content": f"secret {marker}"}]})
    assert reply.status_code == 200
    deadline = time.monotonic() + 10
    while True:  # written to the state store once a second
        recent = requests.get(f"{gateway.url}/api/ui/api/recent", headers=BEARER,
                              timeout=10).json()["requests"]
        mine = [r for r in recent if r["request_id"] == f"recent-{marker}"]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(mine) == 1
    entry = mine[0]
    assert entry["model"] == "m" and entry["provider"] in ("p0", "p1", "p2")
    assert entry["status"] == 200 and entry["tokens_out"] and entry["route"]
    assert f"secret {marker}" not in str(recent)


# -- drain through the admin API: every strategy, two instances sharing a real Redis ---------------
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_drain_across_two_instances_under_every_strategy(
        config: Path, ups: list[StandIn], redis_server: RedisServer, strategy: str) -> None:
    env = {"LLM_ROUTER_BALANCE_STRATEGY": strategy, "LLM_ROUTER_ADMIN_TOKEN": ADMIN,
           "LLM_ROUTER_REDIS_HOST": "127.0.0.1", "LLM_ROUTER_REDIS_PORT": str(redis_server.port),
           "LLM_ROUTER_REDIS_PREFIX": f"drain-{uuid.uuid4().hex[:6]}:"}
    a = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                LLM_ROUTER_SERVER_WORKERS_COUNT="2", **env)
    b = Gateway(config, server_type="flask", **env)
    try:
        for s in ups:
            s.reset()
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        drained = requests.post(a.url + "/api/admin/providers/p0/drain", headers=BEARER,
                                timeout=10)
        assert drained.status_code == 200 and drained.json()["drained"] is True
        time.sleep(3 * DRAIN_REFRESH)  # every worker re-reads the drained set within this
        for i in range(12):
            gw = a if i % 2 else b
            assert requests.post(gw.url + "/v1/chat/completions", json=body,
                                 timeout=10).status_code == 200
        assert ups[0].count == 0 and ups[1].count + ups[2].count == 12
        health = requests.get(b.url + "/api/health", timeout=10).json()
        assert [p["drained"] for p in health["models"]["m"]["providers"]] == [True, False, False]
        assert requests.post(b.url + "/api/admin/providers/p0/undrain",
                             timeout=10).status_code == 401  # the admin token is required
        assert requests.post(b.url + "/api/admin/providers/p0/undrain", headers=BEARER,
                             timeout=10).json()["drained"] is False
        time.sleep(3 * DRAIN_REFRESH)
        for i in range(6):
            assert requests.post((a if i % 2 else b).url + "/v1/chat/completions", json=body,
                                 timeout=10).status_code == 200
        assert ups[0].count > 0  # p0 takes requests again (first in config order, or its turn)
    finally:
        a.stop()
        b.stop()


def test_every_console_file_ships_in_the_package() -> None:
    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["llm_router_api"]
    files = [p.relative_to(root / "llm_router_api").as_posix()
             for p in (root / "llm_router_api" / "web" / "ui").iterdir()]
    assert files and all(any(fnmatch.fnmatch(f, pat) for pat in patterns) for f in files), files


def test_cache_aware_load_signals_and_prefix_hits_reach_the_live_view(
        redis_server: RedisServer, tmp_path: Path) -> None:
    fast = SimParams(prefill_per_char=0.0, load_seconds=0.0, model="m")
    sims = [StandIn(name=f"sim{i}", sim=ServerSim(fast)) for i in range(2)]
    for server in sims:
        server.start()
    config = write_config(tmp_path, {"m": [{"id": f"v{i}", "api_host": s.url,
                                            "api_type": "vllm"} for i, s in enumerate(sims)]})
    gw = Gateway(config, server_type="flask", LLM_ROUTER_ADMIN_TOKEN=ADMIN,
                 LLM_ROUTER_BALANCE_STRATEGY="cache_aware", LLM_ROUTER_REDIS_HOST="127.0.0.1",
                 LLM_ROUTER_REDIS_PORT=str(redis_server.port),
                 LLM_ROUTER_REDIS_PREFIX=f"ca-console-{uuid.uuid4().hex[:6]}:",
                 LLM_ROUTER_LOAD_POLL_INTERVAL="0.2", LLM_ROUTER_PREFIX_BLOCK_SIZE="64")
    try:
        prompt = "You are a careful assistant. " * 40
        for _ in range(4):  # the same long prompt: later decisions find its prefix cached
            assert requests.post(gw.url + "/v1/chat/completions", timeout=10, json={
                "model": "m", "messages": [{"role": "user", "content": prompt}]}
                                 ).status_code == 200

        def view() -> list[dict[str, object]]:
            snap = requests.get(f"{gw.url}/api/ui/api/snapshot", headers=BEARER,
                                timeout=10).json()
            return list(snap["models"][0]["providers"])

        deadline = time.monotonic() + 15
        while not (all(p["load"] for p in view())
                   and any((p["prefix_hit_ratio"] or 0) > 0 for p in view())):
            assert time.monotonic() < deadline, view()
            time.sleep(0.2)
        load = view()[0]["load"]
        assert isinstance(load, dict) and "age_s" in load
    finally:
        gw.stop()
        for server in sims:
            server.stop()
