"""No secret leaves through an upstream (SPEC §13), end to end under gunicorn + gevent.

A purpose-built stand-in echoes the credentials it was called with (Authorization, x-api-key,
Host and its own URL) in a 400 body, in a mid-stream error event, and inside a whole answer.
Every caller protocol (OpenAI, Ollama, Anthropic) × every provider type, stream and not,
embeddings and a built-in: the token, the provider's ``api_host`` and its bare ``host:port``
never reach the caller, and an upstream's own stream error becomes exactly one error event.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from standin import StandIn
from tests.support.procs import ROOT, Gateway, running_standins, write_config

TOKENS = {"openai": "sk-openai-SECRET-7f3a9c", "ollama": "ollama-SECRET-b41d2e",
          "anthropic": "sk-ant-SECRET-99e0aa"}
USER = [{"role": "user", "content": "hi there"}]


@pytest.fixture(scope="module")
def leaky() -> Iterator[StandIn]:
    with running_standins(1, "leaky") as servers:
        yield servers[0]


@pytest.fixture(scope="module")
def gateway(leaky: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = write_config(tmp_path_factory.mktemp("leak"), {
        kind: [{"id": f"{kind}-up", "api_host": leaky.url, "api_type": kind,
                "api_token": token}]
        for kind, token in TOKENS.items()})
    server = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                     LLM_ROUTER_SERVER_WORKERS_COUNT="1", LLM_ROUTER_MINIMUM="0",
                     LLM_ROUTER_PROMPTS_DIR=str(ROOT / "resources" / "prompts"),
                     LLM_ROUTER_COOLDOWN="0", LLM_ROUTER_EXTERNAL_TIMEOUT="5")
    yield server
    server.stop()


@pytest.fixture()
def leak(leaky: StandIn) -> StandIn:
    leaky.reset()
    return leaky


def secrets(leaky: StandIn) -> list[str]:
    return [*TOKENS.values(), leaky.url, f"127.0.0.1:{leaky.port}"]


def assert_clean(leaky: StandIn, reply: requests.Response) -> str:
    text = reply.text + json.dumps(dict(reply.headers))
    for secret in secrets(leaky):
        assert secret not in text, (secret, text)
    return reply.text


# caller route -> body (without model), and how the route streams
CALLS: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"messages": USER},
    "/v1/completions": {"prompt": "hi there"},
    "/api/chat": {"messages": USER},
    "/api/generate": {"prompt": "hi there"},
    "/v1/messages": {"messages": USER, "max_tokens": 20},
}


def call(gateway: Gateway, route: str, model: str, stream: bool) -> requests.Response:
    body = {**CALLS[route], "model": model, "stream": stream}
    return requests.post(gateway.url + route, json=body, timeout=20)


def error_events(route: str, text: str) -> int:
    """How many error events the stream carries, in the route's own format."""
    if route.startswith("/api/"):
        return sum(1 for line in text.splitlines() if line.strip()
                   and "error" in json.loads(line))
    if route == "/v1/messages":
        return text.count("event: error")
    assert text.rstrip().endswith("data: [DONE]") and text.count("data: [DONE]") == 1, text
    return sum(1 for line in text.splitlines() if line.startswith("data: {")
               and "error" in json.loads(line[6:]))


@pytest.mark.parametrize("provider", list(TOKENS))
@pytest.mark.parametrize("route", list(CALLS))
@pytest.mark.parametrize("stream", [False, True])
def test_an_echoed_400_is_passed_on_masked(gateway: Gateway, leak: StandIn, provider: str,
                                          route: str, stream: bool) -> None:
    leak.set_behaviour(mode="leak", status_code=400)
    reply = call(gateway, route, provider, stream)
    assert reply.status_code == 400, reply.text
    text = assert_clean(leak, reply)
    assert "bad request, Authorization=" in text and "***" in text  # the message itself came


@pytest.mark.parametrize("provider", list(TOKENS))
@pytest.mark.parametrize("route", list(CALLS))
def test_a_mid_stream_error_is_one_masked_error_event(gateway: Gateway, leak: StandIn,
                                                      provider: str, route: str) -> None:
    leak.set_behaviour(mode="leak_mid_stream", die_after=5)
    reply = call(gateway, route, provider, True)
    assert reply.status_code == 200, reply.text
    text = assert_clean(leak, reply)
    assert error_events(route, text) == 1, text
    assert "***" in text


@pytest.mark.parametrize("provider", list(TOKENS))
@pytest.mark.parametrize("route", list(CALLS))
def test_a_whole_answer_echoing_credentials_is_masked(gateway: Gateway, leak: StandIn,
                                                      provider: str, route: str) -> None:
    leak.set_behaviour(mode="leak_mid_stream")
    reply = call(gateway, route, provider, False)
    assert reply.status_code == 200, reply.text
    assert "***" in assert_clean(leak, reply)


@pytest.mark.parametrize("provider", ["openai", "ollama"])
@pytest.mark.parametrize("route", ["/v1/embeddings", "/api/embed"])
def test_embeddings_errors_are_masked(gateway: Gateway, leak: StandIn, provider: str,
                                      route: str) -> None:
    leak.set_behaviour(mode="leak", status_code=400)
    reply = requests.post(gateway.url + route, json={"model": provider, "input": ["a b"]},
                          timeout=20)
    assert reply.status_code == 400, reply.text
    assert "***" in assert_clean(leak, reply)


@pytest.mark.parametrize("provider", list(TOKENS))
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("mode", ["leak", "leak_mid_stream"])
def test_builtins_never_show_a_secret(gateway: Gateway, leak: StandIn, provider: str,
                                      stream: bool, mode: str) -> None:
    leak.set_behaviour(mode=mode, status_code=400, die_after=2)
    body = {"model_name": provider, "texts": ["alpha beta", "gamma"], "stream": stream}
    reply = requests.post(gateway.url + "/api/builtin/translate", json=body, timeout=20)
    text = assert_clean(leak, reply)
    assert "***" in text, text
