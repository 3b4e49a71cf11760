"""Anthropic upstreams (``api_type`` ``anthropic``): ``POST /v1/messages``.

Authenticates with ``x-api-key`` and ``anthropic-version`` (never a Bearer token). Canonical →
Anthropic: system messages → ``system``, tool calls → ``tool_use`` blocks, tool results →
``tool_result`` blocks in a user turn, images → ``image`` blocks, ``stop`` → ``stop_sequences``,
``max_tokens`` from the caller, else the provider's ``options.max_tokens``, else 4096. Anthropic's
SSE events come back as canonical chunks. Completions are served as one user message;
embeddings cannot be, and get a 400 in the caller's shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from llm_router_api.errors import ClientError, UpstreamError, UpstreamProtocolError
from llm_router_api.formats.anthropic.vocab import (
    API_VERSION,
    COUNT_PATH,
    DEFAULT_MAX_TOKENS,
    FIELDS,
    OUTPUT_TOOL,
    PATH,
    SAMPLING,
    anthropic_tool,
    anthropic_tool_choice,
    canonical_call,
    finish_reason,
    image_block,
    is_tool_use,
    output_tool,
    stop_sequences,
    tool_use_block,
)
from llm_router_api.formats.canonical import (
    ChunkMaker,
    chat_response,
    data_url,
    image_urls,
    prompt_text,
    text_of,
    text_response,
)
from llm_router_api.formats.upstream import (
    UpstreamAdapter,
    clamped,
    dumps,
    error_in,
    parse_json,
    relay,
    truncated,
)
from llm_router_api.http.transport import UpstreamResponse
from llm_router_api.schemas.calls import Call, Op
from llm_router_api.schemas.config import ProviderConfig


class AnthropicAdapter(UpstreamAdapter):
    health_path = "/v1/models"

    def headers(self, provider: ProviderConfig, call: Call | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "*/*",
                   "anthropic-version": API_VERSION}
        if provider.token:
            headers["x-api-key"] = provider.token
        if call is not None:
            if call.request_id:
                headers["X-Request-ID"] = call.request_id
            headers.update(call.extra_headers)
        return headers

    def forward(self, provider: ProviderConfig, upstream_model: str,
                call: Call) -> Iterator[bytes]:
        body = with_defaults(provider, {**call.body, "model": upstream_model,
                                        "stream": call.stream})
        thinking = body.get("thinking")
        budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
        if isinstance(thinking, dict) and isinstance(budget, int) \
                and budget >= body["max_tokens"]:
            # clamped below the caller's thinking budget: Anthropic wants budget < max_tokens
            body["thinking"] = {**thinking, "budget_tokens": max(1, body["max_tokens"] - 1)}
        yield from relay(self.open(provider, PATH, body, call), call.stream, sse_blocks)

    def count_tokens(self, provider: ProviderConfig, upstream_model: str,
                     call: Call) -> int | None:
        body = {k: v for k, v in call.body.items() if k not in ("max_tokens", "stream")}
        return self.read_count(provider, COUNT_PATH, {**body, "model": upstream_model}, call,
                               "input_tokens")

    def complete(self, provider: ProviderConfig, upstream_model: str,
                 call: Call) -> Iterator[dict[str, Any]]:
        if call.op == Op.EMBEDDING:
            raise ClientError(f"model '{call.model}' is served by an Anthropic provider, "
                              "which cannot create embeddings", param="model",
                              code="unsupported_operation")
        request = call.canonical
        if call.op == Op.COMPLETION:
            request = {**request, "messages": [completion_message(request)]}
        body = with_defaults(provider, anthropic_request(request, upstream_model, call.stream))
        response = self.open(provider, PATH, body, call)
        try:
            structured = output_tool(request.get("response_format")) is not None
            if not call.stream:
                message = parse_json(response.read())
                yield canonical_response(call.op, message, upstream_model, structured)
                return
            object_type = "chat.completion.chunk" if call.op == Op.CHAT else "text_completion"
            maker = ChunkMaker(upstream_model, object_type)
            yield from canonical_chunks(anthropic_events(response), maker, structured)
        finally:
            response.close()


def completion_message(request: dict[str, Any]) -> dict[str, Any]:
    """A completion request's prompt (and Ollama ``images``) as one user message."""
    text = prompt_text(request.get("prompt"))
    images = [data_url(b64) for b64 in request.get("images") or [] if isinstance(b64, str)]
    if not images:
        return {"role": "user", "content": text}
    return {"role": "user", "content": [{"type": "text", "text": text}] + [
        {"type": "image_url", "image_url": {"url": url}} for url in images]}


def with_defaults(provider: ProviderConfig, body: dict[str, Any]) -> dict[str, Any]:
    """Provider ``options`` (Anthropic's fields only) under the caller's; ``max_tokens`` set."""
    options = {("stop_sequences" if k == "stop" else k): v
               for k, v in provider.options.items() if v is not None}
    merged = {k: v for k, v in options.items() if k in FIELDS}
    merged.update(body)
    if merged.get("max_tokens") is None:
        merged["max_tokens"] = min(options.get("max_tokens") or DEFAULT_MAX_TOKENS,
                                   provider.max_output_tokens or DEFAULT_MAX_TOKENS)
    return clamped(provider, merged, "max_tokens")


# -- canonical -> Anthropic -------------------------------------------------------------------
def anthropic_request(request: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
    system, messages = anthropic_messages(request.get("messages") or [])
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
    if system:
        body["system"] = system
    max_tokens = request.get("max_completion_tokens") or request.get("max_tokens")
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    for key in SAMPLING:
        if request.get(key) is not None:
            body[key] = request[key]
    stop = request.get("stop")
    if stop:
        body["stop_sequences"] = stop_sequences(stop)
    if request.get("tools"):
        body["tools"] = [anthropic_tool(t) for t in request["tools"]]
        choice = anthropic_tool_choice(request.get("tool_choice"),
                                       request.get("parallel_tool_calls"))
        if choice is not None:
            body["tool_choice"] = choice
    output = output_tool(request.get("response_format"))
    if output is not None:
        _force_output(body, output)
    if isinstance(request.get("user"), str):
        body["metadata"] = {"user_id": request["user"]}
    return body


def _force_output(body: dict[str, Any], output: dict[str, Any]) -> None:
    """Add the structured-output tool: forced when the caller offers no tools (or none may be
    called); with the caller's tools the model must call one of them or the output tool
    (``any``), unless the caller forced one of its own."""
    choice = body.get("tool_choice") or {}
    callable_tools = body.get("tools") and choice.get("type") != "none"
    body["tools"] = [*(body.get("tools") or []), output]
    if not callable_tools:
        body["tool_choice"] = {"type": "tool", "name": OUTPUT_TOOL}
    elif choice.get("type") != "tool":
        body["tool_choice"] = {**choice, "type": "any"}


def anthropic_messages(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """``(system, messages)``; consecutive turns of one role are merged, as Anthropic wants."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(text_of(message.get("content")))
            continue
        blocks = _blocks(message)
        turn = "assistant" if role == "assistant" else "user"
        if out and out[-1]["role"] == turn:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": turn, "content": blocks})
    return "\n\n".join(s for s in system if s), out


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if message.get("role") == "tool":
        return [{"type": "tool_result", "tool_use_id": message.get("tool_call_id", ""),
                 "content": text_of(content)}]
    blocks: list[dict[str, Any]] = []
    text = text_of(content)
    if text:
        blocks.append({"type": "text", "text": text})
    blocks += [image_block(url) for url in image_urls(content)]
    blocks += [tool_use_block(call) for call in message.get("tool_calls") or []]
    return blocks or [{"type": "text", "text": ""}]


# -- Anthropic -> canonical -------------------------------------------------------------------
def _is_output(block: Any, structured: bool) -> bool:
    return structured and is_tool_use(block) and block.get("name") == OUTPUT_TOOL


def canonical_response(op: Op, message: Any, model: str,
                       structured: bool = False) -> dict[str, Any]:
    """``structured``: the request carried a ``response_format``, so the output tool's input
    is the answer's text (JSON) and the synthetic call is not shown."""
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise UpstreamProtocolError("the provider sent an answer that could not be read")
    blocks = [b for b in message["content"] if isinstance(b, dict)]
    outputs = [b for b in blocks if _is_output(b, structured)]
    if outputs:  # the JSON answer is the text; text the model wrote beside it is not
        text = dumps(outputs[0].get("input")).decode()
    else:
        text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    calls = [canonical_call(b) for b in blocks
             if is_tool_use(b) and not _is_output(b, structured)]
    finish = finish_reason(message.get("stop_reason"))
    if outputs and not calls:
        finish = "stop"
    used = message.get("usage") or {}
    prompt, completion = used.get("input_tokens"), used.get("output_tokens")
    if op == Op.COMPLETION:
        return text_response(model, text, finish, prompt, completion)
    out: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        out = {"role": "assistant", "content": text or None, "tool_calls": calls}
    thinking = "".join(b.get("thinking", "") for b in message["content"]
                       if b.get("type") == "thinking" and isinstance(b.get("thinking"), str))
    if thinking:
        out["reasoning_content"] = thinking  # vLLM's name for reasoning text
    return chat_response(model, out, finish, prompt, completion)


def anthropic_events(response: UpstreamResponse) -> Iterator[dict[str, Any]]:
    for line in response.lines():
        if line.startswith(b"data:"):
            event = parse_json(line[5:])
            if isinstance(event, dict) and event.get("type") == "error":
                raise error_in(event) or UpstreamError()
            if isinstance(event, dict):
                yield event


def canonical_chunks(events: Iterator[dict[str, Any]], maker: ChunkMaker,
                     structured: bool = False) -> Iterator[dict[str, Any]]:
    """Anthropic's events as canonical chunks. ``structured``: the output tool's input JSON
    streams as text (and its call is not shown), ``tool_use`` then finishes as ``stop``."""
    tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool-call index
    outputs: set[int] = set()  # Anthropic block indexes of the structured-output tool
    prompt: Any = 0
    completion: Any = 0
    finish = "stop"
    for event in events:
        kind = event.get("type")
        if kind == "message_start":
            used = (event.get("message") or {}).get("usage") or {}
            prompt = used.get("input_tokens", 0)
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            if _is_output(block, structured):
                outputs.add(event.get("index", 0))
            elif is_tool_use(block):
                tools[event.get("index", 0)] = len(tools)
                call = canonical_call({**block, "input": None})
                yield maker.delta({"tool_calls": [{**call, "index": len(tools) - 1,
                                                   "function": {**call["function"],
                                                                "arguments": ""}}]})
        elif kind == "content_block_delta":
            chunk = _delta_chunk(event, tools, maker, outputs)
            if chunk is not None:
                yield chunk
        elif kind == "message_delta":
            finish = finish_reason((event.get("delta") or {}).get("stop_reason"))
            if outputs and not tools and finish == "tool_calls":
                finish = "stop"
            used = event.get("usage") or {}
            completion = used.get("output_tokens", completion)
            prompt = used.get("input_tokens") or prompt
        elif kind == "message_stop":
            yield maker.piece("", finish)
            yield maker.usage(prompt, completion)
            return
    raise truncated()


def _delta_chunk(event: dict[str, Any], tools: dict[int, int], maker: ChunkMaker,
                 outputs: set[int]) -> dict[str, Any] | None:
    delta = event.get("delta") or {}
    if outputs:  # structured output: the output tool's JSON is the text, nothing else is
        if delta.get("type") == "input_json_delta" and event.get("index", 0) in outputs \
                and delta.get("partial_json"):
            return maker.piece(delta["partial_json"])
        if delta.get("type") == "text_delta":
            return None
    if delta.get("type") == "text_delta" and delta.get("text"):
        return maker.piece(delta["text"])
    if delta.get("type") == "thinking_delta" and isinstance(delta.get("thinking"), str):
        return maker.delta({"reasoning_content": delta["thinking"]})
    if delta.get("type") == "input_json_delta" and event.get("index", 0) in tools:
        index = tools[event.get("index", 0)]
        return maker.delta({"tool_calls": [{"index": index, "function": {
            "arguments": delta.get("partial_json", "")}}]})
    return None


def sse_blocks(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """Forward SSE as it comes; an ``error`` event or no ``message_stop`` fails the stream."""
    done = False
    for block in blocks:
        if b"event: error" in block:
            kept, _, rest = block.partition(b"event: error")
            if kept.strip():
                yield kept
            raise _error(rest)
        done = done or b"message_stop" in block
        yield block
    if not done:
        raise truncated()


def _error(rest: bytes) -> UpstreamError:
    for line in rest.splitlines():
        if line.startswith(b"data:"):
            event = parse_json(line[5:])
            if isinstance(event, dict):
                return error_in(event) or UpstreamError()
    return UpstreamError()
