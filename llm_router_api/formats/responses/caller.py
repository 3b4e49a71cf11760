"""Callers that speak OpenAI's Responses API (``POST /v1/responses``), translated to any
provider through the canonical chat path.

A non-stream answer is one ``response`` object; a stream is SSE frames ``event: <type>`` +
``data: <json>``, each with ``type`` and a rising ``sequence_number``, in SPEC §10's order:
``response.created`` → ``response.in_progress`` → per output item ``output_item.added`` →
its parts and deltas → ``output_item.done`` → ``response.completed`` (or
``response.incomplete`` when the provider stopped at its token limit) carrying the whole
response under the same id. A failure after the stream began is one ``response.failed``;
there is no ``[DONE]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from llm_router_api.errors import RateLimited, RouterError, UpstreamRateLimited
from llm_router_api.formats.caller import CallerFormat, dumps
from llm_router_api.formats.canonical import Usage, new_id, now
from llm_router_api.formats.responses.vocab import (
    ECHOED,
    PATH,
    PROTOCOL,
    TERMINAL,
    canonical_messages,
    canonical_tool_choice,
    canonical_tools,
    error_shape,
    frame,
    response_format,
    responses_usage,
    tool_names,
    usage_of,
)
from llm_router_api.schemas.calls import Op

#: Canonical delta / message fields that carry reasoning text (vLLM, and the adapters that
#: translate Ollama ``thinking`` / Anthropic thinking into it).
REASONING_FIELDS = ("reasoning_content", "reasoning")


class ResponsesCaller(CallerFormat):
    protocol = PROTOCOL
    text_fields = ("delta",)

    def canonical(self, op: Op, body: dict[str, Any]) -> dict[str, Any]:
        request: dict[str, Any] = {"model": body.get("model"),
                                   "messages": canonical_messages(body),
                                   "stream": body.get("stream") is True}
        if body.get("max_output_tokens") is not None:
            request["max_tokens"] = body["max_output_tokens"]
        for key in ("temperature", "top_p", "user"):
            if body.get(key) is not None:
                request[key] = body[key]
        tools, _ = canonical_tools(body.get("tools"))
        if tools:
            request["tools"] = tools
            choice = canonical_tool_choice(body.get("tool_choice"),
                                           (t["function"]["name"] for t in tools))
            if choice is not None:
                request["tool_choice"] = choice
            if isinstance(body.get("parallel_tool_calls"), bool):
                request["parallel_tool_calls"] = body["parallel_tool_calls"]
        fmt = response_format(body.get("text"))
        if fmt is not None:
            request["response_format"] = fmt
        reasoning = body.get("reasoning")
        if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
            request["reasoning_effort"] = reasoning["effort"]
        return request

    def render(self, op: Op, events: Iterator[dict[str, Any]], stream: bool,
               model: str, body: Mapping[str, Any] | None = None) -> Iterator[bytes]:
        builder = ResponseBuilder(dict(body or {}), model)
        if not stream:
            for event in events:
                yield dumps(builder.whole(event))
            return
        yield from builder.frames(events)

    def error_body(self, error: RouterError, detail: bool = False) -> dict[str, Any]:
        return error_shape(error, detail)

    def error_frame(self, error: RouterError) -> bytes:
        if getattr(error, "framed", False):
            return b""  # ``ResponseBuilder.frames`` already sent this stream's response.failed
        # The builder of this stream is out of reach here: a failed response with a fresh id.
        # ``ResponseBuilder.frames`` itself ends a stream it knows with its own id.
        return failed_frame(error, {"id": new_id("resp_"), "object": "response",
                                    "created_at": now(), "model": "", "output": [],
                                    "parallel_tool_calls": True, "tool_choice": "auto",
                                    "tools": []}, 0)

    def usage_of(self, obj: Any) -> Usage | None:
        return usage_of(obj)

    def owns_path(self, path: str, prefix: str) -> bool:
        return path.startswith(PATH)

    def renamed(self, frames: Iterator[bytes], stream: bool, model: str) -> Iterator[bytes]:
        """A native provider's answer naming the public ``model`` (in the body, or in the
        ``response`` of each stream event that carries one). A native stream that fails
        after it began ends with one ``response.failed`` that continues its sequence numbers
        and names the provider's response id."""
        if not stream:
            for block in frames:
                yield _rename(block, model)
            return
        last = -1
        created: dict[str, Any] = {}
        try:
            for block in frames:
                numbers = _SEQUENCE.findall(block)
                last = int(numbers[-1]) if numbers else last
                if b'"model"' not in block:
                    yield block
                    continue
                lines = block.split(b"\n")
                for index, line in enumerate(lines):
                    if line.startswith(b"data:") and b'"model"' in line:
                        lines[index] = b"data: " + _rename(line[5:].strip(), model, created)
                yield b"\n".join(lines)
        except RouterError as exc:
            response = created or {"id": new_id("resp_"), "object": "response",
                                   "created_at": now(), "model": model, "output": [],
                                   "parallel_tool_calls": True, "tool_choice": "auto",
                                   "tools": []}
            yield failed_frame(exc, response, last + 1)
            exc.framed = True  # type: ignore[attr-defined]
            raise


_SEQUENCE = re.compile(rb'"sequence_number"\s*:\s*(\d+)')


def _rename(raw: bytes, model: str, created: dict[str, Any] | None = None) -> bytes:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    if not isinstance(value, dict):
        return raw
    if isinstance(value.get("response"), dict) and "model" in value["response"]:
        value["response"]["model"] = model
        if created is not None and value.get("type") == "response.created":
            created.update(value["response"])
    elif value.get("object") == "response":
        value["model"] = model
    return dumps(value)


def error_code(error: RouterError) -> str:
    """``response.error.code``: one of OpenAI's values for a failed response."""
    if isinstance(error, RateLimited | UpstreamRateLimited):
        return "rate_limit_exceeded"
    return "server_error"


def failed_frame(error: RouterError, response: dict[str, Any], sequence: int) -> bytes:
    failed = {**response, "status": "failed",
              "error": {"code": error_code(error), "message": error.message}}
    return frame({"type": "response.failed", "sequence_number": sequence, "response": failed})


class ResponseBuilder:
    """One response's id, echoed settings and output items, built from canonical events."""

    def __init__(self, body: dict[str, Any], model: str) -> None:
        self.body = body
        self.model = model
        self.id = new_id("resp_")
        self.created = now()
        self.output: list[dict[str, Any]] = []
        self.usage: dict[str, Any] | None = None
        self.finish: Any = None
        self.names = tool_names(body.get("tools"))
        self.sequence = -1

    # -- the response object --------------------------------------------------------------------
    def response(self, status: str) -> dict[str, Any]:
        body = self.body
        echoed = {key: body.get(key) if body.get(key) is not None else default
                  for key, default in ECHOED.items()}
        reasoning = _object(body.get("reasoning"))
        text = _object(body.get("text"))
        return {
            "id": self.id, "object": "response", "created_at": self.created,
            "status": status, "error": None,
            "incomplete_details": ({"reason": "max_output_tokens"}
                                   if status == "incomplete" else None),
            "model": self.model, "output": list(self.output), **echoed,
            "tool_choice": _tool_choice(body.get("tool_choice")),
            "reasoning": {"effort": _word(reasoning.get("effort"), EFFORTS),
                          "summary": _word(reasoning.get("summary"), SUMMARIES)},
            "text": {**text, "format": _text_format(text.get("format"))},
            "tools": [t for t in body.get("tools") or [] if _echoable_tool(t)],
            "metadata": body.get("metadata") if isinstance(body.get("metadata"), dict) else {},
            "usage": self.usage,
        }

    def status(self) -> str:
        return "incomplete" if self.finish == "length" else "completed"

    # -- non-stream -----------------------------------------------------------------------------
    def whole(self, event: dict[str, Any]) -> dict[str, Any]:
        choice = (event.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        self.finish = choice.get("finish_reason")
        item_status = "incomplete" if self.status() == "incomplete" else "completed"
        reasoning = _reasoning_text(message)
        if reasoning:
            self.output.append(self._reasoning(new_id("rs_"), reasoning))
        text = message.get("content")
        if isinstance(text, str) and text:
            self.output.append(self._message(new_id("msg_"), text, item_status))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            self.output.append(self._call(new_id("fc_"), call.get("id"), function.get("name"),
                                          function.get("arguments"), "completed"))
        if not self.output:  # an empty answer is still one (empty) message
            self.output.append(self._message(new_id("msg_"), "", item_status))
        self.usage = responses_usage(event.get("usage"))
        return self.response(self.status())

    # -- items ----------------------------------------------------------------------------------
    @staticmethod
    def _message(item_id: str, text: str | None, status: str) -> dict[str, Any]:
        content = ([] if text is None else
                   [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}])
        return {"type": "message", "id": item_id, "status": status, "role": "assistant",
                "content": content}

    def _call(self, item_id: str, call_id: Any, name: Any, arguments: Any,
              status: str) -> dict[str, Any]:
        item: dict[str, Any] = {"type": "function_call", "id": item_id,
                                "call_id": call_id or new_id("call_"),
                                "name": name or "", "arguments": arguments or "",
                                "status": status}
        if item["name"] in self.names:
            item["namespace"], item["name"] = self.names[item["name"]]
        return item

    @staticmethod
    def _reasoning(item_id: str, text: str | None) -> dict[str, Any]:
        item: dict[str, Any] = {"type": "reasoning", "id": item_id, "summary": []}
        if text is not None:
            item["content"] = [{"type": "reasoning_text", "text": text}]
        return item

    # -- stream ---------------------------------------------------------------------------------
    def event(self, kind: str, **fields: Any) -> bytes:
        self.sequence += 1
        return frame({"type": kind, "sequence_number": self.sequence, **fields})

    def frames(self, events: Iterator[dict[str, Any]]) -> Iterator[bytes]:
        stream = _ItemStream(self)
        started = False
        try:
            for event in events:
                if not started:
                    started = True
                    yield self.event("response.created", response=self.response("in_progress"))
                    yield self.event("response.in_progress",
                                     response=self.response("in_progress"))
                if isinstance(event.get("usage"), dict):
                    self.usage = responses_usage(event["usage"])
                for choice in event.get("choices") or []:
                    self.finish = choice.get("finish_reason") or self.finish
                    yield from stream.delta(choice.get("delta") or {})
        except RouterError as exc:
            if not started:
                raise
            yield failed_frame(exc, self.response("failed"), self.sequence + 1)
            exc.framed = True  # type: ignore[attr-defined]  # error_frame adds nothing more
            raise  # the handler still learns the provider failed (its lease, its health)
        if not started:
            return
        yield from stream.close()
        self.usage = self.usage or responses_usage(None)
        status = self.status()
        yield self.event(f"response.{status}", response=self.response(status))


# What a response echoes must be valid in OpenAI's schema: a value the request got wrong (and
# the translation ignored) is echoed as OpenAI's default instead.
EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})
SUMMARIES = frozenset({"auto", "concise", "detailed"})


def _word(value: Any, allowed: frozenset[str]) -> str | None:
    return value if value in allowed else None


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(
            choice.get("name"), str):
        return choice
    return "auto"  # built-in tool choices: those tools were not offered (translated)


def _text_format(fmt: Any) -> dict[str, Any]:
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object",
                                                             "json_schema"):
        return {"type": "text"}
    if fmt["type"] == "json_schema" and not (isinstance(fmt.get("schema"), dict)
                                             and isinstance(fmt.get("name"), str)):
        return {"type": "json_object"}
    return fmt


def _echoable_tool(tool: Any) -> bool:
    if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
        return False
    return tool["type"] not in ("function", "namespace") or isinstance(tool.get("name"), str)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _reasoning_text(obj: dict[str, Any]) -> str:
    for field in REASONING_FIELDS:
        value = obj.get(field)
        if isinstance(value, str) and value:
            return value
    return ""


class _ItemStream:
    """The open output item of a stream and its events."""

    def __init__(self, builder: ResponseBuilder) -> None:
        self.b = builder
        self.kind: str | None = None  # "message", "reasoning" or f"call{index}"
        self.item: dict[str, Any] = {}
        self.text = ""

    @property
    def index(self) -> int:
        return len(self.b.output)

    def delta(self, delta: dict[str, Any]) -> Iterator[bytes]:
        reasoning = _reasoning_text(delta)
        if reasoning:
            if self.kind != "reasoning":
                yield from self.close()
                yield from self._open("reasoning", self.b._reasoning(new_id("rs_"), None))
            self.text += reasoning
            yield self.b.event("response.reasoning_text.delta", item_id=self.item["id"],
                               output_index=self.index, content_index=0, delta=reasoning)
        content = delta.get("content")
        if isinstance(content, str) and content:
            if self.kind != "message":
                yield from self.close()
                yield from self._open("message",
                                      self.b._message(new_id("msg_"), None, "in_progress"))
                yield self.b.event("response.content_part.added", item_id=self.item["id"],
                                   output_index=self.index, content_index=0,
                                   part=_text_part(""))
            self.text += content
            yield self.b.event("response.output_text.delta", item_id=self.item["id"],
                               output_index=self.index, content_index=0, delta=content,
                               logprobs=[])
        for call in delta.get("tool_calls") or []:
            key = f"call{call.get('index', 0)}"
            function = call.get("function") or {}
            if self.kind != key:
                yield from self.close()
                yield from self._open(key, self.b._call(
                    new_id("fc_"), call.get("id"), function.get("name"), "", "in_progress"))
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                self.text += arguments
                yield self.b.event("response.function_call_arguments.delta",
                                   item_id=self.item["id"], output_index=self.index,
                                   delta=arguments)

    def _open(self, kind: str, item: dict[str, Any]) -> Iterator[bytes]:
        self.kind, self.item, self.text = kind, item, ""
        yield self.b.event("response.output_item.added", output_index=self.index,
                           item=dict(item))

    def close(self) -> Iterator[bytes]:
        kind, item, index = self.kind, self.item, self.index
        if kind is None:
            return
        item_id = item["id"]
        if kind == "reasoning":
            yield self.b.event("response.reasoning_text.done", item_id=item_id,
                               output_index=index, content_index=0, text=self.text)
            item["content"] = [{"type": "reasoning_text", "text": self.text}]
        elif kind == "message":
            yield self.b.event("response.output_text.done", item_id=item_id, output_index=index,
                               content_index=0, text=self.text, logprobs=[])
            yield self.b.event("response.content_part.done", item_id=item_id,
                               output_index=index, content_index=0,
                               part=_text_part(self.text))
            item["content"] = [_text_part(self.text)]
            item["status"] = "incomplete" if self.b.finish == "length" else "completed"
        else:
            item["arguments"] = self.text or "{}"
            item["status"] = "completed"
            yield self.b.event("response.function_call_arguments.done", item_id=item_id,
                               output_index=index, arguments=item["arguments"],
                               name=item["name"])
        yield self.b.event("response.output_item.done", output_index=index, item=item)
        self.b.output.append(item)
        self.kind, self.item, self.text = None, {}, ""


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def is_terminal(kind: Any) -> bool:
    return kind in TERMINAL
