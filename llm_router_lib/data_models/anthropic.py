"""Anthropic Messages API request body (``POST /v1/messages``). Extra fields are allowed and
reach Anthropic providers untouched."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, StrictBool


class AnthropicBlock(BaseModel):
    """A content block. Unknown block types and fields are allowed (and forwarded); the fields
    read when the call is translated are typed."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None
    source: dict[str, Any] | None = None
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None
    tool_use_id: str | None = None
    content: str | list[dict[str, Any]] | None = None


class AnthropicMessage(BaseModel):
    """A turn. ``system`` turns inside ``messages`` (Claude Code's mid-conversation system
    beta) are accepted: forwarded to Anthropic providers, merged in order into the system
    prompt for the others."""

    model_config = ConfigDict(extra="allow")

    role: Literal["user", "assistant", "system"]
    content: str | list[AnthropicBlock]


class AnthropicTool(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = ""
    description: str | None = None
    input_schema: dict[str, Any] | None = None


class AnthropicMessagesRequest(BaseModel):
    """``stream`` defaults to false; without ``max_tokens`` the provider's
    ``options.max_tokens`` (else 4096) is used. Fields such as ``thinking``,
    ``context_management``, ``output_config`` are accepted as they are (extra)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[AnthropicMessage] = Field(min_length=1)
    max_tokens: PositiveInt | None = None
    system: str | list[AnthropicBlock] | None = None
    stream: StrictBool = False
    stop_sequences: list[str] | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None


class AnthropicCountTokensRequest(AnthropicMessagesRequest):
    """``POST /v1/messages/count_tokens``: the body of ``/v1/messages``; ``max_tokens`` and
    ``stream`` are not needed (and ignored)."""
