"""Browsers cannot drive a gateway they were not allowed to (SPEC §13): a cross-site browser
request is refused with 403 in the caller's shape before any model call (the stand-in counts
what reaches it), unless its origin is listed in ``LLM_ROUTER_CORS_ORIGINS``, which then gets
CORS answers, preflight included. Under gunicorn+gevent, the production server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from standin import StandIn
from tests.support.procs import Gateway, write_config

ALLOWED = "https://app.example.com"
CHAT = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "stream": False}
ROUTES = [  # path, body, error shape
    ("/v1/chat/completions", CHAT, "openai"),
    ("/api/chat", CHAT, "ollama"),
    ("/v1/messages", {**CHAT, "max_tokens": 5}, "anthropic"),
]


@pytest.fixture(scope="module")
def gateway(upstream: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config: Path = write_config(tmp_path_factory.mktemp("browsers"), {
        "m1": [{"id": "m1-up", "api_host": upstream.url, "api_type": "openai"}]})
    server = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                     LLM_ROUTER_SERVER_WORKERS_COUNT="2",
                     LLM_ROUTER_CORS_ORIGINS=f"{ALLOWED}, http://localhost:3000")
    yield server
    server.stop()
    assert "Traceback" not in server.output()


def shape_of(body: dict[str, object]) -> str:
    if body.get("type") == "error":
        return "anthropic"
    return "ollama" if isinstance(body.get("error"), str) else "openai"


CROSS_SITE = [
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://localhost:3001"},
    {"Origin": "https://evil.example", "Sec-Fetch-Site": "same-site"},
    {"Origin": "https://app.example.com.evil.example"},
]


@pytest.mark.parametrize("headers", CROSS_SITE, ids=lambda h: ",".join(h.values()))
@pytest.mark.parametrize("path,body,shape", ROUTES, ids=[r[0] for r in ROUTES])
def test_cross_site_requests_are_refused_before_any_model_call(
        gateway: Gateway, fresh_upstream: StandIn, headers: dict[str, str], path: str,
        body: dict[str, object], shape: str) -> None:
    # A form POST from another site: text/plain, so no preflight would be sent.
    reply = requests.post(gateway.url + path, data=requests.compat.json.dumps(body),
                          headers={"Content-Type": "text/plain", **headers}, timeout=10)
    assert reply.status_code == 403, reply.text
    assert reply.headers["Content-Type"] == "application/json"
    assert shape_of(reply.json()) == shape
    assert "LLM_ROUTER_CORS_ORIGINS" in reply.text
    assert "Access-Control-Allow-Origin" not in reply.headers
    assert fresh_upstream.count == 0


@pytest.mark.parametrize("headers", [
    {},  # curl, SDKs, servers
    {"Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "none"},
], ids=["no-browser", "same-origin", "typed-url"])
def test_requests_not_from_another_site_are_served(gateway: Gateway, fresh_upstream: StandIn,
                                                   headers: dict[str, str]) -> None:
    reply = requests.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=headers,
                          timeout=10)
    assert reply.status_code == 200, reply.text
    assert fresh_upstream.count == 1


def test_the_gateways_own_origin_is_served(gateway: Gateway, fresh_upstream: StandIn) -> None:
    own = {"Origin": gateway.url, "Sec-Fetch-Site": "same-origin"}
    assert requests.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=own,
                         timeout=10).status_code == 200
    # Behind a reverse proxy the browser's origin is the proxy's host (X-Forwarded-Host).
    proxied = {"Origin": "https://gw.example.org", "X-Forwarded-Host": "gw.example.org"}
    assert requests.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=proxied,
                         timeout=10).status_code == 200
    assert fresh_upstream.count == 2


def test_a_listed_origin_gets_cors_answers(gateway: Gateway, fresh_upstream: StandIn) -> None:
    reply = requests.post(gateway.url + "/v1/chat/completions", json=CHAT, timeout=10,
                          headers={"Origin": ALLOWED, "Sec-Fetch-Site": "cross-site"})
    assert reply.status_code == 200, reply.text
    assert reply.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "Origin" in reply.headers["Vary"]
    assert "X-Request-ID" in reply.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Credentials" not in reply.headers
    assert fresh_upstream.count == 1
    # Errors carry the CORS headers too, so the page can read them.
    missing = requests.post(gateway.url + "/v1/chat/completions", timeout=10,
                            json={**CHAT, "model": "nope"}, headers={"Origin": ALLOWED})
    assert missing.status_code == 404
    assert missing.headers["Access-Control-Allow-Origin"] == ALLOWED


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/api/chat"])
def test_preflight_from_a_listed_origin(gateway: Gateway, fresh_upstream: StandIn,
                                        path: str) -> None:
    reply = requests.options(gateway.url + path, timeout=10, headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-stainless-os",
        "Sec-Fetch-Site": "same-site"})
    assert reply.status_code == 204, reply.text
    assert reply.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "POST" in reply.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip() for h in reply.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "x-api-key", "anthropic-version", "content-type",
            "x-stainless-os"} <= allowed
    assert int(reply.headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in reply.headers["Vary"]
    assert fresh_upstream.count == 0


def test_preflight_from_another_origin_is_refused(gateway: Gateway) -> None:
    reply = requests.options(gateway.url + "/v1/chat/completions", timeout=10, headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert reply.status_code == 403
    assert "Access-Control-Allow-Origin" not in reply.headers


def test_cors_origins_setting_is_checked() -> None:
    from llm_router_api.settings import SettingsError, load_settings

    settings = load_settings({"LLM_ROUTER_CORS_ORIGINS": "https://A.example/, *"})
    assert settings.cors_origins == ("https://a.example", "*")
    with pytest.raises(SettingsError, match="LLM_ROUTER_CORS_ORIGINS"):
        load_settings({"LLM_ROUTER_CORS_ORIGINS": "app.example.com"})


@pytest.mark.parametrize("origin,host,same", [
    ("http://localhost:8080", "localhost:8080", True),
    ("http://LOCALHOST:8080", "localhost:8080", True),
    ("http://example.com", "example.com:80", True),
    ("https://example.com", "example.com", True),
    ("https://example.com:443", "example.com", True),
    ("http://[::1]:8080", "[::1]:8080", True),
    ("http://localhost:3000", "localhost:8080", False),
    ("https://example.com", "example.com:80", False),
    ("http://example.com.evil", "example.com", False),
    ("null", "example.com", False),
    ("file://", "example.com", False),
    ("http://example.com:99999", "example.com", False),
])
def test_same_host_rules(origin: str, host: str, same: bool) -> None:
    from llm_router_api.errors import Forbidden
    from llm_router_api.web.browsers import BrowserPolicy

    policy = BrowserPolicy(())
    if same:
        policy.check({"Origin": origin, "Host": host})
    else:
        with pytest.raises(Forbidden):
            policy.check({"Origin": origin, "Host": host})
