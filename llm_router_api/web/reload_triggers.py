"""The server process's reload triggers: ``SIGHUP`` and the models-config file watch.

Lifecycle (the launcher, ``web.servers.serve``)::

    settings = prepare(settings)        # this instance's reload signal file (removed at exit)
    single_process(settings)            # flask, waitress: SIGHUP handler + file watch here
    options["when_ready"] = master_ready(settings)   # gunicorn: the same, in the master

Under gunicorn they live in the master, which never builds the app: ``SIGHUP`` there no longer
does gunicorn's default (start new workers and stop the old ones, which cuts live streams).
Neither trigger loads anything itself: it *announces* a reload (``core.reload.announce``: the
Redis counter, else the signal file) and every worker — of this instance, and with Redis of
every instance on the prefix — re-reads and validates its own files, then switches or reports
the error. With ``LLM_ROUTER_CONFIG_WATCH=1`` the file is looked at every ``WATCH_INTERVAL``:
its mtime, size and inode, and its SHA-256 when those moved; a new SHA-256 announces a reload.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import hashlib
import logging
import os
import signal
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_router_api.core.reload import ReloadSignal, announce, signals_for
from llm_router_api.settings import Settings

log = logging.getLogger("llm_router.reload")

WATCH_INTERVAL = 1.0


def prepare(settings: Settings) -> Settings:
    """Settings naming a fresh reload signal file for this instance's workers."""
    fd, path = tempfile.mkstemp(prefix="llm-router-reload-")
    os.close(fd)
    atexit.register(_remove, path, os.getpid())
    return dataclasses.replace(settings, reload_signal_file=path)


def _remove(path: str, owner_pid: int) -> None:
    # Forked workers inherit atexit handlers; only the process that made the file removes it.
    if os.getpid() == owner_pid:
        with contextlib.suppress(OSError):
            os.unlink(path)


class Announcer:
    """Asks every worker to reload (built once; Redis is only reached when asked)."""

    def __init__(self, settings: Settings) -> None:
        self._signals: list[ReloadSignal] = signals_for(settings)
        self._lock = threading.Lock()

    def ask(self, why: str) -> None:
        log.info("%s: asking every worker to reload the configuration", why)
        with self._lock:
            try:
                announce(self._signals)
            except Exception:  # logged by announce; nothing else to try
                log.error("%s: the reload could not be announced", why)


class FileWatch:
    """Calls ``on_change`` when the file's content changes (polled, cheap: a ``stat`` per
    round, a hash only when the ``stat`` moved)."""

    def __init__(self, path: str, on_change: Callable[[], None],
                 interval: float = WATCH_INTERVAL) -> None:
        self._path = Path(path)
        self._on_change = on_change
        self._interval = interval
        self._stat = self._stat_now()
        self._sha = self._sha_now()
        self._stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="llm-router-config-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def check(self) -> bool:
        """One look; True (and ``on_change`` called) when the content changed."""
        stat = self._stat_now()
        if stat is None or stat == self._stat:
            return False  # unchanged, or missing for now (an editor's rename in progress)
        self._stat = stat
        sha = self._sha_now()
        if sha is None or sha == self._sha:
            return False
        self._sha = sha
        self._on_change()
        return True

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.check()
            except Exception:  # never let the watch die; say so
                log.exception("watching %s failed", self._path)

    def _stat_now(self) -> tuple[int, int, int] | None:
        try:
            st = self._path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _sha_now(self) -> str | None:
        try:
            return hashlib.sha256(self._path.read_bytes()).hexdigest()
        except OSError:
            return None


def _start_watch(settings: Settings, announcer: Announcer) -> None:
    if settings.config_watch:
        FileWatch(settings.models_config,
                  lambda: announcer.ask(f"{settings.models_config} changed")).start()
        log.info("watching %s for changes (LLM_ROUTER_CONFIG_WATCH)", settings.models_config)


def single_process(settings: Settings) -> None:
    """flask, waitress: SIGHUP and the watch announce a reload from this (main) thread's
    process; the work is done off the signal handler."""
    announcer = Announcer(settings)

    def on_hup(signum: int, frame: Any) -> None:
        threading.Thread(target=announcer.ask, args=("SIGHUP",), daemon=True).start()

    if hasattr(signal, "SIGHUP"):  # not on Windows
        signal.signal(signal.SIGHUP, on_hup)
    _start_watch(settings, announcer)


def master_ready(settings: Settings) -> Callable[[Any], None]:
    """gunicorn's ``when_ready`` hook (in the master): SIGHUP announces a reload instead of
    replacing the workers, and the watch runs here."""
    def when_ready(arbiter: Any) -> None:
        announcer = Announcer(settings)
        # The arbiter dispatches a queued SIGHUP to ``handle_hup`` from its main loop.
        arbiter.handle_hup = lambda: announcer.ask("SIGHUP")
        _start_watch(settings, announcer)

    return when_ready
