"""Every acquire has exactly one release, whatever happens to the request (in-process app, real
stand-in upstreams); failover and bounded waits through the chooser."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from llm_router_api.base.lb.chooser import ChooserLimits, ProviderChooser
from llm_router_api.base.lb.first_available import FirstAvailableStrategy
from llm_router_api.base.lb.picking import Candidate
from llm_router_api.base.lb.state import Grant, MemoryStore
from llm_router_api.base.lb.waiting import Waiter
from llm_router_api.schemas.calls import Call, Op, Protocol
from llm_router_api.settings import load_settings
from llm_router_api.web.app import create_app
from standin import StandIn
from tests.support.procs import write_config

ACQUIRE_TIMEOUT = 0.5
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


class CountingStore(MemoryStore):
    """Counts leases granted and released."""

    def __init__(self) -> None:
        super().__init__()
        self.granted = 0
        self.released = 0

    def choose_lease(self, rule: str, state_key: str, candidates: Sequence[Candidate],
                     ttl: float | None, waiter: Waiter | None = None) -> Grant | None:
        chosen = super().choose_lease(rule, state_key, candidates, ttl, waiter)
        if chosen is not None and chosen[1] is not None:
            self.granted += 1
        return chosen

    def release_lease(self, provider_id: str, lease_id: str, queue: str | None = None) -> None:
        self.released += 1
        super().release_lease(provider_id, lease_id, queue)


@pytest.fixture(scope="module")
def standins() -> Iterator[tuple[StandIn, StandIn]]:
    a, b = StandIn(name="a"), StandIn(name="b")
    a.start()
    b.start()
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture()
def setup(standins: tuple[StandIn, StandIn], tmp_path: Path
          ) -> Iterator[tuple[FlaskClient, CountingStore, ProviderChooser]]:
    for s in standins:
        s.reset()
    config = write_config(tmp_path, {"m": [
        {"id": "a", "api_host": standins[0].url, "api_type": "openai"},
        {"id": "b", "api_host": standins[1].url, "api_type": "openai"}]})
    settings = load_settings({"LLM_ROUTER_MODELS_CONFIG": str(config), "LLM_ROUTER_MINIMUM": "1",
                              "LLM_ROUTER_EXTERNAL_TIMEOUT": "2",
                              "LLM_ROUTER_ACQUIRE_TIMEOUT": str(ACQUIRE_TIMEOUT)})
    store = CountingStore()
    chooser = ProviderChooser(FirstAvailableStrategy(store), store=store,
                              limits=ChooserLimits(acquire_timeout=ACQUIRE_TIMEOUT, lease_ttl=5,
                                                   cooldown=30))
    app = create_app(settings, chooser=chooser)
    yield app.test_client(), store, chooser
    app.extensions["llm_router"].extras["parts"].close()


def settled(store: CountingStore, chooser: ProviderChooser) -> bool:
    return (store.granted == store.released and chooser.live_leases() == 0
            and store.in_flight(["a", "b"]) == {"a": 0, "b": 0})


def test_non_stream_and_full_stream_release_once(setup: tuple) -> None:
    client, store, chooser = setup
    assert client.post("/v1/chat/completions", json=BODY).status_code == 200
    reply = client.post("/v1/chat/completions", json={**BODY, "stream": True})
    assert reply.get_data().endswith(b"data: [DONE]\n\n")
    assert store.granted == 2 and settled(store, chooser)


def test_stream_closed_before_its_first_byte_still_releases(setup: tuple) -> None:
    client, store, chooser = setup
    handler = client.application.extensions["llm_router"].handler
    stream = {**BODY, "stream": True}
    reply = handler.run(Call(Protocol.OPENAI, Op.CHAT, "m", stream, stream, True))
    assert chooser.live_leases() == 1
    reply.body.close()  # the server closed the body before sending anything
    assert store.granted == 1 and settled(store, chooser)


def test_stream_abandoned_midway_releases_once(setup: tuple,
                                               standins: tuple[StandIn, StandIn]) -> None:
    client, store, chooser = setup
    standins[0].set_behaviour(tokens=50, token_delay=0.02)
    reply = client.post("/v1/chat/completions", json={**BODY, "stream": True}, buffered=False)
    body = iter(reply.response)
    next(body)
    next(body)
    reply.close()
    assert store.granted == 1 and settled(store, chooser)


def test_upstream_dying_mid_stream_ends_with_an_error_frame_and_releases(
        setup: tuple, standins: tuple[StandIn, StandIn]) -> None:
    client, store, chooser = setup
    standins[0].set_behaviour(mode="die_mid_stream", die_after=2)
    body = client.post("/v1/chat/completions", json={**BODY, "stream": True}).get_data()
    assert b'data: {"error"' in body and body.endswith(b"data: [DONE]\n\n")
    assert settled(store, chooser)


def test_caller_errors_are_not_retried_and_cool_nothing_down(
        setup: tuple, standins: tuple[StandIn, StandIn]) -> None:
    client, store, chooser = setup
    for s in standins:
        s.set_behaviour(mode="status", status_code=400)
    assert client.post("/v1/chat/completions", json=BODY).status_code == 400
    assert standins[0].count + standins[1].count == 1
    assert store.cooling(["a", "b"]) == set()
    assert settled(store, chooser)


def test_server_errors_fail_over_then_all_cooling_gives_503_at_once(
        setup: tuple, standins: tuple[StandIn, StandIn]) -> None:
    client, store, chooser = setup
    standins[0].set_behaviour(mode="status", status_code=500)
    assert client.post("/v1/chat/completions", json=BODY).status_code == 200
    assert (standins[0].count, standins[1].count) == (1, 1)
    standins[1].set_behaviour(mode="status", status_code=503)
    store.clear_cool_down("a")
    assert client.post("/v1/chat/completions", json=BODY).status_code == 502
    started = time.monotonic()
    reply = client.post("/v1/chat/completions", json=BODY)
    assert reply.status_code == 503 and int(reply.headers["Retry-After"]) >= 1
    assert time.monotonic() - started < ACQUIRE_TIMEOUT  # cooling: no waiting
    assert store.cooling(["a", "b"]) == {"a", "b"}
    assert settled(store, chooser)


def test_all_busy_waits_the_bounded_time_then_503(setup: tuple,
                                                  standins: tuple[StandIn, StandIn]) -> None:
    client, store, chooser = setup
    for s in standins:
        s.set_behaviour(tokens=100, token_delay=0.05)
    streams = [client.post("/v1/chat/completions", json={**BODY, "stream": True},
                           buffered=False) for _ in range(2)]
    assert store.in_flight(["a", "b"]) == {"a": 1, "b": 1}
    started = time.monotonic()
    reply = client.post("/v1/chat/completions", json=BODY)
    waited = time.monotonic() - started
    assert reply.status_code == 503 and "Retry-After" in reply.headers
    assert ACQUIRE_TIMEOUT * 0.9 <= waited < 3 * ACQUIRE_TIMEOUT
    for s in streams:
        s.close()
    assert settled(store, chooser)
