from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llm_router_api.core.config import ConfigError, load_models_config

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, config: Any) -> Path:
    path = tmp_path / "models.json"
    path.write_text(json.dumps(config) if not isinstance(config, str) else config)
    return path


def provider(**extra: Any) -> dict[str, Any]:
    return {"id": "p1", "api_host": "http://127.0.0.1:1", "api_type": "openai", **extra}


def test_the_shipped_example_loads() -> None:
    config = load_models_config(ROOT / "resources/configs/models-config.json", {})
    assert "qwen2.5-7b-instruct" in config.models
    model = config.models["qwen2.5-7b-instruct"]
    assert model.upstream_name(model.providers[0]) == "Qwen/Qwen2.5-7B-Instruct"


def test_only_active_models_are_loaded_and_latest_is_an_alias(tmp_path: Path) -> None:
    path = write(tmp_path, {"g": {"a": {"providers": [provider()]},
                                  "b": {"providers": [provider(id="p2")]}},
                            "active_models": {"g": ["a"]}})
    config = load_models_config(path, {})
    assert list(config.models) == ["a"]
    assert config.resolve("a:latest") is config.models["a"]
    assert config.resolve("b") is None


def test_env_token_is_resolved_and_never_shown(tmp_path: Path) -> None:
    path = write(tmp_path, {"g": {"a": {"providers": [provider(api_token="env:MY_KEY")]}},
                            "active_models": {"g": ["a"]}})
    config = load_models_config(path, {"MY_KEY": "sk-very-secret"})
    assert config.models["a"].providers[0].token == "sk-very-secret"
    assert "sk-very-secret" not in repr(config)


@pytest.mark.parametrize("config,where", [
    ("{not json", "line 1"),
    ({"g": {}}, "$.active_models"),
    ({"active_models": {"nope": ["a"]}}, "$.active_models.nope"),
    ({"g": {}, "active_models": {"g": ["a"]}}, "model 'a' is not defined"),
    ({"g": {"a": {"providers": [provider(colour="red")]}}, "active_models": {"g": ["a"]}},
     "$.g.a.providers[0].colour"),
    ({"g": {"a": {"providers": [provider(api_type="grpc")]}}, "active_models": {"g": ["a"]}},
     "$.g.a.providers[0].api_type"),
    ({"g": {"a": {"providers": [provider(weight=0)]}}, "active_models": {"g": ["a"]}},
     "$.g.a.providers[0].weight"),
    ({"g": {"a": {"providers": [provider(api_host="http://h:1/v1")]}},
      "active_models": {"g": ["a"]}}, "without /v1"),
    ({"g": {"a": {"providers": [provider()]}, "b": {"providers": [provider()]}},
      "active_models": {"g": ["a", "b"]}}, "provider id 'p1' is already used"),
    ({"g": {"a": {"providers": [provider(api_token="env:MISSING")]}},
      "active_models": {"g": ["a"]}}, "MISSING is not set"),
])
def test_mistakes_name_the_file_and_the_path(tmp_path: Path, config: Any, where: str) -> None:
    path = write(tmp_path, config)
    with pytest.raises(ConfigError) as caught:
        load_models_config(path, {})
    assert str(path) in str(caught.value)
    assert where in str(caught.value)


def fallback_group(**fallbacks: list[str]) -> dict[str, Any]:
    """Models a, b, c (plus an inactive z), each with the fallbacks given."""
    models = {name: {"providers": [provider(id=f"p-{name}")],
                     **({"fallback_models": fallbacks[name]} if name in fallbacks else {})}
              for name in ("a", "b", "c", "z")}
    return {"g": models, "active_models": {"g": ["a", "b", "c"]}}


@pytest.mark.parametrize("fallbacks,message", [
    ({"a": ["nope"]}, "$.g.a.fallback_models[0]: fallback model 'nope' is not defined"),
    ({"a": ["b", "z"]}, "$.g.a.fallback_models[1]: fallback model 'z' is not active"),
    ({"b": ["b"]}, "$.g.b.fallback_models[0]: model 'b' cannot fall back to itself"),
    ({"a": ["b"], "b": ["c"], "c": ["a"]},
     "$.g.c.fallback_models[0]: fallback cycle a -> b -> c -> a"),
    ({"a": [1]}, "$.g.a.fallback_models[0]"),
])
def test_fallback_mistakes_stop_startup_naming_file_and_path(
        tmp_path: Path, fallbacks: dict[str, list[str]], message: str) -> None:
    path = write(tmp_path, fallback_group(**fallbacks))
    with pytest.raises(ConfigError) as caught:
        load_models_config(path, {})
    assert str(caught.value).startswith(f"{path}: {message}")
    assert "\n" not in str(caught.value)


def test_a_fallback_chain_is_depth_first_and_visits_each_model_once(tmp_path: Path) -> None:
    config = load_models_config(write(tmp_path, fallback_group(a=["b", "c"], b=["c"])), {})
    assert [m.name for m in config.chain(config.models["a"])] == ["a", "b", "c"]
    assert [m.name for m in config.chain(config.models["c"])] == ["c"]
    assert set(config.fallback_pairs()) == {("a", "b"), ("a", "c"), ("b", "c")}
