"""Built-in utilities against every provider type: the library's system prompt and the
generation options reach each upstream in its own format."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from standin import StandIn
from tests.support.procs import ROOT, Gateway, write_config

TYPES = ("openai", "vllm", "ollama", "anthropic")


@pytest.fixture(scope="module")
def gateway(upstream: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = write_config(tmp_path_factory.mktemp("builtins-providers"), {
        kind: [{"id": f"{kind}-up", "api_host": upstream.url, "api_type": kind}]
        for kind in TYPES})
    server = Gateway(config, LLM_ROUTER_MINIMUM="0",
                     LLM_ROUTER_PROMPTS_DIR=str(ROOT / "resources/prompts"))
    yield server
    server.stop()


def system_text(sent: dict[str, Any]) -> str:
    if "system" in sent:  # Anthropic
        system = sent["system"]
        return system if isinstance(system, str) else " ".join(b["text"] for b in system)
    return next(m["content"] for m in sent["messages"] if m["role"] == "system")


def max_tokens(kind: str, sent: dict[str, Any]) -> Any:
    return sent["options"]["num_predict"] if kind == "ollama" else sent["max_tokens"]


@pytest.mark.parametrize("kind", TYPES)
def test_translate_on_every_provider_type(gateway: Gateway, fresh_upstream: StandIn,
                                          kind: str) -> None:
    fresh_upstream.set_behaviour(echo=True)
    response = requests.post(gateway.url + "/api/builtin/translate", timeout=10, json={
        "model_name": kind, "texts": ["first text", "second text"], "stream": False,
        "language": "en", "max_new_tokens": 77})
    assert response.status_code == 200, response.text
    assert [r["translated"] for r in response.json()["response"]] == ["first text",
                                                                     "second text"]
    assert len(fresh_upstream.requests) == 2
    for sent in (r["json"] for r in fresh_upstream.requests):
        assert "Polish" in system_text(sent)  # translate goes to Polish by default
        assert max_tokens(kind, sent) == 77


@pytest.mark.parametrize("kind", TYPES)
def test_conversation_streams_on_every_provider_type(gateway: Gateway, fresh_upstream: StandIn,
                                                     kind: str) -> None:
    fresh_upstream.set_behaviour(echo=True)
    response = requests.post(gateway.url + "/api/conversation_with_model", timeout=10, json={
        "model_name": kind, "user_last_statement": "hello there friend", "language": "pl"})
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [line for line in response.text.splitlines() if line]
    assert lines[-1].startswith('{"done":true,"response":"hello there friend"')
    assert sum('"delta"' in line for line in lines) == 3
