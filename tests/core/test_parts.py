"""The service's parts have a real teardown: ``Parts.close`` stops the background threads and
is idempotent (it also runs at interpreter exit once the parts started)."""

from __future__ import annotations

import atexit
import threading
from pathlib import Path

import pytest

from llm_router_api.core.assemble import assemble
from llm_router_api.settings import load_settings
from tests.support.procs import write_config

pytestmark = pytest.mark.unit


def maintenance_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "llm-router-maintenance"]


def test_close_stops_the_maintenance_thread_and_can_run_twice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hooks: list[object] = []
    monkeypatch.setattr(atexit, "register", hooks.append)
    monkeypatch.setattr(atexit, "unregister", hooks.remove)
    write_config(tmp_path, {"m": [{"id": "a", "api_host": "http://127.0.0.1:9",
                                   "api_type": "openai"}]})
    settings = load_settings({"LLM_ROUTER_MODELS_CONFIG": str(tmp_path / "models-config.json"),
                              "LLM_ROUTER_MINIMUM": "1", "LLM_ROUTER_LEASE_TTL": "3",
                              "LLM_ROUTER_HEALTH_INTERVAL": "1"})
    before = set(maintenance_threads())
    parts = assemble(settings)
    parts.start()
    assert parts.close in hooks  # closed at interpreter exit, if nobody else does
    started = [t for t in maintenance_threads() if t not in before]
    assert len(started) == 1 and started[0].is_alive()
    parts.close()
    parts.close()
    assert parts.close not in hooks
    started[0].join(timeout=10)  # it wakes every min(TTL/3, HEALTH_INTERVAL) = 1 s
    assert not started[0].is_alive()
