"""Ollama wire format: /api/chat, /api/generate, /api/embed(dings), tags, version."""

from __future__ import annotations

from typing import Any

from .behaviour import Behaviour
from .common import (
    ApiError,
    JSONDict,
    Plan,
    Reply,
    call_args,
    content_text,
    count_words,
    dumps,
    embed_vector,
    inputs_of,
    json_reply,
    last_user_text,
    limit_of,
    make_plan,
    messages_of,
    model_of,
    ollama_schema,
    rfc3339_now,
    tool_to_call,
)

NDJSON = "application/x-ndjson"
GARBAGE_FRAME = b'{"model":"standin","message":{<<not json>>\n'
ROOT_TEXT = b"Ollama is running"
VERSION_BODY = dumps({"version": "0.5.0"})
TAGS_BODY = dumps(
    {
        "models": [
            {
                "name": "standin:latest",
                "model": "standin:latest",
                "modified_at": "2024-12-01T00:00:00.000000Z",
                "size": 4661224676,
                "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": "llama",
                    "families": ["llama"],
                    "parameter_size": "8.0B",
                    "quantization_level": "Q4_0",
                },
            }
        ]
    }
)


def error_body(status: int, message: str) -> bytes:
    return dumps({"error": message})


def _stats(plan: Plan) -> JSONDict:
    """The timing/count fields of a final (``done: true``) object, in nanoseconds."""
    prompt_ns = 1000 * plan.prompt_tokens + 1000
    eval_ns = 1000 * plan.completion_tokens + 1000
    return {
        "total_duration": 1_000_000 + prompt_ns + eval_ns,
        "load_duration": 1_000_000,
        "prompt_eval_count": plan.prompt_tokens,
        "prompt_eval_duration": prompt_ns,
        "eval_count": plan.completion_tokens,
        "eval_duration": eval_ns,
    }


def _done_reason(plan: Plan) -> str:
    return "length" if plan.truncated else "stop"


def _limit(body: JSONDict) -> int | None:
    options = body.get("options")
    return limit_of(options.get("num_predict")) if isinstance(options, dict) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _streaming(body: JSONDict) -> bool:
    return body.get("stream", True) is not False


def _final(head: JSONDict, key: str, empty: Any, plan: Plan) -> bytes:
    final = {**head, key: empty, "done": True, "done_reason": _done_reason(plan), **_stats(plan)}
    return dumps(final) + b"\n"


def _load_call(body: JSONDict, key: str, empty: Any) -> Reply:
    """Ollama's answer to a load / unload call (no messages / no prompt)."""
    unload = body.get("keep_alive") in (0, "0", "0s", "0m")
    return json_reply({"model": model_of(body), "created_at": rfc3339_now(), key: empty,
                       "done": True, "done_reason": "unload" if unload else "load"})


def chat(body: JSONDict, behaviour: Behaviour) -> Reply:
    """``POST /api/chat`` (``stream`` defaults to true)."""
    messages = messages_of(body)
    if not messages and body.get("messages") is not None:
        return _load_call(body, "message", {"role": "assistant", "content": ""})
    tool = tool_to_call(body.get("tools"), messages, behaviour)
    texts = [content_text(m.get("content")) for m in messages]
    plan = make_plan(behaviour, texts, last_user_text(messages), _limit(body), tool,
                     ollama_schema(body.get("format")), call_args(behaviour, body.get("tools"),
                                                                  tool))
    head = {"model": model_of(body), "created_at": rfc3339_now()}
    message: JSONDict = {"role": "assistant", "content": plan.text}
    if plan.tool_name is not None:
        calls = [{"function": {"name": plan.tool_name, "arguments": plan.args}}]
        message = {"role": "assistant", "content": "", "tool_calls": calls}
    if not _streaming(body):
        return json_reply(
            {
                **head,
                "message": message,
                "done": True,
                "done_reason": _done_reason(plan),
                **_stats(plan),
            }
        )
    if plan.tool_name is not None:
        frames = [dumps({**head, "message": message, "done": False}) + b"\n"]
    else:
        prefix = dumps(head)[:-1] + b',"message":{"role":"assistant","content":'
        frames = [prefix + dumps(tok) + b'},"done":false}\n' for tok in plan.tokens]
    frames.append(_final(head, "message", {"role": "assistant", "content": ""}, plan))
    return Reply(content_type=NDJSON, frames=frames)


def generate(body: JSONDict, behaviour: Behaviour) -> Reply:
    """``POST /api/generate`` (``response`` fragments instead of messages)."""
    prompt, system = _text(body.get("prompt")), _text(body.get("system"))
    if not prompt:
        return _load_call(body, "response", "")
    plan = make_plan(behaviour, [system, prompt], prompt, _limit(body),
                     schema=ollama_schema(body.get("format")))
    head = {"model": model_of(body), "created_at": rfc3339_now()}
    if not _streaming(body):
        return json_reply(
            {
                **head,
                "response": plan.text,
                "done": True,
                "done_reason": _done_reason(plan),
                **_stats(plan),
            }
        )
    prefix = dumps(head)[:-1] + b',"response":'
    frames = [prefix + dumps(tok) + b',"done":false}\n' for tok in plan.tokens]
    frames.append(_final(head, "response", "", plan))
    return Reply(content_type=NDJSON, frames=frames)


def embed(body: JSONDict, behaviour: Behaviour) -> Reply:
    """``POST /api/embed`` (``input`` string or list)."""
    texts = inputs_of(body.get("input"))
    if not texts:
        raise ApiError(400, "invalid input type")
    vectors = [embed_vector(t, behaviour.embedding_dim) for t in texts]
    return json_reply(
        {
            "model": model_of(body),
            "embeddings": vectors,
            "total_duration": 1_000_000,
            "load_duration": 100_000,
            "prompt_eval_count": count_words(texts),
        }
    )


def embeddings_legacy(body: JSONDict, behaviour: Behaviour) -> Reply:
    """``POST /api/embeddings`` (the older single-``prompt`` endpoint)."""
    text = _text(body.get("prompt"))
    return json_reply({"embedding": embed_vector(text, behaviour.embedding_dim)})


def tags(body: JSONDict, behaviour: Behaviour) -> Reply:
    return Reply(body=TAGS_BODY)


def version(body: JSONDict, behaviour: Behaviour) -> Reply:
    return Reply(body=VERSION_BODY)


def root(body: JSONDict, behaviour: Behaviour) -> Reply:
    return Reply(content_type="text/plain; charset=utf-8", body=ROOT_TEXT)
