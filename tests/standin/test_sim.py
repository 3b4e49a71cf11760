"""The stand-in's sim mode (``standin.sim``): a cached, queueing server, read back through the
router's own load-signal parsers (``core.load_poller``)."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator

import pytest
import requests

from llm_router_api.core.load_poller import parse_metrics, parse_ps
from standin import Behaviour, StandIn
from standin.sim import ServerSim, SimParams
from tests.support.procs import wait_for

PREFILL = 1e-4  # s per uncached character


@pytest.fixture
def sim() -> Iterator[StandIn]:
    server = StandIn(name="sim", behaviour=Behaviour(tokens=3),
                     sim=ServerSim(SimParams(slots=2, prefill_per_char=PREFILL,
                                             cache_chars=64 * 40, model="m")))
    server.start()
    yield server
    server.stop()


def chat(server: StandIn, *contents: str, stream: bool = False) -> requests.Response:
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": c}
                for i, c in enumerate(contents)]
    return requests.post(server.url + "/v1/chat/completions",
                         json={"model": "m", "messages": messages, "stream": stream}, timeout=30)


def stats(server: StandIn) -> dict[str, float]:
    return dict(requests.get(server.url + "/_sim", timeout=5).json())


def test_a_repeated_prefix_is_served_from_the_cache(sim: StandIn) -> None:
    text = "x" * 1000
    assert chat(sim, text).status_code == 200
    first = stats(sim)
    assert first["cached_chars"] == 0
    answer = "tok0 tok1 tok2 "
    assert chat(sim, text, answer, "next question").status_code == 200
    second = stats(sim)
    # the whole first prompt and the server's own answer were cached, in full blocks
    new_prompt = second["prompt_chars"] - first["prompt_chars"]
    assert new_prompt - 64 < second["cached_chars"] <= new_prompt


def test_the_cache_is_a_bounded_lru(sim: StandIn) -> None:
    for tag in "abcde":
        chat(sim, tag * 1000)  # 5 prompts of ~16 blocks into a cache of 40 blocks
    before = stats(sim)["cached_chars"]
    chat(sim, "a" * 1000)  # evicted long ago
    assert stats(sim)["cached_chars"] == before
    chat(sim, "e" * 1000)  # the most recent one is still there
    assert stats(sim)["cached_chars"] > before


def test_slots_queue_and_metrics_speak_vllm(sim: StandIn) -> None:
    sim.set_behaviour(token_delay=0.3, tokens=6)  # each stream holds its slot ~1.5 s
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(chat, sim, f"q{i} " * 100, stream=True) for i in range(5)]

        def queued() -> bool:
            text = requests.get(sim.url + "/metrics", timeout=5).text
            got = parse_metrics(text, "m")
            return got.get("running") == 2 and got.get("waiting") == 3

        wait_for(queued, 10, "two running and three waiting")
        text = requests.get(sim.url + "/metrics", timeout=5).text
        assert 'vllm:kv_cache_usage_perc{model_name="m"}' in text
        assert 0 < parse_metrics(text, "m")["kv"] <= 1
        assert parse_metrics(text, "another-model") == parse_metrics(text, "m")  # unnamed: all
        assert all(f.result().status_code == 200 for f in futures)
    assert stats(sim)["waiting"] == 0


def test_ps_and_overrides_and_failing_pages(sim: StandIn) -> None:
    assert sim.sim is not None
    body = requests.get(sim.url + "/api/ps", timeout=5).json()
    assert parse_ps(body, "m") == {"loaded": 1.0, "vram": 1.0}
    assert parse_ps(body, "m:latest") == {"loaded": 1.0, "vram": 1.0}
    sim.sim.update(vram_fraction=0.25)
    assert parse_ps(requests.get(sim.url + "/api/ps", timeout=5).json(), "m")["vram"] == 0.25
    sim.sim.update(loaded=False)
    assert parse_ps(requests.get(sim.url + "/api/ps", timeout=5).json(), "m") == {"loaded": 0.0}
    reply = requests.post(sim.url + "/_sim", json={"override": {"waiting": 7}}, timeout=5)
    assert reply.status_code == 200
    assert parse_metrics(requests.get(sim.url + "/metrics", timeout=5).text, "m")["waiting"] == 7
    requests.post(sim.url + "/_sim", json={"metrics_status": 500}, timeout=5)
    assert requests.get(sim.url + "/metrics", timeout=5).status_code == 500
    assert requests.post(sim.url + "/_sim", json={"nope": 1}, timeout=5).status_code == 400


def test_an_unloaded_model_is_loaded_by_the_first_request(sim: StandIn) -> None:
    assert sim.sim is not None
    sim.sim.update(loaded=False, load_seconds=0.05)
    started = time.monotonic()
    assert chat(sim, "hello").status_code == 200
    assert time.monotonic() - started >= 0.05
    assert sim.sim.params.loaded


def test_parsers_read_real_server_pages() -> None:
    vllm_v0 = ('# TYPE vllm:num_requests_waiting gauge\n'
               'vllm:num_requests_waiting{model_name="llama"} 3.0\n'
               'vllm:num_requests_waiting{model_name="other"} 9.0\n'
               'vllm:num_requests_running{model_name="llama"} 4.0\n'
               'vllm:gpu_cache_usage_perc{model_name="llama"} 0.5\n'
               'vllm:prompt_tokens_total{model_name="llama"} 1234.0\n')
    assert parse_metrics(vllm_v0, "llama") == {"waiting": 3.0, "running": 4.0, "kv": 0.5}
    both = vllm_v0 + 'vllm:kv_cache_usage_perc{model_name="llama",engine="0"} 0.25\n'
    assert parse_metrics(both, "llama")["kv"] == 0.25  # the newer name wins
    llama_cpp = "llamacpp:requests_processing 2\nllamacpp:requests_deferred 1\n"
    assert parse_metrics(llama_cpp, "any") == {"running": 2.0, "waiting": 1.0}
    assert parse_metrics("garbage\nvllm:num_requests_waiting NaN\n", "m") == {}
    assert parse_ps({"models": "nope"}, "m") == {}
    assert parse_ps({"models": [{"name": "m:latest", "size": 10, "size_vram": 5}]},
                    "m") == {"loaded": 1.0, "vram": 0.5}
