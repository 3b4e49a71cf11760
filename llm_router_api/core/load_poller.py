"""``LoadPoller``: every ``LLM_ROUTER_LOAD_POLL_INTERVAL`` seconds, read each provider's load
signals and put them in the state store (``StateStore.put_signals``), where ``cache_aware``
reads them with their age.

- vLLM and OpenAI-compatible servers: ``GET <api_host>/metrics`` (Prometheus text):
  ``vllm:num_requests_waiting`` → ``waiting``, ``vllm:num_requests_running`` → ``running``,
  ``vllm:kv_cache_usage_perc`` (or the older ``vllm:gpu_cache_usage_perc``) → ``kv`` (0..1).
  llama.cpp's ``llamacpp:requests_deferred`` / ``requests_processing`` /
  ``kv_cache_usage_ratio`` are read the same way. Series with a ``model_name`` label count only
  when it is the provider's upstream model (or no series names it).
- Ollama: ``GET <api_host>/api/ps``: ``loaded`` (1 when the model is among the running models,
  else 0) and, when loaded, ``vram`` = ``size_vram / size`` (1: fully in VRAM).
- Anthropic (a hosted API) is not polled.

A signal the server does not offer is left out; a failed poll writes nothing, so the last
signals age and ``cache_aware`` ignores them after three intervals. One poller per worker
process; with Redis a lock (``hold_lock``, SET NX PX of ``LOCK_INTERVALS`` intervals, so a
dead holder is replaced before its last signals go stale) lets only one poller in
the whole cluster poll at a time. It runs only for strategies that use load signals
(``polls_load``); ``/api/health`` shows whatever signals the store holds.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable

from llm_router_api.base.lb.state import StateStore
from llm_router_api.providers.transport import Transport
from llm_router_api.schemas.config import ModelsConfig, ProviderConfig

log = logging.getLogger("llm_router.load")

LOCK_NAME = "load-poller"
LOCK_INTERVALS = 2
#: The longest a poll may take (s); never longer than one interval.
POLL_TIMEOUT = 2.0
MAX_METRICS_BYTES = 4 * 1024 * 1024
METRIC_NAMES = {
    "vllm:num_requests_waiting": "waiting",
    "vllm:num_requests_running": "running",
    "vllm:kv_cache_usage_perc": "kv",
    "vllm:gpu_cache_usage_perc": "kv",
    "llamacpp:requests_deferred": "waiting",
    "llamacpp:requests_processing": "running",
    "llamacpp:kv_cache_usage_ratio": "kv",
}
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')
_MODEL_LABEL = re.compile(r'model_name="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str, model: str) -> dict[str, float]:
    """The load signals in a Prometheus text page, over the series of ``model`` (over all series
    when none names it): request counts summed, KV use the highest; the newer KV name wins."""
    mine: dict[str, list[float]] = {}
    every: dict[str, list[float]] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match.group(1) not in METRIC_NAMES:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        if value != value:  # NaN
            continue
        label = _MODEL_LABEL.search(match.group(2) or "")
        if label is not None and label.group(1) == model:
            mine.setdefault(match.group(1), []).append(value)
        every.setdefault(match.group(1), []).append(value)
    samples = mine or every
    signals: dict[str, float] = {}
    for name in sorted(samples, key=lambda n: n == "vllm:kv_cache_usage_perc"):
        key = METRIC_NAMES[name]
        signals[key] = max(samples[name]) if key == "kv" else sum(samples[name])
    return signals


def parse_ps(body: object, model: str) -> dict[str, float]:
    """Ollama ``/api/ps``: is ``model`` loaded, and which share of it sits in VRAM."""
    if not isinstance(body, dict) or not isinstance(body.get("models"), list):
        return {}
    for entry in body["models"]:
        if not isinstance(entry, dict):
            continue
        names = {_latest(str(entry.get(key))) for key in ("name", "model") if entry.get(key)}
        if _latest(model) not in names:
            continue
        size, vram = entry.get("size"), entry.get("size_vram")
        if isinstance(size, int | float) and isinstance(vram, int | float) and size > 0:
            return {"loaded": 1.0, "vram": max(0.0, min(1.0, vram / size))}
        return {"loaded": 1.0}
    return {"loaded": 0.0}


def _latest(name: str) -> str:
    """``foo`` and ``foo:latest`` are the same Ollama model."""
    return name if ":" in name else f"{name}:latest"


class LoadPoller:
    """One daemon thread per worker; ``start`` after fork, ``stop`` on shutdown."""

    def __init__(self, store: StateStore, transport: Transport,
                 models: Callable[[], ModelsConfig], interval: float) -> None:
        self._store = store
        self._transport = transport
        self._models = models  # the current configuration (hot reload may replace it)
        self._interval = interval
        self._token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llm-router-load-poller",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._store.hold_lock(LOCK_NAME, self._token,
                                          LOCK_INTERVALS * self._interval):
                    self.poll_once()
            except Exception:  # the store may be down; keep trying, say so
                log.exception("load poll failed")
            self._stop.wait(self._interval)

    def poll_once(self) -> None:
        for provider, upstream_model in _targets(self._models()):
            signals = self.read(provider, upstream_model)
            if signals is not None:
                self._store.put_signals(provider.id, signals)

    def read(self, provider: ProviderConfig, upstream_model: str) -> dict[str, float] | None:
        """The provider's signals now; ``None`` when the poll failed (nothing is written)."""
        path = "/api/ps" if provider.api_type == "ollama" else "/metrics"
        headers = {"Authorization": f"Bearer {provider.token}"} if provider.token else {}
        try:
            response = self._transport.request(
                "GET", provider.api_host + path, headers=headers, body=None,
                timeout=min(POLL_TIMEOUT, self._interval))
        except Exception:  # noqa: BLE001 - unreachable now: its signals go stale
            return None
        try:
            if response.status == 404:
                return {}  # the server has no such page: no signals, simply absent
            if response.status != 200:
                return None
            if provider.api_type == "ollama":
                return parse_ps(response.json(), upstream_model)
            text = response.read()[:MAX_METRICS_BYTES].decode("utf-8", "replace")
            return parse_metrics(text, upstream_model)
        except Exception:  # noqa: BLE001 - an unreadable page is a failed poll
            return None
        finally:
            response.close()


def _targets(models: ModelsConfig) -> Iterable[tuple[ProviderConfig, str]]:
    """Each polled provider once (a provider id serves one upstream model)."""
    seen: set[str] = set()
    for model, provider in models.providers():
        if provider.api_type == "anthropic" or provider.id in seen:
            continue
        seen.add(provider.id)
        yield provider, model.upstream_name(provider)

