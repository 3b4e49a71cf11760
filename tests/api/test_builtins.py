"""Built-in utilities end to end, called as curl would: a real gateway process (not proxy-only)
with the shipped prompts, in front of an echoing stand-in upstream (the answer is the words of
the last user message, so results show what reached the model)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from standin import StandIn
from tests.support.procs import ROOT, Gateway, wait_for, write_config

PROMPTS = ROOT / "resources" / "prompts"
SYSTEM = PROMPTS / "builtin" / "system"
CONCURRENCY = 2

# endpoint -> a valid body without model_name
SAMPLES: dict[str, dict[str, Any]] = {
    "conversation_with_model": {
        "user_last_statement": "how are you",
        "historical_messages": [{"role": "user", "content": "hi"},
                                {"role": "assistant", "content": "hello"}]},
    "extended_conversation_with_model": {"user_last_statement": "how are you"},
    "generate_questions": {"texts": ["alpha beta", "gamma delta"], "number_of_questions": 2},
    "translate": {"texts": ["alpha beta", "gamma delta"]},
    "simplify_text": {"texts": ["alpha beta", "gamma delta"]},
    "generate_article_from_text": {"text": "alpha beta"},
    "create_full_article_from_texts": {"user_query": "what happened", "texts": ["one", "two"]},
    "generative_answer": {"question_str": "why", "texts": {"doc-a": ["first"], "doc-b": ["x"]}},
}
REQUIRED = {
    "conversation_with_model": ["model_name", "user_last_statement"],
    "extended_conversation_with_model": ["model_name", "user_last_statement"],
    "generate_questions": ["model_name", "texts"],
    "translate": ["model_name", "texts"],
    "simplify_text": ["model_name", "texts"],
    "generate_article_from_text": ["model_name", "text"],
    "create_full_article_from_texts": ["model_name", "user_query", "texts"],
    "generative_answer": ["model_name", "question_str", "texts"],
}
MULTI = ("generate_questions", "translate", "simplify_text")


@pytest.fixture(scope="module")
def gateway(upstream: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    directory = tmp_path_factory.mktemp("builtins")
    config = write_config(directory, {
        "m": [{"id": "m-up", "api_host": upstream.url, "api_type": "openai"}],
        "v": [{"id": "v-up", "api_host": upstream.url, "api_type": "vllm"}],
    })
    server = Gateway(config, LLM_ROUTER_MINIMUM="0", LLM_ROUTER_PROMPTS_DIR=str(PROMPTS),
                     LLM_ROUTER_COOLDOWN="0", LLM_ROUTER_EXTERNAL_TIMEOUT="3",
                     LLM_ROUTER_DEFAULT_EP_LANGUAGE="pl",
                     LLM_ROUTER_BUILTIN_CONCURRENCY=str(CONCURRENCY))
    yield server
    server.stop()


@pytest.fixture()
def echo(fresh_upstream: StandIn) -> StandIn:
    fresh_upstream.set_behaviour(echo=True)
    return fresh_upstream


def post(gateway: Gateway, name: str, body: Any, alias: bool = False) -> requests.Response:
    path = f"/api/{name}" if alias else f"/api/builtin/{name}"
    return requests.post(gateway.url + path, json=body, timeout=20)


def lines(response: requests.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def sent_messages(upstream: StandIn) -> list[list[dict[str, str]]]:
    return [r["json"]["messages"] for r in upstream.requests
            if r["path"] == "/v1/chat/completions"]


def words(text: str) -> str:
    return " ".join(text.split())


# -- every built-in, en and pl, stream and not --------------------------------------------------
@pytest.mark.parametrize("language", ["en", "pl"])
@pytest.mark.parametrize("name", list(SAMPLES))
def test_non_stream_uses_the_language_prompt_and_echoes(
        gateway: Gateway, echo: StandIn, name: str, language: str) -> None:
    reply = post(gateway, name, {"model_name": "m", "stream": False, "language": language,
                                 **SAMPLES[name]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) == {"response", "generation_time"} and body["generation_time"] >= 0
    calls = sent_messages(echo)
    assert len(calls) == (2 if name in MULTI else 1)
    prompt = (SYSTEM / language / f"{name}.prompt").read_text(encoding="utf-8")
    for messages in calls:
        assert messages[0]["role"] == "system"
        assert messages[0]["content"].startswith(prompt[:30])
        assert "##" not in messages[0]["content"]
    assert body["response"] == expected_response(name, calls)


def expected_response(name: str, calls: list[list[dict[str, str]]]) -> Any:
    """What an echoing upstream makes of each built-in's calls."""
    answers = [words(messages[-1]["content"]) for messages in calls]
    texts = SAMPLES[name].get("texts")
    if name == "generate_questions":
        return [{"text": t, "questions": [t]} for t in texts]  # type: ignore[union-attr]
    if name == "translate":
        return [{"original": t, "translated": t} for t in texts]  # type: ignore[union-attr]
    if name == "simplify_text":
        return list(texts)  # type: ignore[arg-type]
    if "conversation" in name:
        return answers[0]
    return {"article_text": answers[0]}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_stream_lines_and_final_line_equals_non_stream_body(
        gateway: Gateway, echo: StandIn, name: str) -> None:
    body = {"model_name": "m", **SAMPLES[name]}  # stream defaults to true
    streamed = lines(post(gateway, name, body))
    whole = post(gateway, name, {**body, "stream": False}).json()
    *per_text, last = streamed
    assert last.pop("done") is True and "index" not in last
    assert last.keys() == whole.keys() and last["response"] == whole["response"]
    count = 2 if name in MULTI else 1
    done = [line for line in per_text if line.get("done")]
    assert sorted(line["index"] for line in done) == list(range(count))
    for line in per_text:
        assert set(line) in ({"index", "delta"}, {"index", "done", "result"})
    for index in range(count):
        deltas = "".join(line["delta"] for line in per_text
                         if line["index"] == index and "delta" in line)
        result = next(line["result"] for line in done if line["index"] == index)
        response = whole["response"]
        assert result == (response[index] if name in MULTI else response)
        assert words(deltas)  # tokens arrived before the result


def test_same_handler_at_prefix_path(gateway: Gateway, echo: StandIn) -> None:
    body = {"model_name": "m", "texts": ["alpha beta"], "stream": False}
    assert post(gateway, "translate", body, alias=True).json()["response"] == \
        post(gateway, "translate", body).json()["response"]


def test_default_language_is_the_configured_one(gateway: Gateway, echo: StandIn) -> None:
    post(gateway, "simplify_text", {"model_name": "m", "texts": ["x"], "stream": False})
    prompt = (SYSTEM / "pl" / "simplify_text.prompt").read_text(encoding="utf-8")
    assert sent_messages(echo)[0][0]["content"] == prompt.strip()


# -- fields reaching the model ------------------------------------------------------------------
def test_conversation_history_and_extended_system_prompt(gateway: Gateway, echo: StandIn) -> None:
    post(gateway, "conversation_with_model",
         {"model_name": "m", "stream": False, **SAMPLES["conversation_with_model"]})
    post(gateway, "extended_conversation_with_model",
         {"model_name": "m", "stream": False, "user_last_statement": "go",
          "system_prompt": "You are a pirate.", "historical_messages": []})
    plain, extended = sent_messages(echo)
    assert [m["role"] for m in plain] == ["system", "user", "assistant", "user"]
    assert [m["content"] for m in plain[1:]] == ["hi", "hello", "how are you"]
    assert extended == [{"role": "system", "content": "You are a pirate."},
                        {"role": "user", "content": "go"}]


def test_translate_target_language_by_code_or_english_name(
        gateway: Gateway, echo: StandIn) -> None:
    for target, language, expected in (("de", "en", "German"), ("German", "pl", "niemiecki"),
                                       (None, "en", "Polish"), (None, "pl", "polski")):
        body = {"model_name": "m", "texts": ["x"], "stream": False, "language": language}
        if target:
            body["target_language"] = target
        assert post(gateway, "translate", body).status_code == 200
        assert expected in sent_messages(echo)[-1][0]["content"]
    reply = post(gateway, "translate", {"model_name": "m", "texts": ["x"],
                                        "target_language": "Klingon"})
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "target_language"


def test_generative_answer_context_and_doc_names(gateway: Gateway, echo: StandIn) -> None:
    post(gateway, "generative_answer", {
        "model_name": "m", "stream": False, "language": "en", "question_str": "why?",
        "question_prompt": "Answer briefly:", "doc_name_in_answer": True,
        "texts": {"report-1": ["first passage", "second passage"], "memo": ["third"]}})
    post(gateway, "generative_answer", {"model_name": "m", "stream": False,
                                        "question_str": "why?", "texts": ["only one"],
                                        "system_prompt": "Custom system."})
    (named_sys, named_user), (listed_sys, listed_user) = sent_messages(echo)
    doc_rule = (SYSTEM / "en" / "generative_answer_doc_names.prompt").read_text().strip()
    assert named_sys["content"].endswith(doc_rule)
    assert '<document name="report-1">' in named_user["content"]
    assert "first passage" in named_user["content"] and '<document name="memo">' in \
        named_user["content"]
    assert "Answer briefly:\nwhy?" in named_user["content"]
    assert listed_sys["content"] == "Custom system."
    assert '<document name="1">\nonly one' in listed_user["content"]


def test_generation_options_are_mapped(gateway: Gateway, echo: StandIn) -> None:
    options = {"temperature": 0.2, "max_new_tokens": 50, "top_p": 0.9, "top_k": 20,
               "typical_p": 0.8, "repetition_penalty": 1.1, "seed": 7}
    for model in ("m", "v"):
        post(gateway, "generate_article_from_text",
             {"model_name": model, "text": "x", "stream": False, **options})
    openai_body, vllm_body = (r["json"] for r in echo.requests)
    assert openai_body["max_tokens"] == 50 and "max_new_tokens" not in openai_body
    assert openai_body["temperature"] == 0.2 and openai_body["seed"] == 7
    assert "top_k" not in openai_body  # vLLM-only fields go to vllm providers only
    assert vllm_body["top_k"] == 20 and vllm_body["repetition_penalty"] == 1.1


# -- validation and lookup errors ---------------------------------------------------------------
@pytest.mark.parametrize("name,field", [(n, f) for n, fs in REQUIRED.items() for f in fs])
def test_missing_field_is_400_naming_it(gateway: Gateway, name: str, field: str) -> None:
    body = {"model_name": "m", **SAMPLES[name]}
    del body[field]
    reply = post(gateway, name, body)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == field and field in error["message"]
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("field,value", [
    ("texts", "not a list"), ("texts", []), ("texts", [1, 2]), ("model_name", 5),
    ("temperature", "hot"), ("stream", "yes"), ("max_new_tokens", 0), ("language", 3),
    ("number_of_questions", "2"), ("unknown_field", 1),
])
def test_wrong_types_are_400(gateway: Gateway, field: str, value: Any) -> None:
    body = {"model_name": "m", **SAMPLES["generate_questions"], field: value}
    reply = post(gateway, "generate_questions", body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"].startswith(field)


@pytest.mark.parametrize("body", ["[1, 2]", "{not json", ""])
def test_bad_json_is_400(gateway: Gateway, body: str) -> None:
    reply = requests.post(gateway.url + "/api/builtin/translate", data=body, timeout=5,
                          headers={"Content-Type": "application/json"})
    assert reply.status_code == 400 and "error" in reply.json()


@pytest.mark.parametrize("language", [
    "de", "xx-YY", "../../../../etc/passwd", "..", "en/../pl", "/etc", "EN", "pl\x00",
    "builtin/system/en", "%2e%2e", "en/", "e" * 16,
])
def test_unknown_or_hostile_language_is_400_listing_languages(
        gateway: Gateway, fresh_upstream: StandIn, language: str) -> None:
    reply = post(gateway, "translate", {"model_name": "m", "texts": ["x"], "language": language})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == "language"
    assert "available languages: en, pl" in error["message"]
    assert fresh_upstream.count == 0


def test_unknown_model_is_404(gateway: Gateway, fresh_upstream: StandIn) -> None:
    for stream in (True, False):
        reply = post(gateway, "translate", {"model_name": "nope", "texts": ["x"],
                                            "stream": stream})
        assert reply.status_code == 404
        assert reply.json()["error"]["code"] == "model_not_found"


def test_get_is_405(gateway: Gateway) -> None:
    reply = requests.get(gateway.url + "/api/builtin/translate", timeout=5)
    assert reply.status_code == 405 and "error" in reply.json()


# -- concurrency, order, failures ---------------------------------------------------------------
def test_order_is_kept_and_concurrency_is_bounded(gateway: Gateway, echo: StandIn) -> None:
    echo.set_behaviour(echo=True, token_delay=0.05)
    texts = [f"text {i} end" for i in range(5)]
    body = {"model_name": "m", "texts": texts}
    streamed = lines(post(gateway, "simplify_text", body))
    first_done = next(i for i, line in enumerate(streamed) if line.get("done"))
    started = {line["index"] for line in streamed[:first_done]}
    assert started == set(range(CONCURRENCY))  # both ran at once, no third before one ended
    assert streamed[-1]["response"] == texts
    whole = post(gateway, "simplify_text", {**body, "stream": False}).json()
    assert whole["response"] == texts


def test_one_failing_text_gives_a_per_text_error(gateway: Gateway, echo: StandIn) -> None:
    echo.set_behaviour(echo=True, fail_marker="FAILME", status_code=400)
    body = {"model_name": "m", "texts": ["good one", "FAILME two", "good three"]}
    whole = post(gateway, "translate", {**body, "stream": False})
    assert whole.status_code == 200
    result = whole.json()
    assert [r["translated"] for r in result["response"]] == ["good one", None, "good three"]
    [error] = result["errors"]
    assert error["index"] == 1 and error["error"]["status"] == 400
    streamed = lines(post(gateway, "translate", body))
    assert {"index": 1, "error": error["error"]} in streamed
    last = streamed[-1]
    assert last["done"] is True and last["response"] == result["response"]
    assert last["errors"] == result["errors"]


@pytest.mark.parametrize("stream", [False, True])
def test_every_text_failing_fails_the_request(gateway: Gateway, echo: StandIn,
                                              stream: bool) -> None:
    echo.set_behaviour(mode="status", status_code=500)
    reply = post(gateway, "translate", {"model_name": "m", "texts": ["a", "b"],
                                        "stream": stream})
    assert reply.status_code == 502
    assert reply.json()["error"]["type"] == "upstream_error"


def test_failure_after_the_stream_began_ends_with_an_error_line(
        gateway: Gateway, echo: StandIn) -> None:
    echo.set_behaviour(mode="die_mid_stream", die_after=2)
    streamed = lines(post(gateway, "generate_article_from_text",
                          {"model_name": "m", "text": "one two three four"}))
    assert streamed[0] == {"index": 0, "delta": "one "}
    assert "error" in streamed[-2] and streamed[-2]["index"] == 0
    assert streamed[-1]["done"] is True and streamed[-1]["error"]["status"] == 502


# -- proxy-only mode and startup ----------------------------------------------------------------
def test_proxy_only_mode_does_not_serve_builtins(upstream: StandIn, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"m": [{"id": "m-up", "api_host": upstream.url,
                                            "api_type": "openai"}]})
    server = Gateway(config, LLM_ROUTER_MINIMUM="1",
                     LLM_ROUTER_PROMPTS_DIR=str(tmp_path / "does-not-exist"))
    try:
        for name in SAMPLES:
            for alias in (False, True):
                reply = post(server, name, {"model_name": "m", **SAMPLES[name]}, alias=alias)
                assert reply.status_code == 404
                assert "error" in reply.json()
    finally:
        server.stop()
    assert "built-in utilities" in server.output()


def start_with_prompts(prompts: Path, config: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "LLM_ROUTER_MINIMUM": "0",
           "LLM_ROUTER_PROMPTS_DIR": str(prompts), "LLM_ROUTER_MODELS_CONFIG": str(config)}
    return subprocess.run([sys.executable, "-m", "llm_router_api.rest_api"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


def test_a_missing_prompt_stops_startup_with_one_line(tmp_path: Path, upstream: StandIn) -> None:
    import shutil

    prompts = tmp_path / "prompts"
    shutil.copytree(PROMPTS, prompts)
    (prompts / "builtin" / "system" / "en" / "translate.prompt").unlink()
    config = write_config(tmp_path, {"m": [{"id": "m-up", "api_host": upstream.url,
                                            "api_type": "openai"}]})
    result = start_with_prompts(prompts, config)
    assert result.returncode == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert message.startswith("llm-router: cannot start:")
    assert "en/translate.prompt is missing" in message
    result = start_with_prompts(tmp_path / "nowhere", config)
    assert result.returncode == 2 and "LLM_ROUTER_PROMPTS_DIR" in result.stderr


# -- every acquire is released ------------------------------------------------------------------
def in_flight(gateway: Gateway) -> int:
    health = requests.get(gateway.url + "/api/health", timeout=5).json()
    return sum(p["in_flight"] for m in health["models"].values() for p in m["providers"])


def test_client_leaving_mid_stream_releases_every_provider(gateway: Gateway,
                                                           echo: StandIn) -> None:
    echo.set_behaviour(echo=True, token_delay=0.1)
    body = {"model_name": "m", "texts": [f"w{i} " * 20 for i in range(4)]}
    with requests.post(gateway.url + "/api/builtin/simplify_text", json=body, stream=True,
                       timeout=20) as reply:
        first = next(reply.iter_lines())
        assert json.loads(first)["delta"]
        assert in_flight(gateway) == CONCURRENCY
    wait_for(lambda: in_flight(gateway) == 0, 10, "every lease to be released")
