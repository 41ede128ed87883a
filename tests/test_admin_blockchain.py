"""GetBlockchainStatus over gRPC: the console reads the real chain's status (heights,
sync) as the chain itself reports it; users are refused."""

from __future__ import annotations

import grpc

from lucid.admin.v1 import admin_pb2, operations_pb2, operations_pb2_grpc
from lucid.blockchain.v1 import blockchain_pb2, blockchain_pb2_grpc
from lucid.common.v1 import access_pb2
from tests.admin_support import refused
from tests.support import Mesh, bearer


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
