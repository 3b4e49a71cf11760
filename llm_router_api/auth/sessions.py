"""Console sessions: a signed, expiring cookie value, accepted by every worker and instance.

A session is ``<id>.<expires>.<signature>``: a random id (named in the log lines of the actions
it takes), the Unix time it expires, and an HMAC-SHA256 over both with a key derived from
``LLM_ROUTER_ADMIN_TOKEN``. Nothing is stored: every worker and instance with the same admin
token accepts it, and changing the admin token ends every session. Signing out clears the
cookie in the browser (a copied value stays valid until it expires: keep ``SESSION_TTL`` short).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

#: Seconds a console session lasts (sign in again after).
SESSION_TTL = 8 * 3600
COOKIE = "llm_router_console"
#: The header every state-changing console call must carry (a cross-site form cannot set it).
CSRF_HEADER = "X-LLM-Router-Console"


@dataclass(frozen=True)
class Session:
    id: str
    expires: int


class SessionSigner:
    def __init__(self, admin_token: str, ttl: int = SESSION_TTL) -> None:
        self._key = hashlib.sha256(b"llm-router console session\0" + admin_token.encode()).digest()
        self.ttl = ttl

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

    def issue(self, now: float | None = None) -> tuple[str, Session]:
        """A new session and its cookie value."""
        session = Session(secrets.token_hex(8), int((now or time.time()) + self.ttl))
        payload = f"{session.id}.{session.expires}"
        return f"{payload}.{self._sign(payload)}", session

    def verify(self, value: str, now: float | None = None) -> Session | None:
        """The session a cookie value carries, or ``None`` (forged, malformed or expired)."""
        parts = value.split(".")
        if len(parts) != 3 or not parts[1].isdigit() or len(value) > 256:
            return None
        payload = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._sign(payload), parts[2]):
            return None
        session = Session(parts[0], int(parts[1]))
        return session if session.expires > (now or time.time()) else None
