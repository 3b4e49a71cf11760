"""models-config.json: parsed once into frozen pydantic models, unknown keys forbidden.

Layout: any number of groups (``{"group": {"public-name": {"providers": [...]}}}``) plus the
required ``"active_models": {"group": ["public-name", ...]}``. Only active models are loaded.
A mistake raises ``ConfigError`` naming the file, the JSON path inside it and what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from llm_router_api.jsonfile import json_path, read_json_digest
from llm_router_api.schemas.config import ModelConfig, ModelEntry, ModelsConfig

ENV_PREFIX = "env:"


class ConfigError(ValueError):
    """models-config.json cannot be used; the message names the file and the path."""


def load_models_config(path: str | Path, environ: Mapping[str, str]) -> ModelsConfig:
    """Read, validate and resolve the file; raise ``ConfigError`` on any mistake."""
    file = Path(path)
    raw, sha256 = read_json_digest(file, ConfigError)
    models = _parse(file, raw, environ)
    return ModelsConfig(models=models, mtime=file.stat().st_mtime, sha256=sha256)


def _parse(file: Path, raw: Any, environ: Mapping[str, str]) -> dict[str, ModelConfig]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: $: expected an object")
    active = raw.get("active_models")
    if not isinstance(active, dict):
        raise ConfigError(f"{file}: $.active_models: required, an object of group -> [names]")
    models: dict[str, ModelConfig] = {}
    seen_ids: dict[str, str] = {}
    for group, names in active.items():
        where = f"$.active_models.{group}"
        if group == "active_models" or not isinstance(raw.get(group), dict):
            raise ConfigError(f"{file}: {where}: no group '{group}' in the file")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{file}: {where}: expected a list of model names")
        for name in names:
            entry = raw[group].get(name)
            if entry is None:
                raise ConfigError(f"{file}: {where}: model '{name}' is not defined in '{group}'")
            model = _model(file, f"$.{group}.{name}", name, entry, environ)
            for provider in model.providers:
                if provider.id in seen_ids:
                    raise ConfigError(f"{file}: $.{group}.{name}: provider id '{provider.id}' "
                                      f"is already used by model '{seen_ids[provider.id]}'")
                seen_ids[provider.id] = name
            models[name] = model
    return models


def _model(file: Path, where: str, name: str, entry: Any,
           environ: Mapping[str, str]) -> ModelConfig:
    try:
        parsed = ModelEntry.model_validate(entry)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{file}: {where}{json_path(first['loc'])}: {first['msg']}") from None
    providers = []
    for index, provider in enumerate(parsed.providers):
        token = provider.token
        if token.startswith(ENV_PREFIX):
            var = token[len(ENV_PREFIX):]
            if var not in environ:
                raise ConfigError(f"{file}: {where}.providers[{index}].api_token: "
                                  f"environment variable {var} is not set")
            provider = provider.model_copy(update={"api_token": SecretStr(environ[var])})
        providers.append(provider)
    return ModelConfig(name=name, providers=tuple(providers))
