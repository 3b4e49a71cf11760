"""What an endpoint asks ``ModelHandler`` for: one model call in the caller's protocol.

The canonical request and response format inside the router is OpenAI's (chat completion
requests, ``chat.completion`` / ``chat.completion.chunk`` objects, ``text_completion``,
embedding lists). Caller protocols translate into it; provider adapters translate out of it.
When caller and provider speak the same protocol, bytes are forwarded instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar


class Protocol(str):
    """A caller protocol's name. Each format folder declares its own (``vocab.PROTOCOL``) and
    ``formats/registry.py`` ``CALLERS`` lists every one, keyed by it; nothing else keeps a list.
    A plain string to everything that is not typed (JSON, labels, dict keys).

    ``OPENAI`` is the canonical format's (the one every caller protocol is translated into):
    the default of an endpoint, of an internal call and of a path no format owns.
    """

    __slots__ = ()
    OPENAI: ClassVar[Protocol]


Protocol.OPENAI = Protocol("openai")


class Op(str, Enum):
    CHAT = "chat"
    COMPLETION = "completion"
    EMBEDDING = "embedding"


@dataclass(frozen=True)
class Call:
    """One model call.

    ``body`` is the caller's JSON object as sent (for passthrough); ``canonical`` is the same
    request in the canonical (OpenAI) format, built by the caller's protocol.
    """

    protocol: Protocol
    op: Op
    model: str
    body: dict[str, Any]
    canonical: dict[str, Any]
    stream: bool
    request_id: str = ""
    extra_headers: dict[str, str] = field(default_factory=dict)
    #: A caller-named session (``X-Session-ID``), for session affinity; '' when none.
    session: str = ""
    #: Told the tokens (input + output) the answer used, once it is delivered (per-key limits).
    on_usage: Callable[[int], None] | None = field(default=None, compare=False)
    #: Monotonic time by which the upstream's first byte must have come (set by
    #: ``ModelHandler`` from ``LLM_ROUTER_FIRST_BYTE_DEADLINE``); ``None``: no limit but the
    #: adapter's own timeout.
    deadline: float | None = field(default=None, compare=False)
    #: A provider id this call should go to first (a Responses follow-up to the native
    #: provider that holds the previous response); '' when any provider will do.
    pin: str = ""
    #: The caller's body with earlier state folded in (a Responses follow-up's whole
    #: transcript), for a provider that forwards it but does not hold that state.
    full_body: dict[str, Any] | None = field(default=None, compare=False)
