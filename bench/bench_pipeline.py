"""The cost of the call pipeline: a bare grpc.aio server next to the full chain
(request id, logs, authentication with a cached JWKS, verified tokens and admitted
callers kept with revocations pushed, authorization, validation, error mapping), same
servicer, same mTLS.

Also the per-call cost of verifying a token: in the interceptor (the same public rpc
with a token and with a header of the token's size that is no token, one call at a
time: the difference is the verification, not the bytes carried) and in-process
(``TokenVerifier.verify`` the first time a token is seen, with its Ed25519 check, and
again from the cache, where revocations are heard on the channel: no Redis round trip)
and when revocations are not pushed (the subscription down: a Redis round trip per
call)."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time

import grpc

from bench.common import BenchContext, Figure, rate
from lucid.auth import app as auth_app
from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.runtime import tls
from lucid.runtime.config import Settings
from lucid.runtime.revocations import RedisRevocationList
from lucid.runtime.server import ClusterApp, Runtime
from lucid.runtime.tokens import CallbackKeySource, TokenVerifier
from lucid.supervisor.localservers import free_port
from tests.support import Mesh, bearer, sign_token
from tests.waiting import eventually

CONCURRENCY = 8
SECONDS = 4.0
SEQUENTIAL_SECONDS = 3.0
SEQUENTIAL_ROUNDS = 6
VERIFY_ROUNDS = 2000


class Constant(auth_pb2_grpc.AuthServiceServicer):
    """Answers without touching a store, so only the transport and pipeline are measured."""

    async def GetJwks(self, request, context):  # type: ignore[no-untyped-def]
        return auth_pb2.GetJwksResponse(keys=[auth_pb2.Jwk(kid="k")])

    async def GetProfile(self, request, context):  # type: ignore[no-untyped-def]
        return auth_pb2.GetProfileResponse(user=auth_pb2.User(user_id="u"))


def summary(label: str, calls_per_s: float, latencies: list[float]) -> list[Figure]:
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[int(len(latencies) * 0.99)]
    return [
        Figure(f"{label}: throughput", calls_per_s, "calls/s"),
        Figure(f"{label}: p50", p50, "ms"),
        Figure(f"{label}: p99", p99, "ms"),
    ]


async def start_bare(settings: Settings) -> tuple[grpc.aio.Server, int]:
    """A bare grpc.aio server (mTLS, no pipeline) with the ``Constant`` servicer."""
    bare = grpc.aio.server()
    auth_pb2_grpc.add_AuthServiceServicer_to_server(Constant(), bare)
    port = bare.add_secure_port(
        "127.0.0.1:0", tls.server_credentials(tls.CertPaths.of(settings.certs_dir, "auth"))
    )
    await bare.start()
    return bare, port


def constant_auth(runtime: Runtime) -> ClusterApp:
    """The auth cluster with the ``Constant`` servicer behind the full pipeline."""
    keys = auth_app.key_store(runtime)
    return ClusterApp(
        servicers=[(auth_pb2_grpc.add_AuthServiceServicer_to_server, Constant())],
        collections=auth_app.COLLECTIONS,
        key_source=CallbackKeySource(keys.jwks),
        on_ready=[keys.current],
    )


async def run(ctx: BenchContext) -> list[Figure]:
    logging.getLogger("lucid.rpc").setLevel(logging.WARNING)
    settings = ctx.settings
    figures: list[Figure] = []

    # 1. bare grpc.aio with mTLS
    bare, port = await start_bare(settings)
    credentials = tls.channel_credentials(tls.CertPaths.of(settings.certs_dir, "operator"))
    options = [("grpc.ssl_target_name_override", "auth.lucid.internal")]
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options=options) as ch:
        stub = auth_pb2_grpc.AuthServiceStub(ch)
        await stub.GetJwks(auth_pb2.GetJwksRequest())
        r, lat = await rate(
            lambda: stub.GetJwks(auth_pb2.GetJwksRequest()),
            seconds=SECONDS,
            concurrency=CONCURRENCY,
        )
        figures += summary("bare grpc.aio (mTLS)", r, lat)
        _, bare_seq = await rate(
            lambda: stub.GetJwks(auth_pb2.GetJwksRequest()), seconds=SEQUENTIAL_SECONDS
        )
    await bare.stop(None)

    # 2. the same servicer behind the full pipeline
    async def build(runtime: Runtime) -> ClusterApp:
        return constant_auth(runtime)

    mesh = Mesh(settings.replace(ports={**settings.ports, "auth": free_port()}))
    await mesh.start("auth", build)
    token = await mesh.token()
    async with mesh.channel("auth") as ch:
        stub = auth_pb2_grpc.AuthServiceStub(ch)
        await stub.GetProfile(auth_pb2.GetProfileRequest(), metadata=bearer(token))
        r, lat = await rate(
            lambda: stub.GetJwks(auth_pb2.GetJwksRequest()),
            seconds=SECONDS,
            concurrency=CONCURRENCY,
        )
        figures += summary("pipeline, public rpc, no token", r, lat)
        r2, lat2 = await rate(
            lambda: stub.GetProfile(auth_pb2.GetProfileRequest(), metadata=bearer(token)),
            seconds=SECONDS,
            concurrency=CONCURRENCY,
        )
        figures += summary("pipeline, token verified (kept, revocations pushed)", r2, lat2)
        # one call at a time, the three variants in alternating short rounds (the machine
        # is shared: a load change then hits all three alike); the median round of each
        padding = (("x-bench-padding", "p" * len(token)),)  # the token's bytes, not a token
        variants = {"public": (), "token": bearer(token), "padded": padding}
        rounds: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(SEQUENTIAL_ROUNDS):
            for name, metadata in variants.items():
                _, latencies = await rate(
                    lambda m=metadata: stub.GetJwks(auth_pb2.GetJwksRequest(), metadata=m),
                    seconds=3 * SEQUENTIAL_SECONDS / SEQUENTIAL_ROUNDS,
                )
                rounds[name].append(statistics.mean(latencies))
        auth_runtime = mesh.servers["auth"].runtime
        keys = auth_app.key_store(auth_runtime)
        revocations = RedisRevocationList(auth_runtime.datastores.cache)
        verifier = TokenVerifier(CallbackKeySource(keys.jwks), revocations=revocations)
        key = await keys.current()
        fresh = [sign_token(key.private_key, key.kid) for _ in range(VERIFY_ROUNDS // 4)]
        await verifier.verify(fresh[0])  # keys loaded
        uncached = await _per_call_us(verifier.verify, fresh[1:])
        polled = await _per_call_us(verifier.verify, [fresh[1]] * VERIFY_ROUNDS)
        watching = asyncio.create_task(revocations.watch())
        await eventually(revocations.epoch, what="the revocation subscription")
        await verifier.verify(fresh[1])  # checked once in this epoch
        cached = await _per_call_us(verifier.verify, [fresh[1]] * VERIFY_ROUNDS)
        watching.cancel()
    await mesh.stop_all()
    base = figures[0].value
    figures.append(Figure("pipeline with token / bare throughput", r2 / base, "ratio"))
    bare_ms = statistics.mean(bare_seq)
    public_ms, token_ms, padded_ms = (
        statistics.median(rounds[name]) for name in ("public", "token", "padded")
    )
    figures += [
        Figure("one call at a time: bare grpc.aio, mean", bare_ms * 1000, "µs"),
        Figure("one call at a time: pipeline, no token, mean", public_ms * 1000, "µs"),
        Figure("one call at a time: same rpc with a token, mean", token_ms * 1000, "µs"),
        Figure(
            "one call at a time: same rpc, a header of the token's size, mean",
            padded_ms * 1000,
            "µs",
        ),
        Figure(
            "token verification in the interceptor, per call", (token_ms - padded_ms) * 1000, "µs"
        ),
        Figure("whole pipeline with token over bare, per call", (token_ms - bare_ms) * 1000, "µs"),
        Figure("TokenVerifier.verify, first sight (Ed25519 + Redis)", uncached, "µs"),
        Figure("TokenVerifier.verify, kept, not subscribed (Redis check)", polled, "µs"),
        Figure("TokenVerifier.verify, kept, revocations pushed", cached, "µs"),
    ]
    return figures


async def _per_call_us(verify, tokens: list[str]) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for token in tokens:
        await verify(token)
    return (time.perf_counter() - started) / len(tokens) * 1e6
