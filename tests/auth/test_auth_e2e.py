"""API keys end to end: real gateways (gunicorn, several workers, two instances) sharing a real
Redis, a stand-in upstream, the official OpenAI client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
import requests

from standin import StandIn
from tests.support.procs import Gateway, RedisServer, write_config

PROVIDER_TOKEN = "sk-provider-secret-999"
KEYS = {"open": "open-key-aaaa1111", "limited": "limited-key-bbbb2222",
        "narrow": "narrow-key-cccc3333", "single": "single-key-dddd4444",
        "tokens": "tokens-key-eeee5555"}
TPM = 40
RPM = 7
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def config(upstream: StandIn, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("auth")
    models = write_config(directory, {
        "m1": [{"id": "m1-up", "api_host": upstream.url, "api_type": "openai",
                "api_token": PROVIDER_TOKEN}],
        "m2": [{"id": "m2-up", "api_host": upstream.url, "api_type": "openai"}]})
    keys = directory / "keys.json"
    keys.write_text(json.dumps({"keys": [
        {"id": "open", "key": KEYS["open"]},
        {"id": "limited", "key": KEYS["limited"], "requests_per_minute": RPM},
        {"id": "narrow", "key": KEYS["narrow"], "models": ["m1"]},
        {"id": "single", "key": KEYS["single"], "max_concurrent": 1},
        {"id": "tokens", "key": KEYS["tokens"], "tokens_per_minute": TPM},
    ]}))
    return models, keys


@pytest.fixture(scope="module")
def gateways(config: tuple[Path, Path], redis_server: RedisServer) -> Iterator[list[Gateway]]:
    models, keys = config
    env = {"LLM_ROUTER_API_KEYS_FILE": str(keys), "LLM_ROUTER_REDIS_HOST": "127.0.0.1",
           "LLM_ROUTER_REDIS_PORT": str(redis_server.port),
           "LLM_ROUTER_SERVER_WORKERS_COUNT": "2", "LLM_ROUTER_SERVER_WORKER_CLASS": "gthread",
           "LLM_ROUTER_LOG_LEVEL": "DEBUG"}
    started = [Gateway(models, server_type="gunicorn", **env) for _ in range(2)]
    yield started
    for gateway in started:
        gateway.stop()
        output = gateway.output()
        for secret in [PROVIDER_TOKEN, *KEYS.values()]:
            assert secret not in output


def post(gateway: Gateway, key: str | None, model: str = "m1",
         header: str = "Authorization") -> requests.Response:
    headers = {}
    if key is not None:
        headers[header] = f"Bearer {key}" if header == "Authorization" else key
    return requests.post(gateway.url + "/v1/chat/completions", headers=headers, timeout=10,
                         json={"model": model, "messages": MESSAGES})


def test_missing_and_wrong_keys_are_401_in_openai_shape(gateways: list[Gateway]) -> None:
    for key in (None, "wrong-key-0000", KEYS["open"] + "x"):
        response = post(gateways[0], key)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
        for secret in KEYS.values():
            assert secret not in response.text


def test_malformed_body_without_key_is_still_401(gateways: list[Gateway]) -> None:
    response = requests.post(gateways[0].url + "/v1/chat/completions", data=b"{", timeout=5)
    assert response.status_code == 401


def test_official_client_with_bearer_and_x_api_key(gateways: list[Gateway],
                                                    upstream: StandIn) -> None:
    client = openai.OpenAI(base_url=gateways[0].url + "/v1", api_key=KEYS["open"],
                           max_retries=0)
    reply = client.chat.completions.create(model="m1", messages=MESSAGES)  # type: ignore[arg-type]
    assert reply.choices[0].message.content
    # The provider gets its own token, never the caller's key.
    assert upstream.requests[-1]["headers"]["authorization"] == f"Bearer {PROVIDER_TOKEN}"
    assert post(gateways[1], KEYS["open"], header="x-api-key").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateways[0].url + "/v1", api_key="bad-key-123",
                      max_retries=0).chat.completions.create(model="m1", messages=MESSAGES)  # type: ignore[arg-type]


def test_key_not_allowed_the_model_is_403(gateways: list[Gateway]) -> None:
    assert post(gateways[0], KEYS["narrow"], model="m1").status_code == 200
    response = post(gateways[0], KEYS["narrow"], model="m2")
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"


def test_info_endpoints_open_by_default_ping_always(gateways: list[Gateway]) -> None:
    for path in ("/api/ping", "/v1/models", "/api/tags", "/api/health"):
        assert requests.get(gateways[0].url + path, timeout=5).status_code == 200


def test_rpm_limit_holds_across_workers_and_instances(gateways: list[Gateway]) -> None:
    targets = [gateways[i % 2] for i in range(3 * RPM)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda g: post(g, KEYS["limited"]), targets))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == RPM, statuses
    assert statuses.count(429) == 2 * RPM
    for refused in (r for r in responses if r.status_code == 429):
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert refused.json()["error"]["type"] == "rate_limit_error"


def test_concurrent_limit_is_a_lease_released_when_the_stream_ends(
        gateways: list[Gateway], fresh_upstream: StandIn) -> None:
    fresh_upstream.set_behaviour(token_delay=0.3)
    headers = {"Authorization": f"Bearer {KEYS['single']}"}
    body = {"model": "m1", "messages": MESSAGES, "stream": True}
    first = requests.post(gateways[0].url + "/v1/chat/completions", json=body, headers=headers,
                          stream=True, timeout=10)
    assert first.status_code == 200
    second = requests.post(gateways[1].url + "/v1/chat/completions", json=body,
                           headers=headers, timeout=10)
    assert second.status_code == 429
    assert first.text.rstrip().endswith("data: [DONE]")  # drain: the lease ends with the stream
    third = requests.post(gateways[1].url + "/v1/chat/completions", json=body, headers=headers,
                          timeout=10)
    assert third.status_code == 200
    # A non-stream answer frees the slot too: one after another, each one gets through.
    for gateway in gateways * 2:
        assert post(gateway, KEYS["single"]).status_code == 200


def test_protected_info_endpoints(config: tuple[Path, Path]) -> None:
    models, keys = config
    gateway = Gateway(models, LLM_ROUTER_API_KEYS_FILE=str(keys),
                      LLM_ROUTER_PROTECT_INFO_ENDPOINTS="1")
    try:
        assert requests.get(gateway.url + "/api/ping", timeout=5).status_code == 200
        assert requests.get(gateway.url + "/v1/models", timeout=5).status_code == 401
        assert requests.get(gateway.url + "/api/tags", timeout=5).json() == {
            "error": "an API key is required (Authorization: Bearer or x-api-key)"}
        authed = requests.get(gateway.url + "/v1/models", timeout=5,
                              headers={"Authorization": f"Bearer {KEYS['open']}"})
        assert authed.status_code == 200
    finally:
        gateway.stop()


def test_startup_warns_when_open_beyond_loopback_with_provider_tokens(
        config: tuple[Path, Path]) -> None:
    models, _ = config
    gateway = Gateway(models, LLM_ROUTER_SERVER_HOST="0.0.0.0")
    try:
        assert "with no API keys while providers have tokens" in gateway.output()
    finally:
        gateway.stop()
    assert PROVIDER_TOKEN not in gateway.output()


def test_tokens_per_minute_counts_usage_across_instances(gateways: list[Gateway],
                                                         fresh_upstream: StandIn) -> None:
    first = post(gateways[0], KEYS["tokens"])
    assert first.status_code == 200
    per_request = first.json()["usage"]["total_tokens"]
    assert first.headers["x-ratelimit-remaining-tokens"] == str(TPM)
    expected = -(-TPM // per_request)  # admitted while the budget is not yet used up
    statuses = [post(gateways[i % 2], KEYS["tokens"]).status_code for i in range(expected + 2)]
    assert statuses == [200] * (expected - 1) + [429] * 3
    refused = post(gateways[1], KEYS["tokens"])
    assert refused.json()["error"]["code"] == "rate_limit_tokens"
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"


def test_official_ollama_and_anthropic_clients_authenticate(gateways: list[Gateway]) -> None:
    import anthropic
    import ollama

    good = ollama.Client(host=gateways[0].url,
                         headers={"Authorization": f"Bearer {KEYS['open']}"})
    reply = good.chat(model="m1", messages=MESSAGES, stream=False)
    assert reply.message.content
    with pytest.raises(ollama.ResponseError) as caught:
        ollama.Client(host=gateways[0].url).chat(model="m1", messages=MESSAGES, stream=False)
    assert caught.value.status_code == 401

    message = anthropic.Anthropic(base_url=gateways[1].url, api_key=KEYS["open"],
                                  max_retries=0).messages.create(
        model="m1", max_tokens=50, messages=MESSAGES)  # type: ignore[arg-type]
    assert message.content[0].text  # type: ignore[union-attr]
    with pytest.raises(anthropic.AuthenticationError) as refused:
        anthropic.Anthropic(base_url=gateways[1].url, api_key="wrong-key-000",
                            max_retries=0).messages.create(
            model="m1", max_tokens=50, messages=MESSAGES)  # type: ignore[arg-type]
    assert refused.value.body["type"] == "error"  # type: ignore[index]


def test_admin_endpoints_need_the_admin_token_not_a_key(config: tuple[Path, Path]) -> None:
    models, keys = config
    gateway = Gateway(models, LLM_ROUTER_API_KEYS_FILE=str(keys),
                      LLM_ROUTER_ADMIN_TOKEN="admin-token-xyz",
                      LLM_ROUTER_BALANCE_STRATEGY="dynamic_weighted",
                      LLM_ROUTER_USE_PROMETHEUS="1", LLM_ROUTER_PROTECT_INFO_ENDPOINTS="1")
    try:
        url = gateway.url + "/api/admin/weights"
        assert requests.get(url, timeout=5).status_code == 401
        assert requests.get(url, timeout=5, headers={
            "Authorization": f"Bearer {KEYS['open']}"}).status_code == 401
        assert requests.get(url, timeout=5, headers={
            "Authorization": "Bearer admin-token-xyz"}).status_code == 200
        assert requests.get(gateway.url + "/metrics", timeout=5).status_code == 401
        metrics = requests.get(gateway.url + "/api/metrics", timeout=5,
                               headers={"Authorization": f"Bearer {KEYS['open']}"})
        assert metrics.status_code == 200 and "llm_router_" in metrics.text
        for secret in [*KEYS.values(), "admin-token-xyz", PROVIDER_TOKEN]:
            assert secret not in metrics.text
    finally:
        gateway.stop()
    assert "admin-token-xyz" not in gateway.output()


def test_a_concurrency_lease_outlives_its_ttl_while_the_stream_runs(
        config: tuple[Path, Path], redis_server: RedisServer, fresh_upstream: StandIn) -> None:
    """The worker's one renewer (core.background) renews key leases with provider leases: a
    stream running for more than 3 lease TTLs still holds the key's one slot."""
    models, keys = config
    ttl = 1.0
    gateway = Gateway(models, server_type="gunicorn", LLM_ROUTER_API_KEYS_FILE=str(keys),
                      LLM_ROUTER_REDIS_HOST="127.0.0.1",
                      LLM_ROUTER_REDIS_PORT=str(redis_server.port),
                      LLM_ROUTER_REDIS_PREFIX="renewal-test:", LLM_ROUTER_LEASE_TTL=str(ttl),
                      LLM_ROUTER_SERVER_WORKERS_COUNT="1",
                      LLM_ROUTER_SERVER_WORKER_CLASS="gthread")
    try:
        fresh_upstream.set_behaviour(tokens=26, token_delay=0.2)  # at least 5.2 s
        headers = {"Authorization": f"Bearer {KEYS['single']}"}
        body = {"model": "m1", "messages": MESSAGES, "stream": True}
        url = gateway.url + "/v1/chat/completions"
        with requests.post(url, json=body, headers=headers, stream=True, timeout=20) as first:
            assert first.status_code == 200
            lines = first.iter_lines()
            started = time.monotonic()
            while time.monotonic() - started < 3.5 * ttl:  # past 3 TTLs, still streaming
                assert next(lines) is not None
            assert requests.post(url, json=body, headers=headers, timeout=10).status_code == 429
            fresh_upstream.set_behaviour(tokens=3, token_delay=0.0)  # the rest need not crawl
            assert b"[DONE]" in b"\n".join(lines)
        assert requests.post(url, json=body, headers=headers, timeout=10).status_code == 200
    finally:
        gateway.stop()
