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


def parse_models_config(raw: Any, source: str, environ: Mapping[str, str]) -> ModelsConfig:
    """Validate an already-parsed config (``source`` names it in messages), as at startup."""
    return ModelsConfig(models=_parse(Path(source), raw, environ))


def _parse(file: Path, raw: Any, environ: Mapping[str, str]) -> dict[str, ModelConfig]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: $: expected an object")
    active = raw.get("active_models")
    if not isinstance(active, dict):
        raise ConfigError(f"{file}: $.active_models: required, an object of group -> [names]")
    models: dict[str, ModelConfig] = {}
    where_of: dict[str, str] = {}
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
            where_of[name] = f"$.{group}.{name}"
    _check_fallbacks(file, raw, models, where_of)
    return models


def _check_fallbacks(file: Path, raw: dict[str, Any], models: Mapping[str, ModelConfig],
                     where_of: Mapping[str, str]) -> None:
    """Each fallback is another active model, and no chain comes back to where it started."""
    for name, model in models.items():
        for index, fallback in enumerate(model.fallback_models):
            where = f"{file}: {where_of[name]}.fallback_models[{index}]"
            if fallback == name:
                raise ConfigError(f"{where}: model '{name}' cannot fall back to itself")
            if fallback not in models:
                defined = any(isinstance(group, dict) and fallback in group
                              for key, group in raw.items() if key != "active_models")
                why = "is not active (list it in active_models)" if defined else "is not defined"
                raise ConfigError(f"{where}: fallback model '{fallback}' {why}")
    clean: set[str] = set()
    for name in models:
        cycle = _cycle(name, models, [], clean)
        if cycle:
            index = models[cycle[-2]].fallback_models.index(cycle[-1])
            raise ConfigError(f"{file}: {where_of[cycle[-2]]}.fallback_models[{index}]: "
                              f"fallback cycle {' -> '.join(cycle)}")


def _cycle(name: str, models: Mapping[str, ModelConfig], path: list[str],
           clean: set[str]) -> list[str]:
    """The first cycle reachable from ``name`` (``a -> b -> a`` as a list), or ``[]``.
    ``clean`` collects models known to reach no cycle, so each is explored once."""
    if name in path:
        return [*path[path.index(name):], name]
    if name in clean:
        return []
    for fallback in models[name].fallback_models:
        found = _cycle(fallback, models, [*path, name], clean)
        if found:
            return found
    clean.add(name)
    return []


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
    return ModelConfig(name=name, providers=tuple(providers),
                       fallback_models=tuple(parsed.fallback_models))
