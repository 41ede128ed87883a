"""Fault tests of the chain with real validator processes (SIGKILL, restart, catch-up).

Three ``python -m lucid serve blockchain --validator N`` processes on free ports, one
fresh database, 0.2 s blocks and 1 s leader timeouts. Sessions are anchored through
each validator as the sessions service (mTLS identity), the way cluster 03 does it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from lucid.blockchain.config import collection_prefix
from lucid.blockchain.store.chain import Repository
from lucid.blockchain.v1 import anchoring_pb2 as apb
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.blockchain.verify import verify_chain
from lucid.runtime.config import Settings
from tests.chain_cluster import ValidatorCluster
from tests.chain_support import anchor_request, wait_for
from tests.waiting import eventually

pytestmark = pytest.mark.slow


async def anchor(cluster: ValidatorCluster, index: int) -> str:
    """Anchors a new session through validator ``index``; its session id."""
    async with cluster.stubs(index, "sessions") as stubs:
        response = await stubs.anchoring.AnchorSession(anchor_request(), timeout=10)
    return response.anchoring.session_id


async def anchoring(cluster: ValidatorCluster, index: int, session_id: str) -> apb.SessionAnchoring:
    """A session's anchoring as validator ``index`` sees it."""
    async with cluster.stubs(index, "sessions") as stubs:
        response = await stubs.anchoring.GetSessionAnchoring(
            apb.GetSessionAnchoringRequest(session_id=session_id), timeout=5
        )
    return response.anchoring


async def final_on(
    cluster: ValidatorCluster, indices: list[int], session_id: str, timeout_s: float = 60.0
) -> set[tuple[int, str]]:
    """Waits until the session's anchor is final on every validator named; (height, hash)s."""
    found = set()
    for index in indices:

        async def final(index: int = index) -> apb.SessionAnchoring | None:
            try:
                record = await anchoring(cluster, index, session_id)
            except Exception:
                return None
            return record if record.final else None

        record = await wait_for(final, timeout_s=timeout_s, interval_s=0.2)
        found.add((record.block_height, record.block_hash))
    return found


async def tip(cluster: ValidatorCluster, index: int) -> tuple[int, str]:
    """Validator ``index``'s tip."""
    async with cluster.stubs(index) as stubs:
        reply = await stubs.chain.GetChainHeight(pb.GetChainHeightRequest(), timeout=5)
    return reply.height, reply.hash


async def block_hashes(cluster: ValidatorCluster, index: int, up_to: int) -> list[str]:
    """The hashes of validator ``index``'s blocks 0…up_to."""
    async with cluster.stubs(index, "admin") as stubs:
        reply = await stubs.chain.ListBlocks(
            pb.ListBlocksRequest(height_to=up_to, order=pb.BLOCK_ORDER_HEIGHT_ASC, page_size=100),
            timeout=5,
        )
    return [b.hash for b in reply.blocks]


async def proposals_in_rounds(
    cluster: ValidatorCluster, index: int, height: int, rounds: int
) -> set[int]:
    """Waits until validator ``index`` has proposed a block of ``height`` in ``rounds``
    different rounds (it keeps trying); those rounds."""
    seen: set[int] = set()

    async def proposed() -> bool:
        async with cluster.stubs(index, "admin") as stubs:
            status = await stubs.consensus.GetConsensusStatus(
                cpb.GetConsensusStatusRequest(), timeout=5
            )
        current = status.current_round
        if status.HasField("current_round") and current.height == height:
            assert current.proposer_id == f"validator-{index}", current
            seen.add(int(current.slot))
        return len(seen) >= rounds

    await eventually(
        proposed,
        timeout_s=30 * cluster.leader_timeout_s,
        interval_s=0.2,
        what=f"validator-{index} proposing height {height} in {rounds} rounds",
    )
    return seen


async def ready(cluster: ValidatorCluster, indices: list[int]) -> None:
    """Waits until every validator named serves its chain."""
    for index in indices:
        async with cluster.stubs(index) as stubs:
            await wait_for(stubs.ready, timeout_s=90, interval_s=0.2)


async def test_validators_survive_one_kill_stop_at_two_and_agree_after_return(
    settings: Settings, tmp_path: Path
) -> None:
    cluster = ValidatorCluster(settings, tmp_path / "chain")
    cluster.start_all()
    try:
        await ready(cluster, [0, 1, 2])
        first = await anchor(cluster, 0)
        assert len(await final_on(cluster, [0, 1, 2], first)) == 1  # one block, everywhere

        # One validator killed: the two others keep finalising blocks.
        cluster.kill(0)
        for _ in range(2):
            session = await anchor(cluster, 1)
            assert len(await final_on(cluster, [1, 2], session)) == 1

        # Two killed: the last one alone finalises nothing, however long it tries.
        cluster.kill(1)
        stalled_at = await tip(cluster, 2)
        waiting = await anchor(cluster, 2)
        tried = await proposals_in_rounds(cluster, 2, stalled_at[0] + 1, 3)
        assert len(tried) >= 3
        assert await tip(cluster, 2) == stalled_at
        assert not (await anchoring(cluster, 2, waiting)).final

        # One returns: it catches up, and the chain resumes with the waiting anchor.
        cluster.start(0)
        await ready(cluster, [0])
        assert len(await final_on(cluster, [0, 2], waiting)) == 1
        # The third returns: all three agree on every block up to the same tip.
        cluster.start(1)
        await ready(cluster, [1])
        last = await anchor(cluster, 1)
        assert len(await final_on(cluster, [0, 1, 2], last)) == 1
        tips = {await tip(cluster, i) for i in range(3)}
        assert len(tips) == 1
        height = tips.pop()[0]
        chains = [await block_hashes(cluster, i, height) for i in range(3)]
        assert chains[0] == chains[1] == chains[2]
        assert len(chains[0]) == height + 1 >= 5
    finally:
        cluster.stop_all()

    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        settings.mongodb_uri, tz_aware=True
    )
    try:
        for index in range(3):
            report = await verify_chain(
                Repository(client[cluster.database], collection_prefix(index))
            )
            assert report.ok, report.describe()
            assert report.tip_height == height
    finally:
        await client.close()


async def test_a_restarted_validator_catches_up_many_blocks(
    settings: Settings, tmp_path: Path
) -> None:
    cluster = ValidatorCluster(settings, tmp_path / "chain")
    cluster.start_all()
    try:
        await ready(cluster, [0, 1, 2])
        cluster.kill(2)
        sessions = [await anchor(cluster, i % 2) for i in range(6)]
        for session in sessions:
            await final_on(cluster, [0, 1], session)
        behind = await tip(cluster, 0)
        cluster.start(2)
        await ready(cluster, [2])
        await wait_for(lambda: _at_least(cluster, 2, behind[0]), timeout_s=60)
        assert await block_hashes(cluster, 2, behind[0]) == await block_hashes(
            cluster, 0, behind[0]
        )
    finally:
        cluster.stop_all()


async def _at_least(cluster: ValidatorCluster, index: int, height: int) -> bool:
    return (await tip(cluster, index))[0] >= height
