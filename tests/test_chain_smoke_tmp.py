import asyncio
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.common.v1 import access_pb2
from tests.chain_support import ChainStubs, data_body, signed, wait_for, anchor_request
from tests.support import bearer

async def test_smoke(mesh):
    await mesh.start("blockchain")
    async with mesh.channel("blockchain") as ch:
        s = ChainStubs(ch)
        await wait_for(s.ready, timeout_s=30)
        info = await s.chain.GetChainInfo(pb.GetChainInfoRequest())
        print(info)
        token = await mesh.token(role=access_pb2.ROLE_SUPER_ADMIN)
        r = await s.chain.SubmitTransaction(pb.SubmitTransactionRequest(transaction=signed(data_body())), metadata=bearer(token))
        print(r.tx_hash, r.status)
        async def confirmed():
            t = await s.chain.GetTransaction(pb.GetTransactionRequest(tx_hash=r.tx_hash, include_proof=True), metadata=bearer(token))
            return t if t.transaction.status == pb.TRANSACTION_STATUS_CONFIRMED else None
        t = await wait_for(confirmed, timeout_s=20)
        print(t)
    async with mesh.channel("blockchain", identity="sessions") as ch:
        s = ChainStubs(ch)
        req = anchor_request()
        a = await s.anchoring.AnchorSession(req)
        print(a)
