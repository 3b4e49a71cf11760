"""``ModelHandler.run_events``: canonical events with the shared lifecycle, and exactly one
release per acquire however the consumer ends (real chooser, real stand-in upstream)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_router_api.core.assemble import Parts, assemble
from llm_router_api.errors import UpstreamError
from llm_router_api.schemas.calls import Call, Op, Protocol
from llm_router_api.settings import load_settings
from standin import StandIn
from tests.support.procs import free_port, write_config


@pytest.fixture()
def parts(fresh_upstream: StandIn, tmp_path: Path) -> Iterator[Parts]:
    config = write_config(tmp_path, {
        "m": [{"id": "dead", "api_host": f"http://127.0.0.1:{free_port()}",
               "api_type": "openai"},
              {"id": "live", "api_host": fresh_upstream.url, "api_type": "openai"}]})
    settings = load_settings({"LLM_ROUTER_MODELS_CONFIG": str(config),
                              "LLM_ROUTER_MINIMUM": "1", "LLM_ROUTER_EXTERNAL_TIMEOUT": "2"})
    built = assemble(settings)
    yield built
    built.close()


def call(stream: bool = True) -> Call:
    body = {"model": "m", "messages": [{"role": "user", "content": "a b c"}], "stream": stream}
    return Call(Protocol.OPENAI, Op.CHAT, "m", body, body, stream)


def test_events_are_canonical_and_a_dead_provider_is_failed_over(parts: Parts) -> None:
    for _ in range(2):  # whichever provider is tried first, both calls succeed
        events = list(parts.handler.run_events(call()))
        assert all(e["object"] == "chat.completion.chunk" for e in events)
        assert parts.chooser.live_leases() == 0
    whole = list(parts.handler.run_events(call(stream=False)))
    assert [e["object"] for e in whole] == ["chat.completion"]
    assert parts.chooser.live_leases() == 0


def test_closed_early_or_never_started_releases(parts: Parts) -> None:
    events = parts.handler.run_events(call())
    next(events)
    assert parts.chooser.live_leases() == 1
    events.close()
    assert parts.chooser.live_leases() == 0
    parts.handler.run_events(call()).close()  # never started: nothing was acquired
    assert parts.chooser.live_leases() == 0


def test_failure_mid_stream_raises_and_releases(parts: Parts, fresh_upstream: StandIn) -> None:
    fresh_upstream.set_behaviour(mode="die_mid_stream", die_after=2)
    events = parts.handler.run_events(call())
    next(events)
    with pytest.raises(UpstreamError):
        list(events)
    assert parts.chooser.live_leases() == 0
