"""Third-party clients' structured output through the gateway, on every provider type (SPEC
§10), as their users run them: LangChain's OpenAI, Ollama and Anthropic chat models
(``with_structured_output``), pydantic-ai (an Agent with an ``output_type``) and litellm as an
SDK (``response_format``). Production mode: gunicorn with gevent workers, Redis.

instructor is not in the test extra: its releases cap ``jiter<0.15``, which would pin the
official ``openai`` client down to an old release for the whole project; its JSON-schema mode
sends the same ``response_format`` as ``chat.completions.parse`` (tests/api/test_agents_compat.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from standin import StandIn
from tests.support.procs import Gateway, RedisServer, write_config

PROVIDERS = ("openai", "vllm", "ollama", "anthropic")
TIMEOUT = 30
ASK = "Describe Paris as a city record."


class City(BaseModel):
    name: str
    population: int
    tags: list[str]


@pytest.fixture(scope="module")
def gateway(upstream: StandIn, redis_server: RedisServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    models = {f"m-{kind}": [{"id": f"p-{kind}", "api_host": upstream.url, "api_type": kind,
                             "model_path": f"up-{kind}", "tool_calling": True}]
              for kind in PROVIDERS}
    config = write_config(tmp_path_factory.mktemp("clients"), models)
    server = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                     LLM_ROUTER_SERVER_WORKERS_COUNT="2", LLM_ROUTER_REDIS_HOST="127.0.0.1",
                     LLM_ROUTER_REDIS_PORT=str(redis_server.port))
    yield server
    server.stop()


def _city(value: Any) -> City:
    assert isinstance(value, City), value
    return value


# (``json_mode`` sends ``json_object`` with no schema: only the prompt could tell a model the
# fields, which the stand-in does not read; the raw json_object path is in test_agents_compat.)
@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
@pytest.mark.parametrize("kind", PROVIDERS)
def test_langchain_openai(gateway: Gateway, fresh_upstream: StandIn, kind: str,
                          method: str) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(base_url=gateway.url + "/v1", api_key="unused",  # type: ignore[arg-type]
                      model=f"m-{kind}", max_retries=0, timeout=TIMEOUT)
    _city(chat.with_structured_output(City, method=method).invoke(ASK))  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
@pytest.mark.parametrize("kind", PROVIDERS)
def test_langchain_ollama(gateway: Gateway, fresh_upstream: StandIn, kind: str,
                          method: str) -> None:
    from langchain_ollama import ChatOllama

    chat = ChatOllama(base_url=gateway.url, model=f"m-{kind}", client_kwargs={
        "timeout": TIMEOUT})
    _city(chat.with_structured_output(City, method=method).invoke(ASK))  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", PROVIDERS)
def test_langchain_anthropic(gateway: Gateway, fresh_upstream: StandIn, kind: str) -> None:
    from langchain_anthropic import ChatAnthropic

    chat = ChatAnthropic(base_url=gateway.url, api_key="unused",  # type: ignore[arg-type,call-arg]
                         model=f"m-{kind}", max_retries=0, timeout=TIMEOUT)  # type: ignore[call-arg]
    _city(chat.with_structured_output(City).invoke(ASK))


@pytest.mark.parametrize("kind", PROVIDERS)
def test_pydantic_ai(gateway: Gateway, fresh_upstream: StandIn, kind: str) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel(f"m-{kind}", provider=OpenAIProvider(
        base_url=gateway.url + "/v1", api_key="unused"))
    agent = Agent(model, output_type=City)
    _city(agent.run_sync(ASK).output)


@pytest.mark.parametrize("kind", PROVIDERS)
def test_pydantic_ai_anthropic_model(gateway: Gateway, fresh_upstream: StandIn,
                                     kind: str) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.providers.anthropic import AnthropicProvider

    model = AnthropicModel(f"m-{kind}", provider=AnthropicProvider(
        base_url=gateway.url, api_key="unused"))
    _city(Agent(model, output_type=City).run_sync(ASK).output)


@pytest.mark.parametrize("kind", PROVIDERS)
def test_litellm_sdk(gateway: Gateway, fresh_upstream: StandIn, kind: str) -> None:
    import litellm

    messages = [{"role": "user", "content": ASK}]
    for prefix, base in (("openai", gateway.url + "/v1"), ("ollama_chat", gateway.url),
                         ("anthropic", gateway.url)):
        reply: Any = litellm.completion(model=f"{prefix}/m-{kind}", api_base=base,
                                        api_key="unused", messages=messages,
                                        response_format=City, timeout=TIMEOUT)
        City.model_validate_json(reply.choices[0].message.content)
    streamed = asyncio.run(_litellm_stream(gateway, kind))
    City.model_validate_json(streamed)


async def _litellm_stream(gateway: Gateway, kind: str) -> str:
    import litellm

    parts = []
    response: Any = await litellm.acompletion(
        model=f"openai/m-{kind}", api_base=gateway.url + "/v1", api_key="unused",
        messages=[{"role": "user", "content": ASK}], response_format=City, stream=True)
    async for chunk in response:
        parts.append(chunk.choices[0].delta.content or "")
    return "".join(parts)
