"""Find LLM servers on a machine and write a models-config for them.

    discover_servers(host, servers, timeout)   every server probed at once, each bounded by
                                               ``timeout`` (connect and read)
    models_config(found)                       a models-config: one public model per model
                                               name, one provider per server that has it

The probes use the service's own HTTP client (``Urllib3Transport``), directly: a proxy is never
asked about a local port.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from llm_router_api.cli.known import OLLAMA_TAGS, Server
from llm_router_api.errors import UpstreamError, UpstreamTimeout
from llm_router_api.providers.transport import Transport, Urllib3Transport

GROUP = "discovered_models"
HEADERS = {"Accept": "application/json"}


@dataclass(frozen=True)
class Found:
    """What one server answered: its models (empty when it had none or did not answer) and a
    short note for the operator."""

    server: Server
    url: str
    models: tuple[str, ...]
    note: str


def server_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def discover_servers(host: str, servers: Sequence[Server], timeout: float) -> list[Found]:
    """Probe every server concurrently; results in the order of ``servers``."""
    transport = Urllib3Transport()
    try:
        with ThreadPoolExecutor(max_workers=max(1, len(servers))) as pool:
            return list(pool.map(lambda s: probe(transport, host, s, timeout), servers))
    finally:
        transport.close()


def probe(transport: Transport, host: str, server: Server, timeout: float) -> Found:
    url = server_url(host, server.port)
    try:
        response = transport.request("GET", url + server.models_path, headers=HEADERS,
                                     body=None, timeout=timeout)
    except UpstreamTimeout:
        return Found(server, url, (), f"no answer within {timeout:g} s")
    except UpstreamError:
        return Found(server, url, (), "nothing listening")
    try:
        if response.status in (401, 403):
            return Found(server, url, (), "wants an API key; add its api_token by hand")
        if response.status != 200:
            return Found(server, url, (), f"answered {response.status} to "
                                          f"GET {server.models_path}")
        models = model_names(server, response.json())
    except UpstreamError:
        return Found(server, url, (), f"GET {server.models_path} is not a model list")
    finally:
        response.close()
    if models is None:
        return Found(server, url, (), f"GET {server.models_path} is not a model list")
    return Found(server, url, models, f"{len(models)} models: {', '.join(models)}"
                 if models else "no models")


def model_names(server: Server, body: Any) -> tuple[str, ...] | None:
    """Names from Ollama's ``{"models": [{"name"}]}`` or OpenAI's ``{"data": [{"id"}]}``."""
    key, field = ("models", "name") if server.models_path == OLLAMA_TAGS else ("data", "id")
    items = body.get(key) if isinstance(body, dict) else None
    if not isinstance(items, list):
        return None
    names = (item.get(field) for item in items if isinstance(item, dict))
    return tuple(dict.fromkeys(n for n in names if isinstance(n, str) and n.strip()))


def models_config(found: Sequence[Found]) -> dict[str, Any]:
    """A models-config serving every model found; a model several servers have gets one
    provider per server (the gateway balances across them)."""
    group: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for result in found:
        for name in result.models:
            provider = {"id": f"{result.server.name}-{result.server.port}-{name}",
                        "api_host": result.url, "api_type": result.server.api_type}
            group.setdefault(name, {"providers": []})["providers"].append(provider)
    return {GROUP: group, "active_models": {GROUP: list(group)}}
