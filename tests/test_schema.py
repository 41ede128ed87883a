"""Collections and indexes against the real local MongoDB (FerretDB)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lucid.runtime.config import Settings
from lucid.runtime.schema import CollectionSpec, IndexSpec, TtlSweeper, ensure_schema

SPECS = (
    CollectionSpec(
        "things",
        (
            IndexSpec((("thing_id", 1),), "thing_id_unique", unique=True),
            IndexSpec((("owner", 1), ("created_at", -1)), "owner_created"),
            IndexSpec((("expires_at", 1),), "expires_ttl", ttl_seconds=0),
        ),
    ),
    CollectionSpec("others"),
)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri, tz_aware=True)
    name = f"schema_{uuid.uuid4().hex[:8]}"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


async def test_ensure_schema_is_idempotent(db: AsyncDatabase[dict[str, Any]]) -> None:
    first = await ensure_schema(db, SPECS)
    assert set(first.created_collections) == {"things", "others"}
    assert len(first.created_indexes) == 3
    second = await ensure_schema(db, SPECS)
    assert second.created_collections == [] and second.created_indexes == []
    names = {ix["name"] async for ix in await db["things"].list_indexes()}
    assert {"thing_id_unique", "owner_created", "expires_ttl"} <= names


async def test_unique_index_is_enforced(db: AsyncDatabase[dict[str, Any]]) -> None:
    await ensure_schema(db, SPECS)
    await db["things"].insert_one({"thing_id": "a"})
    with pytest.raises(DuplicateKeyError):
        await db["things"].insert_one({"thing_id": "a"})
    assert await db["things"].count_documents({}) == 1


async def test_ttl_is_honoured_where_the_server_lacks_it(db: AsyncDatabase[dict[str, Any]]) -> None:
    result = await ensure_schema(db, SPECS)
    now = datetime.now(UTC)
    await db["things"].insert_many(
        [
            {"thing_id": "old", "expires_at": now - timedelta(seconds=5)},
            {"thing_id": "new", "expires_at": now + timedelta(hours=1)},
        ]
    )
    if result.emulated_ttl:  # FerretDB: no TTL indexes, so the sweeper does it
        removed = await TtlSweeper(db, result.emulated_ttl).sweep_once(now)
        assert removed == 1
        assert [d["thing_id"] async for d in db["things"].find({})] == ["new"]
    else:  # MongoDB: a real TTL index
        index = [
            ix async for ix in await db["things"].list_indexes() if ix["name"] == "expires_ttl"
        ]
        assert index[0]["expireAfterSeconds"] == 0
