"""Search in place of Elasticsearch (SQLite FTS5): indices, reindex from MongoDB,
term/terms/match/range/bool queries with from/size and sort, stats, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from lucid.storage.v1 import database_pb2, search_pb2
from tests.storage_support import Stubs, admin_metadata, eventually
from tests.support import Mesh


@pytest.fixture(scope="module")
async def storage(mesh: Mesh) -> Mesh:
    await mesh.start("storage")
    return mesh


def _query(body: dict[str, Any]) -> struct_pb2.Struct:
    query = struct_pb2.Struct()
    query.update(body)
    return query


async def _indexed(stubs: Stubs, metadata: Any, name: str) -> search_pb2.SearchIndex:
    async def get() -> search_pb2.SearchIndex:
        return await stubs.search_index(name, metadata)

    return await eventually(
        get, lambda i: i.last_reindex.state == search_pb2.REINDEX_STATE_COMPLETED
    )


class SearchStubs(Stubs):
    async def search_index(self, name: str, metadata: Any) -> search_pb2.SearchIndex:
        reply = await self.search.GetSearchIndex(
            search_pb2.GetSearchIndexRequest(index_name=name), metadata=metadata
        )
        return reply.index


async def test_blocks_index_finds_a_block_by_hash(storage: Mesh) -> None:
    db = storage.servers["storage"].runtime.datastores.db
    start = datetime(2026, 1, 1, tzinfo=UTC)
    await db["search_blocks_src"].insert_many(
        [
            {
                "block_height": h,
                "block_hash": f"{h:064x}",
                "timestamp": start + timedelta(minutes=h),
                "proposer": "validator one" if h % 2 else "validator two",
            }
            for h in range(250)
        ]
    )
    metadata = await admin_metadata(storage)
    async with storage.channel("storage") as channel:
        stubs = SearchStubs(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.search.CreateSearchIndex(
                search_pb2.CreateSearchIndexRequest(name="Bad"), metadata=metadata
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        made = await stubs.search.CreateSearchIndex(
            search_pb2.CreateSearchIndexRequest(
                name="lucid_blocks", replicas=0, source_collection="search_blocks_src"
            ),
            metadata=metadata,
        )
        assert made.index.health == search_pb2.INDEX_HEALTH_GREEN
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.search.CreateSearchIndex(
                search_pb2.CreateSearchIndexRequest(name="lucid_blocks"), metadata=metadata
            )
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
        started = await stubs.search.ReindexSearchIndex(
            search_pb2.ReindexSearchIndexRequest(index_name="lucid_blocks", batch_size=100),
            metadata=metadata,
        )
        assert started.reindex.documents_total == 250
        index = await _indexed(stubs, metadata, "lucid_blocks")
        assert index.document_count == 250

        async def search(body: dict[str, Any], **kwargs: Any) -> search_pb2.SearchResponse:
            return await stubs.search.Search(
                search_pb2.SearchRequest(indices=["lucid_blocks"], query=_query(body), **kwargs),
                metadata=metadata,
            )

        found = await search({"term": {"block_hash": f"{42:064x}"}})
        assert found.total_hits == 1 and found.hits[0].source["block_height"] == 42
        found = await search({"terms": {"block_height": [1, 2, 3]}})
        assert found.total_hits == 3
        found = await search(
            {"range": {"timestamp": {"gte": (start + timedelta(minutes=240)).isoformat()}}},
            sort=[search_pb2.SortField(field="block_height", order=search_pb2.SORT_ORDER_DESC)],
            size=3,
        )
        assert found.total_hits == 10
        assert [h.source["block_height"] for h in found.hits] == [249, 248, 247]
        found = await search(
            {
                "bool": {
                    "must": [{"match": {"proposer": "two"}}],
                    "filter": [{"range": {"block_height": {"lt": 10}}}],
                    "must_not": [{"term": {"block_height": 4}}],
                }
            },
            fields=["block_height"],
        )
        assert sorted(h.source["block_height"] for h in found.hits) == [0, 2, 6, 8]
        assert all(set(h.source) == {"block_height"} for h in found.hits)
        page = await search({"match_all": {}}, offset=200, size=100)
        assert page.total_hits == 250 and len(page.hits) == 50
        for bad in (
            search_pb2.SearchRequest(query=_query({"match_all": {}}), size=10001),
            search_pb2.SearchRequest(query=_query({"fuzzy": {"a": "b"}})),
            search_pb2.SearchRequest(query=_query({"term": {"a;drop": "b"}})),
            search_pb2.SearchRequest(query=_query({"range": {"a": {"near": 1}}})),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stubs.search.Search(bad, metadata=metadata)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.search.Search(
                search_pb2.SearchRequest(indices=["nowhere"], query=_query({"match_all": {}})),
                metadata=metadata,
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        stats = await stubs.search.GetSearchIndexStats(
            search_pb2.GetSearchIndexStatsRequest(index_name="lucid_blocks"), metadata=metadata
        )
        assert stats.document_count == 250 and stats.query_count == 5
        overall = await stubs.database.GetDatabaseStats(
            database_pb2.GetDatabaseStatsRequest(), metadata=metadata
        )
        assert overall.search.indices >= 1 and overall.search.documents >= 250
        await stubs.search.DeleteSearchIndex(
            search_pb2.DeleteSearchIndexRequest(index_name="lucid_blocks", confirm=True),
            metadata=metadata,
        )
        listed = await stubs.search.ListSearchIndices(
            search_pb2.ListSearchIndicesRequest(), metadata=metadata
        )
        assert "lucid_blocks" not in [i.name for i in listed.indices]


async def test_an_index_with_replicas_is_yellow_on_one_node(storage: Mesh) -> None:
    metadata = await admin_metadata(storage)
    async with storage.channel("storage") as channel:
        made = await Stubs(channel).search.CreateSearchIndex(
            search_pb2.CreateSearchIndexRequest(name="lucid_users"), metadata=metadata
        )
        assert made.index.replicas == 1 and made.index.health == search_pb2.INDEX_HEALTH_YELLOW
        with pytest.raises(grpc.aio.AioRpcError) as caught:  # no source collection
            await Stubs(channel).search.ReindexSearchIndex(
                search_pb2.ReindexSearchIndexRequest(index_name="lucid_users"),
                metadata=metadata,
            )
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
