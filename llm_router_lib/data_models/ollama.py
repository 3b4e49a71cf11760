"""Ollama-compatible request bodies (``/api/chat``, ``/api/generate``, ``/api/embed``,
``/api/show``). Extra fields are allowed and reach Ollama providers untouched."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator


class OllamaFunctionCall(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = ""
    arguments: dict[str, Any] | str | None = None


class OllamaToolCall(BaseModel):
    """``{"function": {"name", "arguments"}}``: read when the call is translated."""

    model_config = ConfigDict(extra="allow")

    function: OllamaFunctionCall


class OllamaMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str = Field(min_length=1)
    content: str | None = ""
    images: list[str] | None = None
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: str | None = None


class OllamaCall(BaseModel):
    """Fields every Ollama model call shares; ``stream`` defaults to true, as in Ollama."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    stream: StrictBool = True
    options: dict[str, Any] | None = None
    format: str | dict[str, Any] | None = None
    keep_alive: str | int | float | None = None

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: Any) -> Any:
        """``"json"`` or a JSON schema (``""``: none), as Ollama takes: another string would
        be dropped by every provider type but Ollama, which refuses it too."""
        if isinstance(value, str) and value not in ("", "json"):
            raise ValueError('must be "json" or a JSON schema object')
        return value


class OllamaChatRequest(OllamaCall):
    """``POST /api/chat``; an empty ``messages`` list only loads the model, as in Ollama."""

    messages: list[OllamaMessage] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None


class OllamaGenerateRequest(OllamaCall):
    """``POST /api/generate``; an empty ``prompt`` only loads the model, as in Ollama."""

    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    images: list[str] | None = None


class OllamaEmbedRequest(BaseModel):
    """``POST /api/embed``."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[str]
    options: dict[str, Any] | None = None
    keep_alive: str | int | float | None = None


class OllamaEmbeddingsRequest(BaseModel):
    """``POST /api/embeddings``: Ollama's older, single-prompt embedding endpoint."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    prompt: str
    options: dict[str, Any] | None = None
    keep_alive: str | int | float | None = None


class OllamaShowRequest(BaseModel):
    """``POST /api/show``: ``model`` (or the older ``name``)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(default=None, min_length=1)
    name: str | None = Field(default=None, min_length=1)
