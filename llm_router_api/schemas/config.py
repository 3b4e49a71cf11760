"""The parsed shape of models-config.json: frozen pydantic models, unknown keys forbidden."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    field_validator,
)


class ProviderConfig(BaseModel):
    """One upstream server that serves a model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    api_host: str = Field(min_length=1)
    api_type: str
    api_token: SecretStr | None = None
    model_path: str | None = None
    weight: PositiveFloat = 1.0
    max_concurrency: PositiveInt | None = None
    keep_alive: str | int | None = None
    input_size: PositiveInt | None = None
    #: The most tokens one answer may ask for: a request asking for more is clamped to it
    #: (every protocol; Claude Code always asks for 32000).
    max_output_tokens: PositiveInt | None = None
    tool_calling: bool = False
    is_embedding: bool = False
    options: dict[str, Any] = Field(default_factory=dict)
    #: ``native``: the provider serves ``POST /v1/responses`` itself (vLLM, Ollama >= 0.13,
    #: OpenAI) and gets Responses calls as sent; ``translate`` (default): through chat.
    responses: Literal["native", "translate"] = "translate"

    def serves_natively(self, protocol: str) -> bool:
        """Whether this provider takes ``protocol`` (a caller protocol's value) as sent
        beside its ``api_type``'s own (only ``responses`` today)."""
        return protocol == "responses" and self.responses == "native"

    @field_validator("api_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        # The list is formats/registry.py's, read when a config is parsed: the registry imports
        # the adapters, which import this module, so it cannot be imported at the top.
        from llm_router_api.formats.registry import API_TYPES

        if value not in API_TYPES:
            raise ValueError("must be one of " + ", ".join(repr(t) for t in API_TYPES))
        return value

    @field_validator("api_host")
    @classmethod
    def _server_root(cls, value: str) -> str:
        host = value.rstrip("/")
        if not host.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        if host.endswith("/v1"):
            raise ValueError("must be the server root, without /v1")
        return host

    @property
    def token(self) -> str:
        return self.api_token.get_secret_value() if self.api_token else ""


class ModelConfig(BaseModel):
    """A public model name and the providers that serve it (``model_path`` resolved)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    providers: tuple[ProviderConfig, ...] = Field(min_length=1)
    #: Active models to try, in order, when no provider of this one can serve (SPEC §12).
    fallback_models: tuple[str, ...] = ()

    def upstream_name(self, provider: ProviderConfig) -> str:
        return provider.model_path or self.name


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    providers: list[ProviderConfig] = Field(min_length=1)
    fallback_models: list[str] = Field(default_factory=list)


class ModelsConfig(BaseModel):
    """The active models, by public name, in file order."""

    model_config = ConfigDict(frozen=True)

    models: dict[str, ModelConfig]
    mtime: float = 0.0
    #: SHA-256 of the file's bytes, as ``sha256sum`` prints it ("" when not read from a file).
    sha256: str = ""

    def resolve(self, name: str) -> ModelConfig | None:
        """``foo`` and ``foo:latest`` name the same model (Ollama's convention)."""
        found = self.models.get(name)
        if found is None and name.endswith(":latest"):
            found = self.models.get(name[: -len(":latest")])
        if found is None and ":" not in name:
            found = self.models.get(name + ":latest")
        return found

    def chain(self, model: ModelConfig) -> Iterator[ModelConfig]:
        """``model``, then its fallbacks, each followed by its own (depth first, each model
        once). Lazy: a request that is served by its own model never computes the rest."""
        yield model
        seen = {model.name}
        pending = list(reversed(model.fallback_models))
        while pending:
            found = self.models.get(pending.pop())
            if found is None or found.name in seen:
                continue  # validated at load; a reload race must not loop or fail here
            seen.add(found.name)
            yield found
            pending.extend(reversed(found.fallback_models))

    def fallback_pairs(self) -> list[tuple[str, str]]:
        """Every (model, fallback) pair a request can move along: the metric's label values."""
        return [(m.name, f.name) for m in self.models.values()
                for f in list(self.chain(m))[1:]]

    def providers(self) -> list[tuple[ModelConfig, ProviderConfig]]:
        return [(m, p) for m in self.models.values() for p in m.providers]
