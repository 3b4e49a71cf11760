"""Closing iterables that may or may not have ``close()`` (generators, WSGI bodies, lists)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def close_if_closable(obj: Any) -> None:
    """Call ``obj.close()`` when it has one (a WSGI body or generator), else do nothing."""
    close = getattr(obj, "close", None)
    if close is not None:
        close()


class ClosingBody:
    """A body that calls ``done`` once: when it is exhausted or closed, whichever comes first.

    Closing a generator that never started skips its ``finally``; WSGI servers close the body
    in every case, so ``done`` (which must be idempotent with the generator's own clean-up)
    runs even then.
    """

    def __init__(self, inner: Iterable[Any], done: Callable[[], None]) -> None:
        self._inner = inner
        self._items = iter(inner)
        self._done: Callable[[], None] | None = done

    def __iter__(self) -> ClosingBody:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._items)
        except StopIteration:
            self._finish()
            raise

    def close(self) -> None:
        try:
            close_if_closable(self._inner)
        finally:
            self._finish()

    def _finish(self) -> None:
        done, self._done = self._done, None
        if done is not None:
            done()
