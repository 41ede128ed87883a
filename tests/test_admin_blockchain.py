"""GetBlockchainStatus and GetAnchoringQueue over gRPC: the console reads the real
chain's status (heights, sync) and its anchorings as the chain itself reports them;
users and node operators are refused."""

from __future__ import annotations

import grpc

from lucid.admin.v1 import admin_pb2, operations_pb2, operations_pb2_grpc
from lucid.blockchain.v1 import blockchain_pb2, blockchain_pb2_grpc
from lucid.common.v1 import access_pb2
from tests.admin_support import refused
from tests.chain_support import ChainStubs, anchor_request, wait_for
from tests.support import Mesh, bearer, details


async def test_status_of_the_real_chain(mesh: Mesh) -> None:
    await mesh.start("blockchain")
    await mesh.start("admin")
    try:
        await _check_status(mesh)
    finally:
        await mesh.stop("admin")


async def _check_status(mesh: Mesh) -> None:
    md = bearer(await mesh.token(role=access_pb2.ROLE_ADMIN))
    async with mesh.channel("blockchain") as chain_channel:
        chain = blockchain_pb2_grpc.BlockchainServiceStub(chain_channel)
        before = await chain.GetChainStatus(blockchain_pb2.GetChainStatusRequest())
        async with mesh.channel("admin") as channel:
            reply = await operations_pb2_grpc.AdminBlockchainServiceStub(
                channel
            ).GetBlockchainStatus(operations_pb2.GetBlockchainStatusRequest(), metadata=md)
        after = await chain.GetChainStatus(blockchain_pb2.GetChainStatusRequest())
    status = reply.status
    assert status.sync_status == admin_pb2.SYNC_STATUS_SYNCED
    assert before.current_height <= status.local_height <= after.current_height
    assert before.network_height <= status.network_height <= after.network_height
    assert before.latest_block_time.seconds <= status.last_block_time.seconds
    async with mesh.channel("admin") as channel:
        stub = operations_pb2_grpc.AdminBlockchainServiceStub(channel)
        user = bearer(await mesh.token(role=access_pb2.ROLE_USER))
        error = await refused(
            stub.GetBlockchainStatus(operations_pb2.GetBlockchainStatusRequest(), metadata=user)
        )
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_anchoring_queue_of_the_real_chain(mesh: Mesh) -> None:
    await mesh.start("blockchain")
    async with mesh.channel("blockchain") as channel:
        await wait_for(ChainStubs(channel).ready, timeout_s=60)
    await mesh.start("admin")
    try:
        await _check_queue(mesh)
    finally:
        await mesh.stop("admin")


async def _check_queue(mesh: Mesh) -> None:
    request = anchor_request()
    async with mesh.channel("blockchain", "sessions") as channel:
        await ChainStubs(channel).anchoring.AnchorSession(request)
    md = bearer(await mesh.token(role=access_pb2.ROLE_ADMIN))
    async with mesh.channel("admin") as channel:
        stub = operations_pb2_grpc.AdminBlockchainServiceStub(channel)

        async def completed() -> operations_pb2.AnchoringOperation | None:
            reply = await stub.GetAnchoringQueue(
                operations_pb2.GetAnchoringQueueRequest(
                    state=operations_pb2.ANCHORING_STATE_COMPLETED, page_size=1000
                ),
                metadata=md,
            )
            found = [op for op in reply.operations if request.session_id in op.session_ids]
            return found[0] if found else None

        done = await wait_for(completed, timeout_s=30)
        assert done.block_height > 0 and len(done.tx_hash) == 64
        waiting = await stub.GetAnchoringQueue(
            operations_pb2.GetAnchoringQueueRequest(), metadata=md
        )
        assert request.session_id not in {s for op in waiting.operations for s in op.session_ids}
        for role in (access_pb2.ROLE_USER, access_pb2.ROLE_NODE_OPERATOR):
            user = bearer(await mesh.token(role=role))
            error = await refused(
                stub.GetAnchoringQueue(operations_pb2.GetAnchoringQueueRequest(), metadata=user)
            )
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_resync_is_carried_out_by_the_chain(mesh: Mesh) -> None:
    await mesh.start("blockchain")
    async with mesh.channel("blockchain") as channel:
        await wait_for(ChainStubs(channel).ready, timeout_s=60)
    await mesh.start("admin")
    try:
        await _check_resync(mesh)
    finally:
        await mesh.stop("admin")


async def _check_resync(mesh: Mesh) -> None:
    async with mesh.channel("blockchain") as chain_channel:
        chain = blockchain_pb2_grpc.BlockchainServiceStub(chain_channel)
        before = await chain.GetChainStatus(blockchain_pb2.GetChainStatusRequest())
    md = bearer(await mesh.token(role=access_pb2.ROLE_SUPER_ADMIN))
    async with mesh.channel("admin") as channel:
        stub = operations_pb2_grpc.AdminBlockchainServiceStub(channel)
        reply = await stub.ResyncBlockchain(
            operations_pb2.ResyncBlockchainRequest(from_height=0, reason="check"), metadata=md
        )
        assert reply.local_height >= before.current_height
        assert reply.network_height >= reply.local_height
        assert reply.message
        if before.validator_count <= 1:
            assert not reply.started and "no peers" in reply.message
        else:
            assert reply.started and "match the peers" in reply.message
        error = await refused(
            stub.ResyncBlockchain(
                operations_pb2.ResyncBlockchainRequest(from_height=reply.local_height + 2),
                metadata=md,
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(error).field_violations[0].field == "from_height"
        for role in (access_pb2.ROLE_USER, access_pb2.ROLE_NODE_OPERATOR, access_pb2.ROLE_ADMIN):
            user = bearer(await mesh.token(role=role))
            error = await refused(
                stub.ResyncBlockchain(operations_pb2.ResyncBlockchainRequest(), metadata=user)
            )
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
