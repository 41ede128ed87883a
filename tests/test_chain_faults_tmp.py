import asyncio, time
from lucid.blockchain.v1 import blockchain_pb2 as pb
from tests.chain_cluster import ValidatorCluster
from tests.chain_support import wait_for, anchor_request

async def test_three(settings, tmp_path):
    c = ValidatorCluster(settings, tmp_path / "chain")
    c.start_all()
    try:
        for i in range(3):
            async with c.stubs(i) as s:
                await wait_for(s.ready, timeout_s=60)
        async with c.stubs(0, "sessions") as s:
            a = await s.anchoring.AnchorSession(anchor_request())
            sid = a.anchoring.session_id
        for i in range(3):
            async with c.stubs(i, "sessions") as s:
                async def done():
                    r = await s.anchoring.GetSessionAnchoring(__import__('lucid.blockchain.v1.anchoring_pb2', fromlist=['x']).GetSessionAnchoringRequest(session_id=sid))
                    return r if r.anchoring.final else None
                r = await wait_for(done, timeout_s=30)
                print(i, r.anchoring.block_height, r.anchoring.block_hash)
    finally:
        c.stop_all()
        for i in range(3):
            open(f"/tmp/chainplay/v{i}.log","w").write(c.log(i))
