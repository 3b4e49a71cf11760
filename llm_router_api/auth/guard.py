"""``Guard``: the one place that decides whether a request may go on, and what it owes.

Endpoints declare their ``access``: ``open`` (liveness, version, ``GET /``), ``info`` (health,
model lists, metrics: open unless ``LLM_ROUTER_PROTECT_INFO_ENDPOINTS``), ``admin`` (guarded by
the admin token inside the endpoint) or ``key`` (every model call). With no key configured,
everything is open. The keys come with each request's configuration generation (the keys
file is hot-reloaded with it), so ``authenticate`` is given them. ``authenticate`` then
``admit`` give the ``Admission`` to ``release`` exactly once when the response is finished;
one daemon thread renews live concurrency leases every TTL/3 (a renewal re-creates leases
Redis lost).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from llm_router_api.auth.keys import ApiKey, KeyRing
from llm_router_api.auth.limits import Admission, Limiter, MemoryLimiter, limited
from llm_router_api.auth.redis_limits import RedisLimiter
from llm_router_api.base.leases import LeaseBook
from llm_router_api.base.redis_link import redis_address, redis_client
from llm_router_api.errors import Forbidden
from llm_router_api.settings import Settings

log = logging.getLogger("llm_router.auth")

OPEN, INFO, ADMIN, KEY = "open", "info", "admin", "key"


class Guard:
    def __init__(self, limiter: Limiter, protect_info: bool = False) -> None:
        self.limiter = limiter
        self.protect_info = protect_info
        self._live: LeaseBook[Admission] = LeaseBook()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings, keys: KeyRing) -> Guard:
        limiter: Limiter = MemoryLimiter(settings.lease_ttl)
        # A keys file may gain keys on reload, so it gets the shared limiter even when empty.
        if (keys.enabled or settings.api_keys_file) and settings.uses_redis:
            limiter = RedisLimiter(redis_client(settings, decode_responses=False),
                                   settings.redis_prefix, settings.lease_ttl,
                                   redis_address(settings))
        return cls(limiter, settings.protect_info_endpoints)

    def authenticate(self, access: str, headers: Mapping[str, str],
                     keys: KeyRing) -> ApiKey | None:
        """The caller's key when this access level needs one (401 when missing or wrong)."""
        if not keys.enabled or access in (OPEN, ADMIN) or (access == INFO
                                                           and not self.protect_info):
            return None
        return keys.authenticate(headers)

    def admit(self, key: ApiKey | None, model: str | None = None) -> Admission | None:
        """Check the model is allowed (403) and count the request (429 over a limit)."""
        if key is None:
            return None
        if model is not None and not key.allows(model):
            raise Forbidden("this key may not use that model", param="model")
        if not limited(key):
            return Admission(key.id)
        admission = self.limiter.admit(key)
        admission.charges_tokens = key.tokens_per_minute is not None
        if admission.lease_id is not None:
            self._live.add(admission.lease_id, admission)
            self._start_renewer()
        return admission

    def release(self, admission: Admission | None) -> None:
        if admission is None or admission.lease_id is None:
            return
        if self._live.pop(admission.lease_id) is not None:  # exactly once
            self.limiter.release(admission)

    def record_tokens(self, admission: Admission | None, tokens: int) -> None:
        if admission is not None:
            self.limiter.record_tokens(admission.key_id, tokens)

    def _start_renewer(self) -> None:
        with self._lock:
            if self._renewer is not None:
                return
            self._renewer = threading.Thread(target=self._renew_loop, daemon=True,
                                             name="llm-router-key-leases")
        self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.limiter.lease_ttl / 3):
            try:
                self._live.renew(lambda live: self.limiter.renew(list(live.values())),
                                 lambda _, admission: self.limiter.release(admission))
            except Exception:  # never let the renewer die; say so
                log.exception("renewing key concurrency leases failed")

    def close(self) -> None:
        self._stop.set()
