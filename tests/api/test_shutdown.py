"""SIGTERM under gunicorn and waitress: stop accepting, let in-flight streams finish (bounded),
exit 0."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest
import requests

from standin import StandIn
from tests.support.procs import Gateway, write_config


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
        response = requests.post(gateway.url + "/v1/chat/completions", stream=True, timeout=20,
                                 json={"model": "m1", "stream": True,
                                       "messages": [{"role": "user", "content": "hi"}]})
        lines = response.iter_lines()
        assert next(line for line in lines if line).startswith(b"data:")
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
