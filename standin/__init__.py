"""A stand-in upstream LLM server (OpenAI/vLLM, Ollama, Anthropic) for tests and benchmarks.

Standard library only. In-process::

    with StandIn(name="up1", behaviour=Behaviour(tokens=3)) as up:   # port 0: a free port
        requests.post(up.url + "/v1/chat/completions", json={...})
        up.set_behaviour(mode="status", status_code=429, retry_after=1)
        up.requests[-1]["json"]

Out of process: ``python -m standin --port 0 --name up1`` prints
``standin up1 listening on http://127.0.0.1:PORT`` once bound; steer it with
``POST /_control`` (JSON of Behaviour fields), ``GET /_stats``, ``POST /_reset``.
"""

from .behaviour import MODES, Behaviour
from .server import StandIn

__all__ = ["MODES", "Behaviour", "StandIn"]
