"""Hot reload: how a reload is asked for, and how every worker of every instance follows.

A *reload signal* is a counter every process can read cheaply and any process can bump:

- ``RedisSignal``: the key ``<LLM_ROUTER_REDIS_PREFIX>config:generation`` (``INCR``/``GET``),
  shared by every worker of every instance on that Redis prefix;
- ``FileSignal``: a file of this instance (made by the launcher, ``reload_signal_file``) whose
  size is the counter (a bump appends one byte), shared by the workers of one gunicorn master
  (and the only signal without Redis).

Triggers bump the signals (``announce``): ``SIGHUP`` to the server and the file watch
(``LLM_ROUTER_CONFIG_WATCH``) in the gunicorn master or single process (``web.reload_triggers``),
and ``POST P/admin/reload`` in the worker that gets it, which first reloads itself so it can
answer 400 with the error. Each worker runs a ``Reloader``: every ``POLL_INTERVAL`` its thread
reads the signals and, when one moved, re-reads its own copy of the files and swaps in the new
generation — or, on any error, keeps the one it has and reports it (log line, metric). The
Redis signal is bumped when Redis is set and answers; the file signal otherwise, so the workers
of one master still follow while Redis is away.

Every process that loads a new configuration counts it once in
``llm_router_config_reloads_total{result="success"|"error"}``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llm_router_api.base.redis_link import redis_client
from llm_router_api.core.generation import INVALID_CONFIG, ConfigHolder, Generation, Inputs
from llm_router_api.core.observer import CallObserver
from llm_router_api.settings import Settings

log = logging.getLogger("llm_router.reload")

#: Seconds between two looks at the signals: a reload reaches every worker within ~2 polls.
POLL_INTERVAL = 0.5
SIGNAL_KEY = "config:generation"


class ReloadSignal(ABC):
    """A counter that says "re-read your configuration" when it moves."""

    @abstractmethod
    def read(self) -> int:
        """The counter now (raises when it cannot be read)."""

    @abstractmethod
    def bump(self) -> int:
        """Move the counter; returns the new value (raises when it cannot)."""


class FileSignal(ReloadSignal):
    """The size of a file: ``bump`` appends a byte (``O_APPEND``: concurrent bumps never lose
    one); a missing file reads as 0."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def read(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def bump(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, b".")
            return os.fstat(fd).st_size
        finally:
            os.close(fd)


class RedisSignal(ReloadSignal):
    def __init__(self, client: Any, key: str) -> None:
        self._client = client
        self.key = key

    def read(self) -> int:
        return int(self._client.get(self.key) or 0)

    def bump(self) -> int:
        return int(self._client.incr(self.key))


def signals_for(settings: Settings) -> list[ReloadSignal]:
    """Redis first (every instance on the prefix), then this instance's file (if any)."""
    signals: list[ReloadSignal] = []
    if settings.uses_redis:
        signals.append(RedisSignal(redis_client(settings), settings.redis_prefix + SIGNAL_KEY))
    if settings.reload_signal_file:
        signals.append(FileSignal(settings.reload_signal_file))
    return signals


def announce(signals: Sequence[ReloadSignal]) -> dict[int, int]:
    """Bump the first signal that takes it (Redis before the file); returns what was bumped
    (index -> new value). Raises the last error when none could be bumped."""
    error: Exception | None = None
    for index, signal in enumerate(signals):
        try:
            return {index: signal.bump()}
        except Exception as exc:  # Redis away, file not writable: try the next one
            log.warning("could not announce the reload through %s: %s",
                        type(signal).__name__, exc)
            error = exc
    if error is not None:
        raise error
    return {}


def read_signals(signals: Sequence[ReloadSignal]) -> dict[int, int | None]:
    """Each signal's counter by index (``None``: could not be read now)."""
    values: dict[int, int | None] = {}
    for index, signal in enumerate(signals):
        try:
            values[index] = signal.read()
        except Exception:  # Redis away: look again next time
            values[index] = None
    return values


class ConfigRejected(Exception):
    """The new configuration is invalid; ``str()`` is startup's one-line message."""


class Reloader:
    """One worker's side of hot reload: load, validate, swap, and follow the signals.

    ``reload_and_announce`` and ``poll`` hold one lock, so a worker never loads twice at once
    and never follows its own announcement.
    """

    def __init__(self, holder: ConfigHolder, load: Callable[[], Inputs],
                 signals: Sequence[ReloadSignal], seen: dict[int, int | None] | None = None,
                 observer: CallObserver | None = None,
                 on_swap: Sequence[Callable[[Generation], None]] = ()) -> None:
        self.holder = holder
        self._load = load
        self._signals = list(signals)
        self._observer = observer or CallObserver()
        self._on_swap = list(on_swap)
        # The signals as they were before the current generation's files were read.
        self._seen = dict(seen) if seen is not None else read_signals(self._signals)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llm-router-reload", daemon=True)

    # -- explicit reload (admin call) -----------------------------------------------------------
    def reload_and_announce(self, origin: str) -> Generation:
        """Reload this worker now (``ConfigRejected`` on error: nothing changed), then tell
        every other worker and instance."""
        with self._lock:
            generation = self._reload(origin)
            try:
                for index, value in announce(self._signals).items():
                    self._seen[index] = value  # our own announcement: already done
            except Exception:
                log.error("configuration reloaded here, but the other workers could not be "
                          "told; send SIGHUP to the server")
            return generation

    # -- following the signals ------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def poll(self) -> bool:
        """Reload when a signal moved since the last look; True when one did."""
        with self._lock:
            now = read_signals(self._signals)
            # A signal never read since this generation's files were (Redis away or slow when
            # the worker started: ``_seen`` is None) is followed at its first read: whether it
            # moved meanwhile is unknown, and a reload too many is harmless where a missed one
            # leaves the worker on an old configuration for good. A signal that cannot be read
            # now keeps its last value and is looked at again next time. A counter that went
            # back (Redis restarted empty) is followed: one extra reload.
            moved = any(now[i] is not None and now[i] != self._seen.get(i) for i in now)
            self._seen.update({i: v for i, v in now.items() if v is not None})
            if moved:
                with contextlib.suppress(ConfigRejected):  # reported by _reload
                    self._reload("signal")
            return moved

    def _run(self) -> None:
        while not self._stop.wait(POLL_INTERVAL):
            try:
                self.poll()
            except Exception:  # never let the follower die; say so
                log.exception("following configuration reloads failed")

    # -- the one way a configuration is replaced ------------------------------------------------
    def _reload(self, origin: str) -> Generation:
        try:
            inputs = self._load()
        except INVALID_CONFIG as exc:
            log.error("configuration reload (%s) refused in pid %d, nothing changed: %s", origin,
                      os.getpid(), exc)
            self._observer.config_reloaded(False)
            raise ConfigRejected(str(exc)) from None
        old = self.holder.current
        new = self.holder.swap(inputs)
        log.info("configuration reloaded (%s) in pid %d: sha256 %s (was %s), %d models: %s",
                 origin, os.getpid(), new.sha256, old.sha256[:12], len(new.models.models),
                 ", ".join(new.models.models))
        self._observer.config_reloaded(True)
        self._observer.config_loaded(new.models)
        for callback in self._on_swap:
            try:
                callback(new)
            except Exception:
                log.exception("after the reload, %r failed", callback)
        return new
