"""The Responses caller format on its own: request → canonical chat, canonical events →
response objects and stream events, checked against OpenAI's own typed models (the ``openai``
SDK's ``openai.types.responses``, generated from OpenAI's published OpenAPI description)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from llm_router_api.errors import UpstreamError
from llm_router_api.formats.responses.caller import ResponsesCaller
from llm_router_api.schemas.calls import Op

pytestmark = pytest.mark.unit

CALLER = ResponsesCaller()
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
WEATHER = {"type": "function", "name": "get_weather", "description": "weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
           "strict": True}
NAMESPACE = {"type": "namespace", "name": "crm", "description": "CRM tools",
             "tools": [{"type": "function", "name": "lookup", "description": "find",
                        "parameters": {"type": "object", "properties": {}}}]}


def strict_response(body: dict[str, Any]) -> Response:
    """``Response.model_validate`` plus the fields SPEC §10 requires on every body."""
    response = Response.model_validate(body)
    for field in ("id", "object", "created_at", "status", "model", "output", "usage"):
        assert body.get(field) is not None, field
    assert body["id"].startswith("resp_") and body["object"] == "response"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert "cached_tokens" in usage["input_tokens_details"]
    assert "reasoning_tokens" in usage["output_tokens_details"]
    return response


def test_typed_models_reject_missing_required_fields() -> None:
    with pytest.raises(ValueError):
        Response.model_validate({"id": "resp_1", "object": "response"})
    with pytest.raises(ValueError):
        EVENTS.validate_python({"type": "response.output_text.delta", "sequence_number": 1})


def test_request_to_canonical_chat() -> None:
    body = {
        "model": "m", "instructions": "be brief", "max_output_tokens": 50,
        "temperature": 0.2, "top_p": 0.9, "parallel_tool_calls": False,
        "tools": [WEATHER, NAMESPACE, {"type": "web_search"}, {"type": "code_interpreter"}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {"format": {"type": "json_schema", "name": "out", "strict": True,
                            "schema": {"type": "object"}}},
        "reasoning": {"effort": "low", "summary": "auto"},
        "include": ["reasoning.encrypted_content"], "store": False,
        "client_metadata": {"x": "y"}, "prompt_cache_key": "k",
        "input": [
            {"type": "message", "role": "developer", "content": "dev one"},
            {"type": "message", "role": "developer",
             "content": [{"type": "input_text", "text": "dev two"}]},
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "look "},
                         {"type": "input_image", "image_url": "data:image/png;base64,iVBOR"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"},
            {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
             "content": [{"type": "output_text", "text": "checking", "annotations": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "status": "completed",
             "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call", "id": "fc_2", "call_id": "call_2", "namespace": "crm",
             "name": "lookup", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "call_2",
             "output": [{"type": "input_text", "text": "found"}]},
            {"role": "system", "content": "late system"},
            {"role": "user", "content": "thanks"},
        ],
    }
    request = CALLER.canonical(Op.CHAT, body)
    messages = request["messages"]
    assert messages[0] == {"role": "system", "content": "be brief\n\ndev one\n\ndev two\n\n"
                                                        "late system"}
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "tool",
                                             "user"]
    assert messages[1]["content"][1] == {"type": "image_url",
                                         "image_url": {"url": "data:image/png;base64,iVBOR"}}
    calls = messages[2]["tool_calls"]
    assert messages[2]["content"] == "checking"
    assert [c["function"]["name"] for c in calls] == ["get_weather", "crm__lookup"]
    assert calls[0]["id"] == "call_1" and calls[0]["function"]["arguments"] == '{"city":"Paris"}'
    assert messages[3] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    assert messages[4]["content"] == "found"
    assert [t["function"]["name"] for t in request["tools"]] == ["get_weather", "crm__lookup"]
    assert request["tools"][0]["function"]["strict"] is True
    assert request["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert request["parallel_tool_calls"] is False
    assert request["max_tokens"] == 50 and request["temperature"] == 0.2
    assert request["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True}}
    assert request["reasoning_effort"] == "low"
    for absent in ("include", "store", "client_metadata", "prompt_cache_key", "input"):
        assert absent not in request


@pytest.mark.parametrize(("fmt", "expected"), [
    ({"type": "text"}, None), ({"type": "json_object"}, {"type": "json_object"})])
def test_text_format(fmt: dict[str, Any], expected: Any) -> None:
    request = CALLER.canonical(Op.CHAT, {"model": "m", "input": "x", "text": {"format": fmt}})
    assert request.get("response_format") == expected


def test_string_input_and_tool_choice_words() -> None:
    request = CALLER.canonical(Op.CHAT, {"model": "m", "input": "hi", "tools": [WEATHER],
                                         "tool_choice": "required"})
    assert request["messages"] == [{"role": "user", "content": "hi"}]
    assert request["tool_choice"] == "required"


def chat_body(message: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10,
                      "prompt_tokens_details": {"cached_tokens": 4},
                      "completion_tokens_details": {"reasoning_tokens": 2}}}


def whole(events: list[dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
    out = list(CALLER.render(Op.CHAT, iter(events), False, "public", body=body))
    assert len(out) == 1
    return json.loads(out[0])


def test_non_stream_body() -> None:
    body = {"model": "public", "input": "x", "tools": [WEATHER, NAMESPACE], "temperature": 0.3,
            "metadata": {"a": "b"}, "store": False}
    message = {"role": "assistant", "content": "hello", "reasoning_content": "thinking...",
               "tool_calls": [
                   {"id": "call_9", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"X\"}"}},
                   {"id": "call_8", "type": "function",
                    "function": {"name": "crm__lookup", "arguments": "{}"}}]}
    result = whole([chat_body(message)], body)
    strict_response(result)
    assert result["status"] == "completed" and result["model"] == "public"
    assert [o["type"] for o in result["output"]] == ["reasoning", "message", "function_call",
                                                     "function_call"]
    assert result["output"][0]["content"] == [{"type": "reasoning_text", "text": "thinking..."}]
    msg = result["output"][1]
    assert msg["id"].startswith("msg_") and msg["role"] == "assistant"
    assert msg["content"][0]["text"] == "hello" and msg["content"][0]["annotations"] == []
    call = result["output"][2]
    assert call["id"].startswith("fc_") and call["call_id"] == "call_9"
    assert call["arguments"] == '{"city":"X"}' and call["status"] == "completed"
    assert result["output"][3]["name"] == "lookup" and result["output"][3]["namespace"] == "crm"
    assert result["usage"] == {"input_tokens": 7,
                               "input_tokens_details": {"cached_tokens": 4,
                                                        "cache_write_tokens": 0},
                               "output_tokens": 3,
                               "output_tokens_details": {"reasoning_tokens": 2},
                               "total_tokens": 10}
    assert result["temperature"] == 0.3 and result["metadata"] == {"a": "b"}
    assert result["store"] is False and result["tools"] == [WEATHER, NAMESPACE]


def test_truncated_answer_is_incomplete() -> None:
    result = whole([chat_body({"role": "assistant", "content": "cut"}, "length")],
                   {"model": "m", "input": "x", "max_output_tokens": 3})
    strict_response(result)
    assert result["status"] == "incomplete"
    assert result["incomplete_details"] == {"reason": "max_output_tokens"}
    assert result["output"][0]["status"] == "incomplete"


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "up",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


USAGE_CHUNK = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "up",
               "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 4,
                                        "total_tokens": 9}}


def parse_sse(raw: bytes) -> list[dict[str, Any]]:
    """Every frame: ``event: <type>`` then ``data: <json>`` with the same type."""
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        event = json.loads(data[6:])
        assert event["type"] == name[7:]
        events.append(event)
    return events


def check_contract(events: list[dict[str, Any]]) -> None:
    """SPEC §10's stream contract, and each event valid as OpenAI's typed event."""
    for event in events:
        EVENTS.validate_python(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    types = [e["type"] for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    terminal = [t for t in types if t in ("response.completed", "response.incomplete",
                                          "response.failed")]
    assert terminal == [types[-1]]
    assert "[DONE]" not in json.dumps(events)
    if types[-1] != "response.failed":
        assert events[-1]["response"]["id"] == events[0]["response"]["id"]
        strict_response(events[-1]["response"])


def stream(events: Iterator[dict[str, Any]], body: dict[str, Any]) -> list[dict[str, Any]]:
    return parse_sse(b"".join(CALLER.render(Op.CHAT, events, True, "public", body=body)))


def test_stream_order_for_reasoning_text_and_calls() -> None:
    source = [
        chunk({"role": "assistant", "reasoning_content": "let me "}),
        chunk({"reasoning_content": "think"}),
        chunk({"content": "Hel"}), chunk({"content": "lo"}),
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                               "function": {"name": "crm__lookup", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"q\":"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}, "tool_calls"),
        USAGE_CHUNK,
    ]
    events = stream(iter(source), {"model": "public", "input": "x", "tools": [NAMESPACE]})
    check_contract(events)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_text.delta",
        "response.reasoning_text.delta", "response.reasoning_text.done",
        "response.output_item.done",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["model"] == "public"
    assert [o["type"] for o in final["output"]] == ["reasoning", "message", "function_call"]
    assert final["output"][1]["content"][0]["text"] == "Hello"
    assert final["output"][2]["arguments"] == '{"q":1}'
    assert final["output"][2]["namespace"] == "crm"
    assert final["usage"]["input_tokens"] == 5 and final["usage"]["output_tokens"] == 4
    done = [e for e in events if e["type"] == "response.output_item.done"]
    assert [e["item"] for e in done] == final["output"]


def test_stream_truncated_is_incomplete() -> None:
    events = stream(iter([chunk({"content": "a"}), chunk({}, "length"), USAGE_CHUNK]),
                    {"model": "m", "input": "x"})
    check_contract(events)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_failure_mid_stream_is_one_failed_event_with_the_same_id() -> None:
    def dying() -> Iterator[dict[str, Any]]:
        yield chunk({"content": "a"})
        raise UpstreamError("the provider went away")

    frames = CALLER.render(Op.CHAT, dying(), True, "m", body={"model": "m", "input": "x"})
    out = []
    with pytest.raises(UpstreamError) as caught:
        for frame in frames:
            out.append(frame)
    out.append(CALLER.error_frame(caught.value))  # what the handler adds: nothing more
    events = parse_sse(b"".join(out))
    check_contract(events)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["id"] == events[0]["response"]["id"]
    assert events[-1]["response"]["error"] == {"code": "server_error",
                                               "message": "the provider went away"}


def test_reasoning_of_ollama_and_anthropic_reaches_reasoning_items() -> None:
    from llm_router_api.formats.anthropic.upstream import canonical_response
    from llm_router_api.formats.ollama.upstream import canonical_chunks

    objs = [{"message": {"role": "assistant", "content": "", "thinking": "hmm "}, "done": False},
            {"message": {"role": "assistant", "content": "ok"}, "done": False},
            {"message": {"role": "assistant", "content": ""}, "done": True,
             "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 2}]
    events = stream(canonical_chunks(Op.CHAT, iter(objs), "up"), {"model": "m", "input": "x"})
    check_contract(events)
    final = events[-1]["response"]["output"]
    assert [o["type"] for o in final] == ["reasoning", "message"]
    assert final[0]["content"] == [{"type": "reasoning_text", "text": "hmm "}]
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "up",
               "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 2},
               "content": [{"type": "thinking", "thinking": "deep", "signature": "s"},
                           {"type": "text", "text": "done"}]}
    body = whole([canonical_response(Op.CHAT, message, "up")], {"model": "m", "input": "x"})
    strict_response(body)
    assert body["output"][0]["content"] == [{"type": "reasoning_text", "text": "deep"}]
    assert body["output"][1]["content"][0]["text"] == "done"
