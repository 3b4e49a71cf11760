"""Secrets never leave through an upstream (SPEC §13).

Every byte an upstream sends is read through ``Redacted``, which replaces each configured
provider token, and the provider's own ``api_host`` (also as bare ``host:port``), by ``***``:
error bodies, error lines in streams, and same-protocol bodies and streams forwarded as they
came. Redaction works on whole lines (a secret never holds a newline), so a secret split across
two network reads is still found.

Cost on the hot path: per line block, one ``bytes in`` test per secret (a provider usually has
three or four); ``replace`` only runs when one is there. The secret list of a provider is worked
out once (``secrets_for`` is cached).

Tokens shorter than ``MIN_TOKEN`` characters are not redacted: replacing a two-letter "token"
everywhere would corrupt answers while protecting nothing.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from llm_router_api.errors import UpstreamProtocolError
from llm_router_api.providers.transport import UpstreamResponse, split_lines

MASK = b"***"
MIN_TOKEN = 4


@functools.lru_cache(maxsize=4096)
def secrets_for(api_host: str, token: str, tokens: tuple[str, ...] = ()) -> tuple[bytes, ...]:
    """What to hide in the answers of the provider at ``api_host``: every configured token
    (``tokens`` and its own), its ``api_host`` and ``host:port``, longest first."""
    found = {t for t in (token, *tokens) if len(t) >= MIN_TOKEN}
    found.add(api_host)
    found.add(api_host.replace("/", "\\/"))  # as a JSON encoder that escapes slashes writes it
    parts = urlsplit(api_host)
    if parts.netloc:
        found.add(parts.netloc)
        found.add(parts.netloc.rpartition("@")[2])  # without user:password@
    for text in list(found):
        escaped = json.dumps(text)[1:-1]  # a token with quotes or backslashes, inside JSON
        if escaped != text:
            found.add(escaped)
    return tuple(sorted((s.encode() for s in found if s), key=len, reverse=True))


def redact(data: bytes, secrets: tuple[bytes, ...]) -> bytes:
    for secret in secrets:
        if secret in data:
            data = data.replace(secret, MASK)
    return data


def redact_text(text: str, secrets: tuple[bytes, ...]) -> str:
    raw = text.encode()
    clean = redact(raw, secrets)
    return text if clean is raw else clean.decode(errors="replace")


def line_aligned(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The same bytes, re-cut so that every piece but the last ends with a newline."""
    held: list[bytes] = []
    for chunk in chunks:
        if not held and chunk.endswith(b"\n"):  # the usual case for a stream: as it came
            yield chunk
            continue
        cut = chunk.rfind(b"\n") + 1
        if not cut:
            held.append(chunk)
            continue
        held.append(chunk[:cut])
        yield b"".join(held)
        held = [chunk[cut:]] if cut < len(chunk) else []
    if held:
        yield b"".join(held)


class Redacted:
    """An ``UpstreamResponse`` whose body comes out with every secret masked."""

    def __init__(self, raw: UpstreamResponse, secrets: tuple[bytes, ...]) -> None:
        self._raw = raw
        self._secrets = secrets
        self.status = raw.status
        self.headers: Mapping[str, str] = raw.headers

    def chunks(self) -> Iterator[bytes]:
        """Line-aligned pieces (a stream's lines come as soon as they are complete)."""
        secrets = self._secrets
        for piece in line_aligned(self._raw.chunks()):
            for secret in secrets:
                if secret in piece:
                    piece = piece.replace(secret, MASK)
            yield piece

    def lines(self) -> Iterator[bytes]:
        return split_lines(self.chunks())

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def json(self) -> Any:
        try:
            return json.loads(self.read())
        except ValueError:
            raise UpstreamProtocolError() from None

    def close(self) -> None:
        self._raw.close()
