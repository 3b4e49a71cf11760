"""The operator console (SPEC §14): its page, its assets, sign-in and the live view.

Registered only when ``LLM_ROUTER_ADMIN_TOKEN`` is set (404 otherwise), under ``P/ui/``:

- ``GET P/ui/`` the page, ``GET P/ui/static/<file>`` its assets (shipped in the package,
  ``web/ui``: no build step, nothing from the network). Open: they hold no data.
- ``POST P/ui/api/session`` ``{"token": "<admin token>"}``: sign in; sets the session cookie
  (``HttpOnly``, ``SameSite=Strict``, ``Secure`` over TLS or behind ``X-Forwarded-Proto:
  https``). A wrong token is 401. ``GET`` tells who is signed in; ``DELETE`` signs out.
- ``GET P/ui/api/snapshot``: the live view once; ``GET P/ui/api/events``: the same every second
  as server-sent events, for at most ``STREAM_SECONDS`` (the browser's ``EventSource``
  reconnects by itself), so a stream never holds a worker or thread for long.

Every ``P/ui/api`` call is an admin call: a session cookie or ``Authorization: Bearer <admin
token>``; state-changing ones (``endpoints.console_actions``) also need the header
``X-LLM-Router-Console: 1`` with a cookie. Every answer carries a strict Content-Security-Policy.
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict

from llm_router_api.auth.sessions import COOKIE
from llm_router_api.core.console import Console
from llm_router_api.core.generation import Generation
from llm_router_api.core.model_handler import Reply
from llm_router_api.core.snapshot import ConfigView, build_snapshot
from llm_router_api.core.stats import RELOAD_KEY
from llm_router_api.endpoints.base import EndpointI, Incoming
from llm_router_api.errors import NotFound, Unauthorized

log = logging.getLogger("llm_router.console")

UI = "{prefix}/ui"
#: Longest life of one live-view stream (s); the page's EventSource then reconnects.
STREAM_SECONDS = 30
STREAM_INTERVAL = 1.0
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                    "Cache-Control": "no-store"}
ASSET = re.compile(r"^[a-z0-9_-]+\.(js|css|svg|png)$")
TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
         "svg": "image/svg+xml", "png": "image/png"}


def reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, "application/json", orjson.dumps(body),
                 headers={**SECURITY_HEADERS, **(headers or {})})


def asset(name: str) -> bytes:
    path = resources.files("llm_router_api.web") / "ui" / name
    if not ASSET.match(name) and name != "index.html" or not path.is_file():
        raise NotFound(f"no console file '{name[:64]}'")
    return path.read_bytes()


class ConsoleEndpoint(EndpointI):
    """Base of the console's endpoints (no paths of its own, so it is not mounted)."""

    admin_only = True
    access = "admin"  # checked here: the session cookie or the admin token
    methods = ("GET",)
    #: Open to anyone (the page and its assets: no data in them).
    public: ClassVar[bool] = False

    @property
    def console(self) -> Console:
        console: Console = self.services.extras["console"]
        return console

    def check_access(self, headers: Mapping[str, str]) -> None:
        self.caller(headers)  # before the body is read

    def caller(self, headers: Mapping[str, str]) -> str:
        if self.public:
            return ""
        changing = any(m in ("POST", "PUT", "DELETE", "PATCH") for m in self.methods)
        who = self.console.caller(headers, changing)
        if who is None:
            raise Unauthorized("sign in to the console first (or send the admin token)")
        return who

    def handle(self, incoming: Incoming) -> Any:
        return self.act(incoming, self.caller(incoming.headers))

    def act(self, incoming: Incoming, who: str) -> Any:
        raise NotImplementedError

    def config_view(self, config: Generation) -> ConfigView:
        """The configuration's hash, when this worker loaded it and when any worker last
        reloaded, and whether it can be reloaded here."""
        reloaded = config.handler.chooser.store.get_hash(RELOAD_KEY).get("at")
        return ConfigView(config.sha256, config.loaded_at,
                          can_reload=True,  # hot reload is always there (SPEC §12)
                          extra={"last_reload": reloaded, "generation": config.number})

    def snapshot(self, config: Generation | None = None) -> dict[str, Any]:
        """The live view; a stream takes the current configuration at each tick (it outlives
        reloads)."""
        config = config or self.services.config.current
        return build_snapshot(config.handler.chooser, config.models, self.config_view(config))


class ConsolePage(ConsoleEndpoint):
    paths = (UI, UI + "/")
    public = True

    def act(self, incoming: Incoming, who: str) -> Reply:
        page = asset("index.html").replace(
            b"{{prefix}}", html.escape(self.settings.prefix, quote=True).encode())
        return Reply(200, "text/html; charset=utf-8", page, headers=dict(SECURITY_HEADERS))


class ConsoleAsset(ConsoleEndpoint):
    paths = (UI + "/static/<name>",)
    public = True

    def act(self, incoming: Incoming, who: str) -> Reply:
        name = incoming.path_params["name"]
        body = asset(name)
        return Reply(200, TYPES[name.rsplit(".", 1)[1]], body,
                     headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str


class ConsoleSignIn(ConsoleEndpoint):
    paths = (UI + "/api/session",)
    methods = ("POST",)
    public = True  # the token in the body is the credential
    request_model = SignIn

    def act(self, incoming: Incoming, who: str) -> Reply:
        given = self.parse(incoming, SignIn)
        if self.console.caller({"Authorization": f"Bearer {given.token}"}, True) is None:
            log.warning("console sign-in refused: wrong admin token")
            raise Unauthorized("wrong admin token")
        value, session = self.console.signer.issue()
        log.info("console sign-in: session %s", session.id)
        cookie = (f"{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; "
                  f"Max-Age={self.console.signer.ttl}" + ("; Secure" if incoming.secure else ""))
        return reply({"session": session.id, "expires": session.expires},
                     headers={"Set-Cookie": cookie})


class ConsoleWhoAmI(ConsoleEndpoint):
    paths = (UI + "/api/session",)

    def act(self, incoming: Incoming, who: str) -> Reply:
        return reply({"caller": who, "prefix": self.settings.prefix})


class ConsoleSignOut(ConsoleEndpoint):
    paths = (UI + "/api/session",)
    methods = ("DELETE",)

    def act(self, incoming: Incoming, who: str) -> Reply:
        log.info("console sign-out: %s", who)
        cookie = f"{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        return reply({"signed_out": True}, headers={"Set-Cookie": cookie})


class ConsoleSnapshot(ConsoleEndpoint):
    paths = (UI + "/api/snapshot",)

    def act(self, incoming: Incoming, who: str) -> Reply:
        return reply(self.snapshot(incoming.config))


class ConsoleEvents(ConsoleEndpoint):
    paths = (UI + "/api/events",)

    def act(self, incoming: Incoming, who: str) -> Reply:
        return Reply(200, "text/event-stream", self.stream(),
                     headers={**SECURITY_HEADERS, "Cache-Control": "no-cache",
                              "X-Accel-Buffering": "no"})

    def stream(self) -> Iterator[bytes]:
        end = time.monotonic() + STREAM_SECONDS
        yield b"retry: 1000\n\n"
        while True:
            yield b"data: " + orjson.dumps(self.snapshot()) + b"\n\n"
            if time.monotonic() + STREAM_INTERVAL > end:
                return
            time.sleep(STREAM_INTERVAL)


class ConsoleRecent(ConsoleEndpoint):
    paths = (UI + "/api/recent",)

    def act(self, incoming: Incoming, who: str) -> Reply:
        return reply({"keep": self.console.recent.keep, "requests": self.console.recent.read()})
