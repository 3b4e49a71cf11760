"""``ClosingStream``: a response body whose ``close()`` always runs the clean-up.

A generator's ``finally`` does not run when the generator is closed before its first
``next()`` (a client that goes away before the server starts sending). WSGI servers call the
body's ``close()`` in every case, so the release goes there too; the clean-up is idempotent,
so the normal path (the generator's own ``finally``) and ``close()`` never release twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator


class ClosingStream:
    def __init__(self, frames: Iterator[bytes], on_close: Callable[[], None]) -> None:
        self._frames = frames
        self._on_close = on_close

    def __iter__(self) -> ClosingStream:
        return self

    def __next__(self) -> bytes:
        return next(self._frames)

    def close(self) -> None:
        try:
            close = getattr(self._frames, "close", None)
            if close is not None:
                close()
        finally:
            self._on_close()
