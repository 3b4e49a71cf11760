"""Model fallbacks end to end (SPEC §12), in production mode: gunicorn with 2 gevent workers
sharing Redis, metrics on.

Each primary model fails in its own way before the first byte — its provider refuses
connections (then cools down), answers 5xx, or is busy (its one slot held) past the acquire
timeout — and names a fallback model of another provider type, so every caller protocol is
served both by forwarding (the fallback's bytes, renamed) and by translation. The reply names
the model that served in the body and in ``X-LLM-Router-Model``;
``llm_router_model_fallbacks_total`` counts each move.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from standin import StandIn
from tests.support.procs import ROOT, Gateway, RedisServer, free_port, wait_for

ACQUIRE_TIMEOUT = 1.0
HOLD = 60.0  # the busy provider's one slot is held this long (the module ends sooner)
MESSAGES = [{"role": "user", "content": "hello there"}]
# primary model -> (how it fails, the fallback that serves)
KINDS = {"refused": "backup-openai", "broken": "backup-ollama", "busy": "backup-anthropic"}
HEADER = "X-LLM-Router-Model"


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, StandIn]]:
    found = {name: StandIn(name=name) for name in ("good", "broken", "slow", "picky")}
    for server in found.values():
        server.start()
    found["broken"].set_behaviour(mode="status", status_code=500)
    found["picky"].set_behaviour(mode="status", status_code=400)
    yield found
    for server in found.values():
        server.stop()


def config(servers: dict[str, StandIn], directory: Path) -> Path:
    good = servers["good"].url

    def backup(kind: str) -> dict[str, Any]:
        return {"providers": [{"id": f"bk-{kind}", "api_host": good, "api_type": kind,
                               "model_path": f"up-{kind}"}]}

    closed = f"http://127.0.0.1:{free_port()}"
    group = {
        "backup-openai": backup("openai"),
        "backup-ollama": backup("ollama"),
        "backup-anthropic": backup("anthropic"),
        "refused": {"providers": [{"id": "refused-p", "api_host": closed,
                                   "api_type": "openai"}],
                    "fallback_models": ["backup-openai"]},
        "broken": {"providers": [{"id": "broken-p", "api_host": servers["broken"].url,
                                  "api_type": "ollama"}],
                   "fallback_models": ["backup-ollama"]},
        "busy": {"providers": [{"id": "busy-p", "api_host": servers["slow"].url,
                                "api_type": "anthropic", "max_concurrency": 1}],
                 "fallback_models": ["backup-anthropic"]},
        # refuses the caller's request (400): the caller's fault, so no fallback
        "picky": {"providers": [{"id": "picky-p", "api_host": servers["picky"].url,
                                 "api_type": "openai"}],
                  "fallback_models": ["backup-openai"]},
        # nothing in this chain can serve: the last failure is the answer
        "dead-end": {"providers": [{"id": "dead-end-p", "api_host": closed,
                                    "api_type": "openai"}],
                     "fallback_models": ["lonely"]},
        "lonely": {"providers": [{"id": "lonely-p", "api_host": servers["broken"].url,
                                  "api_type": "openai"}]},
        # two hops: chain -> refused (down too) -> backup-openai (refused's own fallback)
        "chain": {"providers": [{"id": "chain-p", "api_host": closed, "api_type": "ollama"}],
                  "fallback_models": ["refused"]},
    }
    path = directory / "models-config.json"
    path.write_text(json.dumps({"fallback_models_test": group,
                                "active_models": {"fallback_models_test": list(group)}}))
    return path


@pytest.fixture(scope="module")
def gateway(servers: dict[str, StandIn], redis_server: RedisServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    path = config(servers, tmp_path_factory.mktemp("fallbacks"))
    server = Gateway(path, server_type="gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                     LLM_ROUTER_SERVER_WORKERS_COUNT="2", LLM_ROUTER_REDIS_HOST="127.0.0.1",
                     LLM_ROUTER_REDIS_PORT=str(redis_server.port),
                     LLM_ROUTER_REDIS_PREFIX="fallbacks:", LLM_ROUTER_USE_PROMETHEUS="1",
                     LLM_ROUTER_ACQUIRE_TIMEOUT=str(ACQUIRE_TIMEOUT), LLM_ROUTER_MINIMUM="0",
                     LLM_ROUTER_PROMPTS_DIR=str(ROOT / "resources/prompts"),
                     LLM_ROUTER_SHUTDOWN_GRACE="2")
    yield server
    server.stop()
    assert "Traceback" not in server.output()


@pytest.fixture(scope="module")
def busy_slot(gateway: Gateway, servers: dict[str, StandIn]) -> Iterator[None]:
    """The busy model's one provider slot, held by a request its upstream answers slowly."""
    slow = servers["slow"]
    slow.set_behaviour(first_delay=HOLD)

    def hold() -> None:
        with contextlib.suppress(requests.RequestException):  # the module ended first
            requests.post(gateway.url + "/v1/messages", timeout=HOLD + 30, json={
                "model": "busy", "max_tokens": 5, "messages": MESSAGES})

    threading.Thread(target=hold, daemon=True).start()
    wait_for(lambda: slow.count >= 1, 15, "the slow upstream to receive the holder")
    slow.set_behaviour(first_delay=0.0)  # any further request would be answered at once
    yield


def ask(gateway: Gateway, protocol: str, model: str, stream: bool) -> requests.Response:
    path, extra = {"openai": ("/v1/chat/completions", {}), "ollama": ("/api/chat", {}),
                   "anthropic": ("/v1/messages", {"max_tokens": 20})}[protocol]
    return requests.post(gateway.url + path, timeout=30, json={
        "model": model, "messages": MESSAGES, "stream": stream, **extra})


def named_models(reply: requests.Response, protocol: str, stream: bool) -> set[str]:
    """Every model name the body shows."""
    if not stream:
        return {reply.json()["model"]}
    names = set()
    for line in reply.text.splitlines():
        payload = line[5:].strip() if line.startswith("data:") else line
        if not payload.startswith("{"):
            continue
        value = json.loads(payload)
        if protocol == "anthropic":
            if value.get("type") == "message_start":
                names.add(value["message"]["model"])
        else:
            names.add(value["model"])
    return names


def text_of(reply: requests.Response, protocol: str, stream: bool) -> str:
    if not stream:
        body = reply.json()
        return {"openai": lambda: body["choices"][0]["message"]["content"],
                "ollama": lambda: body["message"]["content"],
                "anthropic": lambda: body["content"][0]["text"]}[protocol]()
    return reply.text


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("protocol", ["openai", "ollama", "anthropic"])
@pytest.mark.parametrize("primary", list(KINDS))
def test_a_model_that_cannot_serve_falls_back(
        gateway: Gateway, servers: dict[str, StandIn], busy_slot: None, primary: str,
        protocol: str, stream: bool) -> None:
    served_before = servers["good"].count
    reply = ask(gateway, protocol, primary, stream)
    assert reply.status_code == 200, reply.text
    fallback = KINDS[primary]
    assert reply.headers[HEADER] == fallback
    assert named_models(reply, protocol, stream) == {fallback}
    assert "tok0" in text_of(reply, protocol, stream)
    assert servers["good"].count == served_before + 1
    sent = servers["good"].requests[-1]["json"]
    assert sent["model"] == f"up-{fallback.removeprefix('backup-')}"
    assert servers["slow"].count == 1  # only the holder ever reached the busy provider


def test_a_chain_is_followed_through_the_fallbacks_own_fallbacks(gateway: Gateway) -> None:
    reply = ask(gateway, "ollama", "chain", stream=False)
    assert reply.status_code == 200, reply.text
    assert reply.headers[HEADER] == "backup-openai"
    assert reply.json()["model"] == "backup-openai"


def test_a_request_the_provider_refuses_as_invalid_does_not_fall_back(
        gateway: Gateway, servers: dict[str, StandIn]) -> None:
    served_before = servers["good"].count
    reply = ask(gateway, "openai", "picky", stream=False)
    assert reply.status_code == 400
    assert HEADER not in reply.headers
    assert servers["good"].count == served_before


def test_when_no_model_of_the_chain_can_serve_the_last_failure_is_the_answer(
        gateway: Gateway) -> None:
    def message(reply: requests.Response, protocol: str) -> str:
        assert reply.headers["Content-Type"] == "application/json"
        assert HEADER not in reply.headers
        body = reply.json()
        return {"openai": lambda: body["error"]["message"], "ollama": lambda: body["error"],
                "anthropic": lambda: body["error"]["message"]}[protocol]()

    first = ask(gateway, "openai", "dead-end", stream=True)
    assert first.status_code == 502  # the fallback's provider answered 500
    assert "500" in message(first, "openai")
    # now every provider of the chain cools down: nothing can be acquired anywhere
    for protocol in ("ollama", "anthropic"):
        reply = ask(gateway, protocol, "dead-end", stream=True)
        assert reply.status_code == 503 and int(reply.headers["Retry-After"]) >= 1
        assert "cooling down" in message(reply, protocol)


def test_a_model_that_serves_names_itself(gateway: Gateway) -> None:
    reply = ask(gateway, "openai", "backup-openai", stream=False)
    assert reply.status_code == 200
    assert reply.headers[HEADER] == "backup-openai"
    assert reply.json()["model"] == "backup-openai"  # the public name, never model_path (§10)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_builtin_falls_back(gateway: Gateway, servers: dict[str, StandIn],
                              stream: bool) -> None:
    reply = requests.post(gateway.url + "/api/builtin/translate", timeout=30, json={
        "model_name": "broken", "texts": ["dzień dobry", "jak się masz"], "stream": stream})
    assert reply.status_code == 200, reply.text
    assert reply.headers[HEADER] == "backup-ollama"
    body = json.loads(reply.text.splitlines()[-1]) if stream else reply.json()
    assert body["model"] == "backup-ollama"
    assert [item["translated"] for item in body["response"]] == ["tok0 tok1 tok2 tok3 tok4"] * 2


def test_fallbacks_and_the_failures_behind_them_are_counted(gateway: Gateway) -> None:
    for primary in KINDS:  # at least one fallback of each, whatever ran before
        assert ask(gateway, "openai", primary, stream=False).status_code == 200
    found = scrape(gateway)
    fallbacks = found["llm_router_model_fallbacks_total"]
    for primary, fallback in KINDS.items():
        assert fallbacks[(("fallback", fallback), ("model", primary))] >= 1
    assert fallbacks[(("fallback", "refused"), ("model", "chain"))] >= 1
    # label values are configured pairs only, present from the start (zero until used)
    assert set(fallbacks) == {(("fallback", f), ("model", m)) for m, f in [
        *KINDS.items(), ("chain", "refused"), ("chain", "backup-openai"),
        ("picky", "backup-openai"), ("dead-end", "lonely")]}
    errors = found["llm_router_provider_errors_total"]
    assert errors[(("kind", "connection"), ("model", "refused"), ("provider", "refused-p"))] >= 1
    assert errors[(("kind", "status"), ("model", "broken"), ("provider", "broken-p"))] >= 1


def scrape(gateway: Gateway) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> sorted label pairs -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    text = requests.get(gateway.url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return found
