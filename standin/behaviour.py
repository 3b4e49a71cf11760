"""The knobs that decide how a stand-in answers (all settable at runtime).

Modes: ``ok``; ``status`` (an error status in the protocol's shape); ``hang``; ``reset``;
``die_mid_stream`` (cut after ``die_after`` frames); ``garbage``; ``leak`` (an error with
``status_code`` whose message echoes the caller's credentials: Authorization, x-api-key, Host
and the full URL, as a careless upstream would); ``leak_mid_stream`` (a stream that sends
``die_after`` frames, then the protocol's own error event carrying that same leak; a
non-stream answer whose first token is replaced by the leak).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

MODES = ("ok", "status", "hang", "reset", "die_mid_stream", "garbage", "leak",
         "leak_mid_stream")


@dataclass(frozen=True)
class Behaviour:
    """How the stand-in answers the next requests.

    Instances are immutable: :meth:`updated` returns a validated copy, so the
    server can swap the whole object atomically between requests.
    """

    tokens: int = 5
    echo: bool = False
    first_delay: float = 0.0
    token_delay: float = 0.0
    mode: str = "ok"
    status_code: int = 500
    retry_after: float | None = None
    die_after: int = 2
    tool_call: bool = True
    embedding_dim: int = 4
    #: When set, a request whose body contains this text is answered as ``mode="status"``.
    fail_marker: str = ""
    #: The mode applies to POST calls (generation, embeddings) only; GETs (``/v1/models``,
    #: ``/api/tags``) answer normally: a server that lists its models but cannot generate.
    generation_only: bool = False
    #: The arguments of the stand-in's tool calls, as JSON object text ("" : the fixed
    #: ``{"location": "Paris"}``), e.g. ``{"cmd": "echo hi"}`` for an agent's shell tool.
    tool_args: str = ""
    #: When set, a conversation offering a tool of this name, with no tool result in it yet,
    #: is answered with one call to that tool (``tool_args`` as its input); once the result
    #: came back, with text. Drives a real agent through one tool round trip.
    tool_name: str = ""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            _check(field.name, getattr(self, field.name))

    def updated(self, **fields: Any) -> Behaviour:
        """Return a copy with ``fields`` changed; ValueError on unknown/invalid ones."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"unknown behaviour field(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **fields)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _non_negative_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return value >= 0


def _check(name: str, value: object) -> None:
    """Validate one field value (types as declared, plus a few ranges)."""
    if name == "mode":
        if value not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {value!r}")
    elif name in ("echo", "tool_call", "generation_only"):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a boolean")
    elif name in ("tokens", "status_code", "die_after", "embedding_dim"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer")
        if name == "status_code" and not 100 <= value <= 599:
            raise ValueError("status_code must be between 100 and 599")
    elif name == "tool_args":
        if not isinstance(value, str) or (value and not _json_object(value)):
            raise ValueError("tool_args must be JSON object text or empty")
    elif name in ("fail_marker", "tool_name"):
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string")
    elif name == "retry_after":
        if value is not None and not _non_negative_number(value):
            raise ValueError("retry_after must be a non-negative number or null")
    elif not _non_negative_number(value):
        raise ValueError(f"{name} must be a non-negative number")


def _json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False
