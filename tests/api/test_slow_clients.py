"""Slow or stalled clients cannot deny service (SPEC §13): under every server type, many
connections that stall in their headers or body (``Content-Length: 100``, then 4 bytes) are held
open while ordinary requests are answered, and every stalled one is closed once
``LLM_ROUTER_CLIENT_TIMEOUT`` has passed (asserted with a 3x margin)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from standin import StandIn
from tests.support.procs import Gateway, write_config
from tests.support.rawhttp import STALLED_BODY, open_stalled, parse, still_open, wait_all_closed

CLIENT_TIMEOUT = 4.0
# (server type, extra env, stalled connections): production gevent and waitress get many
# (bounded for CI; more behave the same, see docs/running.md). Thread-per-connection servers
# hold a thread per stalled client for up to the timeout, so they get fewer than their threads
# (gthread: 2 workers x 8 threads; sync: 2 workers x 1).
SERVERS = [
    ("gunicorn", {"LLM_ROUTER_SERVER_WORKER_CLASS": "gevent"}, 1100),
    ("waitress", {}, 1100),  # past descriptor 1,024: select() would fail, poll() does not
    ("gunicorn", {"LLM_ROUTER_SERVER_WORKER_CLASS": "gthread"}, 6),
    ("gunicorn", {"LLM_ROUTER_SERVER_WORKER_CLASS": "sync",
                  "LLM_ROUTER_SERVER_THREADS_COUNT": "1"}, 1),
    ("flask", {}, 20),
]
IDS = ["gunicorn-gevent", "waitress", "gunicorn-gthread", "gunicorn-sync", "flask"]


@pytest.fixture(scope="module")
def config(upstream: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("slow"), {
        "m1": [{"id": "m1-up", "api_host": upstream.url, "api_type": "openai"}]})


@pytest.mark.parametrize("server_type,env,stalled", SERVERS, ids=IDS)
def test_stalled_connections_are_closed_and_others_served(
        server_type: str, env: dict[str, str], stalled: int, config: Path,
        fresh_upstream: StandIn) -> None:
    gateway = Gateway(config, server_type=server_type,
                      LLM_ROUTER_CLIENT_TIMEOUT=str(CLIENT_TIMEOUT),
                      LLM_ROUTER_SERVER_WORKERS_COUNT="2", **env)
    try:
        opened = time.monotonic()
        socks = open_stalled(gateway.port, stalled)
        # Ordinary requests are answered while every stalled connection is held open.
        for _ in range(10):
            reply = requests.post(gateway.url + "/v1/chat/completions", timeout=CLIENT_TIMEOUT,
                                  json={"model": "m1",
                                        "messages": [{"role": "user", "content": "hi"}]})
            assert reply.status_code == 200, reply.text
        assert requests.get(gateway.url + "/api/ping", timeout=CLIENT_TIMEOUT).ok
        assert sum(still_open(sock) for sock in socks) >= stalled // 2
        received, left_open = wait_all_closed(socks, opened + 3 * CLIENT_TIMEOUT)
        assert left_open == 0, f"{left_open} stalled connections still open"
        for answer in received:  # nothing, or a JSON 408
            if answer:
                reply = parse(answer)
                assert reply.status == 408 and reply.headers["content-type"] == \
                    "application/json", answer[:300]
                assert "LLM_ROUTER_CLIENT_TIMEOUT" in reply.json()["error"]["message"]
        assert requests.get(gateway.url + "/api/ping", timeout=CLIENT_TIMEOUT).ok
    finally:
        gateway.stop()
    assert "Traceback" not in gateway.output()


def test_a_trickled_body_is_bounded_in_total_under_gevent(config: Path) -> None:
    """One byte every half second never lets a read wait long, but the body as a whole must
    still arrive within the timeout."""
    gateway = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                      LLM_ROUTER_CLIENT_TIMEOUT="2", LLM_ROUTER_SERVER_WORKERS_COUNT="1")
    stop = threading.Event()
    try:
        sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
        sock.sendall(STALLED_BODY.replace(b"100", b"900"))

        def trickle() -> None:
            while not stop.wait(0.5):
                try:
                    sock.sendall(b" ")
                except OSError:
                    return

        threading.Thread(target=trickle, daemon=True).start()
        started = time.monotonic()
        received, left_open = wait_all_closed([sock], started + 3 * 2.0)
        assert left_open == 0
        assert parse(received[0]).status == 408
    finally:
        stop.set()
        gateway.stop()
