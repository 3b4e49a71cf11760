"""OpenAI / vLLM wire format: chat, legacy completions, embeddings, models."""

from __future__ import annotations

import time
from typing import Any

from .behaviour import Behaviour
from .common import (
    ApiError,
    JSONDict,
    Plan,
    Reply,
    call_args,
    content_text,
    dumps,
    embed_base64,
    embed_vector,
    first_tool_name,
    inputs_of,
    json_reply,
    last_user_text,
    limit_of,
    make_plan,
    messages_of,
    model_of,
    new_id,
    openai_schema,
    tool_to_call,
)

SSE = "text/event-stream"
DONE = b"data: [DONE]\n\n"
GARBAGE_FRAME = b'data: {"id": chatcmpl-garbage <<not json>>\n\n'
MODELS_BODY = dumps(
    {
        "object": "list",
        "data": [
            {"id": "standin", "object": "model", "created": 1700000000, "owned_by": "standin"}
        ],
    }
)
_ERROR_TYPES: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def error_body(status: int, message: str) -> bytes:
    default = ("server_error" if status >= 500 else "invalid_request_error", None)
    kind, code = _ERROR_TYPES.get(status, default)
    return dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


def _usage(plan: Plan) -> JSONDict:
    return {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": plan.completion_tokens,
        "total_tokens": plan.prompt_tokens + plan.completion_tokens,
    }


def _finish(plan: Plan) -> str:
    if plan.tool_name is not None:
        return "tool_calls"
    return "length" if plan.truncated else "stop"


def _include_usage(body: JSONDict) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _chat_plan(body: JSONDict, behaviour: Behaviour) -> Plan:
    messages = messages_of(body)
    if not messages:
        raise ApiError(400, "Missing required parameter: 'messages'.")
    tools = body.get("tools")
    tool = tool_to_call(tools, messages, behaviour, _forced(body))
    limit = limit_of(body.get("max_completion_tokens", body.get("max_tokens")))
    texts = [content_text(m.get("content")) for m in messages]
    schema = openai_schema(body.get("response_format"))
    return make_plan(behaviour, texts, last_user_text(messages), limit, tool, schema,
                     call_args(behaviour, tools, tool))


def _forced(body: JSONDict) -> str | None:
    """The tool OpenAI's ``tool_choice`` forces (one function, or ``required``: the first)."""
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        return name if isinstance(name, str) else None
    return first_tool_name(body.get("tools")) if choice == "required" else None


def chat(body: JSONDict, behaviour: Behaviour) -> Reply:
    """``POST /v1/chat/completions``."""
    plan = _chat_plan(body, behaviour)
    model, cid, created = model_of(body), new_id("chatcmpl-"), int(time.time())
    if body.get("stream") is True:
        return Reply(content_type=SSE, frames=_chat_frames(plan, body, model, cid, created))
    message: JSONDict = {"role": "assistant", "content": plan.text}
    if plan.tool_name is not None:
        call = {
            "id": new_id("call_"),
            "type": "function",
            "function": {"name": plan.tool_name, "arguments": plan.args_json},
        }
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
    return json_reply(
        {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(plan)}
            ],
            "usage": _usage(plan),
        }
    )


def _chunk_prefix(cid: str, obj: str, created: int, model: str) -> bytes:
    head = dumps({"id": cid, "object": obj, "created": created, "model": model})
    return b"data: " + head[:-1] + b',"choices":[{"index":0,'


def _chat_frames(plan: Plan, body: JSONDict, model: str, cid: str, created: int) -> list[bytes]:
    prefix = _chunk_prefix(cid, "chat.completion.chunk", created, model) + b'"delta":'
    pending = b',"logprobs":null,"finish_reason":null}]}\n\n'
    if plan.tool_name is None:
        frames = [prefix + b'{"role":"assistant","content":""}' + pending]
        frames += [prefix + b'{"content":' + dumps(tok) + b"}" + pending for tok in plan.tokens]
    else:
        start = {
            "index": 0,
            "id": new_id("call_"),
            "type": "function",
            "function": {"name": plan.tool_name, "arguments": ""},
        }
        frames = [
            prefix + dumps({"role": "assistant", "content": None, "tool_calls": [start]}) + pending
        ]
        frames += [
            prefix + dumps({"tool_calls": [{"index": 0, "function": {"arguments": f}}]}) + pending
            for f in plan.tokens
        ]
    frames.append(
        prefix + b'{},"logprobs":null,"finish_reason":"' + _finish(plan).encode() + b'"}]}\n\n'
    )
    return _close_stream(frames, plan, body, cid, "chat.completion.chunk", created, model)


def _close_stream(
    frames: list[bytes], plan: Plan, body: JSONDict, cid: str, obj: str, created: int, model: str
) -> list[bytes]:
    if _include_usage(body):
        usage = {
            "id": cid,
            "object": obj,
            "created": created,
            "model": model,
            "choices": [],
            "usage": _usage(plan),
        }
        frames.append(b"data: " + dumps(usage) + b"\n\n")
    frames.append(DONE)
    return frames


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list):
        return " ".join(p for p in prompt if isinstance(p, str))
    return prompt if isinstance(prompt, str) else ""


def completions(body: JSONDict, behaviour: Behaviour) -> Reply:
    """``POST /v1/completions`` (legacy text completions)."""
    if "prompt" not in body:
        raise ApiError(400, "Missing required parameter: 'prompt'.")
    prompt = _prompt_text(body.get("prompt"))
    plan = make_plan(behaviour, [prompt], prompt, limit_of(body.get("max_tokens", 16)))
    model, cid, created = model_of(body), new_id("cmpl-"), int(time.time())
    if body.get("stream") is True:
        prefix = _chunk_prefix(cid, "text_completion", created, model) + b'"text":'
        pending = b',"logprobs":null,"finish_reason":null}]}\n\n'
        frames = [prefix + dumps(tok) + pending for tok in plan.tokens]
        frames.append(
            prefix + b'"","logprobs":null,"finish_reason":"' + _finish(plan).encode() + b'"}]}\n\n'
        )
        frames = _close_stream(frames, plan, body, cid, "text_completion", created, model)
        return Reply(content_type=SSE, frames=frames)
    choice = {"index": 0, "text": plan.text, "logprobs": None, "finish_reason": _finish(plan)}
    return json_reply(
        {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [choice],
            "usage": _usage(plan),
        }
    )


def embeddings(body: JSONDict, behaviour: Behaviour) -> Reply:
    """``POST /v1/embeddings``; honours ``dimensions`` and ``encoding_format: base64``."""
    texts = inputs_of(body.get("input"))
    if not texts:
        raise ApiError(400, "'input' must be a non-empty string or array.")
    dims = limit_of(body.get("dimensions")) or behaviour.embedding_dim
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector = embed_vector(text, dims)
        value: Any = embed_base64(vector) if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": value})
    prompt_tokens = sum(len(t.split()) for t in texts)
    usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return json_reply({"object": "list", "data": data, "model": model_of(body), "usage": usage})


def models(body: JSONDict, behaviour: Behaviour) -> Reply:
    """``GET /v1/models``."""
    return Reply(body=MODELS_BODY)


MAX_MODEL_LEN = 8192


def tokenize(body: JSONDict, behaviour: Behaviour) -> Reply:
    """vLLM's ``POST /tokenize``: a ``prompt``, or ``messages`` with the chat template applied
    (here: their words, plus one token per message for the template's markers)."""
    if isinstance(body.get("messages"), list):
        messages = messages_of(body)
        count = sum(len(content_text(m.get("content")).split()) + 1 for m in messages)
    elif isinstance(body.get("prompt"), str):
        count = len(body["prompt"].split())
    else:
        raise ApiError(400, "either 'prompt' or 'messages' is required")
    return json_reply({"count": count, "max_model_len": MAX_MODEL_LEN,
                       "tokens": list(range(count)), "token_strs": None})
