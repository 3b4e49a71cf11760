"""Built-in utilities' model calls are observed like any other: provider calls, latency, time to
first token and tokens per model and provider."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from standin import StandIn
from tests.api.test_metrics import key, scrape
from tests.support.procs import ROOT, Gateway, write_config


def test_builtin_sub_calls_are_counted(upstream: StandIn,
                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    upstream.reset()
    config: Path = write_config(tmp_path_factory.mktemp("builtin-metrics"), {
        "m1": [{"id": "m1-up", "api_host": upstream.url, "api_type": "openai"}]})
    gateway = Gateway(config, LLM_ROUTER_MINIMUM="0", LLM_ROUTER_USE_PROMETHEUS="1",
                      LLM_ROUTER_PROMPTS_DIR=str(ROOT / "resources/prompts"))
    try:
        response = requests.post(gateway.url + "/api/builtin/translate", timeout=10, json={
            "model_name": "m1", "texts": ["one", "two", "three"], "stream": False})
        assert response.status_code == 200
        samples = scrape(gateway)
    finally:
        gateway.stop()
    labels = {"model": "m1", "provider": "m1-up"}
    assert samples[key("llm_router_provider_calls_total", **labels)] == 3
    assert samples[key("llm_router_provider_latency_seconds_count", **labels)] == 3
    assert samples[key("llm_router_provider_ttft_seconds_count", **labels)] == 3
    assert samples[key("llm_router_tokens_total", direction="out", **labels)] == 3 * 5
