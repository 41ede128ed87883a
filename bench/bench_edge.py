"""The Envoy edge under load, side by side at one concurrency: the same authenticated
unary rpc (GetProfile with a real token, the auth cluster's full pipeline) called

1. directly over gRPC with mTLS (ghz),
2. as REST through the Envoy edge (bombardier, HTTPS: jwt_authn, the rate-limit call
   to the gateway, transcoding, mTLS to auth),
3. as grpc-web through the Envoy edge (bombardier, the same filters),

4. as REST through the Envoy edge without the rate-limit filter (Envoy's own share),
5. directly over gRPC through an Envoy sidecar in front of auth (ghz),

and the ratios to direct (target for REST via the edge: at least 0.70 of the QPS, p99 at
most twice direct). The gateway runs in a process of its own with its limiter on a clock
that races ahead, so one user's 1000/min tier does not cap the run while every request
still pays the ShouldRateLimit round trip.

Where the time goes: for each way in, the CPU each process spent per request while the
load ran (``…: CPU per request, <process>`` in µs: auth, the gateway, Envoy, the load
tool). On 2 shared cores the throughput follows their sum.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import resource
import tempfile
from collections.abc import AsyncIterator, Awaitable, Mapping
from multiprocessing.synchronize import Event
from pathlib import Path

import psutil

from bench.bench_front import GHZ_REQUESTS, _ghz
from bench.bench_pipeline import Constant, constant_auth
from bench.common import BenchContext, Figure
from lucid.auth import app as auth_app
from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.gateway import app as gateway_app
from lucid.lib.clock import FakeClock
from lucid.runtime.config import Settings
from lucid.runtime.server import ClusterApp, ClusterServer, Runtime
from lucid.supervisor.envoy import running_edge
from lucid.supervisor.localservers import free_port, tool_path
from lucid.supervisor.sidecars import SidecarLayout, running_sidecars
from tests.support import Mesh

CONCURRENCY = 16
REQUESTS = 6000


async def _bombardier(label: str, url: str, args: list[str]) -> list[Figure]:
    process = await asyncio.create_subprocess_exec(
        tool_path("bombardier"),
        "--insecure",  # loopback, the dev CA's certificate; TLS is still negotiated
        "-c",
        str(CONCURRENCY),
        "-n",
        str(REQUESTS),
        "-l",
        "-p",
        "r",
        "-o",
        "json",
        *args,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(err.decode() or out.decode())
    result = json.loads(out)["result"]
    percentiles = result["latency"]["percentiles"]
    ok = result["req2xx"]
    return [
        Figure(f"{label}: throughput", result["rps"]["mean"], "calls/s"),
        Figure(f"{label}: p50", percentiles["50"] / 1000, "ms"),
        Figure(f"{label}: p99", percentiles["99"] / 1000, "ms"),
        Figure(f"{label}: errors", REQUESTS - ok, "calls"),
    ]


def _cpu_s(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def _children_cpu_s() -> float:
    """CPU of the reaped children: the load tool (Envoy and the gateway outlive a run)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _metered(
    label: str, load: Awaitable[list[Figure]], processes: Mapping[str, int], requests: int
) -> list[Figure]:
    """The load's figures and the CPU each process spent per request while it ran."""
    handles = {"auth": psutil.Process(os.getpid())} | {
        name: psutil.Process(pid) for name, pid in processes.items()
    }
    before = {name: _cpu_s(p) for name, p in handles.items()}
    tool_before = _children_cpu_s()
    figures = await load
    spent = {name: _cpu_s(p) - before[name] for name, p in handles.items()}
    spent["load tool"] = _children_cpu_s() - tool_before
    per_request = [
        Figure(f"{label}: CPU per request, {name}", 1e6 * s / requests, "µs")
        for name, s in spent.items()
    ]
    total = Figure(f"{label}: CPU per request, all", sum(f.value for f in per_request), "µs")
    return [*figures, *per_request, total]


async def _gateway(settings: Settings, ready: Event) -> None:
    clock = FakeClock()
    runtime = Runtime(settings, "gateway", clock=clock)
    server = ClusterServer(runtime, await gateway_app.build(runtime), port=settings.port("gateway"))
    await server.start()
    ready.set()
    while True:  # the limiter's clock races ahead: one user's tier never caps the run
        clock.advance(60.0)
        await asyncio.sleep(0.005)


def _gateway_process(settings: Settings, ready: Event) -> None:
    logging.disable(logging.WARNING)
    asyncio.run(_gateway(settings, ready))


@contextlib.asynccontextmanager
async def _separate_gateway(settings: Settings) -> AsyncIterator[int]:
    """The gateway in a process of its own, as in production; yields its pid."""
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(target=_gateway_process, args=(settings, ready), daemon=True)
    process.start()
    try:
        if not await asyncio.to_thread(ready.wait, 60):
            raise RuntimeError("the gateway process did not start")
        assert process.pid is not None
        yield process.pid
    finally:
        process.terminate()
        await asyncio.to_thread(process.join, 10)


async def _auth_with_keys(runtime: Runtime) -> ClusterApp:
    """The constant auth servicer behind the full pipeline, publishing its real JWKS
    (Envoy's jwt_authn verifies the token against it)."""
    app = constant_auth(runtime)
    keys = auth_app.key_store(runtime)

    class WithKeys(Constant):
        async def GetJwks(self, request, context):  # type: ignore[no-untyped-def]
            return auth_pb2.GetJwksResponse(keys=[auth_pb2.Jwk(**jwk) for jwk in await keys.jwks()])

    app.servicers = [(auth_pb2_grpc.add_AuthServiceServicer_to_server, WithKeys())]
    return app


def _value(figures: list[Figure], name: str) -> float:
    return next(f.value for f in figures if f.name == name)


async def run(ctx: BenchContext) -> list[Figure]:
    for name in ("lucid.rpc", "lucid.breaker"):
        logging.getLogger(name).setLevel(logging.ERROR)
    settings = ctx.settings
    own = settings.replace(ports={**settings.ports, "auth": free_port(), "gateway": free_port()})
    mesh = Mesh(own)
    await mesh.start("auth", _auth_with_keys)
    token = await mesh.token()
    figures: list[Figure] = []
    frame = Path(tempfile.mkstemp(suffix=".grpcweb")[1])
    frame.write_bytes(b"\x00\x00\x00\x00\x00")  # one grpc-web frame: the empty request
    try:
        figures += await _metered(
            "ghz direct gRPC",
            _ghz("direct gRPC", f"127.0.0.1:{own.port('auth')}", own.certs_dir, token),
            {},
            GHZ_REQUESTS,
        )
        async with _separate_gateway(own) as gateway, running_edge(own) as edge:
            auth = ["-H", f"authorization: Bearer {token}"]
            processes = {"gateway": gateway, "envoy": edge.process.pid}
            figures += await _metered(
                "REST via Envoy edge",
                _bombardier("REST via Envoy edge", f"{edge.url}/api/v1/auth/profile", auth),
                processes,
                REQUESTS,
            )
            figures += await _metered(
                "grpc-web via Envoy edge",
                _bombardier(
                    "grpc-web via Envoy edge",
                    f"{edge.url}/lucid.auth.v1.AuthService/GetProfile",
                    [
                        *auth,
                        "-m",
                        "POST",
                        "-H",
                        "content-type: application/grpc-web+proto",
                        "-H",
                        "x-grpc-web: 1",
                        "-f",
                        str(frame),
                    ],
                ),
                processes,
                REQUESTS,
            )
        async with running_edge(own, rate_limit=False) as edge:
            label = "REST via Envoy edge, no rate-limit call"
            figures += await _metered(
                label,
                _bombardier(
                    label,
                    f"{edge.url}/api/v1/auth/profile",
                    ["-H", f"authorization: Bearer {token}"],
                ),
                {"envoy": edge.process.pid},
                REQUESTS,
            )
        figures += await _through_sidecar(own, token)
        direct = "ghz direct gRPC"
        for via in (
            "REST via Envoy edge",
            "grpc-web via Envoy edge",
            "REST via Envoy edge, no rate-limit call",
            "ghz via auth's sidecar",
        ):
            figures += _ratios(figures, via, direct)
    finally:
        frame.unlink()
        await mesh.stop_all()
    return figures


def _ratios(figures: list[Figure], via: str, direct: str) -> list[Figure]:
    qps = _value(figures, f"{via}: throughput") / _value(figures, f"{direct}: throughput")
    p99 = _value(figures, f"{via}: p99") / _value(figures, f"{direct}: p99")
    return [
        Figure(f"{via} / direct: throughput", qps, "ratio"),
        Figure(f"{via} / direct: p99", p99, "ratio"),
    ]


async def _through_sidecar(settings: Settings, token: str) -> list[Figure]:
    """The same rpc through an Envoy sidecar in front of a second auth server (mTLS
    terminated and originated again, RBAC, x-forwarded-client-cert)."""
    base = settings.replace(ports={**settings.ports, "auth": free_port()})
    layout = SidecarLayout.allocate(base, clusters=("auth",))
    runtime = Runtime(layout.cluster_settings(base, "auth"), "auth")
    server = ClusterServer(runtime, await _auth_with_keys(runtime), port=layout.app["auth"])
    await server.start()
    try:
        async with running_sidecars(base, layout, ("auth",)):
            return await _ghz(
                "via auth's sidecar", f"127.0.0.1:{base.port('auth')}", base.certs_dir, token
            )
    finally:
        await server.stop(grace_s=0.2)
