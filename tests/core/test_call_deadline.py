"""``Call.with_deadline`` makes what ``dataclasses.replace(call, deadline=...)`` makes (the
handler sets every call's first-byte deadline with it), leaving the original as it was."""

from __future__ import annotations

import dataclasses

import pytest

from llm_router_api.schemas.calls import Call, Op, Protocol

pytestmark = pytest.mark.unit


def test_with_deadline_is_replace() -> None:
    call = Call(Protocol.OPENAI, Op.CHAT, "m", {"model": "m"}, {"model": "m"}, True,
                request_id="r", extra_headers={"a": "b"}, session="s", on_usage=print,
                deadline=1.0, pin="p", full_body={"x": 1})
    fast = call.with_deadline(2.5)
    slow = dataclasses.replace(call, deadline=2.5)
    assert type(fast) is Call and fast == slow
    assert {f.name: getattr(fast, f.name) for f in dataclasses.fields(Call)} == {
        f.name: getattr(slow, f.name) for f in dataclasses.fields(Call)}
    assert fast.deadline == 2.5 and call.deadline == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.deadline = 3.0  # type: ignore[misc]
