"""ResyncChain with real validator processes: the held blocks are compared with a
peer's (a block whose hash was changed in this validator's store is named, and left as
it is), a height above the tip + 1 is refused, and a user below super admin may not ask.

Three ``python -m lucid serve blockchain --validator N`` processes, one fresh database,
0.2 s blocks (see tests/chain_cluster.py)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from pymongo import AsyncMongoClient

from lucid.blockchain.config import collection_prefix
from lucid.blockchain.schema import BLOCKS
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.runtime.config import Settings
from tests.chain_cluster import ValidatorCluster
from tests.chain_support import anchor_request, wait_for
from tests.support import details

pytestmark = pytest.mark.slow


async def resync(cluster: ValidatorCluster, from_height: int | None) -> pb.ResyncChainResponse:
    """ResyncChain on validator 0, as the admin service."""
    async with cluster.stubs(0, "admin") as stubs:
        return await stubs.chain.ResyncChain(
            pb.ResyncChainRequest(from_height=from_height), timeout=30
        )


async def test_resync_rechecks_held_blocks_and_names_a_divergence(
    settings: Settings, tmp_path: Path
) -> None:
    cluster = ValidatorCluster(settings, tmp_path / "chain")
    cluster.start_all()
    try:
        for index in range(3):
            async with cluster.stubs(index) as stubs:
                await wait_for(stubs.ready, timeout_s=90, interval_s=0.2)
        for height in (1, 2):  # a block per anchored session (blocks carry transactions)
            async with cluster.stubs(0, "sessions") as stubs:
                await stubs.anchoring.AnchorSession(anchor_request(), timeout=10)

            async def reached(height: int = height) -> int | None:
                async with cluster.stubs(0) as stubs:
                    tip = await stubs.chain.GetChainHeight(pb.GetChainHeightRequest(), timeout=5)
                return tip.height if tip.height >= height else None

            await wait_for(reached, timeout_s=60, interval_s=0.2)

        clean = await resync(cluster, 0)
        assert clean.started
        assert clean.diverged_height == -1
        assert clean.rechecked_count >= 3, "blocks 0, 1 and 2 at least"
        assert clean.local_height >= 2
        only_missing = await resync(cluster, None)
        assert only_missing.started and only_missing.diverged_height == -1

        client: AsyncMongoClient[dict] = AsyncMongoClient(settings.mongodb_uri)
        try:
            blocks = client[cluster.database][collection_prefix(0) + BLOCKS]
            held = await blocks.find_one({"height": 1})
            assert held is not None
            await blocks.update_one({"_id": held["_id"]}, {"$set": {"hash": "0" * 64}})
            diverged = await resync(cluster, 0)
            assert diverged.started
            assert diverged.diverged_height == 1
            assert "height 1" in diverged.message
            after = await blocks.find_one({"_id": held["_id"]})
            assert after is not None and after["hash"] == "0" * 64, "nothing is rewritten"
        finally:
            await client.close()

        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await resync(cluster, diverged.local_height + 5)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(raised.value).field_violations[0].field == "from_height"
        async with cluster.stubs(0, "sessions") as stubs:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stubs.chain.ResyncChain(pb.ResyncChainRequest(), timeout=10)
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        cluster.stop_all()
