"""``LLM_ROUTER_FIRST_BYTE_DEADLINE`` (SPEC §12) end to end under gunicorn + gevent: with every
provider hanging the caller gets 504 within the deadline (not MAX_ATTEMPTS × EXTERNAL_TIMEOUT);
503 when no slot could be had within it; a stream that started in time may run past it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from standin import StandIn
from tests.support.procs import Gateway, running_standins, write_config

DEADLINE = 1.0
MARGIN = 3


@pytest.fixture(scope="module")
def hanging() -> Iterator[StandIn]:
    with running_standins(1, "hanging") as servers:
        yield servers[0]


@pytest.fixture(scope="module")
def slow() -> Iterator[StandIn]:
    with running_standins(1, "slow") as servers:
        yield servers[0]


@pytest.fixture(scope="module")
def gateway(hanging: StandIn, slow: StandIn,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = write_config(tmp_path_factory.mktemp("deadline"), {
        "hung": [{"id": f"h{i}", "api_host": hanging.url, "api_type": kind}
                 for i, kind in enumerate(["openai", "ollama", "anthropic"])],
        "busy": [{"id": "busy-up", "api_host": slow.url, "api_type": "openai",
                  "max_concurrency": 1}],
        "slow": [{"id": "slow-up", "api_host": slow.url, "api_type": "openai"}],
    })
    server = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                     LLM_ROUTER_SERVER_WORKERS_COUNT="1",
                     LLM_ROUTER_FIRST_BYTE_DEADLINE=str(DEADLINE),
                     LLM_ROUTER_EXTERNAL_TIMEOUT="30", LLM_ROUTER_ACQUIRE_TIMEOUT="30",
                     LLM_ROUTER_MAX_ATTEMPTS="3", LLM_ROUTER_COOLDOWN="0")
    yield server
    server.stop()


def chat(gateway: Gateway, model: str, stream: bool = False) -> requests.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return requests.post(gateway.url + "/v1/chat/completions", json=body, timeout=30)


@pytest.mark.parametrize("stream", [False, True])
def test_every_provider_hanging_gives_504_within_the_deadline(
        gateway: Gateway, hanging: StandIn, stream: bool) -> None:
    hanging.reset()
    hanging.set_behaviour(mode="hang")
    started = time.monotonic()
    reply = chat(gateway, "hung", stream)
    assert time.monotonic() - started < MARGIN * DEADLINE
    assert reply.status_code == 504, reply.text
    assert reply.json()["error"]["type"] == "timeout"
    assert hanging.count >= 1


def test_no_slot_within_the_deadline_gives_503(gateway: Gateway, slow: StandIn) -> None:
    slow.reset()
    slow.set_behaviour(token_delay=2.0, tokens=5)  # a stream that holds the lone slot ~10 s
    body = {"model": "busy", "messages": [{"role": "user", "content": "hold"}], "stream": True}
    with requests.post(gateway.url + "/v1/chat/completions", json=body, timeout=30,
                       stream=True) as holder:
        assert holder.status_code == 200  # its first byte came: the slot is held
        started = time.monotonic()
        reply = chat(gateway, "busy")
        assert time.monotonic() - started < MARGIN * DEADLINE
    assert reply.status_code == 503, reply.text
    assert int(reply.headers["Retry-After"]) >= 1
    assert slow.count == 1


def test_a_stream_that_started_in_time_may_outlast_the_deadline(gateway: Gateway,
                                                               slow: StandIn) -> None:
    # first byte after 0.3 s, then 1.5 s between tokens: longer than the whole deadline, well
    # under EXTERNAL_TIMEOUT, which rules once the first byte has come
    slow.reset()
    slow.set_behaviour(first_delay=0.3, token_delay=1.5, tokens=2)
    reply = chat(gateway, "slow", stream=True)
    assert reply.status_code == 200
    assert reply.text.rstrip().endswith("data: [DONE]") and '"error"' not in reply.text
