"""The front door under load, in one run:

1. ghz: an authenticated unary rpc (GetProfile with a real token) through the full
   interceptor chain next to a bare grpc.aio server with the same servicer and message,
   both over mTLS;
2. the same rpc via the edge's REST route (HTTPS, rate limit checked with the gateway)
   next to direct gRPC from the same Python client;
3. the per-call cost of the rate limiter: the Lua script in Redis, the in-memory
   fallback, and the edge's CheckRateLimit round trip to the gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from bench.bench_pipeline import Constant, constant_auth, start_bare, summary
from bench.common import BenchContext, Figure, rate
from lucid.auth import app as auth_app
from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from lucid.lib.clock import SystemClock
from lucid.lib.ratelimit import TIERS, MemoryLimiter
from lucid.runtime.contracts import protoset_path
from lucid.runtime.datastores import Datastores
from lucid.runtime.limits import RateLimiter
from lucid.runtime.server import ClusterApp, Runtime
from lucid.supervisor.localservers import free_port, tool_path
from tests.support import Mesh, bearer, https_client, operator_channel, serve_edge

SECONDS = 4.0
CONCURRENCY = 8
GHZ_CONCURRENCY = 16
GHZ_REQUESTS = 6000
GHZ_ROUNDS = 3


async def _ghz(label: str, target: str, certs: Path, token: str) -> list[Figure]:
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    process = await asyncio.create_subprocess_exec(
        tool_path("ghz"),
        "--protoset",
        str(protoset_path()),
        "--call",
        "lucid.auth.v1.AuthService.GetProfile",
        "--cacert",
        str(certs / "ca.crt"),
        "--cert",
        str(certs / "operator.crt"),
        "--key",
        str(certs / "operator.key"),
        "--cname",
        "auth.lucid.internal",
        "--metadata",
        json.dumps({"authorization": f"Bearer {token}"}),
        "-d",
        "{}",
        "-c",
        str(GHZ_CONCURRENCY),
        "-n",
        str(GHZ_REQUESTS),
        "--format",
        "json",
        "--output",
        str(out),
        target,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    report = json.loads(out.read_text())
    out.unlink()
    if process.returncode != 0 and not report:
        raise RuntimeError(err.decode())
    latency = {p["percentage"]: p["latency"] / 1e6 for p in report["latencyDistribution"]}
    errors = sum(v for k, v in report.get("statusCodeDistribution", {}).items() if k != "OK")
    return [
        Figure(f"ghz {label}: throughput", report["rps"], "calls/s"),
        Figure(f"ghz {label}: p50", latency[50], "ms"),
        Figure(f"ghz {label}: p99", latency[99], "ms"),
        Figure(f"ghz {label}: errors", errors, "calls"),
    ]


async def run(ctx: BenchContext) -> list[Figure]:
    for name in ("lucid.rpc", "lucid.edge", "lucid.breaker", "lucid.edge.policy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    settings = ctx.settings
    figures: list[Figure] = []

    # bare grpc.aio, same servicer, mTLS
    bare, bare_port = await start_bare(settings)

    # the full chain: the same servicer behind the pipeline, plus a gateway and an edge
    # (GetJwks answers the real keys so that the edge can tell users apart for limits)
    async def build(runtime: Runtime) -> ClusterApp:
        app = constant_auth(runtime)
        keys = auth_app.key_store(runtime)

        class WithKeys(Constant):
            async def GetJwks(self, request, context):  # type: ignore[no-untyped-def]
                return auth_pb2.GetJwksResponse(
                    keys=[auth_pb2.Jwk(**jwk) for jwk in await keys.jwks()]
                )

        app.servicers = [(auth_pb2_grpc.add_AuthServiceServicer_to_server, WithKeys())]
        return app

    own = settings.replace(ports={**settings.ports, "auth": free_port(), "gateway": free_port()})
    mesh = Mesh(own)
    await mesh.start("auth", build)
    await mesh.start("gateway")
    token = await mesh.token()
    try:
        # bare and chain alternate; the machine is shared, so the best round of each
        # side is kept (the same treatment for both)
        rounds: dict[str, list[list[Figure]]] = {"bare grpc.aio": [], "full chain": []}
        targets = {"bare grpc.aio": bare_port, "full chain": own.port("auth")}
        for _ in range(GHZ_ROUNDS):
            for label, port in targets.items():
                found = await _ghz(label, f"127.0.0.1:{port}", settings.certs_dir, token)
                rounds[label].append(found)
        best = {label: max(runs, key=lambda r: r[0].value) for label, runs in rounds.items()}
        figures += best["bare grpc.aio"] + best["full chain"]
        paired = [
            chain[0].value / bare[0].value
            for bare, chain in zip(rounds["bare grpc.aio"], rounds["full chain"], strict=True)
        ]
        figures += [
            Figure(
                f"ghz full chain / bare throughput, best of {GHZ_ROUNDS} each",
                best["full chain"][0].value / best["bare grpc.aio"][0].value,
                "ratio",
            ),
            Figure(
                f"ghz full chain / bare throughput, median of {GHZ_ROUNDS} back-to-back pairs",
                statistics.median(paired),
                "ratio",
                at_least=0.85,
            ),
        ]

        # the same rpc: direct gRPC from Python, then via the edge's REST route
        async with mesh.channel("auth") as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            await stub.GetProfile(auth_pb2.GetProfileRequest(), metadata=bearer(token))
            r, lat = await rate(
                lambda: stub.GetProfile(auth_pb2.GetProfileRequest(), metadata=bearer(token)),
                seconds=SECONDS,
                concurrency=CONCURRENCY,
            )
            figures += summary("direct gRPC GetProfile (python client)", r, lat)
        users = [await mesh.token(user_id=str(uuid.uuid4())) for _ in range(CONCURRENCY)]
        async with serve_edge(own) as url, https_client(own) as http:
            profile = f"{url}/api/v1/auth/profile"

            def rest(user: str):  # type: ignore[no-untyped-def]
                async def call() -> None:
                    async with http.get(profile, headers={"authorization": f"Bearer {user}"}) as r:
                        assert r.status == 200, await r.text()
                        await r.read()

                return call

            callers = [rest(u) for u in users]
            turn = iter(range(10**9))
            await callers[0]()
            r, lat = await rate(
                lambda: callers[next(turn) % CONCURRENCY](),  # noqa: PLW0108 (a new caller each time)
                seconds=SECONDS,
                concurrency=CONCURRENCY,
            )
            figures += summary("edge REST GET /api/v1/auth/profile (HTTPS)", r, lat)

        # the limiter alone
        stores = Datastores(own, mongo=False, redis=True)
        limiter = RateLimiter(stores.cache, SystemClock(), "gateway")
        policy = TIERS["authenticated"]
        keys = [f"bench-{uuid.uuid4().hex}-{i}" for i in range(CONCURRENCY)]
        turn2 = iter(range(10**9))
        r, lat = await rate(
            lambda: limiter.check("bench", keys[next(turn2) % CONCURRENCY], policy, 1),
            seconds=SECONDS,
            concurrency=CONCURRENCY,
        )
        figures += summary("rate limiter: Lua script in Redis", r, lat)
        await stores.close()
        memory = MemoryLimiter()
        started = time.perf_counter()
        for i in range(100_000):
            memory.check(keys[i % CONCURRENCY], policy, time.time(), 1)
        figures.append(
            Figure(
                "rate limiter: in-memory fallback, per call",
                (time.perf_counter() - started) / 100_000 * 1e6,
                "us",
            )
        )
        async with operator_channel(own, "gateway", "edge") as channel:
            check = gateway_pb2_grpc.RateLimitServiceStub(channel)
            requests = [
                gateway_pb2.CheckRateLimitRequest(
                    tier=gateway_pb2.RATE_LIMIT_TIER_AUTHENTICATED, identifier=k, cost=1
                )
                for k in keys
            ]
            turn3 = iter(range(10**9))
            r, lat = await rate(
                lambda: check.CheckRateLimit(requests[next(turn3) % CONCURRENCY]),
                seconds=SECONDS,
                concurrency=CONCURRENCY,
            )
            figures += summary("rate limiter: edge -> gateway CheckRateLimit", r, lat)
    finally:
        await mesh.stop_all()
        await bare.stop(None)
    return figures
