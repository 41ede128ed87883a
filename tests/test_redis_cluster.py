"""The runtime against a real Redis Cluster: six ``redis-server`` nodes on loopback joined by
``redis-cli --cluster create … --cluster-replicas 1`` (three masters, three replicas), the
client from ``redis+cluster://`` URLs. Rate limits (one-key Lua scripts, keys on every
master), the auth cluster's sign-in, revocation (keys and pub/sub) and logout over real
gRPC, Streams consumer groups over several streams at once (one hash tag), and a master's
failover. Marked ``redis_cluster``: ``pytest -m redis_cluster`` runs this subset."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import grpc
import pytest
from redis.asyncio.cluster import RedisCluster
from tronpy.keys import PrivateKey

from lucid.auth.v1 import auth_pb2
from lucid.lib.clock import FakeClock
from lucid.lib.ratelimit import Policy
from lucid.mesh.store.events import EventBus, StoredEvent, Subscription
from lucid.runtime.datastores import is_cluster_url, redis_client
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.limits import Limit, RateLimiter
from lucid.supervisor.localservers import free_port
from tests.auth_support import auth_client
from tests.support import Mesh, details
from tests.waiting import eventually, eventually_sync

pytestmark = pytest.mark.redis_cluster

NODES = 6
NODE_TIMEOUT_MS = 1500


def _port_pair_free(port: int) -> bool:
    """The node's port and its cluster bus port (+10000) are both free on loopback."""
    for p in (port, port + 10000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def _ports() -> list[int]:
    found: list[int] = []
    candidate = 20000 + uuid.uuid4().int % 20000
    while len(found) < NODES:
        candidate = 20000 + (candidate + 7) % 25000
        if _port_pair_free(candidate):
            found.append(candidate)
    return found


def _cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    cli = shutil.which("redis-cli")
    assert cli, "redis-cli is missing: scripts/install-tools.sh redis"
    return subprocess.run(
        [cli, *args], check=False, capture_output=True, text=True, timeout=timeout
    )


@dataclass
class Cluster:
    """Six nodes this test started (their processes, killed only by their handles)."""

    ports: list[int]
    processes: dict[int, subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:2])

    def info(self, port: int) -> dict[str, str]:
        out = _cli("-p", str(port), "cluster", "info").stdout
        return dict(line.split(":", 1) for line in out.split() if ":" in line)

    def roles(self, port: int) -> list[str]:
        """``master``/``slave`` of every node, as ``port`` sees them."""
        out = _cli("-p", str(port), "cluster", "nodes").stdout
        return [
            "slave" if "slave" in line.split()[2] else "master"
            for line in out.splitlines()
            if line.strip() and "fail" not in line.split()[2]
        ]

    def has_failed(self, port: int, failed: int) -> bool:
        """Whether ``port`` marks the node on ``failed`` as failed."""
        out = _cli("-p", str(port), "cluster", "nodes").stdout
        return any(
            f":{failed}@" in line and "fail" in line.split()[2].replace("fail?", "")
            for line in out.splitlines()
            if line.strip()
        )

    def wait_ok(self, ports: list[int], deadline_s: float = 60) -> float:
        """Seconds until every node in ``ports`` reports ``cluster_state:ok``."""
        start = time.monotonic()
        eventually_sync(
            lambda: all(self.info(p).get("cluster_state") == "ok" for p in ports),
            timeout_s=deadline_s,
            interval_s=0.2,
            what="cluster_state:ok on every node",
        )
        return time.monotonic() - start


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    server = shutil.which("redis-server")
    assert server, "redis-server is missing: scripts/install-tools.sh redis"
    root = tmp_path_factory.mktemp("redis-cluster")
    ports = _ports()
    processes: dict[int, subprocess.Popen[bytes]] = {}
    try:
        for port in ports:
            node = root / str(port)
            node.mkdir()
            processes[port] = subprocess.Popen(
                [
                    server,
                    *("--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes"),
                    *("--cluster-config-file", "nodes.conf", "--dir", str(node)),
                    *("--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--save", ""),
                    # a replica takes over however long its link was idle (a replica of this
                    # idle cluster once refused: "disconnected from master for longer than allowed")
                    *("--cluster-replica-validity-factor", "0"),
                    *("--appendonly", "no", "--logfile", str(node / "redis.log")),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        for port in ports:
            eventually_sync(
                lambda port=port: _cli("-p", str(port), "ping").stdout.strip() == "PONG",
                timeout_s=10,
                interval_s=0.1,
                what=f"redis-server on {port} answers",
            )
        created = _cli(
            "--cluster",
            "create",
            *(f"127.0.0.1:{p}" for p in ports),
            "--cluster-replicas",
            "1",
            "--cluster-yes",
            timeout=120,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        found = Cluster(ports, processes)
        found.wait_ok(ports)
        eventually_sync(
            lambda: found.roles(ports[0]).count("slave") == NODES // 2,
            timeout_s=60,
            interval_s=0.2,
            what="each replica joined its master",
        )
        yield found
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[RedisCluster]:
    redis = redis_client(cluster.url)
    assert isinstance(redis, RedisCluster)
    await redis.initialize()  # the slot map, read from the startup nodes
    try:
        yield redis
    finally:
        await redis.aclose()


def _master_port(redis: RedisCluster, key: str) -> int:
    node = redis.get_node_from_key(key)
    assert node is not None
    return int(node.port)


async def test_the_url_names_a_cluster_of_three_masters_and_three_replicas(
    cluster: Cluster, client: RedisCluster
) -> None:
    assert is_cluster_url(cluster.url) and not is_cluster_url("redis://127.0.0.1:6379/0")
    assert await client.ping()
    assert sorted(cluster.roles(cluster.ports[0])) == ["master"] * 3 + ["slave"] * 3
    assert len(client.get_primaries()) == 3
    with pytest.raises(ValueError, match="host:port"):
        redis_client("redis+cluster://127.0.0.1")


async def test_rate_limits_count_atomically_on_every_master(client: RedisCluster) -> None:
    limiter = RateLimiter(client, FakeClock(), "gateway")
    limit = Limit("login", Policy(limit=3, window_s=60.0))
    callers = [f"caller-{uuid.uuid4().hex[:8]}-{n}" for n in range(24)]
    masters = {_master_port(client, f"lucid:gateway:rl:login:{c}") for c in callers}
    assert len(masters) == 3  # the script runs on whichever master holds its one key
    for caller in callers[:6]:
        for _ in range(3):
            await limiter.enforce(limit, caller)
        with pytest.raises(LucidError) as refused:
            await limiter.enforce(limit, caller)
        assert refused.value.code == ErrorCode.ERROR_CODE_RATE_LIMITED
        assert limiter.redis_ok  # decided in the cluster, not by the in-memory fallback
    # Concurrent checks of one caller never over-admit.
    caller = callers[7]
    outcomes = await asyncio.gather(
        *(limiter.check("login", caller, limit.policy, 1) for _ in range(10))
    )
    assert sum(o.decision.allowed for o in outcomes) == 3


async def test_concurrent_checks_on_every_master_share_scripts_only_within_a_slot(
    client: RedisCluster,
) -> None:
    """Checks queued together are batched into one script per hash slot (a script's keys
    must share a slot on a cluster): none fails CROSSSLOT into the in-memory fallback."""
    limiter = RateLimiter(client, FakeClock(), "gateway")
    policy = Policy(limit=2, window_s=60.0)
    callers = [f"many-{uuid.uuid4().hex[:8]}-{n}" for n in range(30)]
    assert len({_master_port(client, f"lucid:gateway:rl:login:{c}") for c in callers}) == 3
    outcomes = await asyncio.gather(
        *(limiter.check("login", c, policy, 1) for c in callers for _ in range(3))
    )
    assert limiter.redis_ok and not any(o.local_fallback for o in outcomes)
    assert sum(o.decision.allowed for o in outcomes) == 2 * len(callers)


async def test_streams_consumer_groups_read_many_types_in_one_call(
    cluster: Cluster,
) -> None:
    redis = redis_client(cluster.url, decode_responses=True)
    try:
        bus = EventBus(redis)
        kind = uuid.uuid4().hex[:8]
        types = [f"t{kind}.{name}" for name in ("created", "stopped", "anchored", "paid")]
        group = f"g-{kind}"
        first = Subscription(group, "c1", (f"t{kind}.*",), batch_size=10, retry_delay_ms=200)
        assert await bus.streams(first) == []
        for n, event_type in enumerate(types):
            event = StoredEvent(str(uuid.uuid4()), event_type, "test", float(n), {"n": n})
            _, new = await bus.publish(event)
            assert new
            _, again = await bus.publish(event)  # a repeat id publishes nothing new
            assert not again
        streams = await bus.streams(
            Subscription(group, "c1", (f"t{kind}.*",), batch_size=10, from_start=True)
        )
        assert len(streams) == 4
        got = await bus.read_new(first, streams, block_ms=1000)  # one XREADGROUP, 4 streams
        assert sorted(e.data["n"] for _, e in got) == [0, 1, 2, 3]
        for stream, event in got[:2]:
            assert await bus.ack_entry(stream, group, event.entry_id) == 1
        await asyncio.sleep(0.3)  # c1 "crashed": its two unacknowledged events are stale
        second = Subscription(group, "c2", (f"t{kind}.*",), batch_size=10, retry_delay_ms=200)
        claimed = await bus.claim_stale(second, streams)
        assert sorted(e.data["n"] for e in claimed) == sorted(e.data["n"] for _, e in got[2:])
        assert all(e.delivery_count == 2 for e in claimed)
    finally:
        await redis.aclose()


@pytest.fixture(scope="module")
async def cluster_mesh(cluster: Cluster, mesh: Mesh) -> AsyncIterator[Mesh]:
    """The auth cluster (and the sessions cluster, which checks tokens) on the Redis
    Cluster, on ports of their own."""
    ports = {**mesh.settings.ports, "auth": free_port(), "sessions": free_port()}
    own = Mesh(mesh.settings.replace(redis_url=cluster.url, ports=ports))
    await own.start("auth")
    try:
        yield own
    finally:
        await own.stop_all()


async def test_sign_in_revocation_and_logout_on_the_cluster(
    cluster_mesh: Mesh, client: RedisCluster
) -> None:
    auth = auth_client(cluster_mesh.settings)
    reply = await auth.login(PrivateKey.random())
    session = reply.tokens.session_id
    assert await client.exists(f"lucid:auth:session:{session}") == 1
    token = reply.tokens.access_token
    status = await auth.stub.GetAuthStatus(auth_pb2.GetAuthStatusRequest(), metadata=auth.md(token))
    assert status.authenticated

    refreshed = await auth.stub.RefreshToken(
        auth_pb2.RefreshTokenRequest(refresh_token=reply.tokens.refresh_token), metadata=auth.md()
    )
    await auth.stub.Logout(
        auth_pb2.LogoutRequest(), metadata=auth.md(refreshed.tokens.access_token)
    )

    assert await client.exists(f"lucid:auth:revoked-session:{session}") == 1
    assert await client.exists(f"lucid:auth:session:{session}") == 0
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await auth.stub.GetAuthStatus(
            auth_pb2.GetAuthStatusRequest(), metadata=auth.md(refreshed.tokens.access_token)
        )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details(refused.value).reason == "LUCID_ERR_2008"


async def test_a_master_fails_over_and_the_limits_go_on(
    cluster: Cluster, client: RedisCluster
) -> None:
    limiter = RateLimiter(client, FakeClock(), "gateway")
    caller = f"failover-{uuid.uuid4().hex[:8]}"
    key = f"lucid:gateway:rl:fail:{caller}"
    limit = Limit("fail", Policy(limit=1000, window_s=60.0))
    await limiter.enforce(limit, caller)
    victim = _master_port(client, key)
    await asyncio.to_thread(_cli, "-p", str(victim), "wait", "1", "2000")  # replica has it
    cluster.processes[victim].send_signal(signal.SIGKILL)
    cluster.processes[victim].wait(timeout=10)
    survivors = [p for p in cluster.ports if p != victim]
    killed_at = time.monotonic()
    await asyncio.to_thread(  # cluster_state stays ok until the node timeout marks it failed
        eventually_sync,
        lambda: all(cluster.has_failed(p, victim) for p in survivors),
        timeout_s=60,
        interval_s=0.2,
        what=f"the survivors mark :{victim} failed",
    )
    await asyncio.to_thread(cluster.wait_ok, survivors, 60)
    recovery_s = time.monotonic() - killed_at

    async def decided_in_redis() -> bool:
        return not (await limiter.check("fail", caller, limit.policy, 1)).local_fallback

    await eventually(
        decided_in_redis, timeout_s=20, interval_s=0.2, what="the limiter back on the cluster"
    )
    assert _master_port(client, key) != victim  # the replica took the slot over
    assert int(await client.hexists(key, "t")) == 1  # the count survived the failover
    print(f"failover: cluster ok again {recovery_s:.1f} s after SIGKILL of :{victim}")


async def test_revocations_are_heard_on_the_cluster_channel(client: RedisCluster) -> None:
    from lucid.auth.store.cache import TokenBlacklist
    from lucid.runtime.revocations import RedisRevocationList

    revocations = RedisRevocationList(client)
    watcher = asyncio.create_task(revocations.watch())
    try:
        await eventually(lambda: revocations.epoch() is not None, timeout_s=5, what="subscribed")
        jti, other = uuid.uuid4().hex, uuid.uuid4().hex
        assert not await revocations.is_revoked(jti, other)  # keys on two slots, one call
        await TokenBlacklist(client).add(jti, 60, "test")
        # pushed, no round trip
        await eventually(lambda: revocations.heard(jti, ""), timeout_s=5, what="revocation heard")
        assert await revocations.is_revoked(jti, other)
        assert not revocations.heard(other, "")
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
