"""Cache administration against real Redis (KEYS disabled): SCAN listing with cursor
pages, get/set/nx/ttl/delete, flush by prefix with confirm."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from lucid.storage.v1 import cache_pb2
from tests.storage_support import Stubs, admin_metadata, eventually
from tests.support import Mesh, details


@pytest.fixture(scope="module")
async def storage(mesh: Mesh) -> Mesh:
    await mesh.start("storage")
    return mesh


async def test_keys_command_is_disabled_here(storage: Mesh) -> None:
    """The listing below therefore cannot be using KEYS."""
    redis = storage.servers["storage"].runtime.datastores.cache
    with pytest.raises(Exception, match="unknown command"):
        await redis.execute_command("KEYS", "*")


async def test_list_keys_pages_with_scan(storage: Mesh) -> None:
    base = f"lucid:storage:test:{uuid.uuid4().hex[:8]}:"
    redis = storage.servers["storage"].runtime.datastores.cache
    await redis.mset({f"{base}{i:03d}": str(i) for i in range(120)})
    await redis.hset(f"{base}hash", mapping={"a": "1"})
    metadata = await admin_metadata(storage)
    seen: list[str] = []
    token = ""
    pages = 0
    async with storage.channel("storage") as channel:
        stub = Stubs(channel).cache
        while True:
            reply = await stub.ListCacheKeys(
                cache_pb2.ListCacheKeysRequest(pattern=f"{base}*", page_size=25, page_token=token),
                metadata=metadata,
            )
            assert len(reply.keys) <= 25 + 10  # SCAN may return a little more than COUNT
            seen += [k.key for k in reply.keys]
            pages += 1
            token = reply.next_page_token
            if not token:
                break
        assert set(seen) == {f"{base}{i:03d}" for i in range(120)} | {f"{base}hash"}
        assert pages >= 4
        typed = await stub.ListCacheKeys(
            cache_pb2.ListCacheKeysRequest(
                pattern=f"{base}*", type=cache_pb2.CACHE_KEY_TYPE_HASH, page_size=1000
            ),
            metadata=metadata,
        )
        found = list(typed.keys)
        while typed.next_page_token:
            typed = await stub.ListCacheKeys(
                cache_pb2.ListCacheKeysRequest(
                    pattern=f"{base}*",
                    type=cache_pb2.CACHE_KEY_TYPE_HASH,
                    page_size=1000,
                    page_token=typed.next_page_token,
                ),
                metadata=metadata,
            )
            found += typed.keys
        assert [k.key for k in found] == [f"{base}hash"]
        assert found[0].type == cache_pb2.CACHE_KEY_TYPE_HASH and found[0].ttl_seconds == -1
        for bad in (
            cache_pb2.ListCacheKeysRequest(page_size=1001),
            cache_pb2.ListCacheKeysRequest(page_token="not-a-cursor"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ListCacheKeys(bad, metadata=metadata)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await stub_cleanup(storage, base)


async def stub_cleanup(storage: Mesh, prefix: str) -> None:
    redis = storage.servers["storage"].runtime.datastores.cache
    keys = [k async for k in redis.scan_iter(match=f"{prefix}*")]
    if keys:
        await redis.unlink(*keys)


async def test_get_set_nx_ttl_delete(storage: Mesh) -> None:
    key = f"lucid:storage:test:{uuid.uuid4().hex[:8]}"
    metadata = await admin_metadata(storage)
    async with storage.channel("storage") as channel:
        stub = Stubs(channel).cache
        written = await stub.SetCacheKey(
            cache_pb2.SetCacheKeyRequest(
                key=key, value='{"a": 1}', format=cache_pb2.VALUE_FORMAT_JSON
            ),
            metadata=metadata,
        )
        assert written.success and written.operation_id
        kept = await stub.SetCacheKey(
            cache_pb2.SetCacheKeyRequest(key=key, value="other", nx=True), metadata=metadata
        )
        assert not kept.success
        got = await stub.GetCacheKey(
            cache_pb2.GetCacheKeyRequest(key=key, format=cache_pb2.VALUE_FORMAT_JSON),
            metadata=metadata,
        )
        assert got.value == '{"a": 1}' and got.ttl_seconds == -1
        assert got.type == cache_pb2.CACHE_KEY_TYPE_STRING
        b64 = await stub.GetCacheKey(
            cache_pb2.GetCacheKeyRequest(key=key, format=cache_pb2.VALUE_FORMAT_BASE64),
            metadata=metadata,
        )
        assert b64.value == "eyJhIjogMX0="
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SetCacheKey(
                cache_pb2.SetCacheKeyRequest(
                    key=key, value="{broken", format=cache_pb2.VALUE_FORMAT_JSON
                ),
                metadata=metadata,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SetCacheKey(
                cache_pb2.SetCacheKeyRequest(key=key, value="v", ttl_seconds=0),
                metadata=metadata,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        short = f"{key}:short"
        await stub.SetCacheKey(
            cache_pb2.SetCacheKeyRequest(key=short, value="v", ttl_seconds=1), metadata=metadata
        )

        async def exists() -> int:
            return int(await storage.servers["storage"].runtime.datastores.cache.exists(short))

        await eventually(exists, lambda n: n == 0, timeout_s=10)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.DeleteCacheKey(cache_pb2.DeleteCacheKeyRequest(key=key), metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # no confirm
        await stub.DeleteCacheKey(
            cache_pb2.DeleteCacheKeyRequest(key=key, confirm=True), metadata=metadata
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetCacheKey(cache_pb2.GetCacheKeyRequest(key=key), metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.DeleteCacheKey(
                cache_pb2.DeleteCacheKeyRequest(key=key, confirm=True), metadata=metadata
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_flush_by_prefix_only_with_confirm(storage: Mesh) -> None:
    tag = uuid.uuid4().hex[:8]
    doomed = f"lucid:storage:flush{tag}:"
    neighbour = f"lucid:storage:flush{tag}x:"  # shares the text but not the prefix
    globby = f"lucid:storage:fl*sh{tag}:"  # glob characters are taken literally
    redis = storage.servers["storage"].runtime.datastores.cache
    await redis.mset({f"{doomed}{i}": "1" for i in range(30)})
    await redis.mset({f"{neighbour}1": "1", f"{globby}1": "1"})
    metadata = await admin_metadata(storage)
    async with storage.channel("storage") as channel:
        stub = Stubs(channel).cache
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.FlushCache(cache_pb2.FlushCacheRequest(prefix=doomed), metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(caught.value).field_violations[0].field == "confirm"
        assert await redis.exists(f"{doomed}0") == 1
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.FlushCache(cache_pb2.FlushCacheRequest(confirm=True), metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # a prefix is required
        reply = await stub.FlushCache(
            cache_pb2.FlushCacheRequest(prefix=doomed, confirm=True), metadata=metadata
        )
        assert reply.deleted_count == 30
        await stub.FlushCache(
            cache_pb2.FlushCacheRequest(prefix=globby, confirm=True), metadata=metadata
        )
    assert await redis.exists(f"{neighbour}1") == 1
    assert await redis.exists(f"{globby}1") == 0
    await redis.unlink(f"{neighbour}1")
    audit = storage.servers["storage"].runtime.datastores.db["storage_audit_events"]
    event = await audit.find_one({"action": "FlushCache", "resource": f"{doomed}*"})
    assert event is not None and event["result"] == "success"


async def test_stats_and_memory(storage: Mesh) -> None:
    metadata = await admin_metadata(storage)
    redis = storage.servers["storage"].runtime.datastores.cache
    await redis.set("lucid:storage:test:stat", "1", ex=60)
    await redis.get("lucid:storage:test:stat")
    await asyncio.sleep(0)
    async with storage.channel("storage") as channel:
        stub = Stubs(channel).cache
        stats = await stub.GetCacheStats(cache_pb2.GetCacheStatsRequest(), metadata=metadata)
        assert stats.total_keys >= 1 and stats.hits >= 1
        prefixes = {p.prefix: p.keys for p in stats.keys_by_prefix}
        assert prefixes.get("lucid:storage:", 0) >= 1
        memory = await stub.GetCacheMemory(cache_pb2.GetCacheMemoryRequest(), metadata=metadata)
        assert memory.used_memory_bytes > 0 and memory.eviction_policy
