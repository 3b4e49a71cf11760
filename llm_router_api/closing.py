"""Closing iterables that may or may not have ``close()`` (generators, WSGI bodies, lists)."""

from __future__ import annotations

from typing import Any


def close_if_closable(obj: Any) -> None:
    """Call ``obj.close()`` when it has one (a WSGI body or generator), else do nothing."""
    close = getattr(obj, "close", None)
    if close is not None:
        close()
