"""Helpers of the storage tests: stubs with admin tokens, polling, the storage components."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc

from lucid.common.v1 import access_pb2
from lucid.runtime.config import Settings
from lucid.runtime.server import ClusterServer
from lucid.storage.v1 import (
    backup_pb2_grpc,
    cache_pb2_grpc,
    database_pb2_grpc,
    schema_pb2_grpc,
    search_pb2_grpc,
    volume_pb2_grpc,
)
from lucid.supervisor.localservers import LocalStores, free_port
from tests import waiting
from tests.support import Mesh, bearer

T = TypeVar("T")


async def admin_metadata(mesh: Mesh, role: int = access_pb2.ROLE_SUPER_ADMIN) -> Any:
    """Bearer metadata of a real token with ``role`` (super_admin by default)."""
    return bearer(await mesh.token(role=role))


def component(server: ClusterServer, kind: type[T]) -> T:
    """The servicer of ``kind`` of a running storage server."""
    return next(s for _, s in server.app.servicers if isinstance(s, kind))


async def eventually(
    check: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout_s: float = 30.0
) -> T:
    """Polls ``check`` until ``done`` holds (generous deadline for a loaded machine)."""
    last: list[T] = []

    async def holds() -> bool:
        last[:] = [await check()]
        return done(last[0])

    await waiting.eventually(holds, timeout_s=timeout_s, what="the storage condition")
    return last[0]


class Stubs:
    """The storage stubs on one channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.database = database_pb2_grpc.DatabaseServiceStub(channel)
        self.schema = schema_pb2_grpc.SchemaServiceStub(channel)
        self.backup = backup_pb2_grpc.BackupServiceStub(channel)
        self.cache = cache_pb2_grpc.CacheServiceStub(channel)
        self.volume = volume_pb2_grpc.VolumeServiceStub(channel)
        self.search = search_pb2_grpc.SearchServiceStub(channel)


@contextlib.asynccontextmanager
async def private_stores(
    settings: Settings, tmp_path: Path, *, clusters: Sequence[str] = ("storage",)
) -> AsyncIterator[tuple[Mesh, LocalStores]]:
    """A mesh of ``clusters`` on their own ports, FerretDB, Redis and var/ (which the
    test may stop or fill); auth stays the session's, at its port."""
    stores = LocalStores.at(tmp_path / "stores", mongo_port=0, redis_port=0)
    await asyncio.to_thread(stores.start)
    own = settings.replace(
        mongodb_uri=stores.mongo.uri,
        redis_url=stores.redis.url,
        var_dir=tmp_path / "var",
        ports={**settings.ports, **{c: free_port() for c in clusters}},
    )
    await asyncio.to_thread(shutil.copytree, settings.certs_dir, own.certs_dir)
    try:
        yield Mesh(own), stores
    finally:
        await asyncio.to_thread(stores.stop)
