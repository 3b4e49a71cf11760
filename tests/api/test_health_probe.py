"""``/api/health`` reflects reality from the start: providers are probed when a worker starts,
so a provider that points at nothing shows as unreachable before any request has failed, and
it shows as reachable again once it answers (probed every ``HEALTH_INTERVAL``)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from standin import StandIn
from tests.support.procs import Gateway, RedisServer, free_port, wait_for, write_config

HEALTH_INTERVAL = 0.5


def health(gateway: Gateway) -> tuple[int, dict[str, Any]]:
    response = requests.get(gateway.url + "/api/health", timeout=5)
    return response.status_code, response.json()


def test_unreachable_providers_are_reported_from_startup_and_recover(
        upstream: StandIn, tmp_path: Path) -> None:
    later_port = free_port()
    config = write_config(tmp_path, {
        "live": [{"id": "live-up", "api_host": upstream.url, "api_type": "openai"}],
        "later": [{"id": "later-up", "api_host": f"http://127.0.0.1:{later_port}",
                   "api_type": "ollama"}],
    })
    gateway = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                      LLM_ROUTER_SERVER_WORKERS_COUNT="2",
                      LLM_ROUTER_HEALTH_INTERVAL=str(HEALTH_INTERVAL))
    late = StandIn(name="late", port=later_port)
    try:
        # No request has been sent: only the startup probe can know.
        wait_for(lambda: health(gateway)[0] == 503, 10 * HEALTH_INTERVAL + 10,
                 "health to report the provider that points at nothing")
        status, body = health(gateway)
        assert body["status"] == "degraded"
        assert body["models"]["later"]["providers"] == [
            {"id": "later-up", "healthy": False, "reachable": False, "drained": False,
             "in_flight": 0}]
        assert body["models"]["live"]["healthy"] is True
        assert str(later_port) not in str(body)  # never a host

        late.start()
        # Both workers (each with its own state, no Redis here) see it answer again.
        def recovered() -> bool:
            return all(health(gateway)[0] == 200 for _ in range(6))
        wait_for(recovered, 10 * HEALTH_INTERVAL + 10, "health to see the provider answer")
        assert health(gateway)[1]["models"]["later"]["providers"][0]["reachable"] is True
    finally:
        late.stop()
        gateway.stop()


@pytest.mark.parametrize("worker_class", ["gevent"])
def test_a_healthy_pool_is_ok_at_startup(upstream: StandIn, tmp_path: Path,
                                         worker_class: str) -> None:
    config = write_config(tmp_path, {
        "live": [{"id": "live-up", "api_host": upstream.url, "api_type": "openai"},
                 {"id": "live-ollama", "api_host": upstream.url, "api_type": "ollama"},
                 {"id": "live-anthropic", "api_host": upstream.url, "api_type": "anthropic"}]})
    before = upstream.probes
    gateway = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS=worker_class,
                      LLM_ROUTER_HEALTH_INTERVAL=str(HEALTH_INTERVAL))
    try:
        wait_for(lambda: upstream.probes - before >= 3, 10, "the startup probes")
        status, body = health(gateway)
        assert status == 200 and body["status"] == "ok"
        assert all(p["reachable"] for p in body["models"]["live"]["providers"])
    finally:
        gateway.stop()


def test_with_redis_one_worker_in_the_cluster_probes(tmp_path: Path,
                                                     redis_server: RedisServer) -> None:
    """The record is shared through Redis, so the probe lock's holder alone probes: three
    workers, one startup probe of a provider that answers (a probe per worker without it)."""
    own = StandIn(name="probed")
    own.start()
    down = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path, {
        "live": [{"id": "live-up", "api_host": own.url, "api_type": "openai"}],
        "gone": [{"id": "gone-up", "api_host": down, "api_type": "openai"}]})
    gateway = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                      LLM_ROUTER_SERVER_WORKERS_COUNT="3",
                      LLM_ROUTER_HEALTH_INTERVAL=str(HEALTH_INTERVAL),
                      LLM_ROUTER_REDIS_HOST="127.0.0.1",
                      LLM_ROUTER_REDIS_PORT=str(redis_server.port),
                      LLM_ROUTER_REDIS_PREFIX="probe-lock:")
    try:
        # Every worker is up (the Gateway waits for each); the unreachable provider is
        # re-probed each interval by the holder, and reported by every worker.
        wait_for(lambda: all(health(gateway)[0] == 503 for _ in range(6)),
                 10 * HEALTH_INTERVAL + 10, "every worker to report the unreachable one")
        wait_for(lambda: own.probes >= 1, 10, "the startup probe")
        # Several intervals later: a reachable provider is probed at startup only.
        later = 6 * HEALTH_INTERVAL
        threading.Event().wait(later)  # bounded: what might still arrive, given the time
        assert own.probes == 1
    finally:
        gateway.stop()
        own.stop()
