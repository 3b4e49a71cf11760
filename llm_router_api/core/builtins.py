"""How a built-in utility runs: one model call per job, concurrently, answered as JSON or NDJSON.

    jobs (one per input text, or one) ─► fan_out: a thread pool of at most
        LLM_ROUTER_BUILTIN_CONCURRENCY workers, each ``ModelHandler.run_events`` (acquire and
        reach the first token within its own first-byte deadline ─► stream canonical chunks
        ─► release in its ``finally``)
    ─► events in arrival order: Delta(i, text) ... Finished(i, text) | Failed(i, error)
    ─► respond(): non-stream collects them; stream writes NDJSON lines as they come

Request-level outcome (documented in README.md, Built-in text utilities):
- some jobs fail, some succeed: 200; the failed items' results are ``null`` and the body gets
  ``"errors": [{"index": i, "error": {...}}]``; a stream has an ``{"index": i, "error"}`` line.
- every job fails: the request fails. Before any output (always the case without streaming)
  that is an HTTP error with the first failed job's status, in the OpenAI error shape; once a
  stream has begun, its last line is ``{"done": true, "error": {...}}``.
A stream's response starts only when some job produced its first token, or fails as a whole.
The ``X-LLM-Router-Model`` header names the model that served: the requested one or, when its
providers could not, the fallback that did (SPEC §12); then the final body also has ``model``.
A stream's header is fixed with its first line, so it names the model of the first output.

The caller leaving stops the work: closing the stream (the server does it when a write fails),
or — while nothing is written, as for a non-stream answer — the server telling that the
connection closed (``client_gone``, polled every ``GONE_POLL`` seconds). Then no new model
call starts, and each running one stops at its next event and releases its provider (its
upstream connection is closed).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson

from llm_router_api.core.model_handler import MODEL_HEADER, ModelHandler, Reply
from llm_router_api.errors import ClientClosed, RouterError, UpstreamError, UpstreamProtocolError
from llm_router_api.protocols.shapes import openai_error
from llm_router_api.schemas.calls import Call, Op, Protocol

log = logging.getLogger("llm_router.builtins")

NDJSON = "application/x-ndjson"
#: Seconds between two looks at whether the caller is still there, while waiting for events.
GONE_POLL = 0.2
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(frozen=True)
class Delta:
    index: int
    text: str
    #: The configured model that serves job ``index`` (a fallback's name, if one does).
    model: str = ""


@dataclass(frozen=True)
class Finished:
    index: int
    text: str
    model: str = ""


@dataclass(frozen=True)
class Failed:
    index: int
    error: RouterError


Event = Delta | Finished | Failed


@dataclass(frozen=True)
class Plan:
    """What one built-in request asks for: one message list per job, and how to shape results.

    ``result(i, text)`` is job i's result (``text`` is ``None`` when it failed);
    ``combine(results)`` is the ``response`` value from the results in input order.
    """

    model: str
    jobs: Sequence[list[dict[str, str]]]
    options: dict[str, Any]
    result: Callable[[int, str | None], Any]
    combine: Callable[[list[Any]], Any]


def chat_request(model: str, messages: list[dict[str, str]],
                 options: dict[str, Any]) -> dict[str, Any]:
    """The canonical (OpenAI) streaming chat request for one job."""
    return {"model": model, "messages": messages, "stream": True, **options}


def delta_text(event: dict[str, Any]) -> str:
    """The text a canonical event carries: a chunk's delta, or a whole response's message."""
    if "error" in event:
        error = event["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise UpstreamError(str(message or "the provider reported an error"))
    choices = event.get("choices")
    if not isinstance(choices, list) or not choices:
        return ""  # e.g. a usage-only chunk
    choice = choices[0] if isinstance(choices[0], dict) else {}
    part = choice.get("delta") or choice.get("message") or {}
    content = part.get("content") if isinstance(part, dict) else None
    return content if isinstance(content, str) else ""


class FanOut:
    """Runs every job of a plan in a bounded pool; iterate for events, ``close`` to stop."""

    def __init__(self, handler: ModelHandler, plan: Plan, concurrency: int, request_id: str,
                 on_usage: Callable[[int], None] | None = None,
                 client_gone: Callable[[], bool] | None = None) -> None:
        self._handler = handler
        self._plan = plan
        self._request_id = request_id
        self._on_usage = on_usage
        self._client_gone = client_gone
        self._events: queue.Queue[Event] = queue.Queue()
        self._stop = threading.Event()
        workers = max(1, min(concurrency, len(plan.jobs)))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="builtin")
        for index in range(len(plan.jobs)):
            self._pool.submit(self._work, index)
        self._left = len(plan.jobs)

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        if self._left == 0:
            self.close()
            raise StopIteration
        event = self._next_event()
        if not isinstance(event, Delta):
            self._left -= 1
        return event

    def _next_event(self) -> Event:
        """The next event; ``ClientClosed`` (work stopped) once the caller has gone."""
        if self._client_gone is None:
            return self._events.get()
        while True:
            try:
                return self._events.get(timeout=GONE_POLL)
            except queue.Empty:
                if self._client_gone():
                    self.close()
                    raise ClientClosed() from None

    def close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _work(self, index: int) -> None:
        if self._stop.is_set():
            return
        call = self._call(index)
        events = self._handler.run_events(call)
        parts: list[str] = []
        model = ""
        try:
            for event in events:
                if self._stop.is_set():
                    return
                model = model or str(event.get("model") or "")
                text = delta_text(event)
                if text:
                    parts.append(text)
                    self._events.put(Delta(index, text, model))
            if not parts:
                raise UpstreamProtocolError("the provider sent an empty answer")
            self._events.put(Finished(index, "".join(parts), model))
        except RouterError as exc:
            self._events.put(Failed(index, exc))
        except Exception as exc:  # a bug must still end this job with an error, not a hang
            log.exception("built-in job %d broke", index, exc_info=exc)
            self._events.put(Failed(index, RouterError()))
        finally:
            events.close()  # releases the provider if the job stopped early

    def _call(self, index: int) -> Call:
        request = chat_request(self._plan.model, self._plan.jobs[index], self._plan.options)
        return Call(Protocol.OPENAI, Op.CHAT, self._plan.model, request, request, True,
                    request_id=self._request_id, on_usage=self._on_usage)


def error_object(error: RouterError) -> dict[str, Any]:
    """A per-job error: the OpenAI error object plus the HTTP status it would have had."""
    return {**openai_error(error)["error"], "status": error.http_status}


class Outcome:
    """Collects per-job results; builds the final body (the non-stream body)."""

    def __init__(self, plan: Plan, started: float) -> None:
        self.plan = plan
        self.started = started
        self.texts: dict[int, str] = {}
        self.models: dict[int, str] = {}
        self.errors: dict[int, RouterError] = {}

    def add(self, event: Event) -> None:
        if isinstance(event, Finished):
            self.texts[event.index] = event.text
            self.models[event.index] = event.model
        elif isinstance(event, Failed):
            self.errors[event.index] = event.error

    @property
    def all_failed(self) -> bool:
        return len(self.errors) == len(self.plan.jobs)

    def first_error(self) -> RouterError:
        return self.errors[min(self.errors)]

    def served(self) -> str:
        """The model that served the answers: the requested one, or the fallback that did
        (several, comma-separated, when texts of one request were served by different ones)."""
        names = dict.fromkeys(self.models[i] for i in sorted(self.models))
        return ", ".join(name for name in names if name) or self.plan.model

    def result(self, index: int) -> Any:
        return self.plan.result(index, self.texts.get(index))

    def body(self) -> dict[str, Any]:
        results = [self.result(i) for i in range(len(self.plan.jobs))]
        body: dict[str, Any] = {"response": self.plan.combine(results),
                                "generation_time": round(time.monotonic() - self.started, 3)}
        if self.served() != self.plan.model:  # a fallback served: say which (SPEC §12)
            body["model"] = self.served()
        if self.errors:
            body["errors"] = [{"index": i, "error": error_object(e)}
                              for i, e in sorted(self.errors.items())]
        return body


def respond(handler: ModelHandler, plan: Plan, stream: bool, concurrency: int,
            request_id: str, on_usage: Callable[[int], None] | None = None,
            client_gone: Callable[[], bool] | None = None) -> Reply:
    """Run the plan and answer: a JSON body, or an NDJSON stream (see the module docstring)."""
    started = time.monotonic()
    outcome = Outcome(plan, started)
    events = FanOut(handler, plan, concurrency, request_id, on_usage, client_gone)
    if not stream:
        for event in events:
            outcome.add(event)
        if outcome.all_failed:
            raise outcome.first_error()
        return Reply(200, "application/json", orjson.dumps(outcome.body()),
                     headers={MODEL_HEADER: outcome.served()}, model=plan.model)
    head = _head(events, outcome)
    served = head[-1].model if isinstance(head[-1], Delta | Finished) else ""
    return Reply(200, NDJSON, _lines(events, outcome, head),
                 headers={**STREAM_HEADERS, MODEL_HEADER: served or plan.model},
                 model=plan.model)


def _head(events: FanOut, outcome: Outcome) -> list[Event]:
    """Events up to the first output; raises the request's error if every job failed first."""
    head: list[Event] = []
    try:
        for event in events:
            head.append(event)
            outcome.add(event)
            if not isinstance(event, Failed):
                return head
    except BaseException:
        events.close()
        raise
    raise outcome.first_error()


def _lines(events: FanOut, outcome: Outcome, head: list[Event]) -> Iterator[bytes]:
    try:
        for event in head:
            yield _line(event, outcome)
        for event in events:
            outcome.add(event)
            yield _line(event, outcome)
        if outcome.all_failed:
            yield _dump({"done": True, "error": error_object(outcome.first_error())})
        else:
            yield _dump({"done": True, **outcome.body()})
    except ClientClosed:
        return  # nobody reads this stream any more: end it quietly
    finally:
        events.close()


def _line(event: Event, outcome: Outcome) -> bytes:
    if isinstance(event, Delta):
        return _dump({"index": event.index, "delta": event.text})
    if isinstance(event, Finished):
        return _dump({"index": event.index, "done": True, "result": outcome.result(event.index)})
    return _dump({"index": event.index, "error": error_object(event.error)})


def _dump(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value) + b"\n"
