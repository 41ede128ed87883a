"""Prometheus metrics: every cluster serves ``/metrics`` on loopback (its port in the
registration's meta), rpc counters and latency histograms move with calls, by method and
status; gauges report breaker states, the chain's height and finality lag, sessions by
state; Envoy's own stats are on its admin ``/stats/prometheus``."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
import uuid
from collections.abc import Mapping

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.payments.store.payouts import CONFIRMED, PayoutRecord, PayoutStore
from lucid.rdp.recorder import Recorder
from lucid.runtime.metrics import BUCKETS_S, Metrics, MetricsEndpoint
from lucid.runtime.registry import service_meta
from lucid.runtime.server import ClusterServer
from lucid.sessions import schema as sessions_schema
from lucid.supervisor.envoy import running_edge
from tests.sessionkit import start_env
from tests.support import Mesh, bearer, https_client
from tests.waiting import eventually

Samples = Mapping[tuple[str, frozenset[tuple[str, str]]], float]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:
        assert reply.status == 200
        assert reply.headers["content-type"].startswith("text/plain")
        return str(reply.read().decode())


async def scrape(url: str) -> Samples:
    """Every sample of a Prometheus text page, by name and labels."""
    text = await asyncio.to_thread(_get, url)
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample of ``name`` with exactly ``labels`` (0 when absent)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def endpoint_of(server: ClusterServer) -> MetricsEndpoint:
    assert server.metrics_endpoint is not None
    return server.metrics_endpoint


async def test_a_cluster_serves_metrics_and_its_rpc_counters_move(mesh: Mesh) -> None:
    server = mesh.servers["auth"]
    endpoint = endpoint_of(server)
    assert endpoint.host == "127.0.0.1"
    assert server.instance is not None
    assert server.instance.metrics_port == endpoint.port
    assert service_meta(server.instance)["metrics_port"] == str(endpoint.port)

    jwks = "/lucid.auth.v1.AuthService/GetJwks"
    profile = "/lucid.auth.v1.AuthService/GetProfile"
    ok = {"cluster": "auth", "method": jwks, "status": "OK"}
    refused = {"cluster": "auth", "method": profile, "status": "UNAUTHENTICATED"}
    before = await scrape(endpoint.url)
    async with mesh.channel("auth") as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        for _ in range(3):
            await stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.GetProfile(
                auth_pb2.GetProfileRequest(), metadata=(("authorization", "Basic x"),), timeout=5
            )
        assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    after = await scrape(endpoint.url)

    # other servers of the test process fetch the JWKS too: at least our three
    assert (
        value(after, "lucid_rpc_requests_total", **ok)
        >= value(before, "lucid_rpc_requests_total", **ok) + 3
    )
    assert value(after, "lucid_rpc_requests_total", **refused) == (
        value(before, "lucid_rpc_requests_total", **refused) + 1
    )
    # the histogram of the refused calls: one more observation, in cumulative buckets
    count = value(after, "lucid_rpc_duration_seconds_count", **refused)
    assert count == value(before, "lucid_rpc_duration_seconds_count", **refused) + 1
    assert value(after, "lucid_rpc_duration_seconds_sum", **refused) > 0
    buckets = [
        value(after, "lucid_rpc_duration_seconds_bucket", **refused, le=le)
        for le in [*(repr(b) for b in BUCKETS_S), "+Inf"]
    ]
    assert buckets == sorted(buckets)
    assert buckets[-1] == count
    assert value(after, "lucid_uptime_seconds", cluster="auth") > 0
    assert ("lucid_rpc_in_flight", frozenset({("cluster", "auth")})) in after


async def test_breaker_states_are_gauges(mesh: Mesh) -> None:
    server = mesh.servers["auth"]
    breaker = server.runtime.channels.breakers.of("payments")
    url = endpoint_of(server).url
    closed = {"cluster": "auth", "upstream": "payments"}
    samples = await scrape(url)
    assert value(samples, "lucid_breaker_state", **closed, state="closed") == 1
    assert value(samples, "lucid_breaker_state", **closed, state="open") == 0
    for _ in range(breaker.policy.failure_threshold):
        breaker.record(grpc.StatusCode.UNAVAILABLE, breaker.acquire())
    try:
        samples = await scrape(url)
        assert value(samples, "lucid_breaker_state", **closed, state="open") == 1
        assert value(samples, "lucid_breaker_state", **closed, state="closed") == 0
    finally:
        breaker.reset()


async def test_a_taken_metrics_port_falls_back_to_a_free_one() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        metrics = Metrics("gateway")
        metrics.record("/lucid.x.v1.X/Y", "OK", 2.0)
        endpoint = MetricsEndpoint(metrics, "127.0.0.1", taken)
        port = await asyncio.to_thread(endpoint.start)
        try:
            assert port != taken
            samples = await scrape(endpoint.url)
            labels = {"cluster": "gateway", "method": "/lucid.x.v1.X/Y", "status": "OK"}
            assert value(samples, "lucid_rpc_requests_total", **labels) == 1
            assert value(samples, "lucid_rpc_duration_seconds_bucket", **labels, le="0.0025") == 1
            assert value(samples, "lucid_rpc_duration_seconds_bucket", **labels, le="0.001") == 0
        finally:
            await asyncio.to_thread(endpoint.stop)


async def test_a_failing_gauge_reader_does_not_break_the_scrape() -> None:
    metrics = Metrics("mesh")

    def broken() -> float:
        raise RuntimeError("bug")

    metrics.gauge("broken", "A reader with a bug.", broken)
    metrics.gauge("fine", "A reader that works.", lambda: 7)
    text = metrics.exposition().decode()
    assert 'lucid_fine{cluster="mesh"} 7.0' in text
    assert "lucid_broken{" not in text


async def test_the_chain_reports_its_height_and_finality_lag(mesh: Mesh) -> None:
    from tests.test_chain_api import chain_node

    await mesh.start("blockchain")
    url = endpoint_of(mesh.servers["blockchain"]).url
    node = chain_node(mesh)

    async def ready() -> Samples | None:
        samples = await scrape(url)
        return samples if value(samples, "lucid_chain_height", cluster="blockchain") >= 0 else None

    samples = await eventually(ready, timeout_s=60, what="the chain ready")
    assert node.ready is not None
    height = value(samples, "lucid_chain_height", cluster="blockchain")
    assert height <= node.ready.ledger.tip.height  # the tip may have moved since
    assert value(samples, "lucid_chain_finality_lag_seconds", cluster="blockchain") >= 0


async def test_sessions_by_state_follow_the_store(mesh: Mesh) -> None:
    env = await start_env(mesh, mesh.settings)
    try:
        server = env.mesh.servers["sessions"]
        url = endpoint_of(server).url
        md = await env.token()
        for _ in range(2):
            await env.create(md)
        sessions = server.runtime.datastores.db[sessions_schema.SESSIONS]
        stored = await sessions.count_documents({"state": "created"})
        assert stored >= 2
        state = {"cluster": "sessions", "state": "created"}

        async def counted() -> bool:
            return value(await scrape(url), "lucid_sessions", **state) == stored

        await eventually(counted, timeout_s=10, what=f"{stored} created sessions counted")
    finally:
        await env.mesh.stop_all()


async def test_payouts_by_state_follow_the_store(mesh: Mesh) -> None:
    server = await mesh.start("payments")
    url = endpoint_of(server).url
    store = PayoutStore(server.runtime.datastores.db)
    now = time.time()
    for _ in range(2):  # terminal states: the payout worker leaves them as they are
        key = uuid.uuid4().hex
        await store.insert(
            PayoutRecord(
                payout_id=str(uuid.uuid4()),
                idempotency_key=key,
                user_id=str(uuid.uuid4()),
                recipient="T" + "1" * 33,
                amount_micros=10_000,
                router="PayoutRouterV0",
                priority=1,
                batch_type=1,
                reason="metrics test",
                create_time=now,
                update_time=now,
                estimated_completion_time=now,
                status=CONFIRMED,
            )
        )
    stored = await store.collection.count_documents({"status": CONFIRMED})
    assert stored >= 2

    async def counted() -> bool:
        samples = await scrape(url)
        return value(samples, "lucid_payouts", cluster="payments", state=CONFIRMED) == stored

    await eventually(counted, timeout_s=10, what=f"{stored} confirmed payouts counted")


async def test_envoy_stats_are_on_its_admin_in_prometheus_format(mesh: Mesh) -> None:
    token = await mesh.token()
    upstream = {"envoy_cluster_name": "auth"}
    async with running_edge(mesh.settings) as edge, https_client(mesh.settings) as http:
        before = await scrape(f"{edge.admin_url}/stats/prometheus")
        for _ in range(2):
            async with http.get(
                f"{edge.url}/api/v1/auth/profile", headers=dict(bearer(token))
            ) as response:
                assert response.status in {200, 404}, await response.text()
        after = await scrape(f"{edge.admin_url}/stats/prometheus")
    assert value(after, "envoy_cluster_upstream_rq_total", **upstream) >= (
        value(before, "envoy_cluster_upstream_rq_total", **upstream) + 2
    )


class _NoDisplay:
    """An RDP backend whose desktops never show a display (the capture never starts)."""

    def display(self, username: str) -> None:
        return None


async def test_the_recorder_reports_frames_per_second_of_each_recording() -> None:
    recorder = Recorder(
        _NoDisplay(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        frame_rate=10,
        resolution="1024x768",
        segment_s=1.0,
    )
    metrics = Metrics("rdp")
    metrics.gauge(
        "recorder_fps",
        "fps",
        lambda: {(sid,): fps for sid, fps in recorder.rates().items()},
        labels=("session_id",),
    )
    recorder.start("s-1", "someone")
    try:
        stats = recorder.stats("s-1")
        assert stats is not None
        stats.frames, stats.started = 50, time.monotonic() - 5.0  # 50 frames in 5 s
        text = metrics.exposition().decode()
        line = next(x for x in text.splitlines() if x.startswith("lucid_recorder_fps{"))
        assert 'session_id="s-1"' in line
        assert 9.0 < float(line.rsplit(" ", 1)[1]) <= 10.0
    finally:
        await recorder.stop("s-1")
    assert recorder.rates() == {}
