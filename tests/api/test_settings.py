from __future__ import annotations

import pytest

from llm_router_api.settings import Settings, SettingsError, load_settings

pytestmark = pytest.mark.unit


def test_defaults_match_the_documented_table() -> None:
    settings = load_settings({})
    assert settings.ep_prefix == "/api"
    assert settings.default_ep_language == "pl"
    assert settings.external_timeout == 300
    assert settings.balance_strategy == "balanced"
    assert settings.server_port == 8080
    assert settings.server_workers_count == 2
    assert settings.server_threads_count == 8
    assert settings.acquire_timeout == 30
    assert settings.max_attempts == 3
    assert settings.lease_ttl == 30
    assert settings.max_request_body_size == 10485760
    assert settings.redis_prefix == "llm_router:"
    assert settings.uses_redis is False
    assert settings.client_timeout == 30
    assert settings.server_connections == 10000
    assert settings.cors_origins == ()


@pytest.mark.parametrize("word,value", [("1", True), ("TRUE", True), ("yes", True), ("On", True),
                                        ("0", False), ("false", False), ("no", False),
                                        ("OFF", False), ("", False)])
def test_booleans_accept_the_spec_words(word: str, value: bool) -> None:
    assert load_settings({"LLM_ROUTER_MINIMUM": word}).minimum is value


@pytest.mark.parametrize("name,raw", [
    ("LLM_ROUTER_SERVER_PORT", "eighty"),
    ("LLM_ROUTER_SERVER_PORT", "70000"),
    ("LLM_ROUTER_BALANCE_STRATEGY", "random"),
    ("LLM_ROUTER_SERVER_TYPE", "uvicorn"),
    ("LLM_ROUTER_MINIMUM", "maybe"),
    ("LLM_ROUTER_EXTERNAL_TIMEOUT", "-1"),
    ("LLM_ROUTER_EP_PREFIX", "api"),
    ("LLM_ROUTER_LOG_LEVEL", "LOUD"),
    ("LLM_ROUTER_CLIENT_TIMEOUT", "0"),
    ("LLM_ROUTER_SERVER_CONNECTIONS", "many"),
    ("LLM_ROUTER_CORS_ORIGINS", "example.com"),
])
def test_bad_values_name_the_variable(name: str, raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({name: raw})
    assert name in str(caught.value)


def test_settings_are_frozen_and_hide_secrets() -> None:
    settings = load_settings({"LLM_ROUTER_ADMIN_TOKEN": "s3cret-admin",
                              "LLM_ROUTER_API_KEYS": "k-one, k-two",
                              "LLM_ROUTER_REDIS_PASSWORD": "redis-pw"})
    assert settings.api_keys == ("k-one", "k-two")
    for secret in ("s3cret-admin", "k-one", "redis-pw"):
        assert secret not in repr(settings)
    with pytest.raises(AttributeError):
        settings.server_port = 1  # type: ignore[misc]


def test_custom_strategy_path_and_debug_level() -> None:
    settings = load_settings({"LLM_ROUTER_BALANCE_STRATEGY": "my.module:MyStrategy",
                              "LLM_ROUTER_IN_DEBUG": "1"})
    assert settings.balance_strategy == "my.module:MyStrategy"
    assert settings.log_level == "DEBUG"
    assert isinstance(settings, Settings)


def test_gunicorn_runs_the_hardened_workers_with_a_large_connection_pool() -> None:
    from llm_router_api.web.servers import gunicorn_options

    def options(**env: str) -> dict[str, object]:
        return gunicorn_options(load_settings(env))

    gevent = options(LLM_ROUTER_SERVER_WORKER_CLASS="gevent")
    assert gevent["worker_class"] == "llm_router_api.web.gevent_worker.GeventWorker"
    assert gevent["worker_connections"] == 10000
    assert options()["worker_class"] == "llm_router_api.web.workers.ThreadWorker"
    assert options(LLM_ROUTER_SERVER_THREADS_COUNT="1")["worker_class"] == \
        "llm_router_api.web.workers.SyncJSONWorker"
    assert options(LLM_ROUTER_SERVER_WORKER_CLASS="my.pkg:Worker")["worker_class"] == \
        "my.pkg:Worker"
    assert options(LLM_ROUTER_SERVER_CONNECTIONS="50000",
                   LLM_ROUTER_SERVER_WORKER_CLASS="gevent")["worker_connections"] == 50000
