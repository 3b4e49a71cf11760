"""Prometheus multiprocess mode for gunicorn: the metrics directory and dead workers.

Lifecycle, in the gunicorn master (which never imports prometheus-client itself)::

    settings = prepare(settings)   # before any worker forks: PROMETHEUS_MULTIPROC_DIR is set
    ... workers fork, build the app, write their values to files in the directory ...
    child_exit(server, worker)     # gunicorn hook: a dead worker's live gauges are dropped
    exit                           # the directory is removed if we created it

``PROMETHEUS_MULTIPROC_DIR`` given by the operator is used (created if missing) and emptied of
old ``*.db`` files at start, so counts begin at zero; when unset, a fresh temporary directory is
created for this instance and removed when the master exits. Setting the variable in
``os.environ`` is the one documented environment access outside ``settings.py``:
prometheus-client reads it when it is imported in each worker.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from llm_router_api.settings import MULTIPROC_VAR, Settings

log = logging.getLogger("llm_router")


def prepare(settings: Settings) -> Settings:
    """Settings with ``prometheus_multiproc_dir`` set and the directory ready (metrics on)."""
    if not settings.use_prometheus:
        return settings
    directory = settings.prometheus_multiproc_dir
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    else:
        directory = tempfile.mkdtemp(prefix="llm-router-metrics-")
        atexit.register(_remove, directory, os.getpid())
    os.environ[MULTIPROC_VAR] = directory
    log.debug("prometheus multiprocess directory: %s", directory)
    return dataclasses.replace(settings, prometheus_multiproc_dir=directory)


def _remove(directory: str, owner_pid: int) -> None:
    # Forked workers inherit atexit handlers; only the process that created it removes it.
    if os.getpid() == owner_pid:
        shutil.rmtree(directory, ignore_errors=True)


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn ``child_exit`` hook (in the master): forget a dead worker's live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
