"""Redis as operators run it: a URL with an ACL user, TLS (``rediss://``), Sentinel settings."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from llm_router_api.auth.keys import ApiKey
from llm_router_api.auth.redis_limits import RedisLimiter
from llm_router_api.base.lb.picking import Candidate
from llm_router_api.base.lb.redis_store import RedisStore
from llm_router_api.base.lb.waiting import Waiter
from llm_router_api.base.redis_link import redis_address, redis_client
from llm_router_api.settings import SettingsError, load_settings
from tests.support.procs import Process, RedisServer, free_port, wait_for


def test_url_and_sentinel_settings_are_read() -> None:
    settings = load_settings({"LLM_ROUTER_REDIS_URL": "rediss://u:pw@cache.internal:6380/3",
                              "LLM_ROUTER_REDIS_SENTINELS": "s1:26379, [::1]:26380",
                              "LLM_ROUTER_REDIS_SENTINEL_MASTER": "primary"})
    assert settings.uses_redis
    assert settings.redis_sentinels == (("s1", 26379), ("::1", 26380))
    assert settings.redis_sentinel_master == "primary"
    assert "pw" not in repr(settings) and "pw" not in redis_address(settings)
    assert redis_address(settings) == "rediss://cache.internal:6380/3"
    sentinel_only = load_settings({"LLM_ROUTER_REDIS_SENTINELS": "127.0.0.1:26379"})
    assert sentinel_only.uses_redis and "sentinel mymaster@" in redis_address(sentinel_only)


@pytest.mark.parametrize(("name", "value"), [("URL", "http://u:secret@h:1"),
                                             ("SENTINELS", "s1"), ("SENTINELS", "s1:99999")])
def test_bad_redis_settings_stop_startup_without_echoing_secrets(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({f"LLM_ROUTER_REDIS_{name}": value})
    assert f"LLM_ROUTER_REDIS_{name}" in str(caught.value)
    assert "secret" not in str(caught.value)


def works(url: str) -> bool:
    store = RedisStore.from_settings(load_settings({"LLM_ROUTER_REDIS_URL": url}))
    try:
        chosen = store.choose_lease("first", "s", [Candidate("p0", 1)], 30)
        return chosen is not None and not store.degraded
    finally:
        store.close()


#: The least an ACL user needs (docs/load-balancing.md, "What Redis needs").
ACL_COMMANDS = ["+@read", "+@write", "+@scripting", "+@connection", "+time", "+info",
                "+config|get"]


def test_url_with_an_acl_user(redis_server: RedisServer) -> None:
    admin = redis.Redis(port=redis_server.port)
    admin.acl_setuser("router", enabled=True, passwords=["+s3cret-pass"], keys=["llm_router:*"],
                      commands=ACL_COMMANDS)
    url = f"redis://router:s3cret-pass@127.0.0.1:{redis_server.port}/2"
    assert works(url)
    assert admin.execute_command("SELECT", 2) and admin.zcard("llm_router:lease:p0") == 1
    store = RedisStore.from_settings(load_settings({"LLM_ROUTER_REDIS_URL": url}))
    limiter = RedisLimiter(redis_client(load_settings({"LLM_ROUTER_REDIS_URL": url}),
                                        decode_responses=False), "llm_router:", 30)
    try:  # waiting (BLPOP, LEAVE), releasing with a wake-up, key limits: all allowed
        waiter = Waiter("m")
        assert store.choose_lease("first", "s", [Candidate("p0", 1)], 30, waiter) is None
        assert store.wait_turn(waiter, 0.1) is False
        store.leave_queue(waiter)
        store.release_lease("p0", "no-such-lease", queue="m")
        key = ApiKey(id="k", key="acl-key-1234", requests_per_minute=5, max_concurrent=1,
                     tokens_per_minute=100)
        limiter.release(limiter.admit(key))
        limiter.record_tokens("k", 3)
        assert not store.degraded and limiter.pending_deliveries() == 0
    finally:
        store.close()


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "server.key",
                                                          "server.csr", "server.pem"))
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for args in (["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
                  "-days", "1", "-subj", "/CN=test-ca"],
                 ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                  "-subj", "/CN=127.0.0.1"],
                 ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                  "-out", cert, "-days", "1", "-extfile", ext]):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)
    return ca, cert, key


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[tuple[int, Path]]:
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is needed to make the test certificates")
    directory = Path(tempfile.mkdtemp(prefix="redis-tls-"))
    ca, cert, key = _certificates(directory)
    port = free_port()
    server = Process([str(shutil.which("redis-server")), "--port", "0", "--tls-port", str(port),
                      "--bind", "127.0.0.1", "--save", "", "--tls-cert-file", str(cert),
                      "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
                      "--tls-auth-clients", "no"], {}, "redis-tls")
    def ready() -> bool:
        try:
            return bool(redis.Redis(port=port, ssl=True, ssl_ca_certs=str(ca),
                                    socket_timeout=1).ping())
        except redis.RedisError:
            return False

    wait_for(ready, 15, "the TLS redis-server to start")
    yield port, ca
    server.stop()


def test_rediss_url_speaks_tls(tls_redis: tuple[int, Path]) -> None:
    port, ca = tls_redis
    assert works(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}")
    assert not works(f"redis://127.0.0.1:{port}/0")  # plain text to a TLS port: an outage
