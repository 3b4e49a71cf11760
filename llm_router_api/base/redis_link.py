"""One way to reach Redis, and one way to live without it for a while.

``redis_client(settings)`` never waits long: short socket timeouts, no client-side retries.
``Fallback`` runs an operation on Redis, or — after a connection error or timeout — on the
process's own state instead: it logs one warning when Redis goes, tries it again at most every
``RETRY_INTERVAL`` seconds, and logs when it is back. The load-balancing store and the per-key
limiter both use it, so an outage never makes a request wait or fail.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from llm_router_api.settings import Settings

log = logging.getLogger("llm_router.redis")

SOCKET_TIMEOUT = 0.5
RETRY_INTERVAL = 1.0
OUTAGE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
T = TypeVar("T")


def redis_client(settings: Settings, decode_responses: bool = True) -> redis.Redis:
    return redis.Redis(host=settings.redis_host, port=settings.redis_port, db=settings.redis_db,
                       password=settings.redis_password or None, socket_timeout=SOCKET_TIMEOUT,
                       socket_connect_timeout=SOCKET_TIMEOUT, retry=Retry(NoBackoff(), 0),
                       decode_responses=decode_responses)


def redis_address(settings: Settings) -> str:
    return f"{settings.redis_host}:{settings.redis_port}/{settings.redis_db}"


class Fallback:
    """Redis when it answers, the local alternative while it does not."""

    def __init__(self, where: str, what: str) -> None:
        self._where = where
        self._what = what  # e.g. "load-balancing state", for the log lines
        self._lock = threading.Lock()
        self._down = False
        self._retry_at = 0.0

    @property
    def down(self) -> bool:
        return self._down

    def run(self, shared: Callable[[], T], local: Callable[[], T]) -> T:
        if self._down and time.monotonic() < self._retry_at:
            return local()
        try:
            result = shared()
        except OUTAGE as exc:
            self._went_down(exc)
            return local()
        if self._down:
            self._came_back()
        return result

    def _went_down(self, exc: Exception) -> None:
        with self._lock:
            self._retry_at = time.monotonic() + RETRY_INTERVAL
            if self._down:
                return
            self._down = True
        log.warning("Redis at %s is unreachable (%s): %s is per process until it returns",
                    self._where, type(exc).__name__, self._what)

    def _came_back(self) -> None:
        with self._lock:
            if not self._down:
                return
            self._down = False
        log.warning("Redis at %s is reachable again: %s is shared again", self._where, self._what)
