"""Built-in work is bounded and stops when its caller leaves (SPEC §13), under gunicorn + gevent
and the flask server: at most LLM_ROUTER_BUILTIN_MAX_TEXTS texts (413 above); a caller that
disconnects — mid-stream, or while a non-stream answer is being collected — starts no new model
call (a stand-in counts them: the count stops growing) and leaves no provider held."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest
import requests

from standin import StandIn
from tests.support.procs import ROOT, Gateway, running_standins, wait_for, write_config

MAX_TEXTS = 40
CONCURRENCY = 2
FIRST_DELAY = 0.4  # each model call takes at least this long
TEXTS = 30  # ~6 s of work at this concurrency if nobody stopped it


@pytest.fixture(scope="module")
def slowpoke() -> Iterator[StandIn]:
    with running_standins(1, "slowpoke") as servers:
        yield servers[0]


@pytest.fixture(scope="module", params=["gunicorn", "flask"])
def gateway(request: pytest.FixtureRequest, slowpoke: StandIn,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = write_config(tmp_path_factory.mktemp("limits"), {
        "m": [{"id": "m-up", "api_host": slowpoke.url, "api_type": "openai"}]})
    extra = ({"LLM_ROUTER_SERVER_WORKER_CLASS": "gevent", "LLM_ROUTER_SERVER_WORKERS_COUNT": "1"}
             if request.param == "gunicorn" else {})
    server = Gateway(config, server_type=request.param, LLM_ROUTER_MINIMUM="0",
                     LLM_ROUTER_PROMPTS_DIR=str(ROOT / "resources" / "prompts"),
                     LLM_ROUTER_BUILTIN_MAX_TEXTS=str(MAX_TEXTS),
                     LLM_ROUTER_BUILTIN_CONCURRENCY=str(CONCURRENCY), **extra)
    yield server
    server.stop()


@pytest.fixture()
def slow(slowpoke: StandIn) -> StandIn:
    slowpoke.reset()
    slowpoke.set_behaviour(first_delay=FIRST_DELAY, tokens=2)
    return slowpoke


def in_flight(gateway: Gateway) -> int:
    health = requests.get(gateway.url + "/api/health", timeout=5).json()
    return sum(p["in_flight"] for m in health["models"].values() for p in m["providers"])


def test_more_texts_than_the_limit_is_413_naming_it(gateway: Gateway, slowpoke: StandIn) -> None:
    slowpoke.reset()
    body = {"model_name": "m", "texts": ["word"] * (MAX_TEXTS + 1)}
    reply = requests.post(gateway.url + "/api/builtin/translate", json=body, timeout=10)
    assert reply.status_code == 413, reply.text
    error = reply.json()["error"]
    assert error["param"] == "texts" and str(MAX_TEXTS) in error["message"]
    assert "LLM_ROUTER_BUILTIN_MAX_TEXTS" in error["message"]
    passages = {"model_name": "m", "question_str": "q",
                "texts": {"a": ["p"] * MAX_TEXTS, "b": ["p"]}}
    assert requests.post(gateway.url + "/api/builtin/generative_answer", json=passages,
                         timeout=10).status_code == 413
    assert slowpoke.count == 0  # refused before any model call
    at_limit = {"model_name": "m", "texts": ["word"] * MAX_TEXTS}
    assert requests.post(gateway.url + "/api/builtin/simplify_text", json=at_limit,
                         timeout=30).status_code == 200


def raw_request(gateway: Gateway, body: dict[str, object]) -> socket.socket:
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    sock.sendall(b"POST /api/builtin/translate HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\n"
                 + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    return sock


def settled(upstream: StandIn) -> int:
    """The count once it stopped growing for longer than several model calls take."""
    last = -1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if upstream.count == last:
            return last
        last = upstream.count
        time.sleep(4 * FIRST_DELAY)
    raise AssertionError("the model calls never stopped")


@pytest.mark.parametrize("stream", [True, False])
def test_a_caller_that_leaves_stops_the_model_calls(gateway: Gateway, slow: StandIn,
                                                    stream: bool) -> None:
    body = {"model_name": "m", "texts": [f"text {i}" for i in range(TEXTS)], "stream": stream}
    sock = raw_request(gateway, body)
    try:
        if stream:
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")  # the stream began
        wait_for(lambda: slow.count >= 2 * CONCURRENCY, 20, "some model calls")
    finally:
        sock.close()
    left_at = slow.count
    final = settled(slow)
    assert final <= left_at + CONCURRENCY, (left_at, final)  # only those already running
    assert final < TEXTS
    wait_for(lambda: in_flight(gateway) == 0, 10, "every provider to be released")
