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
DEFAULT_MAX_BODY = 10 * 1024 * 1024
DEFAULT_BUILTIN_CONCURRENCY = 4
DEFAULT_BUILTIN_MAX_TEXTS = 256
DEFAULT_FIRST_BYTE_DEADLINE = 120.0
DEFAULT_REDIS_PREFIX = "llm_router:"
DEFAULT_SENTINEL_MASTER = "mymaster"
REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://")
DEFAULT_SHUTDOWN_GRACE = 30.0
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


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment. Build with ``load_settings``."""

    prompts_dir: str = DEFAULT_PROMPTS_DIR
    models_config: str = DEFAULT_MODELS_CONFIG
    default_ep_language: str = DEFAULT_EP_LANGUAGE
    timeout: float = DEFAULT_TIMEOUT
    external_timeout: float = DEFAULT_EXTERNAL_TIMEOUT
    log_filename: str = ""
    log_level: str = DEFAULT_LOG_LEVEL
    log_json: bool = False
    ep_prefix: str = DEFAULT_EP_PREFIX
    minimum: bool = False
    in_debug: bool = False
    balance_strategy: str = DEFAULT_BALANCE_STRATEGY
    redis_host: str = ""
    redis_port: int = DEFAULT_REDIS_PORT
    redis_db: int = 0
    redis_password: str = field(default="", repr=False)
    redis_prefix: str = DEFAULT_REDIS_PREFIX
    #: ``redis://[user:password@]host:port/db``, ``rediss://`` (TLS) or ``unix://``; wins over
    #: host and port.
    redis_url: str = field(default="", repr=False)
    #: Sentinels as ``host:port`` pairs; with them the primary is asked of Sentinel and followed.
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = DEFAULT_SENTINEL_MASTER
    server_type: str = DEFAULT_SERVER_TYPE
    server_port: int = DEFAULT_SERVER_PORT
    server_host: str = DEFAULT_SERVER_HOST
    server_workers_count: int = DEFAULT_WORKERS
    server_threads_count: int = DEFAULT_THREADS
    server_worker_class: str = ""
    use_prometheus: bool = False
    acquire_timeout: float = DEFAULT_ACQUIRE_TIMEOUT
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    cooldown: float = DEFAULT_COOLDOWN
    health_interval: float = DEFAULT_HEALTH_INTERVAL
    lease_ttl: float = DEFAULT_LEASE_TTL
    max_request_body_size: int = DEFAULT_MAX_BODY
    builtin_concurrency: int = DEFAULT_BUILTIN_CONCURRENCY
    #: Texts one built-in request may carry (more: 413).
    builtin_max_texts: int = DEFAULT_BUILTIN_MAX_TEXTS
    #: Seconds from a request's start to the upstream's first byte: slot waits and every
    #: attempt (then 504, or 503 when nothing could be acquired).
    first_byte_deadline: float = DEFAULT_FIRST_BYTE_DEADLINE
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    admin_token: str = field(default="", repr=False)
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    api_keys_file: str = ""
    protect_info_endpoints: bool = False
    ca_bundle: str = ""
    http_proxy: str = ""
    https_proxy: str = ""
    no_proxy: str = ""
    #: Reload the configuration when the models-config file changes (hot reload).
    config_watch: bool = False
    #: Not a variable: the launcher's file that tells its workers to reload (core.reload).
    reload_signal_file: str = ""
    prefix_block_size: int = DEFAULT_PREFIX_BLOCK_SIZE
    prefix_cache_entries: int = DEFAULT_PREFIX_CACHE_ENTRIES
    prefix_cache_ttl: float = DEFAULT_PREFIX_CACHE_TTL
    load_poll_interval: float = DEFAULT_LOAD_POLL_INTERVAL
    cache_aware_prefix_weight: float = DEFAULT_PREFIX_WEIGHT
    cache_aware_load_weight: float = DEFAULT_LOAD_WEIGHT
    cache_aware_saturation_waiting: float = DEFAULT_SATURATION_WAITING
    cache_aware_saturation_kv: float = DEFAULT_SATURATION_KV
    cache_aware_affinity_bound: float = DEFAULT_AFFINITY_BOUND
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
    value = raw.strip()
    known = ("balanced", "weighted", "dynamic_weighted", "first_available", "cache_aware")
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


def _text(name: str, raw: str) -> str:
    return raw.strip()


_int = _number(int, "a whole number")
_float = _number(float, "a number of seconds")

# field name -> parser; the variable is PREFIX + field name upper-cased.
_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "prompts_dir": _text,
    "models_config": _text,
    "default_ep_language": _text,
    "timeout": _float,
    "external_timeout": _positive(_float),
    "log_filename": _text,
    "log_level": _choice(LOG_LEVELS, upper=True),
    "log_json": parse_bool,
    "ep_prefix": _prefix,
    "minimum": parse_bool,
    "in_debug": parse_bool,
    "balance_strategy": _strategy,
    "redis_host": _text,
    "redis_port": _port,
    "redis_db": _int,
    "redis_password": _text,
    "redis_prefix": _text,
    "redis_url": _redis_url,
    "redis_sentinels": _addresses,
    "redis_sentinel_master": _text,
    "server_type": _choice(SERVER_TYPES),
    "server_port": _port,
    "server_host": _text,
    "server_workers_count": _positive(_int),
    "server_threads_count": _positive(_int),
    "server_worker_class": _text,
    "use_prometheus": parse_bool,
    "acquire_timeout": _float,
    "max_attempts": _positive(_int),
    "cooldown": _float,
    "health_interval": _positive(_float),
    "lease_ttl": _positive(_float),
    "max_request_body_size": _positive(_int),
    "builtin_concurrency": _positive(_int),
    "builtin_max_texts": _positive(_int),
    "first_byte_deadline": _positive(_float),
    "shutdown_grace": _float,
    "admin_token": _text,
    "api_keys": _keys,
    "api_keys_file": _text,
    "protect_info_endpoints": parse_bool,
    "ca_bundle": _text,
    "config_watch": parse_bool,
    "prefix_block_size": _positive(_int),
    "prefix_cache_entries": _positive(_int),
    "prefix_cache_ttl": _positive(_float),
    "load_poll_interval": _positive(_float),
    "cache_aware_prefix_weight": _number(float, "a number"),
    "cache_aware_load_weight": _number(float, "a number"),
    "cache_aware_saturation_waiting": _positive(_number(float, "a number")),
    "cache_aware_saturation_kv": _positive(_number(float, "a number")),
    "cache_aware_affinity_bound": _positive(_number(float, "a number")),
}

# Standard proxy variables (either case), honoured by the upstream transport.
_PROXY_VARS = {"http_proxy": "HTTP_PROXY", "https_proxy": "HTTPS_PROXY", "no_proxy": "NO_PROXY"}
MULTIPROC_VAR = "PROMETHEUS_MULTIPROC_DIR"


def env_name(field_name: str) -> str:
    return PREFIX + field_name.upper()


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read every variable from ``environ`` (default: ``os.environ``); ``overrides`` win."""
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    for name, parse in _PARSERS.items():
        raw = env.get(env_name(name))
        if raw is not None:
            values[name] = parse(env_name(name), raw)
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
