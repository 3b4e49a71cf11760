"""Ollama upstreams (``api_type`` ``ollama``): ``/api/chat``, ``/api/generate``, ``/api/embed``.

Canonical → Ollama: sampling fields go into ``options`` under Ollama's names (``max_tokens`` →
``num_predict``, ``repetition_penalty`` → ``repeat_penalty``, ...), ``response_format`` →
``format``, image parts → ``images`` (base64), tool-call arguments JSON strings → objects,
tool results → ``role: tool`` with ``tool_name``. The provider's ``keep_alive`` and ``options``
fill what the caller left unset. Ollama NDJSON comes back as canonical chunks, with usage from
``prompt_eval_count`` / ``eval_count``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from llm_router_api.errors import ClientError, UpstreamError, UpstreamProtocolError
from llm_router_api.formats.canonical import (
    ChunkMaker,
    chat_response,
    image_urls,
    prompt_text,
    split_data_url,
    text_of,
    text_response,
)
from llm_router_api.formats.ollama.vocab import (
    ROUTES,
    TOP_LEVEL,
    canonical_call,
    finish_reason,
    ollama_call,
    ollama_format,
    ollama_options,
    option_name,
)
from llm_router_api.formats.upstream import (
    UpstreamAdapter,
    parse_json,
    relay,
    truncated,
    upstream_message,
)
from llm_router_api.http.transport import UpstreamResponse
from llm_router_api.schemas.calls import Call, Op
from llm_router_api.schemas.config import ProviderConfig


class OllamaAdapter(UpstreamAdapter):
    health_path = "/api/tags"

    def forward(self, provider: ProviderConfig, upstream_model: str,
                call: Call) -> Iterator[bytes]:
        body = {**call.body, "model": upstream_model}
        if call.op != Op.EMBEDDING:
            body["stream"] = call.stream
        response = self.open(provider, ROUTES[call.op], with_defaults(provider, body), call)
        yield from relay(response, call.stream, ndjson_blocks,
                         check=lambda raw: _check(parse_json(raw)))

    def load(self, provider: ProviderConfig, upstream_model: str, call: Call) -> None:
        """Ollama's load / unload call (an empty ``/api/generate`` or ``/api/chat``), sent as
        the caller sent it (``keep_alive`` included), ``model`` replaced; the provider's
        ``keep_alive`` applies when the caller gave none. An error status raises."""
        body = {k: v for k, v in call.body.items() if k in ("keep_alive", "options")}
        body.update({"model": upstream_model, "stream": False})
        if call.op == Op.CHAT:
            body["messages"] = []
        if "keep_alive" not in body and provider.keep_alive is not None:
            body["keep_alive"] = provider.keep_alive
        response = self.open(provider, ROUTES[call.op], body, call)
        try:
            _check(parse_json(response.read()))
        finally:
            response.close()

    def complete(self, provider: ProviderConfig, upstream_model: str,
                 call: Call) -> Iterator[dict[str, Any]]:
        body = with_defaults(provider, ollama_request(call.op, call.canonical, upstream_model,
                                                      call.stream))
        response = self.open(provider, ROUTES[call.op], body, call)
        try:
            if not call.stream:
                answer = _check(parse_json(response.read()))
                yield canonical_response(call.op, answer, upstream_model)
                return
            yield from canonical_chunks(call.op, _objects(response), upstream_model)
        finally:
            response.close()


def with_defaults(provider: ProviderConfig, body: dict[str, Any]) -> dict[str, Any]:
    """The provider's ``keep_alive`` and ``options`` under the caller's own fields."""
    top: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for key, value in provider.options.items():
        if value is None:
            continue
        if key in TOP_LEVEL:
            top[key] = value
        else:
            options[option_name(key)] = value
    if provider.keep_alive is not None:
        top["keep_alive"] = provider.keep_alive
    merged = {**top, **body}
    options.update(body.get("options") or {})
    cap = provider.max_output_tokens
    predict = options.get("num_predict")
    if cap is not None and isinstance(predict, int) and (predict > cap or predict < 0):
        options["num_predict"] = cap  # -1 / -2 (no limit, fill the context) ask for more too
    if options:
        merged["options"] = options
    return merged


# -- canonical -> Ollama ----------------------------------------------------------------------
def ollama_request(op: Op, request: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model}
    if op == Op.EMBEDDING:
        body["input"] = request.get("input")
        if request.get("dimensions") is not None:
            body["dimensions"] = request["dimensions"]
        return body
    body["stream"] = stream
    if op == Op.CHAT:
        body["messages"] = ollama_messages(request.get("messages") or [])
        if request.get("tools"):
            body["tools"] = request["tools"]
    else:
        body["prompt"] = prompt_text(request.get("prompt"))
        for key in ("suffix", "images"):
            if request.get(key):
                body[key] = request[key]
    options = ollama_options(request)
    if options:
        body["options"] = options
    fmt = ollama_format(request.get("response_format"))
    if fmt is not None:
        body["format"] = fmt
    return body


def ollama_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names: dict[str, str] = {}  # tool_call_id -> function name, for tool results
    out = []
    for message in messages:
        role = message.get("role")
        item: dict[str, Any] = {"role": "system" if role == "developer" else role,
                                "content": text_of(message.get("content"))}
        images = [_base64_image(url) for url in image_urls(message.get("content"))]
        if images:
            item["images"] = images
        calls = message.get("tool_calls") or []
        if calls:
            item["tool_calls"] = [ollama_call(c) for c in calls]
            names.update({c.get("id", ""): c["function"]["name"] for c in calls})
        if role == "tool" and message.get("tool_call_id") in names:
            item["tool_name"] = names[message["tool_call_id"]]
        out.append(item)
    return out


def _base64_image(url: str) -> str:
    parts = split_data_url(url)
    if parts is None:
        raise ClientError("Ollama providers take images as base64 data: URLs only",
                          param="messages", code="unsupported_image")
    return parts[1]


# -- Ollama -> canonical ----------------------------------------------------------------------
def _check(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise UpstreamProtocolError()
    if "error" in obj:
        raise UpstreamError(upstream_message(obj["error"], "the provider failed"))
    return obj


def _objects(response: UpstreamResponse) -> Iterator[dict[str, Any]]:
    for line in response.lines():
        if line.strip():
            yield _check(parse_json(line))


def canonical_response(op: Op, obj: dict[str, Any], model: str) -> dict[str, Any]:
    prompt, completion = obj.get("prompt_eval_count"), obj.get("eval_count")
    if op == Op.EMBEDDING:
        data = [{"object": "embedding", "index": i, "embedding": v}
                for i, v in enumerate(obj.get("embeddings") or [])]
        return {"object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": prompt or 0, "total_tokens": prompt or 0}}
    if op == Op.COMPLETION:
        return text_response(model, obj.get("response", ""), finish_reason(obj, False), prompt,
                             completion)
    message = obj.get("message") or {}
    out: dict[str, Any] = {"role": "assistant", "content": message.get("content", "")}
    if isinstance(message.get("thinking"), str) and message["thinking"]:
        out["reasoning_content"] = message["thinking"]  # vLLM's name for reasoning text
    calls = [canonical_call(c) for c in message.get("tool_calls") or []]
    if calls:
        out["tool_calls"] = calls
        out["content"] = out["content"] or None
    return chat_response(model, out, finish_reason(obj, bool(calls)), prompt, completion)


def canonical_chunks(op: Op, objects: Iterator[dict[str, Any]],
                     model: str) -> Iterator[dict[str, Any]]:
    maker = ChunkMaker(model, "chat.completion.chunk" if op == Op.CHAT else "text_completion")
    tools = 0
    for obj in objects:
        message = obj.get("message") or {}
        text = message.get("content", "") if op == Op.CHAT else obj.get("response", "")
        if op == Op.CHAT and isinstance(message.get("thinking"), str) and message["thinking"]:
            yield maker.delta({"reasoning_content": message["thinking"]})
        if text:
            yield maker.piece(text)
        for call in message.get("tool_calls") or []:
            yield maker.delta({"tool_calls": [canonical_call(call, index=tools)]})
            tools += 1
        if obj.get("done"):
            yield maker.piece("", finish_reason(obj, tools > 0))
            yield maker.usage(obj.get("prompt_eval_count"), obj.get("eval_count"))
            return
    raise truncated()


def ndjson_blocks(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """Forward NDJSON as it comes; an error line or a missing ``done`` line fails the stream."""
    last = b""
    for block in blocks:
        error = None
        if b'"error"' in block:
            block, error = split_error(block)
        if block.strip():
            last = block.rstrip().rsplit(b"\n", 1)[-1]
            yield block
        if error is not None:
            raise UpstreamError(error)
    if not last or _check(parse_json(last)).get("done") is not True:
        raise truncated()


def split_error(block: bytes) -> tuple[bytes, str | None]:
    """The lines before an upstream ``{"error": ...}`` line, and that error's message."""
    kept: list[bytes] = []
    for line in block.splitlines(keepends=True):
        obj = parse_json(line) if line.strip() else {}
        if isinstance(obj, dict) and "error" in obj:
            return b"".join(kept), upstream_message(obj["error"], "the provider failed")
        kept.append(line)
    return block, None
