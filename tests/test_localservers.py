"""The local stores (issue 8, item 5): FerretDB runs on a private PostgreSQL by default
(SQLite only when asked for), the PostgreSQL server never runs as root and listens on
loopback only, concurrent writes through the MongoDB wire protocol all succeed, and
stopping removes every process."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
import redis
from pymongo import AsyncMongoClient

from lucid.runtime.tokens import REVOKED_JTI_KEY
from lucid.supervisor.localservers import LocalServerError, LocalStores

PAIRS = 300


def test_postgresql_is_the_default_and_sqlite_an_explicit_option(tmp_path: Path) -> None:
    default = LocalStores.at(tmp_path / "a", mongo_port=0, redis_port=0)
    assert default.mongo.postgres is not None
    assert default.mongo.backend_flags()[0] == "--handler=postgresql"
    assert default.mongo.backend_flags()[1].startswith("--postgresql-url=postgres://")
    assert "@127.0.0.1:" in default.mongo.backend_flags()[1]
    sqlite = LocalStores.at(tmp_path / "b", mongo_port=0, redis_port=0, backend="sqlite")
    assert sqlite.mongo.postgres is None
    assert sqlite.mongo.backend_flags()[0] == "--handler=sqlite"
    with pytest.raises(LocalServerError, match="unknown FerretDB backend 'mysql'"):
        LocalStores.at(tmp_path / "c", mongo_port=0, redis_port=0, backend="mysql")


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


async def test_concurrent_writes_through_ferretdb_on_postgresql(tmp_path: Path) -> None:
    stores = LocalStores.at(tmp_path / "stores", mongo_port=0, redis_port=0)
    await asyncio.to_thread(stores.start)
    postgres = stores.mongo.postgres
    assert postgres is not None and postgres.process is not None
    pids = [s.process.pid for s in stores.servers if s.process is not None]
    try:
        assert _uid_of(postgres.process.pid) != 0, "PostgreSQL must not run as root"
        if os.geteuid() != 0:
            assert _uid_of(postgres.process.pid) == os.geteuid()
        command = " ".join(postgres.command())
        assert "listen_addresses=127.0.0.1" in command and "unix_socket_directories=" in command

        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(stores.mongo.uri)
        collection = client["load"]["pairs"]

        async def pair(index: int) -> None:
            await collection.insert_one({"_id": index, "state": "stopped"})
            await collection.update_one({"_id": index}, {"$set": {"state": "completed"}})

        try:
            await asyncio.gather(*(pair(i) for i in range(PAIRS)))
            completed = await collection.count_documents({"state": "completed"})
        finally:
            await client.close()
        assert completed == PAIRS
    finally:
        await asyncio.to_thread(stores.stop)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize("persistent", [True, False])
def test_a_revocation_outlives_a_redis_sigkill_only_when_persistent(
    tmp_path: Path, persistent: bool
) -> None:
    """``lucid up`` runs Redis with an append-only file: a revoked token stays revoked after
    Redis is killed and started again (without it, Redis comes back empty)."""
    stores = LocalStores.at(tmp_path, mongo_port=0, redis_port=0, redis_persistent=persistent)
    server = stores.redis
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        try:
            client.set(REVOKED_JTI_KEY.format(jti="a-revoked-token"), "1", ex=900)
        finally:
            client.close()
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
        server.start()
        client = redis.Redis.from_url(server.url)
        try:
            kept = client.exists(REVOKED_JTI_KEY.format(jti="a-revoked-token"))
        finally:
            client.close()
        assert bool(kept) == persistent
    finally:
        server.stop()
