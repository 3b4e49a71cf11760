"""``llm_router_lib.LLMRouterClient`` against a real gateway process (built-ins on, the shipped
prompts) in front of an echoing stand-in upstream."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from llm_router_lib.client import BuiltinResponse, LLMRouterClient
from llm_router_lib.exceptions import (
    APIConnectionError,
    BadRequestError,
    LLMRouterError,
    NotFoundError,
    ServerError,
    StreamError,
)
from standin import StandIn
from tests.support.procs import ROOT, Gateway, free_port, write_config

PROMPTS = ROOT / "resources" / "prompts"
SYSTEM = PROMPTS / "builtin" / "system"

CALLS: dict[str, dict[str, Any]] = {
    "conversation_with_model": {"user_last_statement": "how are you",
                                "historical_messages": [{"role": "user", "content": "hi"}]},
    "extended_conversation_with_model": {"user_last_statement": "how are you",
                                         "system_prompt": "Be brief.", "temperature": 0.3},
    "generate_questions": {"texts": ["alpha beta", "gamma"], "number_of_questions": 3},
    "translate": {"texts": ["alpha beta", "gamma"], "target_language": "en"},
    "simplify_text": {"texts": ["alpha beta", "gamma"], "max_new_tokens": 100},
    "generate_article_from_text": {"text": "alpha beta"},
    "create_full_article_from_texts": {"user_query": "q", "texts": ["one", "two"],
                                       "article_type": "blog post"},
    "generative_answer": {"question_str": "why", "texts": ["ctx"], "doc_name_in_answer": True},
}


@pytest.fixture(scope="module")
def gateway(upstream: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = write_config(tmp_path_factory.mktemp("client"), {
        "m": [{"id": "m-up", "api_host": upstream.url, "api_type": "openai"}]})
    server = Gateway(config, LLM_ROUTER_MINIMUM="0", LLM_ROUTER_PROMPTS_DIR=str(PROMPTS),
                     LLM_ROUTER_COOLDOWN="0", LLM_ROUTER_EXTERNAL_TIMEOUT="3")
    yield server
    server.stop()


@pytest.fixture()
def client(gateway: Gateway, fresh_upstream: StandIn) -> LLMRouterClient:
    fresh_upstream.set_behaviour(echo=True)
    return LLMRouterClient(gateway.url, api_key="caller-key", timeout=20)


def system_text(upstream: StandIn) -> str:
    return str(upstream.requests[-1]["json"]["messages"][0]["content"])


@pytest.mark.parametrize("language", ["en", "pl"])
@pytest.mark.parametrize("name", list(CALLS))
def test_every_builtin_non_stream_and_stream(client: LLMRouterClient, upstream: StandIn,
                                             name: str, language: str) -> None:
    fields = {"model_name": "m", "language": language, **CALLS[name]}
    result = getattr(client, name)(**fields)
    assert isinstance(result, BuiltinResponse) and result.errors is None
    if name != "extended_conversation_with_model":
        prompt = (SYSTEM / language / f"{name}.prompt").read_text(encoding="utf-8")
        assert system_text(upstream).startswith(prompt[:30])
    else:
        assert system_text(upstream) == "Be brief."
    streamed = list(getattr(client, f"{name}_stream")(**fields))
    last = streamed[-1]
    assert last["done"] is True and last["response"] == result.response
    assert all("index" in line for line in streamed[:-1])


def test_result_shapes(client: LLMRouterClient) -> None:
    assert client.conversation_with_model(
        model_name="m", user_last_statement="hi there").response == "hi there"
    assert client.translate(model_name="m", texts=["a b"]).response == [
        {"original": "a b", "translated": "a b"}]
    assert client.generate_questions(model_name="m", texts=["is it?"]).response == [
        {"text": "is it?", "questions": ["is it?"]}]
    assert client.simplify_text(model_name="m", texts=["x", "y"]).response == ["x", "y"]
    assert client.generate_article_from_text(model_name="m", text="news").response == {
        "article_text": "news"}


def test_request_fields_reach_the_gateway(client: LLMRouterClient, upstream: StandIn) -> None:
    client.simplify_text(model_name="m", texts=["x"], max_new_tokens=9, seed=3)
    sent = upstream.requests[-1]
    assert sent["json"]["max_tokens"] == 9 and sent["json"]["seed"] == 3


def test_chat_and_chat_stream(client: LLMRouterClient) -> None:
    messages = [{"role": "user", "content": "hello world"}]
    reply = client.chat("m", messages, temperature=0.1)
    assert reply["choices"][0]["message"]["content"] == "hello world "
    chunks = list(client.chat_stream("m", messages))
    assert "".join(c["choices"][0]["delta"].get("content") or ""
                   for c in chunks if c["choices"]) == "hello world "


def test_server_errors_become_typed_exceptions(client: LLMRouterClient,
                                               upstream: StandIn) -> None:
    with pytest.raises(NotFoundError) as missing:
        client.translate(model_name="nope", texts=["x"])
    assert missing.value.status == 404 and "nope" in missing.value.message
    with pytest.raises(BadRequestError) as language:
        client.translate_stream(model_name="m", texts=["x"], language="de").__next__()
    assert language.value.status == 400 and language.value.param == "language"
    assert "en, pl" in language.value.message
    with pytest.raises(NotFoundError):
        client.chat("nope", [{"role": "user", "content": "x"}])
    upstream.set_behaviour(mode="status", status_code=500)
    with pytest.raises(ServerError) as failed:
        client.simplify_text(model_name="m", texts=["x"])
    assert failed.value.status == 502


def test_arguments_are_checked_before_sending(client: LLMRouterClient,
                                              upstream: StandIn) -> None:
    with pytest.raises(BadRequestError) as wrong:
        client.translate(model_name="m", texts="not a list")
    assert wrong.value.param == "texts"
    with pytest.raises(BadRequestError) as missing:
        client.generative_answer(model_name="m", texts=["x"])
    assert missing.value.param == "question_str"
    assert upstream.count == 0


def test_stream_failure_after_start_raises_stream_error(client: LLMRouterClient,
                                                        upstream: StandIn) -> None:
    upstream.set_behaviour(mode="die_mid_stream", die_after=2)
    seen: list[dict[str, Any]] = []
    with pytest.raises(StreamError) as failed:
        for line in client.generate_article_from_text_stream(model_name="m", text="a b c"):
            seen.append(line)
    assert seen[0] == {"index": 0, "delta": "a "} and "error" in seen[-1]
    assert failed.value.status == 502


def test_unreachable_router_is_a_connection_error() -> None:
    client = LLMRouterClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(APIConnectionError) as failed:
        client.simplify_text(model_name="m", texts=["x"])
    assert isinstance(failed.value, LLMRouterError) and failed.value.status == 0


def test_library_does_not_import_the_service() -> None:
    import subprocess
    import sys

    code = ("import sys, llm_router_lib.client, llm_router_lib.exceptions; "
            "sys.exit(any(m.startswith('llm_router_api') or m == 'flask' for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=30).returncode == 0


def test_a_request_model_can_be_passed(client: LLMRouterClient, upstream: StandIn) -> None:
    from llm_router_lib.data_models.builtin import TranslateRequest

    request = TranslateRequest(model_name="m", texts=["a b"], target_language="de",
                               language="en")
    assert client.translate(request).response == [{"original": "a b", "translated": "a b"}]
    assert "German" in system_text(upstream)
    lines = list(client.translate_stream(request, target_language="fr"))
    assert lines[-1]["done"] is True and "French" in system_text(upstream)
