"""Test support for cluster 05: the nodes server on the in-process mesh (with the payments
cluster that verifies stakes), stubs, tokens, a real agent probe endpoint, and registering
nodes the way an agent does (a stake paid on the devnet, a signed challenge)."""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
import nacl.signing
from tronpy.keys import PrivateKey

from lucid.common.v1 import access_pb2
from lucid.lib import taskproofs
from lucid.lib.clock import Clock
from lucid.nodeagent.probe import ProbeServer
from lucid.nodes import app as nodes_app
from lucid.nodes import schema
from lucid.nodes.v1 import nodes_pb2 as npb
from lucid.nodes.v1 import nodes_pb2_grpc, payout_pb2_grpc, pool_pb2_grpc, poot_pb2, poot_pb2_grpc
from lucid.nodes.v1 import pool_pb2 as ppb
from lucid.runtime.datastores import Datastores
from lucid.runtime.server import ClusterApp, Runtime
from tests.chain_support import ChainStubs, wait_for
from tests.stake_support import (
    STAKE_MICROS,
    StakeNet,
    payments_up,
    serve_payments,
    session_net,
)
from tests.support import Mesh, bearer

GIB = 1024**3
Md = tuple[tuple[str, str], ...]


class OffsetClock:
    """The real clock moved forward by ``offset_s`` (time keeps flowing; tests jump it)."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset_s)

    def timestamp(self) -> float:
        return self.now().timestamp()

    def advance(self, seconds: float) -> None:
        self.offset_s += seconds


def hardware(cores: int = 4, storage_gb: int = 100, mbps: int = 100) -> npb.HardwareInfo:
    """Declared hardware."""
    return npb.HardwareInfo(
        cpu_cores=cores,
        memory_bytes=8 * GIB,
        storage_bytes=storage_gb * 10**9,
        network_interfaces=[npb.NetworkInterface(name="eth0", bandwidth_mbps=mbps)],
    )


@dataclass
class Operator:
    """A node operator: a user id and its access token."""

    user_id: str
    md: Md


@dataclass
class NodeKeys:
    """A node's two keys."""

    tron: PrivateKey = field(default_factory=PrivateKey.random)
    signing: nacl.signing.SigningKey = field(default_factory=nacl.signing.SigningKey.generate)

    @property
    def address(self) -> str:
        return str(self.tron.public_key.to_base58check_address())

    @property
    def public_hex(self) -> str:
        return bytes(self.signing.verify_key).hex()


@dataclass
class NodesKit:
    """Stubs on one channel to the nodes server, with tokens."""

    mesh: Mesh
    channel: grpc.aio.Channel
    probe_port: int
    admin: Md = ()
    stakes: StakeNet | None = None
    """Where node stakes are paid (the session's stake devnet unless given)."""
    payments_only_to_register: bool = False
    """Modules that keep the payments cluster down (payout handoffs must wait) bring it
    up only for each ``register``'s RegisterNode."""

    def pay_stake(self, keys: NodeKeys, amount_micros: int = STAKE_MICROS) -> str:
        """A solid stake paid by the node's TRON key; its txid."""
        return (self.stakes or session_net()).pay(keys.tron, amount_micros)

    @property
    def nodes(self) -> nodes_pb2_grpc.NodeServiceStub:
        return nodes_pb2_grpc.NodeServiceStub(self.channel)

    @property
    def pools(self) -> pool_pb2_grpc.PoolServiceStub:
        return pool_pb2_grpc.PoolServiceStub(self.channel)

    @property
    def poot(self) -> poot_pb2_grpc.PootServiceStub:
        return poot_pb2_grpc.PootServiceStub(self.channel)

    @property
    def payouts(self) -> payout_pb2_grpc.PayoutServiceStub:
        return payout_pb2_grpc.PayoutServiceStub(self.channel)

    @property
    def credits(self) -> poot_pb2_grpc.WorkCreditServiceStub:
        return poot_pb2_grpc.WorkCreditServiceStub(self.channel)

    async def operator(self, role: int = access_pb2.ROLE_NODE_OPERATOR) -> Operator:
        """A fresh KYC-verified operator."""
        user_id = str(uuid.uuid4())
        token = await self.mesh.token(
            role=role, kyc=access_pb2.KYC_STATUS_VERIFIED, user_id=user_id, ttl_s=3600
        )
        return Operator(user_id, bearer(token))

    async def pool(self, max_nodes: int = 0, name: str = "") -> ppb.Pool:
        """A new pool (as an admin)."""
        reply = await self.pools.CreatePool(
            ppb.CreatePoolRequest(name=name or f"pool-{secrets.token_hex(4)}", max_nodes=max_nodes),
            metadata=self.admin,
        )
        return reply.pool

    async def challenge(
        self, op: Operator, keys: NodeKeys
    ) -> npb.IssueRegistrationChallengeResponse:
        """IssueRegistrationChallenge for a node address."""
        reply: npb.IssueRegistrationChallengeResponse = await self.nodes.IssueRegistrationChallenge(
            npb.IssueRegistrationChallengeRequest(node_address=keys.address), metadata=op.md
        )
        return reply

    def register_request(
        self,
        challenge: npb.IssueRegistrationChallengeResponse,
        keys: NodeKeys,
        *,
        name: str = "",
        pool_id: str = "",
        hw: npb.HardwareInfo | None = None,
        port: int = 0,
        stake_tx: str = "",
        stake_micros: int = STAKE_MICROS,
    ) -> npb.RegisterNodeRequest:
        """A RegisterNode request signed by the node's TRON key, with a stake paid on the
        devnet by that key (unless ``stake_tx`` names one)."""
        return npb.RegisterNodeRequest(
            registration_id=challenge.registration_id,
            signature=keys.tron.sign_msg(challenge.message.encode()).hex(),
            name=name or f"node-{secrets.token_hex(4)}",
            node_type=npb.NODE_TYPE_WORKER,
            hardware_info=hw or hardware(),
            initial_pool_id=pool_id,
            port=port or self.probe_port,
            node_public_key=keys.public_hex,
            stake_amount_micros=stake_micros,
            stake_tx_hash=stake_tx or self.pay_stake(keys, stake_micros),
        )

    async def register(
        self, op: Operator, *, name: str = "", pool_id: str = "", keys: NodeKeys | None = None
    ) -> tuple[npb.Node, NodeKeys]:
        """A registered node (inactive) and its keys."""
        keys = keys or NodeKeys()
        challenge = await self.challenge(op, keys)
        request = self.register_request(challenge, keys, name=name, pool_id=pool_id)
        if not self.payments_only_to_register:
            reply = await self.nodes.RegisterNode(request, metadata=op.md)
            return reply.node, keys
        async with payments_up(self.mesh, self.stakes or session_net()):
            reply = await self.nodes.RegisterNode(request, metadata=op.md)
        return reply.node, keys

    async def active_node(self, op: Operator, *, pool_id: str = "") -> tuple[npb.Node, NodeKeys]:
        """A registered and started node."""
        node, keys = await self.register(op, pool_id=pool_id)
        started = await self.nodes.StartNode(
            npb.StartNodeRequest(node_id=node.node_id), metadata=op.md
        )
        assert started.result.state == npb.NODE_STATE_ACTIVE, started.result.message
        return started.result.node, keys

    def beacon(
        self,
        node: npb.Node,
        keys: NodeKeys,
        slot: int,
        *,
        signer: nacl.signing.SigningKey | None = None,
    ) -> poot_pb2.SubmitWorkProofRequest:
        """An uptime beacon of a slot, signed (by the node's key unless ``signer``)."""
        proof = taskproofs.task_proof(
            node_id=node.node_id,
            pool_id=node.pool_id,
            slot=slot,
            task_type=poot_pb2.TASK_TYPE_UPTIME_BEACON,
            value=taskproofs.SLOT_S,
            public_key=keys.public_hex,
        )
        return poot_pb2.SubmitWorkProofRequest(
            node_id=node.node_id,
            pool_id=node.pool_id,
            slot=slot,
            task_type=poot_pb2.TASK_TYPE_UPTIME_BEACON,
            value=taskproofs.SLOT_S,
            signature=taskproofs.sign(proof, signer or keys.signing),
        )


async def audit_events(mesh: Mesh, resource: str) -> list[dict[str, object]]:
    """The nodes cluster's audit events about one node, pool or payout, oldest first."""
    stores = Datastores(mesh.settings, mongo=True, redis=False)
    try:
        return (
            await stores.db[schema.AUDIT]
            .find({"resource": resource}, {"_id": 0})
            .sort("event_time", 1)
            .to_list(None)
        )
    finally:
        await stores.close()


async def serve_nodes(
    mesh: Mesh, clock: Clock | None = None, *, chain: bool = True, stakes: StakeNet | None = None
) -> None:
    """(Re)starts the nodes server (on ``clock`` if given), with the chain ready first and
    the payments cluster that verifies stakes (on ``stakes``, the session's stake devnet
    unless given)."""
    await serve_payments(mesh, stakes or session_net())
    if chain:
        await mesh.start("blockchain")
        async with mesh.channel("blockchain") as channel:
            await wait_for(ChainStubs(channel).ready, timeout_s=60)

    async def build(runtime: Runtime) -> ClusterApp:
        if clock is not None:
            runtime.clock = clock
        return await nodes_app.build(runtime)

    await mesh.stop("nodes")
    await mesh.start("nodes", build)


async def start_probe(mesh: Mesh) -> ProbeServer:
    """The agent's probe endpoint, in this process."""
    probe = ProbeServer(mesh.settings)
    await probe.start()
    return probe


@contextlib.asynccontextmanager
async def nodes_kit(
    mesh: Mesh,
    clock: Clock | None = None,
    *,
    chain: bool = True,
    stakes: StakeNet | None = None,
    probe: bool = True,
    payments_only_to_register: bool = False,
) -> AsyncIterator[NodesKit]:
    """A module's nodes server (see ``serve_nodes``), the agent's probe endpoint unless
    ``probe`` is off, and a kit with a super-admin token; all stopped afterwards."""
    await serve_nodes(mesh, clock, chain=chain, stakes=stakes)
    if payments_only_to_register:
        await mesh.stop("payments")
    server = await start_probe(mesh) if probe else None
    admin = bearer(await mesh.token(role=access_pb2.ROLE_SUPER_ADMIN, ttl_s=3600))
    try:
        async with mesh.channel("nodes") as channel:
            yield NodesKit(
                mesh,
                channel,
                server.port if server is not None else 0,
                admin,
                stakes=stakes,
                payments_only_to_register=payments_only_to_register,
            )
    finally:
        if server is not None:
            await server.stop()
        await mesh.stop("nodes")
