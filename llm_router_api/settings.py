"""Settings: every ``LLM_ROUTER_*`` variable, read once into one frozen object.

``load_settings(environ)`` is the only place that reads the environment (the launcher's
``PROMETHEUS_MULTIPROC_DIR`` handling is the one documented exception). A bad value raises
``SettingsError`` whose message names the variable, and startup stops with that one line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

PREFIX = "LLM_ROUTER_"

DEFAULT_PROMPTS_DIR = "resources/prompts"
DEFAULT_MODELS_CONFIG = "resources/configs/models-config.json"
DEFAULT_EP_LANGUAGE = "pl"
DEFAULT_TIMEOUT = 0.0
DEFAULT_EXTERNAL_TIMEOUT = 300.0
DEFAULT_LOG_LEVEL = "INFO"
DEFAULT_EP_PREFIX = "/api"
DEFAULT_BALANCE_STRATEGY = "balanced"
DEFAULT_REDIS_PORT = 6379
DEFAULT_SERVER_TYPE = "flask"
DEFAULT_SERVER_PORT = 8080
DEFAULT_SERVER_HOST = "0.0.0.0"
DEFAULT_WORKERS = 2
DEFAULT_THREADS = 8
DEFAULT_ACQUIRE_TIMEOUT = 30.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_COOLDOWN = 10.0
MAX_COOLDOWN = 60.0
DEFAULT_HEALTH_INTERVAL = 5.0
DEFAULT_LEASE_TTL = 30.0
DEFAULT_RESPONSES_TTL = 86400.0
DEFAULT_RESPONSES_MAX_BYTES = 4 * 1024 * 1024
DEFAULT_RESPONSES_MAX_STORED = 10000
DEFAULT_MAX_BODY = 10 * 1024 * 1024
DEFAULT_BUILTIN_CONCURRENCY = 4
DEFAULT_BUILTIN_MAX_TEXTS = 256
DEFAULT_FIRST_BYTE_DEADLINE = 120.0
DEFAULT_REDIS_PREFIX = "llm_router:"
DEFAULT_SENTINEL_MASTER = "mymaster"
REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://")
DEFAULT_SHUTDOWN_GRACE = 30.0
DEFAULT_CLIENT_TIMEOUT = 30.0
# Connections one server process holds at once (gunicorn's worker_connections per worker,
# waitress's connection_limit). Large on purpose: a stalled client costs a few KB (a greenlet or
# a waitress channel) and is closed after LLM_ROUTER_CLIENT_TIMEOUT, so thousands of them must
# not fill the pool and stop ordinary requests from being accepted (docs/running.md).
DEFAULT_SERVER_CONNECTIONS = 10000
# cache_aware (SPEC §11)
DEFAULT_PREFIX_BLOCK_SIZE = 256
DEFAULT_PREFIX_CACHE_ENTRIES = 100_000
DEFAULT_PREFIX_CACHE_TTL = 3600.0
DEFAULT_LOAD_POLL_INTERVAL = 1.0
DEFAULT_PREFIX_WEIGHT = 3.0
DEFAULT_LOAD_WEIGHT = 1.0
DEFAULT_SATURATION_WAITING = 5.0
DEFAULT_SATURATION_KV = 0.8
DEFAULT_AFFINITY_BOUND = 1.25

SERVER_TYPES = ("flask", "gunicorn", "waitress")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


class SettingsError(ValueError):
    """A variable holds a value that cannot be used; the message names it."""


T = TypeVar("T")


def parse_bool(name: str, raw: str) -> bool:
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise SettingsError(f"{name}={raw!r}: expected one of 1/true/yes/on or 0/false/no/off")


def _number(kind: Callable[[str], T], what: str) -> Callable[[str, str], T]:
    def parse(name: str, raw: str) -> T:
        try:
            value = kind(raw.strip())
        except ValueError:
            raise SettingsError(f"{name}={raw!r}: expected {what}") from None
        if value < 0:  # type: ignore[operator]
            raise SettingsError(f"{name}={raw!r}: must not be negative")
        return value

    return parse


def _positive(parse: Callable[[str, str], T]) -> Callable[[str, str], T]:
    def check(name: str, raw: str) -> T:
        value = parse(name, raw)
        if not value:
            raise SettingsError(f"{name}={raw!r}: must be greater than zero")
        return value

    return check


def _choice(options: tuple[str, ...], upper: bool = False) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.strip().upper() if upper else raw.strip().lower()
        if value not in options:
            raise SettingsError(f"{name}={raw!r}: expected one of {', '.join(options)}")
        return value

    return parse


def _port(name: str, raw: str) -> int:
    value = _number(int, "a port number")(name, raw)
    if not 0 < value < 65536:
        raise SettingsError(f"{name}={raw!r}: expected a port number between 1 and 65535")
    return value


def _prefix(name: str, raw: str) -> str:
    value = raw.strip()
    if value and not value.startswith("/"):
        raise SettingsError(f"{name}={raw!r}: must start with '/'")
    return value.rstrip("/") or ""


def _strategy(name: str, raw: str) -> str:
    # The names are the strategy registry's (base/lb/registry.py); it imports only base/lb,
    # read here when the variable is set, so settings stays importable first.
    from llm_router_api.base.lb.registry import STRATEGIES

    value = raw.strip()
    known = tuple(STRATEGIES)
    if value in known or (":" in value and all(value.split(":", 1))):
        return value
    raise SettingsError(
        f"{name}={raw!r}: expected one of {', '.join(known)} or 'package.module:Class'"
    )


def _keys(name: str, raw: str) -> tuple[str, ...]:
    return tuple(key.strip() for key in raw.split(",") if key.strip())


def _redis_url(name: str, raw: str) -> str:
    value = raw.strip()
    if value and not value.lower().startswith(REDIS_URL_SCHEMES):
        raise SettingsError(f"{name}: expected a URL starting with {', '.join(REDIS_URL_SCHEMES)}")
    return value  # never echoed: it may hold a password


def _addresses(name: str, raw: str) -> tuple[tuple[str, int], ...]:
    pairs = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(f"{name}={raw!r}: expected host:port pairs separated by commas")
        pairs.append((host.strip("[]"), int(port)))
    return tuple(pairs)


def _origins(name: str, raw: str) -> tuple[str, ...]:
    origins = []
    for item in (part.strip().rstrip("/").lower() for part in raw.split(",")):
        if not item:
            continue
        if item != "*" and not item.startswith(("http://", "https://")):
            raise SettingsError(f"{name}={raw!r}: expected origins such as https://app.example.com "
                                "(scheme://host[:port]) or *, separated by commas")
        origins.append(item)
    return tuple(origins)


def _text(name: str, raw: str) -> str:
    return raw.strip()


_int = _number(int, "a whole number")
_float = _number(float, "a number of seconds")


def var(default: Any, parse: Callable[[str, str], Any], **options: Any) -> Any:
    """A field read from ``LLM_ROUTER_<FIELD NAME>`` by ``parse`` (name, raw) -> value."""
    return field(default=default, metadata={"parse": parse}, **options)


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment. Build with ``load_settings``."""

    prompts_dir: str = var(DEFAULT_PROMPTS_DIR, _text)
    models_config: str = var(DEFAULT_MODELS_CONFIG, _text)
    default_ep_language: str = var(DEFAULT_EP_LANGUAGE, _text)
    timeout: float = var(DEFAULT_TIMEOUT, _float)
    external_timeout: float = var(DEFAULT_EXTERNAL_TIMEOUT, _positive(_float))
    log_filename: str = var("", _text)
    log_level: str = var(DEFAULT_LOG_LEVEL, _choice(LOG_LEVELS, upper=True))
    log_json: bool = var(False, parse_bool)
    ep_prefix: str = var(DEFAULT_EP_PREFIX, _prefix)
    minimum: bool = var(False, parse_bool)
    in_debug: bool = var(False, parse_bool)
    balance_strategy: str = var(DEFAULT_BALANCE_STRATEGY, _strategy)
    redis_host: str = var("", _text)
    redis_port: int = var(DEFAULT_REDIS_PORT, _port)
    redis_db: int = var(0, _int)
    redis_password: str = var("", _text, repr=False)
    redis_prefix: str = var(DEFAULT_REDIS_PREFIX, _text)
    #: ``redis://[user:password@]host:port/db``, ``rediss://`` (TLS) or ``unix://``; wins over
    #: host and port.
    redis_url: str = var("", _redis_url, repr=False)
    #: Sentinels as ``host:port`` pairs; with them the primary is asked of Sentinel and followed.
    redis_sentinels: tuple[tuple[str, int], ...] = var((), _addresses)
    redis_sentinel_master: str = var(DEFAULT_SENTINEL_MASTER, _text)
    server_type: str = var(DEFAULT_SERVER_TYPE, _choice(SERVER_TYPES))
    server_port: int = var(DEFAULT_SERVER_PORT, _port)
    server_host: str = var(DEFAULT_SERVER_HOST, _text)
    server_workers_count: int = var(DEFAULT_WORKERS, _positive(_int))
    server_threads_count: int = var(DEFAULT_THREADS, _positive(_int))
    server_worker_class: str = var("", _text)
    use_prometheus: bool = var(False, parse_bool)
    #: Name the serving provider in each model reply's ``X-LLM-Router-Provider`` header.
    expose_provider: bool = var(False, parse_bool)
    acquire_timeout: float = var(DEFAULT_ACQUIRE_TIMEOUT, _float)
    max_attempts: int = var(DEFAULT_MAX_ATTEMPTS, _positive(_int))
    cooldown: float = var(DEFAULT_COOLDOWN, _float)
    health_interval: float = var(DEFAULT_HEALTH_INTERVAL, _positive(_float))
    lease_ttl: float = var(DEFAULT_LEASE_TTL, _positive(_float))
    #: Seconds a stored Responses response (``store`` not false) is kept.
    responses_ttl: float = var(DEFAULT_RESPONSES_TTL, _positive(_float))
    #: Largest stored Responses record (input + output, JSON bytes); larger ones are not kept.
    responses_max_bytes: int = var(DEFAULT_RESPONSES_MAX_BYTES, _positive(_int))
    #: Stored Responses records one worker keeps in memory when there is no Redis (oldest go).
    responses_max_stored: int = var(DEFAULT_RESPONSES_MAX_STORED, _positive(_int))
    max_request_body_size: int = var(DEFAULT_MAX_BODY, _positive(_int))
    builtin_concurrency: int = var(DEFAULT_BUILTIN_CONCURRENCY, _positive(_int))
    #: Texts one built-in request may carry (more: 413).
    builtin_max_texts: int = var(DEFAULT_BUILTIN_MAX_TEXTS, _positive(_int))
    #: Seconds from a request's start to the upstream's first byte: slot waits and every
    #: attempt (then 504, or 503 when nothing could be acquired).
    first_byte_deadline: float = var(DEFAULT_FIRST_BYTE_DEADLINE, _positive(_float))
    shutdown_grace: float = var(DEFAULT_SHUTDOWN_GRACE, _float)
    #: Request headers and body must arrive within this many seconds, else the connection closes.
    client_timeout: float = var(DEFAULT_CLIENT_TIMEOUT, _positive(_float))
    server_connections: int = var(DEFAULT_SERVER_CONNECTIONS, _positive(_int))
    #: Browser origins allowed to call across sites (CORS); ``*`` allows any.
    cors_origins: tuple[str, ...] = var((), _origins)
    admin_token: str = var("", _text, repr=False)
    api_keys: tuple[str, ...] = var((), _keys, repr=False)
    api_keys_file: str = var("", _text)
    protect_info_endpoints: bool = var(False, parse_bool)
    ca_bundle: str = var("", _text)
    http_proxy: str = ""
    https_proxy: str = ""
    no_proxy: str = ""
    #: Reload the configuration when the models-config file changes (hot reload).
    config_watch: bool = var(False, parse_bool)
    #: Not a variable: the launcher's file that tells its workers to reload (core.reload).
    reload_signal_file: str = ""
    prefix_block_size: int = var(DEFAULT_PREFIX_BLOCK_SIZE, _positive(_int))
    prefix_cache_entries: int = var(DEFAULT_PREFIX_CACHE_ENTRIES, _positive(_int))
    prefix_cache_ttl: float = var(DEFAULT_PREFIX_CACHE_TTL, _positive(_float))
    load_poll_interval: float = var(DEFAULT_LOAD_POLL_INTERVAL, _positive(_float))
    cache_aware_prefix_weight: float = var(DEFAULT_PREFIX_WEIGHT, _number(float, "a number"))
    cache_aware_load_weight: float = var(DEFAULT_LOAD_WEIGHT, _number(float, "a number"))
    cache_aware_saturation_waiting: float = var(DEFAULT_SATURATION_WAITING,
                                                _positive(_number(float, "a number")))
    cache_aware_saturation_kv: float = var(DEFAULT_SATURATION_KV,
                                           _positive(_number(float, "a number")))
    cache_aware_affinity_bound: float = var(DEFAULT_AFFINITY_BOUND,
                                            _positive(_number(float, "a number")))
    # Prometheus' own variable; under gunicorn the launcher sets it (web.multiproc).
    prometheus_multiproc_dir: str = ""
    # The environment as it was at load time, for `env:NAME` secrets in models-config.json.
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def uses_redis(self) -> bool:
        return bool(self.redis_host or self.redis_url or self.redis_sentinels)

    @property
    def prefix(self) -> str:
        """The endpoint prefix without a trailing slash ('' for the root)."""
        return self.ep_prefix.rstrip("/")




# Standard proxy variables (either case), honoured by the upstream transport.
_PROXY_VARS = {"http_proxy": "HTTP_PROXY", "https_proxy": "HTTPS_PROXY", "no_proxy": "NO_PROXY"}
MULTIPROC_VAR = "PROMETHEUS_MULTIPROC_DIR"


def env_name(field_name: str) -> str:
    return PREFIX + field_name.upper()


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read every variable from ``environ`` (default: ``os.environ``); ``overrides`` win."""
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    for item in fields(Settings):
        raw = env.get(env_name(item.name))
        if raw is not None and "parse" in item.metadata:
            values[item.name] = item.metadata["parse"](env_name(item.name), raw)
    for name, var in _PROXY_VARS.items():
        raw = env.get(var, env.get(var.lower(), ""))
        values[name] = raw.strip()
    values["prometheus_multiproc_dir"] = env.get(MULTIPROC_VAR, "").strip()
    if values.get("log_level") is None and _is_true(env.get(env_name("in_debug"))):
        values["log_level"] = "DEBUG"
    values.update(overrides)
    known = {f.name for f in fields(Settings)}
    unknown = set(values) - known
    if unknown:
        raise SettingsError(f"unknown settings: {', '.join(sorted(unknown))}")
    return Settings(environ=env, **values)


def _is_true(raw: str | None) -> bool:
    return raw is not None and raw.strip().lower() in TRUE_WORDS
