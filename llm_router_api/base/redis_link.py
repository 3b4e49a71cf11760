"""One way to reach Redis, and one way to live without it for a while.

``redis_client(settings)`` never waits long: short socket timeouts, no client-side retries. It
connects by ``LLM_ROUTER_REDIS_URL`` (``redis://``, ``rediss://`` with TLS, user and password),
else through Redis Sentinel (``LLM_ROUTER_REDIS_SENTINELS``: the primary is asked of Sentinel on
every new connection, and every ``WATCH_INTERVAL`` by a ``PrimaryWatch`` that drops connections
to a primary that was replaced, so a failover is followed without a restart), else by host and
port.

``Fallback`` runs an operation on Redis, or — after any Redis error (timeout, refused, READONLY,
OOM, LOADING, BUSY, ...) — on the process's own state instead. While Redis is down no request
waits on it: a background prober writes a probe key every ``PROBE_INTERVAL`` until Redis takes
it, then delivers every ``settle``-d action (releases that could not be sent, grants the caller
gave up on) in order, and only then sends requests to Redis again. It logs one warning when Redis
goes and one when it is back.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from llm_router_api.settings import Settings

log = logging.getLogger("llm_router.redis")

SOCKET_TIMEOUT = 0.5
#: How often Sentinel is asked where the primary is.
WATCH_INTERVAL = 0.5
PROBE_INTERVAL = 0.1
PROBE_TTL_MS = 5000
#: Every Redis failure is an outage (never a 500): connection, timeout, READONLY, OOM, LOADING,
#: NOSCRIPT (after SCRIPT FLUSH redis-py reloads once; a second miss lands here), BUSY, ...
OUTAGE = (redis.exceptions.RedisError, OSError)
T = TypeVar("T")
#: A delivery that must reach Redis; the flag says it is late (Redis was away meanwhile).
Settle = Callable[[bool], Any]


def _options(decode_responses: bool, socket_timeout: float) -> dict[str, Any]:
    return {"socket_timeout": socket_timeout, "socket_connect_timeout": SOCKET_TIMEOUT,
            "retry": Retry(NoBackoff(), 0), "decode_responses": decode_responses}


def redis_client(settings: Settings, decode_responses: bool = True,
                 socket_timeout: float = SOCKET_TIMEOUT) -> redis.Redis:
    """A client; a longer ``socket_timeout`` is for a pool that blocks (``BLPOP``) on purpose."""
    options = _options(decode_responses, socket_timeout)
    if settings.redis_url:
        return redis.Redis.from_url(settings.redis_url, **options)
    password = settings.redis_password or None
    if settings.redis_sentinels:
        sentinel = redis.sentinel.Sentinel(list(settings.redis_sentinels),
                                           socket_timeout=SOCKET_TIMEOUT,
                                           socket_connect_timeout=SOCKET_TIMEOUT)
        client: redis.Redis = sentinel.master_for(settings.redis_sentinel_master,
                                                  db=settings.redis_db, password=password,
                                                  **options)
        PrimaryWatch(client.connection_pool)
        return client
    return redis.Redis(host=settings.redis_host, port=settings.redis_port, db=settings.redis_db,
                       password=password, **options)


class PrimaryWatch:
    """Asks Sentinel where the primary is every ``WATCH_INTERVAL`` for as long as the pool
    lives. When it moved, redis-py drops the pool's idle connections (and those in use when
    they come back), so after a failover nothing is written to the demoted primary for longer
    than that — it may take writes until Sentinel reconfigures it, up to ten seconds later."""

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._pool = weakref.ref(pool)
        self._seen: Any = None
        threading.Thread(target=self._run, daemon=True, name="llm-router-sentinel").start()

    def _run(self) -> None:
        while True:
            time.sleep(WATCH_INTERVAL)
            pool = self._pool()
            if pool is None:
                return  # the client is gone
            try:
                address = pool.get_master_address()  # type: ignore[attr-defined]
                # Whoever asked Sentinel first (a new connection, or this watch), the lean
                # connections (``LeanLine``) to the old primary are dropped here.
                if self._seen is not None and address != self._seen:
                    lean_line(pool).drop()
                self._seen = address
            except OUTAGE:
                continue  # Sentinel away: requests find out for themselves
            finally:
                del pool


def blocking_twin(client: redis.Redis, socket_timeout: float) -> redis.Redis:
    """A client on its own pool, like ``client``'s but with ``socket_timeout`` (for ``BLPOP``).
    Not for a Sentinel-managed client: ``redis_client(..., socket_timeout=...)`` makes those."""
    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs, socket_timeout=socket_timeout)
    return redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=pool.connection_class, **kwargs))


def redis_address(settings: Settings) -> str:
    """Where Redis is, for log lines: never a password."""
    if settings.redis_url:
        url = urlsplit(settings.redis_url)
        host = url.hostname or url.path
        port = f":{url.port}" if url.port else ""
        return f"{url.scheme}://{host}{port}{url.path if url.hostname else ''}"
    if settings.redis_sentinels:
        sentinels = ",".join(f"{h}:{p}" for h, p in settings.redis_sentinels)
        return f"sentinel {settings.redis_sentinel_master}@{sentinels}/{settings.redis_db}"
    return f"{settings.redis_host}:{settings.redis_port}/{settings.redis_db}"


def warn_if_keys_can_be_evicted(client: redis.Redis, where: str) -> None:
    """Log a warning when the server may evict the router's keys (leases, windows, cool-downs).

    With ``maxmemory`` set, every policy but ``noeviction`` evicts; ``volatile-*`` ones evict
    keys with a TTL first — which are the router's keys. ``noeviction`` refuses writes instead,
    which the router treats as an outage (per-process state, nothing lost).
    """
    try:
        config: dict[Any, Any] = client.config_get("maxmemory*")
    except OUTAGE as exc:
        log.info("cannot read the eviction policy of Redis at %s (%s)", where, type(exc).__name__)
        return
    values = {_text(k): _text(v) for k, v in config.items()}
    policy, limit = values.get("maxmemory-policy", ""), values.get("maxmemory", "0")
    if limit in ("", "0") or policy == "noeviction":
        return
    first = " first, and they are the only keys the router writes with one" \
        if policy.startswith("volatile") else ""
    log.warning("Redis at %s has maxmemory %s with maxmemory-policy %s: it may evict keys with a "
                "TTL%s (leases, limits, cool-downs), so caps and limits may not hold; use a "
                "dedicated instance with noeviction (or an allkeys policy with room)",
                where, limit, policy, first)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


#: A lean connection idle longer than this is checked for a closed socket before it is used.
IDLE_CHECK = 1.0
#: Idle lean connections kept per client; more go back to the pool.
LEAN_IDLE = 64


class LeanLine:
    """The connections ``LeanScript`` calls use on one client's pool, kept idle here between
    calls. They are taken from the pool once and reused without its per-call work (about 9 %
    of a worker's CPU at c=32: observability hooks, the fork check, a ``poll`` for stale data;
    docs/performance.md). What that work guarded is kept: a connection whose call failed goes
    back to the pool disconnected (no half-read answer is read again, and the pool reconnects
    it the way the client connects: through Sentinel to the current primary); one idle longer
    than ``IDLE_CHECK`` is checked for a closed socket (Redis restarted or timed it out); after
    a fork the child starts with none; ``drop`` (``PrimaryWatch``, on a Sentinel failover)
    does the same to every one, idle now and in use when it comes back, so none writes to a
    demoted primary; and the pool still counts them all (in use, for it), so
    ``client.close()`` closes them."""

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self.pool = pool
        #: (connection, idle since, generation): a connection given back by a call that began
        #: before a ``drop`` may land here after it (threads); ``take`` discards it then.
        self._idle: list[tuple[Any, float, int]] = []
        self._generation = 0
        _LINES.add(self)

    def take(self) -> tuple[Any, int]:
        """A connection and the generation it belongs to (give both back)."""
        generation = self._generation
        while True:
            try:
                conn, since, born = self._idle.pop()
            except IndexError:
                return self.pool.get_connection(), generation
            if born != generation or (time.monotonic() - since > IDLE_CHECK and _stale(conn)):
                self.discard(conn)
                continue
            return conn, generation

    def give(self, conn: Any, generation: int) -> None:
        """A connection whose call went well (its answer read whole)."""
        if generation != self._generation:
            self.discard(conn)  # taken before a failover
        elif len(self._idle) < LEAN_IDLE:
            self._idle.append((conn, time.monotonic(), generation))
        else:
            self.pool.release(conn)

    def discard(self, conn: Any) -> None:
        """Back to the pool, disconnected: it reconnects there (Sentinel asked) when used."""
        conn.disconnect()
        self.pool.release(conn)

    def drop(self) -> None:
        """Discard every connection (the primary moved): idle ones now, those in use when
        they are given back (or, given back while this ran, when next taken)."""
        self._generation += 1
        while True:
            try:
                conn, _, _ = self._idle.pop()
            except IndexError:
                return
            self.discard(conn)

    def forget(self) -> None:
        """In a forked child: the parent's sockets are not ours to use (or close)."""
        self._idle = []


def _stale(conn: Any) -> bool:
    """Closed by the server (restart, ``timeout``, ``CLIENT KILL``), or with unread data."""
    try:
        return bool(conn.can_read())
    except OUTAGE:
        return True


_LINES: weakref.WeakSet[LeanLine] = weakref.WeakSet()
_LINE_OF: weakref.WeakKeyDictionary[Any, LeanLine] = weakref.WeakKeyDictionary()


def _forget_all() -> None:
    for line in list(_LINES):
        line.forget()


os.register_at_fork(after_in_child=_forget_all)


def lean_line(pool: redis.ConnectionPool) -> LeanLine:
    line = _LINE_OF.get(pool)
    if line is None:
        line = _LINE_OF[pool] = LeanLine(pool)
    return line


class LeanScript:
    """A Lua script called as ``script(keys=..., args=...)``, like redis-py's ``Script``, in one
    ``EVALSHA`` on a connection of the client's ``LeanLine`` (from the client's own pool, so
    Sentinel's primary lookup and TLS still apply) without redis-py's per-command layers (retry
    wrapper, command lambdas, response callbacks, the pool's per-call checks). The errors are
    redis-py's own; NOSCRIPT (after ``SCRIPT FLUSH`` or on a new server) loads the script once
    through redis-py and retries, as ``Script`` does."""

    def __init__(self, client: redis.Redis, source: str) -> None:
        self._script = client.register_script(source)
        self._line = lean_line(client.connection_pool)
        self.sha = self._script.sha

    def __call__(self, keys: list[Any] | tuple[Any, ...] = (),
                 args: list[Any] | tuple[Any, ...] = ()) -> Any:
        line = self._line
        conn, generation = line.take()
        try:
            conn.send_command("EVALSHA", self.sha, len(keys), *keys, *args)
            answer = conn.read_response()
        except redis.exceptions.NoScriptError:
            line.give(conn, generation)
            return self._script(keys=keys, args=args)
        except BaseException:
            line.discard(conn)  # a half-read answer must not be read by the next command
            raise
        line.give(conn, generation)
        return answer


class Fallback:
    """Redis when it answers, the local alternative while it does not."""

    def __init__(self, where: str, what: str, probe: Callable[[], Any]) -> None:
        self._where = where
        self._what = what  # e.g. "load-balancing state", for the log lines
        self._probe = probe  # a write: a replica (READONLY) or a full server (OOM) is still down
        self._lock = threading.Lock()
        self._down = False
        self._pending: deque[Settle] = deque()
        self._prober: threading.Thread | None = None
        self._closed = False

    def close(self) -> None:
        """Stop probing (the client is being closed); what is pending is dropped."""
        self._closed = True

    @property
    def down(self) -> bool:
        return self._down

    def run(self, shared: Callable[[], T], local: Callable[[], T],
            abandon: Settle | None = None) -> T:
        """``shared()`` on Redis, else ``local()``. When ``shared`` failed it may still run in
        Redis later (a timed-out script runs when Redis wakes): ``abandon`` undoes it then."""
        if self._down:
            return local()
        try:
            return shared()
        except OUTAGE as exc:
            if abandon is not None:
                with self._lock:
                    self._pending.append(abandon)
            self._went_down(exc)
            return local()

    def settle(self, action: Settle) -> None:
        """Deliver ``action`` to Redis now, or as soon as Redis answers again — never dropped."""
        if not self._down:
            try:
                action(False)
                return
            except OUTAGE as exc:
                self._went_down(exc)
        with self._lock:
            self._pending.append(action)
        self._start_prober()

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def _went_down(self, exc: Exception) -> None:
        with self._lock:
            was_down, self._down = self._down, True
        if not was_down:
            log.warning("Redis at %s is unavailable (%s: %s): %s is per process until it returns",
                        self._where, type(exc).__name__, str(exc)[:200], self._what)
        self._start_prober()

    def _start_prober(self) -> None:
        with self._lock:
            if self._prober is not None:
                return
            self._prober = threading.Thread(target=self._probe_until_back, daemon=True,
                                            name="llm-router-redis-probe")
        self._prober.start()

    def _probe_until_back(self) -> None:
        while not self._closed:
            time.sleep(PROBE_INTERVAL)
            try:
                self._deliver_pending()  # releases run even under OOM: deliver them first
                if self._down:
                    self._probe()
            except OUTAGE:
                continue
            except Exception:  # keep probing whatever happens; say so
                log.exception("probing Redis at %s failed", self._where)
                continue
            with self._lock:
                if self._pending:
                    continue
                was_down, self._down, self._prober = self._down, False, None
            if was_down:
                log.warning("Redis at %s is available again: %s is shared again",
                            self._where, self._what)
            return

    def _deliver_pending(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    return
                action = self._pending[0]
            action(True)  # raises while Redis is still away: stays first in line
            with self._lock:
                self._pending.popleft()
