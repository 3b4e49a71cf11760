"""The reload signals and a worker's ``Reloader``, in-process with the real parts
(``assemble``): following another process's announcement, refusing a broken file, and
announcing through the signal file when Redis is away."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_router_api.core.assemble import Parts, assemble
from llm_router_api.core.generation import load_inputs
from llm_router_api.core.reload import FileSignal, RedisSignal, Reloader, announce
from llm_router_api.settings import load_settings
from tests.support.procs import RedisServer, free_port, write_config


def file_settings(tmp_path: Path) -> Any:
    return load_settings({"LLM_ROUTER_MODELS_CONFIG": str(tmp_path / "models-config.json"),
                          "LLM_ROUTER_MINIMUM": "1"},
                         reload_signal_file=str(tmp_path / "signal"))


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    write_config(tmp_path, {"m": [{"id": "a", "api_host": "http://127.0.0.1:9",
                                   "api_type": "openai"}]})
    made = assemble(file_settings(tmp_path))
    yield made
    made.close()


def test_a_worker_follows_an_announcement_and_keeps_state(parts: Parts, tmp_path: Path) -> None:
    first = parts.config.current
    assert parts.reloader.poll() is False  # nothing announced yet
    write_config(tmp_path, {"m": [{"id": "a", "api_host": "http://127.0.0.1:9",
                                   "api_type": "openai"}],
                            "n": [{"id": "b", "api_host": "http://127.0.0.1:9",
                                   "api_type": "openai"}]})
    announce([FileSignal(tmp_path / "signal")])  # as another process (the master) does
    assert parts.reloader.poll() is True
    current = parts.config.current
    assert list(current.models.models) == ["m", "n"] and current.number == first.number + 1
    assert current.handler.chooser is first.handler.chooser  # shared: state is kept
    assert first.models.resolve("n") is None  # the old generation is untouched
    assert parts.reloader.poll() is False  # once per announcement


def test_a_broken_file_is_refused_and_nothing_changes(parts: Parts, tmp_path: Path) -> None:
    first = parts.config.current
    (tmp_path / "models-config.json").write_text(json.dumps({"active_models": []}))
    announce([FileSignal(tmp_path / "signal")])
    assert parts.reloader.poll() is True
    assert parts.config.current is first


def test_announce_falls_back_to_the_signal_file_when_redis_is_away(tmp_path: Path) -> None:
    import redis

    from llm_router_api.base.redis_link import redis_client

    settings = load_settings({}, redis_host="127.0.0.1", redis_port=free_port())
    away = RedisSignal(redis_client(settings), "k")  # the product's client: no retries
    file = FileSignal(tmp_path / "signal")
    assert announce([away, file]) == {1: 1}
    assert announce([away, file]) == {1: 2} and file.read() == 2
    with pytest.raises(redis.exceptions.ConnectionError):
        announce([away])


def test_a_signal_unreadable_when_the_files_were_read_is_followed_at_its_first_read(
        parts: Parts, tmp_path: Path) -> None:
    """A worker that started while Redis was away (or too slow to answer) cannot tell whether
    a reload was announced after it read its files: the first read of the counter reloads
    once, so no announcement is missed."""
    from llm_router_api.base.redis_link import redis_client

    port = free_port()
    settings = load_settings({}, redis_host="127.0.0.1", redis_port=port)
    signal = RedisSignal(redis_client(settings), "reload-test:config:generation")
    reloader = Reloader(parts.config, lambda: load_inputs(file_settings(tmp_path)), [signal])
    first = parts.config.current
    assert reloader.poll() is False  # still away: nothing to follow yet
    write_config(tmp_path, {"m": [{"id": "a", "api_host": "http://127.0.0.1:9",
                                   "api_type": "openai"}],
                            "n": [{"id": "b", "api_host": "http://127.0.0.1:9",
                                   "api_type": "openai"}]})
    redis = RedisServer(port)
    try:
        assert announce([signal]) == {0: 1}  # as another instance does, once Redis is back
        assert reloader.poll() is True
        assert list(parts.config.current.models.models) == ["m", "n"]
        assert parts.config.current.number == first.number + 1
        assert reloader.poll() is False  # followed once
    finally:
        redis.stop()
