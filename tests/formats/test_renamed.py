"""``formats.caller.renamed``: every ``model`` key of a forwarded answer names the public model,
frame after frame, whether the frame takes the regex pass or the replace of the last pair seen."""

from __future__ import annotations

import re

import pytest

from llm_router_api.formats.caller import renamed

FRAMES = [
    b'data: {"id":"1","model":"up/x","choices":[{"delta":{"content":"a"}}]}\n\n',
    b'data: {"id":"2","model":"up/x","choices":[{"delta":{"content":"b"}}]}\n\n',
    # generated text mentioning a model key: escaped quotes, never renamed
    b'data: {"model":"up/x","choices":[{"delta":{"content":"\\"model\\":\\"up/x\\""}}]}\n\n',
    b'data: {"model" : "up/y","choices":[]}\n\n',  # another spelling and another name
    b'data: {"model":"up/y","choices":[]}\n\n',
    b'event: message_start\ndata: {"message":{"model":"up/x"},"model":"up/y"}\n\n',
    b'data: {"model":"up/x"}\n\ndata: {"model":"up/x"}\n\n',  # two events in one block
    b'data: {"model":5}\n\n',  # not a string: left alone
    b'data: {"choices":[]}\n\n',
    b'data: [DONE]\n\n',
]
PAIR = re.compile(rb'"model"(\s*):(\s*)"(?:[^"\\]|\\.)*"')


@pytest.mark.parametrize("order", ["as-listed", "reversed"])
def test_every_model_key_is_renamed_as_a_regex_pass_would(order: str) -> None:
    frames = FRAMES if order == "as-listed" else FRAMES[::-1]
    got = list(renamed(iter(frames), "public"))
    assert got == [PAIR.sub(b'"model":"public"', frame) for frame in frames]
    assert b"up/x" not in b"".join(got).replace(b'\\"up/x\\"', b"")
    assert b'"content":"\\"model\\":\\"up/x\\""' in b"".join(got)
