"""Health follows the dependencies: NOT_SERVING while MongoDB or Redis is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lucid.runtime import server as server_module
from lucid.runtime.config import Settings
from lucid.runtime.server import ClusterServer, Runtime
from lucid.supervisor.localservers import LocalStores, free_port
from tests.support import Mesh, serve_health_only, storeless_app

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
async def private(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[Mesh, LocalStores]]:
    """A sessions server on its own FerretDB and Redis, which the test may stop."""
    stores = LocalStores.at(tmp_path / "stores", mongo_port=0, redis_port=0)
    await asyncio.to_thread(stores.start)
    own = settings.replace(
        mongodb_uri=stores.mongo.uri,
        redis_url=stores.redis.url,
        ports={**settings.ports, "sessions": free_port()},
    )
    mesh = Mesh(own)
    await mesh.start("sessions")
    try:
        yield mesh, stores
    finally:
        await mesh.stop_all()
        await asyncio.to_thread(stores.stop)


async def _status(mesh: Mesh, service: str = "") -> int:
    async with mesh.channel("sessions") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2
        )
    return int(reply.status)


async def _eventually(mesh: Mesh, wanted: int, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        status = await _status(mesh)
        if status == wanted:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"health stayed {status}, wanted {wanted}")
        await asyncio.sleep(0.1)


async def test_every_service_of_the_cluster_reports_serving(
    private: tuple[Mesh, LocalStores],
) -> None:
    mesh, _ = private
    await _eventually(mesh, SERVING)
    for service in mesh.servers["sessions"].health.services:
        assert await _status(mesh, service) == SERVING


async def test_redis_down_is_not_serving_and_recovers(private: tuple[Mesh, LocalStores]) -> None:
    mesh, stores = private
    await _eventually(mesh, SERVING)
    await asyncio.to_thread(stores.redis.stop)
    await _eventually(mesh, NOT_SERVING)
    state = mesh.servers["sessions"].health.states["redis"]
    assert not state.healthy and state.error
    await asyncio.to_thread(stores.redis.start)
    await _eventually(mesh, SERVING)


async def test_mongodb_down_is_not_serving_and_recovers(private: tuple[Mesh, LocalStores]) -> None:
    mesh, stores = private
    await _eventually(mesh, SERVING)
    await asyncio.to_thread(stores.mongo.stop)
    await _eventually(mesh, NOT_SERVING)
    assert not mesh.servers["sessions"].health.states["mongodb"].healthy
    await asyncio.to_thread(stores.mongo.start)
    await _eventually(mesh, SERVING, timeout_s=20)


async def test_server_started_while_mongodb_is_down_serves_once_it_is_up(
    settings: Settings, tmp_path: Path
) -> None:
    """Startup work (schema, signing key) waits for the store instead of crashing."""
    stores = LocalStores.at(tmp_path / "stores", mongo_port=0, redis_port=0)
    await asyncio.to_thread(stores.redis.start)
    own = settings.replace(
        mongodb_uri=stores.mongo.uri,
        redis_url=stores.redis.url,
        ports={**settings.ports, "auth": free_port()},
    )
    mesh = Mesh(own)
    await mesh.start("auth")
    try:
        async with mesh.channel("auth") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
            assert reply.status == NOT_SERVING
            await asyncio.to_thread(stores.mongo.start)
            for _ in range(100):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == SERVING and mesh.servers["auth"]._ready:
                    break
                await asyncio.sleep(0.1)
            assert reply.status == SERVING
        keys = (
            await mesh.servers["auth"]
            .runtime.datastores.db["auth_signing_keys"]
            .count_documents({})
        )
        assert keys == 1
    finally:
        await mesh.stop_all()
        await asyncio.to_thread(stores.stop)


async def test_a_second_server_on_a_taken_port_fails_to_bind(settings: Settings) -> None:
    """Two servers never share a port: gRPC's default SO_REUSEPORT would let a second
    cluster bind a port in use and take half of the first one's connections (CI once saw
    storage's clients answered by another cluster's certificate)."""
    port = free_port()
    own = settings.replace(ports={**settings.ports, "mesh": port, "gateway": port})
    first = await serve_health_only(own, "mesh")
    try:
        with pytest.raises((OSError, RuntimeError)):
            await serve_health_only(own, "gateway")
    finally:
        await first.stop()


def test_free_port_never_hands_out_a_port_twice() -> None:
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)


async def test_a_server_stops_promptly_every_time(settings: Settings) -> None:
    """A stop cancels the server's revocation watch, often while it is still subscribing;
    redis-py could swallow that cancellation, and about one stop in six then waited
    forever (before the watch listened in slices and checked for a swallowed cancel)."""
    for _ in range(12):
        own = settings.replace(ports={**settings.ports, "mesh": free_port()})
        server = await serve_health_only(own, "mesh")
        await asyncio.wait_for(server.stop(grace_s=0.5), timeout=10)


async def test_a_stop_leaves_behind_what_hangs_and_names_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A background task that swallows its cancellation and an on_stop hook that never
    returns no longer hold a stop forever: each is waited for ``STOP_STEP_S``, then
    logged with where it waits and left behind."""
    monkeypatch.setattr(server_module, "STOP_STEP_S", 0.5)
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # swallowed, as a misbehaving client library may

    async def never_closes() -> None:
        await release.wait()

    own = settings.replace(ports={**settings.ports, "mesh": free_port()})
    app = storeless_app(tasks=[stubborn], on_stop=[never_closes])
    server = ClusterServer(Runtime(own, "mesh"), app, port=own.port("mesh"))
    await server.start()
    try:
        await asyncio.wait_for(server.stop(grace_s=0.1), timeout=30)
    finally:
        release.set()
    left = [r for r in caplog.records if "left behind" in r.getMessage()]
    assert [r.getMessage().split(" still running")[0] for r in left] == [
        "server stop: background tasks",
        "server stop: on_stop test_a_stop_leaves_behind_what_hangs_and_names_it.<locals>"
        ".never_closes",
    ]
    assert all("stubborn" in r.stack or "never_closes" in r.stack for r in left)  # type: ignore[attr-defined]
