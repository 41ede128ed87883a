"""The seed's phase-4 checkpoint: everything together, over real gRPC (mTLS) and through
the Envoy edge, against ``lucid up`` (every cluster, three validators, three node
agents, the TRON devnet as real processes):
sign in with a fresh TRON key (TIP-191, through the edge) → create and start an RDP
server (the rdp cluster's real xrdp) → a real recorded desktop session (xfreerdp logs
in and types) → its Merkle root anchored in a final block, every chunk proof verifying
against the trust anchor → the dev node agents earn work credits → a payout to a dev
node confirmed (solid) on the local TRON devnet → the admin rpcs the console uses show
the session, its anchor, the nodes and their credits, and the payout (over gRPC and
through the edge), and refuse a plain user.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from tronpy import Tron
from tronpy.keys import PrivateKey
from tronpy.providers import HTTPProvider

from lucid.admin.grantcli import grant
from lucid.admin.v1 import admin_pb2, operations_pb2, operations_pb2_grpc
from lucid.blockchain.v1 import anchoring_pb2, anchoring_pb2_grpc
from lucid.lib import merkle
from lucid.lib.chunkproof import failed, verify_chunk_proof
from lucid.nodes.v1 import nodes_pb2, nodes_pb2_grpc, poot_pb2, poot_pb2_grpc
from lucid.rdp.v1 import rdp_pb2, rdp_pb2_grpc, session_pb2, session_pb2_grpc
from lucid.runtime.chaintrust import fetch_anchor
from lucid.runtime.config import Settings
from lucid.sessions.v1 import chunks_pb2, chunks_pb2_grpc, sessions_pb2, sessions_pb2_grpc
from lucid.supervisor import devnodes
from lucid.supervisor.demopay import AMOUNT_MICROS, pay_a_dev_node
from tests.auth_support import address_of, sign
from tests.rdpkit import rdp_client
from tests.support import bearer, https_client, operator_channel
from tests.upkit import Up, lucid_up
from tests.waiting import eventually

pytestmark = pytest.mark.slow

TYPED = "phase four"
SEGMENTS = 3
"""Desktop segments (2 s each) recorded before the session ends."""

Metadata = tuple[tuple[str, str], ...]


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with lucid_up(tmp_path_factory.mktemp("phase4-var")) as running:
        yield running


async def edge_login(http: Any, edge: str, key: PrivateKey) -> dict[str, Any]:
    """Challenge → TIP-191 signature → tokens, through the edge's REST routes."""
    address = address_of(key)
    async with http.post(f"{edge}/api/v1/auth/challenge", json={"tron_address": address}) as r:
        assert r.status == 200, await r.text()
        challenge = await r.json()
    login = {"tron_address": address, "message": challenge["message"]}
    login["signature"] = sign(key, challenge["message"])
    async with http.post(f"{edge}/api/v1/auth/login", json=login) as r:
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
    assert body["user"]["tron_address"] == address
    return body


async def edge_get(http: Any, url: str, token: str) -> dict[str, Any]:
    """A GET through the edge as ``token``; the JSON body of its 200."""
    async with http.get(url, headers={"authorization": f"Bearer {token}"}) as r:
        assert r.status == 200, (url, r.status, await r.text())
        body: dict[str, Any] = await r.json()
    return body


async def dev_node_address(settings: Settings) -> str:
    """The TRON address of ``dev-node-1`` (as its operator sees it)."""
    token = (devnodes.agents_dir(settings) / "token").read_text().strip()
    async with operator_channel(settings, "nodes") as channel:
        listed = await nodes_pb2_grpc.NodeServiceStub(channel).ListNodes(
            nodes_pb2.ListNodesRequest(), metadata=bearer(token)
        )
    (node,) = [n for n in listed.nodes if n.name == devnodes.AGENTS[0]]
    assert node.node_address
    return str(node.node_address)


async def record_desktop(settings: Settings, md: Metadata, tmp_path: Path) -> tuple[str, str]:
    """Starts an RDP server, logs a real client in, types, ends the session; the server
    and session ids."""
    async with (
        operator_channel(settings, "rdp") as rdp_channel,
        operator_channel(settings, "sessions") as sessions_channel,
    ):
        servers = rdp_pb2_grpc.RdpServerServiceStub(rdp_channel)
        rdp_sessions = session_pb2_grpc.RdpSessionServiceStub(rdp_channel)
        sessions = sessions_pb2_grpc.SessionServiceStub(sessions_channel)
        server = (
            await servers.CreateServer(rdp_pb2.CreateServerRequest(name="phase 4"), metadata=md)
        ).server
        started = await servers.StartServer(
            rdp_pb2.StartServerRequest(server_id=server.server_id), metadata=md
        )
        assert started.result.server.state == rdp_pb2.SERVER_STATE_RUNNING
        session = (
            await rdp_sessions.CreateRdpSession(
                session_pb2.CreateRdpSessionRequest(server_id=server.server_id), metadata=md
            )
        ).session
        recording = (
            await sessions.GetSession(
                sessions_pb2.GetSessionRequest(session_id=session.session_id), metadata=md
            )
        ).session
        assert recording.state == sessions_pb2.SESSION_STATE_RECORDING
        connected = await rdp_sessions.ConnectRdpSession(
            session_pb2.ConnectRdpSessionRequest(session_id=session.session_id), metadata=md
        )
        info = connected.connection_info
        assert info.server_port == server.port

        async def segments(at_least: int) -> bool:
            reply = await sessions.GetSession(
                sessions_pb2.GetSessionRequest(session_id=session.session_id), metadata=md
            )
            return reply.session.statistics.chunk_count >= at_least

        async with rdp_client(
            info.server_ip, info.server_port, connected.username, connected.password,
            tmp_path / "client.log",
        ) as client:  # fmt: skip
            await eventually(
                lambda: segments(1), timeout_s=90, interval_s=0.3, what="a desktop segment"
            )
            await asyncio.to_thread(client.xdotool, "mousemove", "200", "200")
            await asyncio.to_thread(client.xdotool, "type", "--delay", "40", TYPED)
            await eventually(
                lambda: segments(SEGMENTS), timeout_s=60, interval_s=0.3, what="more segments"
            )
            await rdp_sessions.TerminateRdpSession(
                session_pb2.TerminateRdpSessionRequest(session_id=session.session_id),
                metadata=md,
            )
        await servers.StopServer(
            rdp_pb2.StopServerRequest(server_id=server.server_id, force=True), metadata=md
        )
    return server.server_id, session.session_id


async def test_phase4_checkpoint(up: Up, tmp_path: Path) -> None:
    settings = up.settings
    edge = f"https://localhost:{settings.edge_port}"
    key = PrivateKey.random()
    async with https_client(settings) as http:
        # 1. sign in through the edge with a fresh TRON key
        body = await edge_login(http, edge, key)
        user_id, token = body["user"]["user_id"], body["tokens"]["access_token"]
        md = bearer(token)

        # 2, 3. an RDP server of the rdp cluster, a real desktop recorded while a client types
        server_id, session_id = await record_desktop(settings, md, tmp_path)
        listed = await edge_get(http, f"{edge}/api/v1/rdp/servers", token)
        assert server_id in {s["server_id"] for s in listed["servers"]}

        # 4. anchored in a final block; every chunk's proof verifies against the trust anchor
        async with operator_channel(settings, "sessions") as sessions_channel:
            sessions = sessions_pb2_grpc.SessionServiceStub(sessions_channel)
            chunks_stub = chunks_pb2_grpc.ChunkServiceStub(sessions_channel)

            async def completed() -> sessions_pb2.Session | None:
                reply = await sessions.GetSession(
                    sessions_pb2.GetSessionRequest(session_id=session_id), metadata=md
                )
                assert reply.session.state != sessions_pb2.SESSION_STATE_FAILED, reply.session
                done = reply.session.state == sessions_pb2.SESSION_STATE_COMPLETED
                return reply.session if done else None

            done = await eventually(completed, timeout_s=90, interval_s=0.3, what="anchored")
            assert done.anchoring.final and done.anchoring.block_height > 0
            chunks = (
                await chunks_stub.ListChunks(
                    chunks_pb2.ListChunksRequest(session_id=session_id), metadata=md
                )
            ).chunks
            assert len(chunks) == done.statistics.chunk_count >= SEGMENTS
            leaves = (merkle.leaf_hash(bytes.fromhex(c.merkle_hash)) for c in chunks)
            assert merkle.root(leaves).hex() == done.merkle_root
            anchor = await fetch_anchor(settings, f"{settings.host}:{settings.port('blockchain')}")
            assert anchor.validator_count == 3
            for chunk in chunks:
                proof = (
                    await chunks_stub.GetChunkProof(
                        chunks_pb2.GetChunkProofRequest(
                            session_id=session_id, chunk_id=chunk.chunk_id
                        ),
                        metadata=md,
                    )
                ).proof
                assert not failed(verify_chunk_proof(proof, anchor=anchor))
        async with operator_channel(settings, "blockchain") as chain_channel:
            verified = await anchoring_pb2_grpc.AnchoringServiceStub(chain_channel).VerifyAnchoring(
                anchoring_pb2.VerifyAnchoringRequest(
                    session_id=session_id, merkle_root=done.merkle_root
                ),
                metadata=md,
            )
        assert verified.verified and verified.block_height == done.anchoring.block_height
        shown = await edge_get(http, f"{edge}/api/v1/sessions/{session_id}", token)
        assert shown["session"]["merkle_root"] == done.merkle_root

        # 5. the dev node agents earn work credits
        line = await eventually(
            lambda: devnodes.credits_line(settings), timeout_s=90, interval_s=1.0, what="credits"
        )
        assert all(name in line for name in devnodes.AGENTS)

        # 6. a payout to a dev node, confirmed on the local TRON devnet
        tron = Tron(HTTPProvider(f"http://127.0.0.1:{settings.devnet_tron_port}"))
        usdt = await asyncio.to_thread(tron.get_contract, settings.tron_usdt_contract)
        node_address = await dev_node_address(settings)
        before = await asyncio.to_thread(usdt.functions.balanceOf, node_address)
        said: list[str] = []
        assert await pay_a_dev_node(settings, said.append, timeout_s=120), said
        paid = re.search(r"at (T\w{33}) .*TRON tx ([0-9a-f]{64})$", said[-1])
        assert paid, said
        address, txid = paid.groups()
        assert address == node_address
        solid = await asyncio.to_thread(tron.get_solid_transaction_info, txid)
        assert solid["receipt"]["result"] == "SUCCESS", solid
        after = await asyncio.to_thread(usdt.functions.balanceOf, address)
        assert after - before == AMOUNT_MICROS

        # 7. the admin console's rpcs show all of it — not to a plain user
        async with operator_channel(settings, "admin") as admin_channel:
            payouts = operations_pb2_grpc.AdminPayoutServiceStub(admin_channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await payouts.ListPayouts(operations_pb2.ListPayoutsRequest(), metadata=md)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            status, text = await grant(settings, address_of(key), "super_admin")
            assert status == 0, text
            admin_token = (await edge_login(http, edge, key))["tokens"]["access_token"]
            admin = bearer(admin_token)

            details = await operations_pb2_grpc.AdminSessionServiceStub(
                admin_channel
            ).GetSessionDetails(
                operations_pb2.GetSessionDetailsRequest(session_id=session_id), metadata=admin
            )
            assert details.session.user_id == user_id
            assert details.recording_state == "completed"
            assert details.merkle_root == done.merkle_root
            assert details.anchor_block_height == done.anchoring.block_height
            assert details.anchor_tx_hash == done.anchoring.tx_hash
            assert details.chunk_count == len(chunks)
            chain = await operations_pb2_grpc.AdminBlockchainServiceStub(
                admin_channel
            ).GetBlockchainStatus(operations_pb2.GetBlockchainStatusRequest(), metadata=admin)
            assert chain.status.local_height >= done.anchoring.block_height

            nodes = await operations_pb2_grpc.AdminNodeServiceStub(admin_channel).ListNodes(
                operations_pb2.ListNodesRequest(), metadata=admin
            )
            dev = {n.hostname: n for n in nodes.nodes if n.hostname in devnodes.AGENTS}
            assert set(dev) == set(devnodes.AGENTS), nodes
            assert {n.state for n in dev.values()} == {admin_pb2.ADMIN_NODE_STATE_ONLINE}
            pool_id = await devnodes.dev_pool(settings)
            assert {n.pool_id for n in dev.values()} == {pool_id}

            admin_payouts = await payouts.ListPayouts(
                operations_pb2.ListPayoutsRequest(), metadata=admin
            )
            ours = [p for p in admin_payouts.payouts if p.tx_hash == txid]
            assert len(ours) == 1, admin_payouts
            assert ours[0].state == operations_pb2.PAYOUT_STATE_COMPLETED
            assert ours[0].amount_micros == AMOUNT_MICROS
            assert ours[0].recipient_address == address
            assert ours[0].node_id == dev[devnodes.AGENTS[0]].node_id

        async with operator_channel(settings, "nodes") as nodes_channel:
            credits = poot_pb2_grpc.WorkCreditServiceStub(nodes_channel)
            for node in dev.values():
                report = await credits.GetWorkCredits(
                    poot_pb2.GetWorkCreditsRequest(node_id=node.node_id), metadata=admin
                )
                assert report.credits > 0, (node.hostname, report)

        # … and through the edge, as the console calls them
        shown = await edge_get(
            http, f"{edge}/api/v1/admin/sessions/{session_id}/details", admin_token
        )
        assert shown["merkle_root"] == done.merkle_root
        assert int(shown["anchor_block_height"]) == done.anchoring.block_height
        shown = await edge_get(http, f"{edge}/api/v1/admin/payouts", admin_token)
        assert txid in {p.get("tx_hash") for p in shown["payouts"]}
        shown = await edge_get(http, f"{edge}/api/v1/admin/nodes", admin_token)
        assert set(devnodes.AGENTS) <= {n["hostname"] for n in shown["nodes"]}
        node_id = dev[devnodes.AGENTS[0]].node_id
        shown = await edge_get(http, f"{edge}/api/v1/nodes/{node_id}/work-credits", admin_token)
        assert float(shown["credits"]) > 0
