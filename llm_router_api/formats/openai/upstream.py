"""OpenAI-compatible upstreams: ``api_type`` ``openai`` and ``vllm``.

The canonical format is OpenAI's, so ``complete`` only parses. vLLM's extra sampling fields go
to ``vllm`` providers only; for ``openai`` providers they are dropped (README, translation table).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from llm_router_api.errors import ClientError, UpstreamError
from llm_router_api.formats.openai.vocab import (
    DONE_LINE,
    ROUTES,
    TOKENIZE_PATH,
    VLLM_ONLY,
    conforming_body,
)
from llm_router_api.formats.upstream import (
    UpstreamAdapter,
    checked_blocks,
    clamped,
    error_in,
    line_blocks,
    parse_json,
    relay,
)
from llm_router_api.schemas.calls import Call, Op
from llm_router_api.schemas.config import ProviderConfig


def upstream_body(provider: ProviderConfig, upstream_model: str,
                  request: dict[str, Any]) -> dict[str, Any]:
    """Provider ``options`` under the caller's fields, ``model`` replaced."""
    body = {k: v for k, v in provider.options.items() if v is not None}
    body.update(request)
    body["model"] = upstream_model
    if provider.api_type != "vllm":
        for key in VLLM_ONLY.intersection(body):
            del body[key]
    return clamped(provider, body, "max_tokens", "max_completion_tokens")


class OpenAIAdapter(UpstreamAdapter):
    health_path = "/v1/models"

    def forward(self, provider: ProviderConfig, upstream_model: str,
                call: Call) -> Iterator[bytes]:
        body = upstream_body(provider, upstream_model, call.body)
        frames = relay(self.open(provider, ROUTES[call.op], body, call), call.stream,
                       sse_blocks)
        if call.op == Op.CHAT and not call.stream:  # the fields OpenAI's schema requires
            frames = map(conforming_body, frames)
        yield from frames

    def count_tokens(self, provider: ProviderConfig, upstream_model: str,
                     call: Call) -> int | None:
        """vLLM's ``POST /tokenize`` with the chat ``messages`` (its chat template applied)
        and ``tools``; OpenAI has no counting endpoint (``None``: estimated)."""
        if provider.api_type != "vllm":
            return None
        body: dict[str, Any] = {"model": upstream_model,
                                "messages": call.canonical.get("messages") or []}
        if call.canonical.get("tools"):
            body["tools"] = call.canonical["tools"]
        return self.read_count(provider, TOKENIZE_PATH, body, call, "count")

    def complete(self, provider: ProviderConfig, upstream_model: str,
                 call: Call) -> Iterator[dict[str, Any]]:
        body = upstream_body(provider, upstream_model, call.canonical)
        if call.op == Op.COMPLETION and body.pop("images", None):
            raise ClientError("images on a completion (/api/generate) need an Ollama or "
                              "Anthropic provider; use chat for OpenAI-compatible ones",
                              param="images", code="unsupported_images")
        if call.op == Op.COMPLETION and provider.api_type == "openai" \
                and body.get("response_format"):
            raise ClientError("structured output (format) on a completion (/api/generate) "
                              "needs an Ollama, vLLM or Anthropic provider; use chat for "
                              "OpenAI ones", param="format", code="unsupported_format")
        if call.stream:  # the caller's format reports token counts at the end of a stream
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        response = self.open(provider, ROUTES[call.op], body, call)
        try:
            if not call.stream:
                yield _answer(parse_json(response.read()))
                return
            for block in sse_blocks(line_blocks(response)):
                for line in block.splitlines():
                    if line.startswith(b"data:") and line != DONE_LINE:
                        yield _answer(parse_json(line[5:]))
        finally:
            response.close()


def _answer(obj: Any) -> Any:
    failure = error_in(obj)
    if failure is not None:
        raise failure
    return obj


def sse_blocks(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """Forward SSE lines as they come; an upstream that stops before ``[DONE]`` has failed.
    The upstream's own ``data: {"error": ...}`` line is not forwarded: it ends the stream as
    a failure, which the caller gets as the gateway's one error event."""
    return checked_blocks(blocks, split_sse_error, lambda block: DONE_LINE in block)


def split_sse_error(block: bytes) -> tuple[bytes, Any]:
    """The lines before an upstream error event, and that error (``None`` when there is none);
    an ``event: error`` line announcing it is dropped with it."""
    kept: list[bytes] = []
    for line in block.splitlines(keepends=True):
        if line.startswith(b"data:") and b'"error"' in line:
            try:
                failure = error_in(parse_json(line[5:]))
            except UpstreamError:
                failure = None
            if failure is not None:
                if kept and kept[-1].startswith(b"event:"):
                    kept.pop()
                return b"".join(kept), failure
        kept.append(line)
    return block, None
