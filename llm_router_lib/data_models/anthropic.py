"""Anthropic Messages API request body (``POST /v1/messages``). Extra fields are allowed and
reach Anthropic providers untouched."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, StrictBool


class AnthropicMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class AnthropicMessagesRequest(BaseModel):
    """``stream`` defaults to false; without ``max_tokens`` the provider's
    ``options.max_tokens`` (else 4096) is used."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[AnthropicMessage] = Field(min_length=1)
    max_tokens: PositiveInt | None = None
    system: str | list[dict[str, Any]] | None = None
    stream: StrictBool = False
    stop_sequences: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
