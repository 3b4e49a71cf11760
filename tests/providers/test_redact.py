"""Secret masking on the bytes of an upstream answer (``providers.redact``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from llm_router_api.providers.openai import split_sse_error
from llm_router_api.providers.redact import MASK, Redacted, redact, secrets_for

HOST = "http://10.1.2.3:8000"
TOKEN = "sk-live-0123456789"


class Chunks:
    """An upstream answer arriving in the given pieces."""

    status = 200
    headers: Mapping[str, str] = {}

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = pieces
        self.closed = False

    def chunks(self) -> Iterator[bytes]:
        yield from self.pieces

    def lines(self) -> Iterator[bytes]:
        raise AssertionError("not used")

    def read(self) -> bytes:
        raise AssertionError("not used")

    def json(self) -> object:
        raise AssertionError("not used")

    def close(self) -> None:
        self.closed = True


def test_secrets_cover_token_host_and_bare_host_port_and_other_tokens() -> None:
    found = secrets_for(HOST, TOKEN, ("other-provider-token",))
    for secret in (TOKEN, HOST, "10.1.2.3:8000", "other-provider-token",
                   "http:\\/\\/10.1.2.3:8000"):
        assert secret.encode() in found
    assert list(found) == sorted(found, key=len, reverse=True)


def test_short_tokens_are_not_masked_everywhere() -> None:
    assert b"ab" not in secrets_for(HOST, "ab")


def test_redact_is_identity_without_a_secret() -> None:
    data = b'{"choices": [{"text": "hello"}]}'
    assert redact(data, secrets_for(HOST, TOKEN)) is data


def test_a_secret_split_across_reads_is_still_masked() -> None:
    half = len(TOKEN) // 2
    raw = Chunks(b'data: {"error": "key ' + TOKEN[:half].encode(),
                 TOKEN[half:].encode() + b' at 10.1.2.3:8000"}\n\n', b"data: [DONE]\n\n")
    response = Redacted(raw, secrets_for(HOST, TOKEN))
    body = response.read()
    assert TOKEN.encode() not in body and b"10.1.2.3" not in body
    assert body.count(MASK) == 2 and body.endswith(b"data: [DONE]\n\n")
    response.close()
    assert raw.closed


def test_pieces_come_out_line_aligned_as_soon_as_a_line_is_complete() -> None:
    pieces = list(Redacted(Chunks(b"a\nb", b"c\n", b"d"), ()).chunks())
    assert pieces == [b"a\n", b"bc\n", b"d"]


def test_an_sse_error_line_is_split_off_with_its_event_line() -> None:
    block = (b'data: {"choices": [{"delta": {"content": "x"}}]}\n\n'
             b'event: error\ndata: {"error": {"message": "boom"}}\n\ndata: [DONE]\n\n')
    kept, failure = split_sse_error(block)
    assert kept == b'data: {"choices": [{"delta": {"content": "x"}}]}\n\n'
    assert failure is not None and failure.message == "boom"
    content = b'data: {"choices": [{"delta": {"content": "\\"error\\""}}]}\n\n'
    assert split_sse_error(content) == (content, None)
