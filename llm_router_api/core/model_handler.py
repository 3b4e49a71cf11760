"""``ModelHandler``: the one path every model call takes.

    resolve model ─► loop (at most MAX_ATTEMPTS):
        acquire a lease ─► open the upstream ─► read its FIRST frame
            failed before the first frame?  release (cool down), try another provider
        ─► status and headers are fixed ─► stream the rest ─► release in ``finally``

A non-stream answer is the same chain collected into one body, released before it is returned.
A stream that fails after its first frame ends with one error frame in the caller's format.
Every acquire has exactly one release: on success, on failure, and when the client goes away
(the WSGI server closes the generator, which runs its ``finally``). Each attempt's start,
failure, first stream frame and finish are reported to a ``CallObserver`` (metrics; the default
does nothing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from llm_router_api.base.lb.chooser import Lease, ProviderChooser
from llm_router_api.core.observer import CallObserver
from llm_router_api.errors import (
    NoProviderAvailable,
    RouterError,
    UnknownModel,
    UpstreamError,
    UpstreamProtocolError,
)
from llm_router_api.protocols.base import CallerProtocol
from llm_router_api.providers.base import ProviderAdapter
from llm_router_api.schemas.calls import Call
from llm_router_api.schemas.config import ModelConfig, ModelsConfig, ProviderConfig

log = logging.getLogger("llm_router.handler")


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


class ModelHandler:
    def __init__(self, models: ModelsConfig, chooser: ProviderChooser,
                 adapters: Mapping[str, ProviderAdapter],
                 protocols: Mapping[str, CallerProtocol],
                 limits: HandlerLimits | None = None,
                 observer: CallObserver | None = None) -> None:
        self.models = models
        self.chooser = chooser
        self._adapters = adapters
        self._protocols = protocols
        self._limits = limits or HandlerLimits()
        self.observer = observer or CallObserver()

    def resolve(self, name: str) -> ModelConfig:
        model = self.models.resolve(name)
        if model is None:
            raise UnknownModel(name)
        return model

    def protocol(self, call: Call) -> CallerProtocol:
        return self._protocols[call.protocol.value]

    # -- the request lifecycle -------------------------------------------------------------------
    def run(self, call: Call) -> Reply:
        model = self.resolve(call.model)
        deadline = time.monotonic() + self._limits.acquire_timeout
        tried: set[str] = set()
        failure: UpstreamError | None = None
        for _ in range(self._limits.max_attempts):
            try:
                lease = self.chooser.acquire(model, exclude=tried, deadline=deadline)
            except NoProviderAvailable:
                if failure is not None:
                    raise failure from None
                raise
            tried.add(lease.provider.id)
            self.observer.attempt_started(lease, self.chooser.strategy.name, failure is not None)
            try:
                frames = self.frames(call, model, lease.provider)
                first = next(frames)
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
            return self._reply(call, lease, first, frames)
        assert failure is not None  # the loop only ends here after a failed attempt
        raise failure

    def frames(self, call: Call, model: ModelConfig,
               provider: ProviderConfig) -> Iterator[bytes]:
        """The caller's bytes from one provider: forwarded as-is, or translated."""
        adapter = self._adapters.get(provider.api_type)
        if adapter is None:
            raise UpstreamError(f"api_type '{provider.api_type}' is not supported yet")
        upstream_model = model.upstream_name(provider)
        if adapter.protocol == call.protocol:
            return adapter.forward(provider, upstream_model, call)
        events = adapter.complete(provider, upstream_model, call)
        return self.protocol(call).render(call.op, events, call.stream, call.model)

    def _reply(self, call: Call, lease: Lease, first: bytes, frames: Iterator[bytes]) -> Reply:
        protocol = self.protocol(call)
        if not call.stream:
            try:
                body = first + b"".join(frames)
            except RouterError as exc:
                self.chooser.release(lease, failure=exc)
                self.observer.attempt_failed(lease, exc)
                raise
            except BaseException as exc:
                self.chooser.release(lease)
                self.observer.attempt_failed(lease, exc)
                raise
            self.chooser.release(lease, latency=time.monotonic() - lease.started)
            meter = self.observer.meter(call.protocol, stream=False)
            meter.feed(body)
            self.observer.finished(lease, meter.usage)
            return Reply(200, "application/json", body, provider_id=lease.provider.id,
                         model=call.model)
        ttft = time.monotonic() - lease.started
        self.observer.first_token(lease, ttft)
        return Reply(200, protocol.stream_content_type,
                     self._stream(protocol, lease, first, frames, ttft),
                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                     provider_id=lease.provider.id, model=call.model)

    def _stream(self, protocol: CallerProtocol, lease: Lease, first: bytes,
                frames: Iterator[bytes], ttft: float) -> Iterator[bytes]:
        failure: RouterError | None = None
        meter = self.observer.meter(protocol.protocol, stream=True)
        try:
            yield meter.feed(first)
            for frame in frames:
                yield meter.feed(frame)
        except RouterError as exc:
            failure = exc
            log.warning("stream from provider %s failed: %s", lease.provider.id, exc.message)
            yield protocol.error_frame(exc)
        except Exception as exc:  # a bug must still end the stream well-formed
            failure = RouterError()
            log.exception("stream from provider %s broke", lease.provider.id, exc_info=exc)
            yield protocol.error_frame(failure)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()
            self.chooser.release(lease, failure=failure,
                                 latency=None if failure else ttft)
            if failure is not None:
                self.observer.attempt_failed(lease, failure)
            self.observer.finished(lease, meter.usage)
