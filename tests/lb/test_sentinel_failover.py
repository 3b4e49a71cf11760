"""Redis Sentinel: a primary fails over under load and the gateway follows, without a restart.

Real processes: a primary and a replica ``redis-server``, one ``redis-sentinel`` (quorum 1,
``down-after`` 1 s), a gateway (gunicorn, 2 gevent workers) configured with
``LLM_ROUTER_REDIS_SENTINELS`` / ``LLM_ROUTER_REDIS_SENTINEL_MASTER`` only, and a stand-in
upstream. First an ordered failover (``SENTINEL FAILOVER``: the old primary is demoted and answers
``READONLY``), then a crash (the new primary is killed and Sentinel promotes the other). Under
load through both: no 500 (requests are served from the in-process fallback meanwhile), and
afterwards the router's state is written to the new primary — the balanced strategy's pick
counter there advances by exactly the number of requests served.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis
import requests

from standin import StandIn
from tests.support.procs import Gateway, RedisSentinel, RedisServer, wait_for, write_config

MASTER = "mymaster"
FAILED_OVER_WITHIN = 30.0  # Sentinel: 1 s down-after, then an election among one
#: Once Sentinel names the new primary, the gateway writes there within this (its watch asks
#: Sentinel every 0.5 s); a demoted primary would otherwise take writes for up to ten seconds.
FOLLOWED_WITHIN = 3.0
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
SEQ_KEY = "llm_router:h:balanced:m"


class Cluster:
    def __init__(self) -> None:
        self.servers = [RedisServer()]
        self.servers.append(RedisServer(None, "--replicaof", "127.0.0.1",
                                        str(self.servers[0].port)))
        self.sentinel = RedisSentinel(self.servers[0].port, MASTER)
        self.ask = redis.Redis(port=self.sentinel.port, socket_timeout=5, decode_responses=True)

    def primary_port(self) -> int:
        host, port = self.ask.execute_command("SENTINEL", "get-master-addr-by-name", MASTER)
        return int(port)

    def primary(self) -> redis.Redis:
        return redis.Redis(port=self.primary_port(), socket_timeout=5, decode_responses=True)

    def replica_in_sync(self) -> bool:
        replicas = self.ask.sentinel_slaves(MASTER)  # parsed by redis-py
        return any(r.get("is_slave") and not r.get("is_sdown") and not r.get("is_odown")
                   and r.get("master-link-status") == "ok" for r in replicas)

    def replicates(self, port: int, primary: int) -> bool:
        """``port`` replicates ``primary`` (asked of the server itself: Sentinel refreshes its own
        view of a replica's link every 10 s) and Sentinel lists it as a replica."""
        info = redis.Redis(port=port, socket_timeout=5).info("replication")
        known = {int(r["port"]) for r in self.ask.sentinel_slaves(MASTER)}
        return (info["role"] == "slave" and int(info["master_port"]) == primary
                and info["master_link_status"] == "up" and port in known)

    def stop(self) -> None:
        self.sentinel.stop()
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    made = Cluster()
    yield made
    made.stop()


@pytest.fixture(scope="module")
def gateway(cluster: Cluster, upstream: StandIn,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = write_config(tmp_path_factory.mktemp("sentinel"), {"m": [
        {"id": f"p{i}", "api_host": upstream.url, "api_type": "openai"} for i in range(2)]})
    made = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                   LLM_ROUTER_SERVER_WORKERS_COUNT="2",
                   LLM_ROUTER_REDIS_SENTINELS=f"127.0.0.1:{cluster.sentinel.port}",
                   LLM_ROUTER_REDIS_SENTINEL_MASTER=MASTER)
    yield made
    made.stop()
    assert "Traceback" not in made.output()


class Load:
    """Eight callers sending requests until stopped; every status kept."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._call, daemon=True) for _ in range(8)]
        for thread in self._threads:
            thread.start()

    def _call(self) -> None:
        while not self._stop.is_set():
            self.statuses.append(requests.post(f"{self.gateway.url}/v1/chat/completions",
                                               json=BODY, timeout=30).status_code)

    def more(self, count: int) -> None:
        """Wait until ``count`` more requests were answered."""
        target = len(self.statuses) + count
        wait_for(lambda: len(self.statuses) >= target, 30, "the load to run")

    def stop(self) -> list[int]:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        return self.statuses


def picks_on(client: redis.Redis) -> float:
    return float(client.hget(SEQ_KEY, "__seq__") or 0)


def follows(cluster: Cluster, gateway: Gateway) -> None:
    """Requests served now (nothing else runs) are counted on the primary Sentinel names."""
    primary = cluster.primary()

    def counted_there() -> bool:
        before = picks_on(primary)
        for _ in range(5):
            assert requests.post(f"{gateway.url}/v1/chat/completions", json=BODY,
                                 timeout=30).status_code == 200
        return picks_on(primary) - before == 5

    wait_for(counted_there, FOLLOWED_WITHIN, "the gateway to use the new primary")


def test_a_failover_under_load_is_followed_without_a_restart(cluster: Cluster,
                                                             gateway: Gateway) -> None:
    wait_for(cluster.replica_in_sync, FAILED_OVER_WITHIN, "Sentinel to see a synced replica")
    follows(cluster, gateway)  # the starting point: requests are counted on the primary
    first = cluster.primary_port()

    load = Load(gateway)  # 1. an ordered failover: the old primary answers READONLY
    load.more(20)
    cluster.ask.execute_command("SENTINEL", "FAILOVER", MASTER)
    wait_for(lambda: cluster.primary_port() != first, FAILED_OVER_WITHIN, "the failover")
    load.more(20)
    statuses = load.stop()
    assert statuses and set(statuses) == {200}
    follows(cluster, gateway)

    second = cluster.primary_port()  # 2. a crash: the new primary dies
    # Sentinel turns the old primary into a replica on its next look at it (every 10 s): the
    # same command now, from here, so the crash below has a synced replica to promote sooner.
    redis.Redis(port=first, socket_timeout=5).replicaof("127.0.0.1", second)
    wait_for(lambda: cluster.replicates(first, second), FAILED_OVER_WITHIN,
             "the old primary to replicate")
    load = Load(gateway)
    load.more(20)
    next(s for s in cluster.servers if s.port == second).stop()
    wait_for(lambda: cluster.primary_port() == first, FAILED_OVER_WITHIN, "the promotion")
    load.more(20)
    statuses = load.stop()
    assert statuses and set(statuses) == {200}
    follows(cluster, gateway)
    assert gateway.alive()
