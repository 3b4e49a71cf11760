"""Native Responses pass-through: providers marked ``"responses": "native"`` in models-config
(vLLM, Ollama >= 0.13, OpenAI serve ``POST /v1/responses`` themselves) get the caller's request
as sent, ``model`` replaced, and their answer is relayed (secrets masked; the handler renames
``model`` to the public name). Their ids are theirs: the caller sees the provider's ``resp_…``.

A follow-up (``previous_response_id``) goes as sent only to the provider that holds the
previous response (``Call.pin``); any other native provider gets ``Call.full_body``: the whole
transcript as input and no ``previous_response_id`` (it does not know that id).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from llm_router_api.errors import UpstreamError, UpstreamProtocolError
from llm_router_api.formats.responses.vocab import PATH, TERMINAL_TYPE
from llm_router_api.formats.upstream import (
    UpstreamAdapter,
    checked_blocks,
    error_in,
    parse_json,
    relay,
    upstream_message,
)
from llm_router_api.schemas.calls import Call
from llm_router_api.schemas.config import ProviderConfig


class ResponsesAdapter(UpstreamAdapter):
    health_path = "/v1/models"

    def forward(self, provider: ProviderConfig, upstream_model: str,
                call: Call) -> Iterator[bytes]:
        source = call.body
        if call.full_body is not None and call.pin != provider.id:
            source = call.full_body
        body = {**source, "model": upstream_model}
        yield from relay(self.open(provider, PATH, body, call), call.stream, _blocks,
                         _check)

    def complete(self, provider: ProviderConfig, upstream_model: str,
                 call: Call) -> Iterator[dict[str, Any]]:
        raise NotImplementedError("Responses calls to a native provider are forwarded")


def _check(raw: bytes) -> Any:
    obj = parse_json(raw)
    failure = error_in(obj)
    if failure is not None or not isinstance(obj, dict) or obj.get("object") != "response":
        raise failure or UpstreamProtocolError()
    return obj


def _blocks(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """Relay SSE blocks; an upstream ``error`` event ends the stream as a failure (the caller
    gets the gateway's one ``response.failed``); a stream without a terminal event failed."""
    return checked_blocks(blocks, _split_error,
                          lambda block: TERMINAL_TYPE.search(block) is not None)


def _split_error(block: bytes) -> tuple[bytes, UpstreamError | None]:
    kept: list[bytes] = []
    for line in block.splitlines(keepends=True):
        if line.startswith(b"data:") and b'"type":"error"' in line.replace(b" ", b""):
            obj = parse_json(line[5:])
            message = upstream_message(obj.get("error") if isinstance(obj, dict) else None,
                                       upstream_message(obj.get("message")
                                                        if isinstance(obj, dict) else None,
                                                        "the provider failed"))
            if kept and kept[-1].startswith(b"event:"):
                kept.pop()
            return b"".join(kept), UpstreamError(message)
        kept.append(line)
    return block, None
