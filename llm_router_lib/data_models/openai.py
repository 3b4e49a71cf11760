"""OpenAI-compatible request bodies. Extra fields are allowed and forwarded untouched."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str = Field(min_length=1)
    content: str | list[Any] | None = None


class OpenAIChatRequest(BaseModel):
    """``POST /v1/chat/completions``; ``stream`` defaults to false, as in OpenAI."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False


class OpenAICompletionRequest(BaseModel):
    """``POST /v1/completions`` (legacy text completion)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    prompt: str | list[Any]
    stream: StrictBool = False


class OpenAIEmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[Any]
