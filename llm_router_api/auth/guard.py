"""``Guard``: the one place that decides whether a request may go on, and what it owes.

Endpoints declare their ``access``: ``open`` (liveness, version, ``GET /``), ``info`` (health,
model lists, metrics: open unless ``LLM_ROUTER_PROTECT_INFO_ENDPOINTS``), ``admin`` (guarded by
the admin token inside the endpoint) or ``key`` (every model call). With no key configured,
everything is open. The keys come with each request's configuration generation (the keys
file is hot-reloaded with it), so ``authenticate`` is given them. ``authenticate`` then
``admit`` give the ``Admission`` to ``release`` exactly once when the response is finished. A
concurrency slot is a lease held in the worker's one lease store (``base.leases``), with the
provider leases: the store renews them all (``core.background.Maintenance``) and releases each
exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from llm_router_api.auth.access import Access
from llm_router_api.auth.keys import ApiKey, KeyRing
from llm_router_api.auth.limits import Admission, Limiter, MemoryLimiter, limited
from llm_router_api.auth.redis_limits import RedisLimiter
from llm_router_api.base.leases import KEY, Held, LeaseStore
from llm_router_api.base.redis_leases import RedisLeases
from llm_router_api.base.redis_link import redis_address, redis_client
from llm_router_api.errors import Forbidden
from llm_router_api.settings import Settings

log = logging.getLogger("llm_router.auth")


class Guard:
    def __init__(self, limiter: Limiter, protect_info: bool = False) -> None:
        self.limiter = limiter
        self.protect_info = protect_info
        self.leases = limiter.leases

    @classmethod
    def from_settings(cls, settings: Settings, keys: KeyRing,
                      leases: LeaseStore | None = None) -> Guard:
        """``leases``: the worker's lease store (the load-balancing store's), so one store
        holds, releases and renews every lease of the worker."""
        limiter: Limiter = MemoryLimiter(settings.lease_ttl, leases)
        # A keys file may gain keys on reload, so it gets the shared limiter even when empty.
        if (keys.enabled or settings.api_keys_file) and settings.uses_redis:
            shared = leases if isinstance(leases, RedisLeases) else None
            if shared is None and leases is not None:  # a chooser given on a memory store
                log.warning("the API-key limits use Redis but the load-balancing state does "
                            "not: concurrency slots are not renewed with the provider leases")
            limiter = RedisLimiter(redis_client(settings, decode_responses=False),
                                   settings.redis_prefix, settings.lease_ttl,
                                   redis_address(settings), shared)
        return cls(limiter, settings.protect_info_endpoints)

    def authenticate(self, access: Access, headers: Mapping[str, str],
                     keys: KeyRing) -> ApiKey | None:
        """The caller's key when this access level needs one (401 when missing or wrong)."""
        if not keys.enabled or access in (Access.OPEN, Access.ADMIN) or (
                access == Access.INFO and not self.protect_info):
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
            self.leases.hold(admission.lease_id, Held(KEY, admission.key_id))
        return admission

    def allow(self, key: ApiKey | None, model: str | None = None) -> None:
        """Only the model check of ``admit`` (403): for calls that are not generations and
        take nothing from the key's limits."""
        if key is not None and model is not None and not key.allows(model):
            raise Forbidden("this key may not use that model", param="model")

    def release(self, admission: Admission | None) -> None:
        if admission is not None and admission.lease_id is not None:
            self.leases.drop(admission.lease_id)  # exactly once

    def record_tokens(self, admission: Admission | None, tokens: int) -> None:
        if admission is not None:
            self.limiter.record_tokens(admission.key_id, tokens)

    def close(self) -> None:
        self.limiter.close()
