"""``ModelHandler``: the one path every model call takes.

    resolve model ─► for each model of its chain (the model, then its fallback_models):
        loop (at most MAX_ATTEMPTS):
            acquire a lease ─► open the upstream ─► read its FIRST frame
                failed before the first frame?  release (cool down), try another provider
        no provider of the model could serve?  the next model of the chain (same deadline)
    ─► status and headers are fixed ─► stream the rest ─► release in ``finally``

Once the first frame came, every answer takes one chain (``_delivered``): it yields the items,
counts their tokens once and ends the lease in its ``finally``. A non-stream answer is that
chain collected into one body (released before it is returned; a failure raises); a stream is
that chain framed (``_framed``); ``run_events`` is that chain over canonical events.
A stream that fails after its first frame ends with one error frame in the caller's format.
Every acquire has exactly one release: on success, on failure, and when the client goes away
(the WSGI server closes the body, which runs the generator's ``finally``; ``ClosingBody.close``
also releases a stream that was closed before its first byte was sent, when a generator's
``finally`` would not run).
Each attempt's start, failure, first stream frame and finish are reported to a
``CallObserver`` (metrics; the default does nothing).

Deadline (SPEC §12): everything before the first frame — waiting for a slot, every attempt —
happens before one monotonic ``deadline`` (``LLM_ROUTER_FIRST_BYTE_DEADLINE`` from the start,
unless the caller passes its own, so a loop over fallback models can share it). Slot waits are
also bounded by ``ACQUIRE_TIMEOUT``; each attempt waits for its upstream's first byte for at
most the time left (``Call.deadline``, below ``EXTERNAL_TIMEOUT``). Past the deadline: 504, or
503 when no provider could be acquired at all.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from typing import Protocol as Interface

from llm_router_api.base.lb.chooser import Lease, ProviderChooser
from llm_router_api.base.lb.hint import RoutingHint
from llm_router_api.closing import ClosingBody, close_if_closable
from llm_router_api.core.observer import CallObserver
from llm_router_api.core.usage import Meter, Usage, meter_for
from llm_router_api.errors import (
    DeadlineExceeded,
    NoProviderAvailable,
    RouterError,
    UnknownModel,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from llm_router_api.formats.caller import CallerFormat
from llm_router_api.formats.registry import caller, forwards, native_key, serves_natively
from llm_router_api.formats.upstream import UpstreamAdapter
from llm_router_api.schemas.calls import Call
from llm_router_api.schemas.checks import check_request
from llm_router_api.schemas.config import ModelConfig, ModelsConfig, ProviderConfig

log = logging.getLogger("llm_router.handler")

T = TypeVar("T")
#: Names the configured model that served the reply (another one when a fallback served).
MODEL_HEADER = "X-LLM-Router-Model"
#: Opens one provider for a call: caller bytes (``frames``) or canonical events (``events``).
Opener = Callable[[Call, ModelConfig, ProviderConfig], Iterator[T]]
#: Builds a call's routing hint on one model for strategies that use one
#: (``core.routing.RoutingHints``).
Hinter = Callable[[Call, str], RoutingHint | None]


class Counter(Interface[T]):
    """Counts the tokens of the items it is fed (bytes: ``core.usage.Meter``; canonical
    events: ``EventTokens``), passing each item on unchanged."""

    def feed(self, item: T) -> T: ...

    @property
    def usage(self) -> Usage: ...


@dataclass
class Reply:
    """An answer ready for the web layer: ``body`` is bytes, or an iterator for a stream."""

    status: int
    content_type: str
    body: bytes | Iterator[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    provider_id: str = ""
    model: str = ""


@dataclass(frozen=True)
class HandlerLimits:
    max_attempts: int = 3
    acquire_timeout: float = 30.0
    first_byte_deadline: float = 120.0


class ModelHandler:
    def __init__(self, models: ModelsConfig, chooser: ProviderChooser,
                 adapters: Mapping[str, UpstreamAdapter],
                 limits: HandlerLimits | None = None,
                 observer: CallObserver | None = None, hints: Hinter | None = None) -> None:
        self.models = models
        self.chooser = chooser
        self._adapters = adapters
        self._limits = limits or HandlerLimits()
        self.observer = observer or CallObserver()
        self._hints = hints

    def with_models(self, models: ModelsConfig) -> ModelHandler:
        """A handler for another configuration generation (hot reload): the same chooser,
        adapters, limits and observer; only the models differ."""
        handler = copy.copy(self)
        handler.models = models
        return handler

    def resolve(self, name: str) -> ModelConfig:
        model = self.models.resolve(name)
        if model is None:
            raise UnknownModel(name)
        return model

    def protocol(self, call: Call) -> CallerFormat:
        return caller(call.protocol)

    # -- the request lifecycle -------------------------------------------------------------------
    def deadline(self) -> float:
        """A first-byte deadline starting now (monotonic)."""
        return time.monotonic() + self._limits.first_byte_deadline

    def run(self, call: Call, deadline: float | None = None) -> Reply:
        """The caller's bytes: a whole body, or a stream that releases its lease when it ends.
        ``deadline`` (monotonic) bounds everything before the first byte; default: from now."""
        lease, first, frames = self._open(call, self.frames, deadline)
        return self._reply(call, lease, first, frames)

    def run_events(self, call: Call,
                   deadline: float | None = None) -> Generator[dict[str, Any], None, None]:
        """Canonical events (``chat.completion.chunk`` dicts when ``call.stream``) for callers
        inside the router, such as the built-in utilities.

        A generator: nothing is acquired until the first ``next()``; the lease is released in
        its ``finally`` (exhausted, failed, or closed early). ``deadline`` (monotonic) bounds
        everything before the first event (default: the first-byte deadline from the first
        ``next()``). Each event's ``model`` is the model as the caller named it, or the
        fallback's that served instead.
        """
        lease, first, events = self._open(call, self.events, deadline)
        shown = self.shown_name(call, lease.model)

        def named(event: dict[str, Any]) -> dict[str, Any]:
            event["model"] = shown
            return event

        # Closed before the end (a sibling job failed, the caller left): no latency sample,
        # no cool-down, no success recorded.
        yield from self._delivered(call, lease, named(first), map(named, events),
                                   EventTokens(), closed=RouterError())

    def _open(self, call: Call, opener: Opener[T],
              deadline: float | None = None) -> tuple[Lease, T, Iterator[T]]:
        """Open the call on its model or, when no provider of it can serve before the first
        byte, on the next model of its fallback chain (SPEC §12), all within one ``deadline``.

        ``lease.model`` names the model that served. On return the caller owns the lease and
        must release it exactly once.
        """
        model = self.resolve(call.model)
        if deadline is None:
            deadline = time.monotonic() + self._limits.first_byte_deadline
        call = call.with_deadline(deadline)
        failure: RouterError | None = None
        for candidate in self.models.chain(model):
            if failure is not None and time.monotonic() >= deadline:
                break  # out of time: no further model is tried
            if failure is not None:
                log.warning("model %s cannot serve (%s); falling back to %s", model.name,
                            failure.message, candidate.name)
                self.observer.model_fell_back(model.name, candidate.name)
            try:
                return self._open_model(call, candidate, opener, deadline)
            except (UpstreamError, NoProviderAvailable) as exc:
                if isinstance(exc, UpstreamError) and not exc.failover:
                    raise  # the caller's fault, or the deadline passed (DeadlineExceeded)
                if not isinstance(failure, UpstreamError) or isinstance(exc, UpstreamError):
                    failure = exc  # an attempt's failure says more than "none acquirable"
        assert failure is not None  # the chain is never empty
        if isinstance(failure, UpstreamError) and time.monotonic() >= deadline:
            raise _late(failure)
        raise failure

    def _open_model(self, call: Call, model: ModelConfig, opener: Opener[T],
                    deadline: float) -> tuple[Lease, T, Iterator[T]]:
        """Acquire, open and read the first item on one model, failing over between its
        providers (bounded) before that item arrives. Slot waits end at ``ACQUIRE_TIMEOUT``
        from now or at ``deadline``, whichever is first."""
        if self._translates(call, model):
            check_request(call.op, call.canonical)  # a 400 naming the field, not a 500 later
        slot_deadline = min(deadline, time.monotonic() + self._limits.acquire_timeout)
        tried: set[str] = set()
        failure: UpstreamError | None = None
        hint = self._hints(call, model.name) if self._hints is not None else None
        for _ in range(self._limits.max_attempts):
            if failure is not None and time.monotonic() >= deadline:
                raise _late(failure)
            # A pinned call tries its provider alone first; after that, any other one.
            exclude = tried if not call.pin or tried else {
                p.id for p in model.providers if p.id != call.pin}
            try:
                lease = self.chooser.acquire(model, exclude=exclude, deadline=slot_deadline,
                                             hint=hint)
            except NoProviderAvailable:
                if failure is not None:
                    raise failure from None
                if call.pin and not tried:  # the pinned provider cannot serve: any other
                    tried.add(call.pin)
                    continue
                raise
            tried.add(lease.provider.id)
            self.observer.attempt_started(lease, self.chooser.strategy.name, failure is not None)
            try:
                items = opener(call, model, lease.provider)
                first = next(items)
            except UpstreamError as exc:
                self.chooser.release(lease, failure=exc)
                self.observer.attempt_failed(lease, exc)
                log.warning("attempt on provider %s failed: %s", lease.provider.id, exc.message)
                if not exc.failover:
                    raise
                failure = exc
                continue
            except StopIteration:
                self.chooser.release(lease, failure=UpstreamProtocolError())
                failure = UpstreamProtocolError("the provider sent an empty answer")
                self.observer.attempt_failed(lease, failure)
                continue
            except BaseException as exc:
                self.chooser.release(lease)
                self.observer.attempt_failed(lease, exc)
                raise
            return lease, first, items
        assert failure is not None  # the loop only ends here after a failed attempt
        raise _late(failure) if time.monotonic() >= deadline else failure

    def _translates(self, call: Call, model: ModelConfig) -> bool:
        """Whether some provider of ``model`` may get ``call`` translated (not forwarded)."""
        return any(not self._forwarded(call, p) for p in model.providers)

    @staticmethod
    def _forwarded(call: Call, provider: ProviderConfig) -> bool:
        """Whether ``provider`` gets ``call`` as sent (its own format, or served natively)."""
        return (forwards(provider.api_type) == call.protocol
                or serves_natively(provider, call.protocol))

    def adapter(self, provider: ProviderConfig) -> UpstreamAdapter:
        return self._adapters[provider.api_type]  # every registered api_type has one

    def events(self, call: Call, model: ModelConfig,
               provider: ProviderConfig) -> Iterator[dict[str, Any]]:
        """Canonical events from one provider (always translated, never forwarded)."""
        return self.adapter(provider).complete(provider, model.upstream_name(provider), call)

    def frames(self, call: Call, model: ModelConfig,
               provider: ProviderConfig) -> Iterator[bytes]:
        """The caller's bytes from one provider: forwarded as-is, or translated."""
        adapter = self.adapter(provider)
        upstream_model = model.upstream_name(provider)
        shown = self.shown_name(call, model.name)
        if serves_natively(provider, call.protocol):
            native = self._adapters[native_key(call.protocol)]
            # Always renamed: a reply names the public model, never the provider's path.
            return self.protocol(call).renamed(
                native.forward(provider, upstream_model, call), call.stream, shown)
        if forwards(provider.api_type) == call.protocol:
            # the upstream's bytes, naming the public model (not its model_path)
            return self.protocol(call).renamed(
                adapter.forward(provider, upstream_model, call), call.stream, shown)
        events = adapter.complete(provider, upstream_model, call)
        return self.protocol(call).render(call.op, events, call.stream, shown, body=call.body)

    def shown_name(self, call: Call, served: str) -> str:
        """The model name a reply shows (body and ``X-LLM-Router-Model``): as the caller
        spelled it, or the configured name of the fallback model that ``served``."""
        asked = self.models.resolve(call.model)
        return call.model if asked is not None and asked.name == served else served

    def _reply(self, call: Call, lease: Lease, first: bytes, frames: Iterator[bytes]) -> Reply:
        protocol = self.protocol(call)
        chain = self._delivered(call, lease, first, frames, self._meter(call, call.stream))
        headers = {MODEL_HEADER: self.shown_name(call, lease.model)}
        if not call.stream:  # the same chain, collected; a failure raises (an HTTP error)
            return Reply(200, "application/json", b"".join(chain), headers=headers,
                         provider_id=lease.provider.id, model=call.model)
        stream = ClosingBody(_framed(protocol, chain), lambda: self._abandon(lease, frames))
        return Reply(200, protocol.stream_content_type, stream,
                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers},
                     provider_id=lease.provider.id, model=call.model)

    def _meter(self, call: Call, stream: bool) -> Meter:
        """The observer's meter; a counting one when the caller's key has a token budget."""
        meter = self.observer.meter(call.protocol, stream)
        if call.on_usage is not None and type(meter) is Meter:
            meter = meter_for(call.protocol, stream)
        return meter

    def _delivered(self, call: Call, lease: Lease, first: T, items: Iterator[T],
                   meter: Counter[T],
                   closed: RouterError | None = None) -> Generator[T, None, None]:
        """The one chain every answer takes once its first item came: it yields the items,
        counts their tokens (once) and ends the lease in its ``finally`` — exhausted, failed
        (re-raised) or closed early (``closed``: what that counts as; ``None``, a success).

        A stream's latency sample is its time to the first item; a whole answer's, its time
        to the last."""
        ttft = time.monotonic() - lease.started
        if call.stream:
            self.observer.first_token(lease, ttft)
        failure: RouterError | None = None
        reported: BaseException | None = None  # what the observer is told failed
        try:
            yield meter.feed(first)
            for item in items:
                yield meter.feed(item)
        except GeneratorExit:
            failure = closed
            raise
        except RouterError as exc:
            failure = reported = exc
            log.warning("answer from provider %s failed: %s", lease.provider.id, exc.message)
            raise
        except BaseException as exc:  # a bug, or the worker stopping: not the provider's fault
            failure, reported = RouterError(), exc
            log.exception("answer from provider %s broke", lease.provider.id, exc_info=exc)
            raise
        finally:
            try:
                close_if_closable(items)
            finally:
                latency = ttft if call.stream else time.monotonic() - lease.started
                self.chooser.release(lease, failure=failure,
                                     latency=None if failure else latency, stream=call.stream)
                if reported is not None:
                    self.observer.attempt_failed(lease, reported)
                if call.stream or failure is None:  # something was delivered
                    usage = meter.usage
                    self.observer.finished(lease, usage)
                    _charge(call.on_usage, usage)

    def _abandon(self, lease: Lease, frames: Iterator[bytes]) -> None:
        """The body ended or was closed; a no-op unless it closed before the stream started."""
        try:
            close_if_closable(frames)
        finally:
            self.chooser.release(lease)


def _framed(protocol: CallerFormat, chain: Iterator[bytes]) -> Generator[bytes, None, None]:
    """A stream's frames; a failure after the first frame ends it with one error frame in
    the caller's format (a bug too: the stream still ends well-formed)."""
    try:
        yield from chain
    except RouterError as exc:
        yield protocol.error_frame(exc)
    except Exception:  # logged by the chain
        yield protocol.error_frame(RouterError())


def _late(failure: UpstreamError) -> UpstreamError:
    """The failure to report when the first-byte deadline has passed: a 504."""
    if isinstance(failure, UpstreamTimeout):
        return failure
    return DeadlineExceeded()


def _charge(on_usage: Callable[[int], None] | None, usage: Usage) -> None:
    """Tell the caller's key what the answer used (never fails the request)."""
    if on_usage is None:
        return
    tokens = usage.input_tokens + usage.output_tokens
    try:
        on_usage(tokens)
    except Exception:  # the budget store is down; the answer was already delivered
        log.exception("could not charge %d tokens to the caller's key", tokens)


class EventTokens:
    """Tokens of a canonical event stream: its ``usage`` when one comes, else one output token
    per text chunk."""

    def __init__(self) -> None:
        self.counted = 0
        self.reported: Usage | None = None

    def feed(self, event: dict[str, Any]) -> dict[str, Any]:
        usage = event.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            self.reported = Usage(int(usage.get("prompt_tokens") or 0),
                                  usage["completion_tokens"])
        elif any((choice.get("delta") or choice.get("message") or {}).get("content")
                 for choice in event.get("choices") or ()):
            self.counted += 1
        return event

    @property
    def usage(self) -> Usage:
        return self.reported if self.reported is not None else Usage(0, self.counted)
