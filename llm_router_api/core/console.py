"""The operator console's state in one worker: sessions, statistics, recent requests.

Built by ``web.app.create_app`` only when ``LLM_ROUTER_ADMIN_TOKEN`` is set (the console exists
only then). ``Console.start()`` runs one daemon thread per worker (``Ticker``) that, once a
second, writes this worker's statistics (``core.stats``) and recent requests into the state
store, where every worker and instance reads them. No Flask here.

Who may call: ``caller(headers, changing)`` names the caller of a console call — ``admin token``
for ``Authorization: Bearer <admin token>``, ``console session <id>`` for a valid session cookie
(and, on a state-changing call, the ``X-LLM-Router-Console`` header, which a cross-site form
cannot send; the cookie is ``SameSite=Strict`` as well) — or ``None``.
"""

from __future__ import annotations

import hmac
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from werkzeug.http import parse_cookie

from llm_router_api.auth.sessions import COOKIE, CSRF_HEADER, SessionSigner
from llm_router_api.base.lb.state import StateStore
from llm_router_api.core.stats import WindowStats
from llm_router_api.settings import Settings

log = logging.getLogger("llm_router.console")

RECENT_KEY = "console:recent"
#: Recent requests kept (in the state store: across every worker and instance sharing it).
RECENT_KEEP = 500
TICK = 1.0


def header(headers: Mapping[str, str], name: str) -> str:
    name = name.lower()
    return next((v for k, v in headers.items() if k.lower() == name), "")


class RecentRequests:
    """This worker's finished requests, buffered (bounded) until the next tick writes them."""

    def __init__(self, store: StateStore, keep: int = RECENT_KEEP) -> None:
        self.store = store
        self.keep = keep
        self._pending: deque[str] = deque(maxlen=keep)

    def add(self, entry: Mapping[str, Any]) -> None:
        self._pending.append(orjson.dumps(entry).decode())

    def flush(self) -> None:
        entries = []
        while self._pending:
            entries.append(self._pending.popleft())
        if entries:
            self.store.push_log(RECENT_KEY, entries, self.keep)

    def read(self) -> list[dict[str, Any]]:
        """Newest first."""
        return [orjson.loads(e) for e in reversed(self.store.read_log(RECENT_KEY))]


class Ticker:
    """One daemon thread calling ``jobs`` every ``TICK`` seconds until stopped."""

    def __init__(self, jobs: list[Callable[[], None]]) -> None:
        self._jobs = jobs
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="llm-router-console")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            for job in self._jobs:
                try:
                    job()
                except Exception:  # the store may be down; the next tick tries again
                    log.exception("console bookkeeping failed")


class Console:
    def __init__(self, settings: Settings, stats: WindowStats) -> None:
        self.settings = settings
        self.signer = SessionSigner(settings.admin_token)
        self.stats = stats
        self.recent = RecentRequests(stats.store)
        self.instance = f"{socket.gethostname()}:{settings.server_port}"
        self.ticker = Ticker([stats.flush, self.recent.flush])

    def start(self) -> None:
        self.ticker.start()

    def close(self) -> None:
        self.ticker.stop()

    # -- who is calling ------------------------------------------------------------------------
    def caller(self, headers: Mapping[str, str], changing: bool) -> str | None:
        given = header(headers, "authorization")
        if given.lower().startswith("bearer "):
            token = given[len("bearer "):].strip()
            if hmac.compare_digest(token.encode(), self.settings.admin_token.encode()):
                return "admin token"
            return None
        value = parse_cookie(header(headers, "cookie")).get(COOKIE, "")
        session = self.signer.verify(value) if value else None
        if session is None or (changing and header(headers, CSRF_HEADER) != "1"):
            return None
        return f"console session {session.id}"

    # -- recent requests (called where the access line is written) ----------------------------
    def record(self, fields: Mapping[str, Any], key_id: str, tokens: tuple[int, int] | None,
               ) -> None:
        """One finished request: never a body, a prompt, a header or a secret."""
        if str(fields.get("route", "")).startswith(f"{self.settings.prefix}/ui"):
            return  # the console's own calls would drown everything else
        self.recent.add({
            "time": round(time.time(), 3), "instance": self.instance,
            "request_id": str(fields.get("request_id", ""))[:128],
            "method": fields.get("method"), "route": fields.get("route"),
            "key": key_id, "model": fields.get("model") or "",
            "provider": fields.get("provider") or "", "status": fields.get("status"),
            "duration_ms": fields.get("duration_ms"), "stream": fields.get("stream"),
            "tokens_in": tokens[0] if tokens else None,
            "tokens_out": tokens[1] if tokens else None})
