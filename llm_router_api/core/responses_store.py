"""Stored Responses API responses (SPEC §10): what ``previous_response_id``, ``GET`` and
``DELETE /v1/responses/{id}`` read.

A record is ``{"response": <the response object>, "input": [<input items>], "provider": id,
"native": bool}``: the input items are the whole transcript before the response (earlier
turns folded in), so a follow-up needs one read. Records live in Redis when the gateway uses
Redis (shared by every worker and replica: ``<prefix>responses:<scope>:<id>``, expiring after
``LLM_ROUTER_RESPONSES_TTL``), else in the worker's memory (the same TTL, at most
``LLM_ROUTER_RESPONSES_MAX_STORED`` records, oldest dropped first; a memory store is per
worker process, so several workers without Redis may not find each other's responses).
A record larger than ``LLM_ROUTER_RESPONSES_MAX_BYTES`` is not kept (logged): its id is then
unknown to a follow-up, as OpenAI's expired ones are. ``scope`` is the caller's key id (''
without auth): one key never reads another's responses.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any

import orjson

from llm_router_api.base.redis_link import redis_client
from llm_router_api.settings import Settings

log = logging.getLogger("llm_router.responses")


class ResponseStore:
    def __init__(self, ttl: float, max_bytes: int, max_stored: int,
                 redis: Any = None, prefix: str = "") -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.max_stored = max_stored
        self._redis = redis
        self._prefix = prefix + "responses:"
        self._memory: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> ResponseStore:
        redis = redis_client(settings, decode_responses=False) if settings.uses_redis else None
        return cls(settings.responses_ttl, settings.responses_max_bytes,
                   settings.responses_max_stored, redis, settings.redis_prefix)

    def _key(self, scope: str, response_id: str) -> str:
        return f"{self._prefix}{scope}:{response_id}"

    def put(self, scope: str, response_id: str, record: dict[str, Any]) -> bool:
        raw = orjson.dumps(record)
        if len(raw) > self.max_bytes:
            log.info("response %s not stored: %d bytes > LLM_ROUTER_RESPONSES_MAX_BYTES",
                     response_id, len(raw))
            return False
        key = self._key(scope, response_id)
        try:
            if self._redis is not None:
                self._redis.set(key, raw, px=int(self.ttl * 1000))
                return True
        except Exception:  # noqa: BLE001 - the answer was delivered; a follow-up will 400
            log.warning("could not store response %s in Redis", response_id, exc_info=True)
            return False
        with self._lock:
            self._memory[key] = (time.monotonic() + self.ttl, raw)
            self._memory.move_to_end(key)
            while len(self._memory) > self.max_stored:
                self._memory.popitem(last=False)
        return True

    def get(self, scope: str, response_id: str) -> dict[str, Any] | None:
        key = self._key(scope, response_id)
        raw: bytes | None
        if self._redis is not None:
            raw = self._redis.get(key)
        else:
            with self._lock:
                found = self._memory.get(key)
                if found is not None and found[0] <= time.monotonic():
                    del self._memory[key]
                    found = None
                raw = found[1] if found is not None else None
        if raw is None:
            return None
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None

    def delete(self, scope: str, response_id: str) -> bool:
        key = self._key(scope, response_id)
        if self._redis is not None:
            return bool(self._redis.delete(key))
        with self._lock:
            found = self._memory.pop(key, None)
        return found is not None and found[0] > time.monotonic()


_stores: dict[tuple[Any, ...], ResponseStore] = {}
_stores_lock = threading.Lock()


def store_for(settings: Settings) -> ResponseStore:
    """The worker's one store for these settings (shared by the Responses endpoints)."""
    key = (settings.redis_host, settings.redis_port, settings.redis_url, settings.redis_db,
           settings.redis_sentinels, settings.redis_prefix, settings.responses_ttl,
           settings.responses_max_bytes, settings.responses_max_stored)
    with _stores_lock:
        if key not in _stores:
            _stores[key] = ResponseStore.from_settings(settings)
        return _stores[key]
