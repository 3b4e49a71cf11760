"""Every acquire is released: after a stream ends, fails, or the client goes away."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest
import requests

from standin import StandIn
from tests.support.procs import Gateway, wait_for, write_config


@pytest.fixture(scope="module", params=["flask", "gunicorn"])
def gateway(request: pytest.FixtureRequest, upstream: StandIn,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = write_config(tmp_path_factory.mktemp("release"), {
        "m1": [{"id": "m1-up", "api_host": upstream.url, "api_type": "openai"}]})
    env = {"LLM_ROUTER_SERVER_WORKERS_COUNT": "1", "LLM_ROUTER_SERVER_WORKER_CLASS": "gevent"}
    server = Gateway(config, server_type=request.param, LLM_ROUTER_COOLDOWN="0", **env)
    yield server
    server.stop()


def in_flight(gateway: Gateway) -> int:
    health = requests.get(gateway.url + "/api/health", timeout=5).json()
    return int(health["models"]["m1"]["providers"][0]["in_flight"])


def test_client_going_away_mid_stream_releases_the_provider(gateway: Gateway,
                                                           fresh_upstream: StandIn) -> None:
    fresh_upstream.set_behaviour(tokens=20, token_delay=0.2)
    body = json.dumps({"model": "m1", "stream": True,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\nContent-Length: "
                 + str(len(body)).encode() + b"\r\n\r\n" + body)
    received = b""
    deadline = time.monotonic() + 10
    while b"data:" not in received and time.monotonic() < deadline:
        chunk = sock.recv(4096)  # bounded by the socket's 10 s timeout
        if not chunk:
            break
        received += chunk
    assert b"data:" in received, received
    assert in_flight(gateway) == 1
    sock.close()
    wait_for(lambda: in_flight(gateway) == 0, 10, "the lease to be released")


def test_finished_and_failed_streams_release(gateway: Gateway, fresh_upstream: StandIn) -> None:
    body = {"model": "m1", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    assert requests.post(gateway.url + "/v1/chat/completions", json=body,
                         timeout=10).text.endswith("data: [DONE]\n\n")
    fresh_upstream.set_behaviour(mode="die_mid_stream", die_after=2)
    assert '"error"' in requests.post(gateway.url + "/v1/chat/completions", json=body,
                                      timeout=10).text
    fresh_upstream.set_behaviour(mode="status", status_code=500)
    assert requests.post(gateway.url + "/v1/chat/completions", json=body,
                         timeout=10).status_code == 502
    assert in_flight(gateway) == 0
