"""OpenAI Responses API: ``POST /v1/responses`` (also ``/responses`` and ``P/responses``),
``GET`` and ``DELETE /v1/responses/{id}`` (SPEC §10).

A request is translated through the canonical chat path (``formats/responses``) or, on a
provider marked ``"responses": "native"``, forwarded as sent. ``previous_response_id`` folds
the stored transcript in before the new input; a stored response that a native provider made
sends the follow-up to that provider first (``Call.pin``) while it is healthy. A response
with ``store`` not false is stored (``core/responses_store.py``) once its last byte went out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel

from llm_router_api.auth.access import Access
from llm_router_api.closing import ClosingBody, close_if_closable
from llm_router_api.core.model_handler import Reply
from llm_router_api.core.responses_store import ResponseStore, store_for
from llm_router_api.endpoints.base import EndpointI, Incoming
from llm_router_api.errors import (
    ClientError,
    NoProviderAvailable,
    NotFound,
    StateUnavailable,
    echo,
)
from llm_router_api.formats.registry import serves_natively
from llm_router_api.formats.responses.vocab import (
    PROTOCOL,
    TERMINAL_TYPE,
    canonical_tools,
    input_items,
)
from llm_router_api.schemas.calls import Call, Op
from llm_router_api.schemas.config import ModelConfig
from llm_router_lib.data_models.responses import ResponsesRequest

log = logging.getLogger("llm_router.responses")


def _read(store: ResponseStore, scope: str, response_id: str) -> dict[str, Any] | None:
    try:
        return store.get(scope, response_id)
    except Exception:  # noqa: BLE001 - Redis down: a 503, never a traceback
        log.warning("could not read response %s from the store", response_id, exc_info=True)
        raise StateUnavailable() from None


class ResponsesCreate(EndpointI):
    paths = ("/v1/responses", "/responses", "{prefix}/responses")
    protocol = PROTOCOL
    request_model: ClassVar[type[BaseModel]] = ResponsesRequest

    def handle(self, incoming: Incoming) -> Reply:
        self.parse(incoming)
        body = incoming.body
        handler = incoming.config.handler
        model = handler.resolve(body["model"])
        store = store_for(self.settings)
        prior: list[dict[str, Any]] = []
        pin = ""
        previous = body.get("previous_response_id")
        if previous is not None:
            record = _read(store, incoming.key_id, previous)
            if record is None:
                raise ClientError(f"Previous response with id '{echo(previous[:128])}' not "
                                  "found.",
                                  param="previous_response_id",
                                  code="previous_response_not_found")
            prior = list(record.get("input") or []) + list(
                (record.get("response") or {}).get("output") or [])
            pin = self._holder(record, model)
        items = prior + input_items(body)
        full_body = {k: v for k, v in body.items() if k != "previous_response_id"}
        full_body["input"] = items
        self._count_dropped(full_body, model)
        call = Call(self.protocol, Op.CHAT, body["model"], body,
                    self.caller_format.canonical(Op.CHAT, full_body), body.get("stream") is True,
                    request_id=incoming.request_id, on_usage=incoming.on_usage,
                    session=incoming.session, pin=pin,
                    full_body=full_body if previous is not None else None)
        reply = handler.run(call)
        if body.get("store") is False:
            return reply
        return self._recorded(reply, store, incoming.key_id, items, model)

    def _holder(self, record: dict[str, Any], model: ModelConfig) -> str:
        """The native provider that holds a stored response, when it can take the follow-up
        now (one of this model's providers, not cooling down or drained); else ''."""
        provider_id = record.get("provider")
        if not record.get("native") or not isinstance(provider_id, str):
            return ""
        chooser = self.parts.chooser
        found = [p for p in model.providers if p.id == provider_id]
        try:
            healthy = chooser.healthy(chooser.untried(model, exclude=[
                p.id for p in model.providers if p.id != provider_id])) if found else []
        except NoProviderAvailable:
            return ""
        return provider_id if healthy else ""

    def _count_dropped(self, full_body: dict[str, Any], model: ModelConfig) -> None:
        if all(serves_natively(p, PROTOCOL) for p in model.providers):
            return  # native providers get every tool as sent
        _, dropped = canonical_tools(full_body.get("tools"))
        observer = self.parts.handler.observer
        for kind in dropped:
            log.debug("tool of type %s not offered to translated providers", kind[:64])
            observer.tool_dropped(kind)

    def _recorded(self, reply: Reply, store: ResponseStore, scope: str,
                  items: list[dict[str, Any]], model: ModelConfig) -> Reply:
        native = any(p.id == reply.provider_id and serves_natively(p, PROTOCOL)
                     for p in model.providers)

        def keep(response: Any) -> None:
            if not isinstance(response, dict) or not isinstance(response.get("id"), str):
                return
            store.put(scope, response["id"], {"response": response, "input": items,
                                              "provider": reply.provider_id,
                                              "native": native})

        if isinstance(reply.body, bytes):
            keep(_json(reply.body))
            return reply
        inner = reply.body
        reply.body = ClosingBody(_watched(inner, keep), lambda: close_if_closable(inner))
        return reply


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _watched(frames: Iterator[bytes], keep: Any) -> Iterator[bytes]:
    """The frames as they are; the terminal event's ``response`` is stored once it passed."""
    pending = b""
    try:
        for block in frames:
            yield block
            if pending or TERMINAL_TYPE.search(block):
                pending += block
        for line in pending.split(b"\n"):
            if line.startswith(b"data:") and TERMINAL_TYPE.search(line):
                event = _json(line[5:].strip())
                if isinstance(event, dict) and event.get("type") in (
                        "response.completed", "response.incomplete"):
                    keep(event.get("response"))
    finally:
        close_if_closable(frames)


class ResponsesGet(EndpointI):
    """``GET /v1/responses/{id}``: a stored response of the caller's key."""

    paths = ("/v1/responses/<response_id>", "/responses/<response_id>",
             "{prefix}/responses/<response_id>")
    methods: ClassVar[tuple[str, ...]] = ("GET",)
    protocol = PROTOCOL
    access = Access.KEY
    takes_body = False

    def handle(self, incoming: Incoming) -> Any:
        response_id = incoming.path_params.get("response_id", "")
        record = _read(store_for(self.settings), incoming.key_id, response_id)
        if record is None:
            raise _not_found(response_id)
        return record.get("response")


class ResponsesDelete(ResponsesGet):
    """``DELETE /v1/responses/{id}``."""

    methods: ClassVar[tuple[str, ...]] = ("DELETE",)

    def handle(self, incoming: Incoming) -> Any:
        response_id = incoming.path_params.get("response_id", "")
        store = store_for(self.settings)
        if _read(store, incoming.key_id, response_id) is None:
            raise _not_found(response_id)
        try:
            store.delete(incoming.key_id, response_id)
        except Exception:  # noqa: BLE001 - Redis down
            raise StateUnavailable() from None
        return {"id": response_id, "object": "response", "deleted": True}


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{echo(response_id[:128])}' not found.",
                    param="response_id", code="response_not_found")
