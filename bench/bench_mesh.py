"""The mesh: the plane-policy decision every call pays, discovery through the mesh's
ResolveService and through a real Consul agent (of three real servers whose health
checks pass), and event publishing on Redis Streams."""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import BenchContext, Figure, rate
from lucid.common.v1 import access_pb2
from lucid.mesh.v1 import discovery_pb2, discovery_pb2_grpc, messaging_pb2, messaging_pb2_grpc
from lucid.runtime.contracts import catalog
from lucid.runtime.identity import identity_for
from lucid.runtime.planes import PlanePolicy
from lucid.runtime.registry import ConsulRegistry
from lucid.runtime.server import ClusterApp, ClusterServer, Runtime
from lucid.supervisor.localservers import ConsulAgent, free_port
from tests.waiting import eventually

SECONDS = 3.0
CONCURRENCY = 8
DECISIONS = 200_000


def _summary(label: str, calls_per_s: float, latencies: list[float]) -> list[Figure]:
    return [
        Figure(f"{label}: throughput", calls_per_s, "calls/s"),
        Figure(f"{label}: p50", latencies[len(latencies) // 2], "ms"),
        Figure(f"{label}: p99", latencies[int(len(latencies) * 0.99)], "ms"),
    ]


def _decisions() -> list[Figure]:
    methods = list(catalog().methods.values())
    sources = [identity_for(n) for n in ("sessions", "blockchain", "admin", "edge")]
    cold = PlanePolicy()
    start = time.perf_counter()
    for source in sources:
        for info in methods:
            cold.decide(source, info)
    first = (time.perf_counter() - start) / (len(sources) * len(methods))
    warm = cold
    start = time.perf_counter()
    for n in range(DECISIONS):
        warm.decide(sources[n % len(sources)], methods[n % len(methods)])
    cached = (time.perf_counter() - start) / DECISIONS
    return [
        Figure("plane policy: first decision per (caller, rpc)", first * 1e6, "µs"),
        Figure("plane policy: cached decision", cached * 1e6, "µs"),
    ]


async def run(ctx: BenchContext) -> list[Figure]:
    logging.getLogger("lucid.rpc").setLevel(logging.WARNING)
    logging.getLogger("lucid.audit").setLevel(logging.WARNING)
    figures = _decisions()
    mesh = ctx.mesh
    await mesh.start("mesh")
    async with mesh.channel("mesh", "gateway") as channel:
        discovery = discovery_pb2_grpc.ServiceDiscoveryServiceStub(channel)
        name = f"bench-{uuid.uuid4().hex[:6]}"
        for n in range(3):
            await discovery.RegisterService(
                discovery_pb2.RegisterServiceRequest(
                    service_id=str(uuid.uuid4()),
                    service_name=name,
                    cluster=access_pb2.CLUSTER_GATEWAY,
                    plane=access_pb2.PLANE_OPS,
                    endpoint=discovery_pb2.Endpoint(
                        host="127.0.0.1",
                        port=9000 + n,
                        protocol=discovery_pb2.ENDPOINT_PROTOCOL_GRPCS,
                    ),
                    version="1.0.0",
                )
            )
        request = discovery_pb2.ResolveServiceRequest(service_name=name)
        r, lat = await rate(
            lambda: discovery.ResolveService(request), seconds=SECONDS, concurrency=CONCURRENCY
        )
        figures += _summary("mesh ResolveService (3 instances, round-robin)", r, lat)

        events = messaging_pb2_grpc.MessagingServiceStub(channel)

        def publish() -> object:
            return events.PublishEvent(
                messaging_pb2.PublishEventRequest(
                    event_id=str(uuid.uuid4()), event_type="bench.published"
                )
            )

        r, lat = await rate(publish, seconds=SECONDS, concurrency=CONCURRENCY)
        figures += _summary("mesh PublishEvent (Redis Streams)", r, lat)

    figures += await _consul(ctx)
    return figures


async def _consul(ctx: BenchContext) -> list[Figure]:
    """The passing-instances query of three real gateway servers (mTLS gRPC health checks
    that pass), each answer checked to hold all three."""
    certs = ctx.settings.certs_dir
    agent = ConsulAgent(
        "consul",
        free_port(),
        Path(tempfile.mkdtemp(prefix="lucid-bench-consul-")),
        ca_file=certs / "ca.crt",
        cert_file=certs / "operator.crt",
        key_file=certs / "operator.key",
    )
    agent.start()
    settings = ctx.settings.replace(
        registry="consul",
        consul_addr=agent.address,
        consul_check_interval_s=0.5,
        consul_check_timeout_s=2.0,
        consul_cache_s=0,
    )
    registry = ConsulRegistry(settings)
    servers: list[ClusterServer] = []
    try:
        for _ in range(3):  # a server registers itself, with its health check, on start
            app = ClusterApp(servicers=[], requires_mongo=False, requires_redis=False)
            server = ClusterServer(Runtime(settings, "gateway"), app, port=free_port())
            await server.start()
            servers.append(server)

        async def all_passing() -> bool:
            return len(await registry.instances("gateway")) == 3

        await eventually(all_passing, timeout_s=60, what="three passing gateway instances")

        async def query() -> None:
            found = await registry.instances("gateway")
            assert len(found) == 3, found

        r, lat = await rate(query, seconds=SECONDS, concurrency=CONCURRENCY)
        return _summary("Consul passing-instances query (3 passing, uncached)", r, lat)
    finally:
        for server in servers:
            await server.stop(grace_s=0.2)
        await registry.close()
        agent.stop()
