"""SIGTERM under gunicorn and waitress: close the listener at once, let in-flight streams
finish (bounded), exit 0."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from standin import StandIn
from tests.support.procs import Gateway, wait_for, write_config


@pytest.mark.parametrize("server_type", ["gunicorn", "waitress"])
def test_sigterm_lets_an_in_flight_stream_finish(upstream: StandIn, server_type: str,
                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    upstream.reset()
    upstream.set_behaviour(tokens=8, token_delay=0.25)
    config: Path = write_config(tmp_path_factory.mktemp("shutdown"), {
        "m1": [{"id": "m1-up", "api_host": upstream.url, "api_type": "openai"}]})
    gateway = Gateway(config, server_type=server_type, LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                      LLM_ROUTER_SERVER_WORKERS_COUNT="1", LLM_ROUTER_SHUTDOWN_GRACE="20")
    try:
        lines = open_stream(gateway)
        threading.Timer(0.1, gateway.proc.send_signal, (signal.SIGTERM,)).start()
        rest = [line for line in lines if line]
        assert rest[-1] == b"data: [DONE]"
        assert sum(b'"content":"tok' in line for line in rest) == 8
        gateway.proc.wait(20)
        assert gateway.proc.returncode == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(gateway.url + "/api/ping", timeout=2)
    finally:
        gateway.stop()
        upstream.reset()


def open_stream(gateway: Gateway) -> Iterator[bytes]:
    """A chat stream whose first frame has arrived; the rest of its lines."""
    response = requests.post(gateway.url + "/v1/chat/completions", stream=True, timeout=20,
                             json={"model": "m1", "stream": True,
                                   "messages": [{"role": "user", "content": "hi"}]})
    lines = response.iter_lines()
    assert next(line for line in lines if line).startswith(b"data:")
    return lines


LISTENER_CLOSE = 1.0  # SPEC §13: the listening socket is closed within 1 s of SIGTERM
SERVERS = {
    "gunicorn-gevent": ("gunicorn", {"LLM_ROUTER_SERVER_WORKER_CLASS": "gevent"}),
    "gunicorn-gthread": ("gunicorn", {"LLM_ROUTER_SERVER_WORKER_CLASS": "gthread"}),
    "gunicorn-sync": ("gunicorn", {"LLM_ROUTER_SERVER_WORKER_CLASS": "sync",
                                   "LLM_ROUTER_SERVER_THREADS_COUNT": "1"}),
    "waitress": ("waitress", {}),
    "flask": ("flask", {}),
}


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False  # accepted, or queued in a backlog nobody will serve
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


@pytest.mark.parametrize("name", list(SERVERS))
def test_sigterm_closes_the_listener_at_once(upstream: StandIn, name: str,
                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    """New connections are refused (not left hanging) within 1 s of SIGTERM to the server's
    main process (asserted with a 3x margin), while an in-flight stream (about 5 s long) goes
    on to its end under the servers that drain."""
    upstream.reset()
    upstream.set_behaviour(tokens=16, token_delay=0.3)
    config: Path = write_config(tmp_path_factory.mktemp("listener"), {
        "m1": [{"id": "m1-up", "api_host": upstream.url, "api_type": "openai"}]})
    server_type, env = SERVERS[name]
    gateway = Gateway(config, server_type=server_type, LLM_ROUTER_SERVER_WORKERS_COUNT="2",
                      LLM_ROUTER_SHUTDOWN_GRACE="20", **env)
    try:
        lines = open_stream(gateway)
        gateway.proc.send_signal(signal.SIGTERM)  # the main process only, as `docker stop` does
        wait_for(lambda: refused(gateway.port), 3 * LISTENER_CLOSE, "the listener to close")
        if name != "flask":  # the development server stops at once
            assert gateway.alive()  # still draining the stream: the refusal was not the exit
            rest = [line for line in lines if line]
            assert rest[-1] == b"data: [DONE]"
            assert sum(b'"content":"tok' in line for line in rest) == 16
            gateway.proc.wait(20)
            assert gateway.proc.returncode == 0
    finally:
        gateway.stop()
        upstream.reset()
    assert "Traceback" not in gateway.output()
