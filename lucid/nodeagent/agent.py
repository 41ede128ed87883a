"""The node agent's life: keys, probe endpoint, registration, start, heartbeats, proofs.

On first start it makes its keys (sealed), serves its probe endpoint, pays its
stake (100 USDT from the node's TRON address to the stake address, on the TRON
network; ``lucid.nodeagent.stake``) and waits until it is solid, asks the nodes
cluster for a registration challenge, signs it with the node's TRON key (TIP-191)
and registers (hardware from psutil, its Ed25519 key, its port, the pool to join,
the stake transaction). It then starts its node and, until stopped, sends a heartbeat
with a resource sample every ``heartbeat_s`` and, once per 120 s task slot, an
uptime beacon signed with its Ed25519 key (SubmitWorkProof; the cluster checks
it against the registered key and puts it on the chain). It keeps the data a
heartbeat reply gives it (``lucid.nodeagent.storage``) and answers the slot's
random-range storage challenge with a signed storage proof, and checks the
signatures of the slot's validation task (other nodes' proofs, decoys among them)
with a signed validation proof of its verdicts, each verdict also a signed PoOT
vote on the proof's node (``lucid.lib.pootvotes``) the cluster puts on the chain. A
restarted agent keeps its node. The access token is re-read from its file for every call, so
whoever holds the operator's session can refresh it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import nacl.exceptions
import nacl.signing

from lucid.lib import pootvotes, taskproofs
from lucid.lib.clock import Clock, SystemClock
from lucid.lib.sealing import Sealer
from lucid.nodeagent import keys as keyfiles
from lucid.nodeagent.metrics import Sampler, hardware
from lucid.nodeagent.probe import ProbeServer
from lucid.nodeagent.stake import StakePayer
from lucid.nodeagent.storage import KeptData
from lucid.nodes.v1 import nodes_pb2 as npb
from lucid.nodes.v1 import nodes_pb2_grpc, poot_pb2, poot_pb2_grpc
from lucid.runtime import tls
from lucid.runtime.config import Settings
from lucid.runtime.errors import ErrorDetails
from lucid.runtime.identity import OPERATOR

log = logging.getLogger("lucid.nodeagent")

STAKE_MICROS = 100_000_000
"""The stake an agent pays and declares (the least spec 05 §4 allows: 100 USDT)."""
CALL_TIMEOUT_S = 10.0
STAKE_UNCONFIRMED = "LUCID_ERR_4601"
CHALLENGE_INVALID = "LUCID_ERR_2011"


@dataclass(frozen=True)
class AgentOptions:
    """How an agent runs."""

    name: str
    state_dir: Path
    token_file: Path
    pool_id: str = ""
    port: int = 0
    heartbeat_s: float = 30.0
    bandwidth_mbps: int = 100
    stake_tx_hash: str = ""
    """A stake transaction paid already; empty: the agent pays its stake itself."""


def _verifies(item: npb.ValidationItem) -> bool:
    """Whether a validation item's Ed25519 signature verifies."""
    try:
        nacl.signing.VerifyKey(bytes.fromhex(item.public_key)).verify(
            item.message, bytes.fromhex(item.signature)
        )
    except (nacl.exceptions.BadSignatureError, ValueError):
        return False
    return True


class NodeAgent:
    """One node's agent."""

    def __init__(
        self, settings: Settings, options: AgentOptions, clock: Clock | None = None
    ) -> None:
        self.settings = settings
        self.options = options
        self.clock = clock or SystemClock()
        self.probe = ProbeServer(settings, options.port)
        self.node_id = ""
        self.pool_id = options.pool_id
        self._channel: grpc.aio.Channel | None = None
        self._keys: keyfiles.AgentKeys | None = None
        self.storage = KeptData(options.state_dir)
        self._stored: set[int] = set()
        self._validated: set[int] = set()

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        token = self.options.token_file.read_text().strip()
        return (("authorization", f"Bearer {token}"),)

    def _open(self) -> grpc.aio.Channel:
        credentials = tls.channel_credentials(tls.CertPaths.of(self.settings.certs_dir, OPERATOR))
        return grpc.aio.secure_channel(
            f"{self.settings.host}:{self.settings.port('nodes')}",
            credentials,
            options=[("grpc.ssl_target_name_override", tls.dns_name("nodes"))],
        )

    @property
    def keys(self) -> keyfiles.AgentKeys:
        """The node's keys (loaded by ``setup``)."""
        assert self._keys is not None
        return self._keys

    async def setup(self) -> str:
        """Keys, probe endpoint, registration and start; the node id."""
        sealer = Sealer(self.settings.sealing_passphrase())
        self._keys = keyfiles.load_or_create(self.options.state_dir, sealer)
        self.node_id, port = keyfiles.load_node(self.options.state_dir)
        if port:
            self.probe = ProbeServer(self.settings, port)  # the port it registered with
        await self.probe.start()
        self._channel = self._open()
        nodes = nodes_pb2_grpc.NodeServiceStub(self._channel)
        if not self.node_id:
            self.node_id = await self._register(nodes)
            keyfiles.save_node(self.options.state_dir, self.node_id, self.probe.port)
        node = (
            await nodes.GetNode(
                npb.GetNodeRequest(node_id=self.node_id),
                metadata=self._metadata(),
                timeout=CALL_TIMEOUT_S,
            )
        ).node
        self.pool_id = node.pool_id
        result = (
            await nodes.StartNode(
                npb.StartNodeRequest(node_id=self.node_id),
                metadata=self._metadata(),
                timeout=CALL_TIMEOUT_S,
            )
        ).result
        log.info("node %s: %s", self.node_id, result.message)
        return self.node_id

    async def _stake(self) -> str:
        """The stake transaction: the one given, or one this node pays (solid)."""
        if self.options.stake_tx_hash:
            return self.options.stake_tx_hash
        payer = StakePayer(self.settings, self.keys, self.options.state_dir)
        try:
            return await payer.pay(STAKE_MICROS)
        finally:
            await payer.close()

    async def _register(self, nodes: nodes_pb2_grpc.NodeServiceStub) -> str:
        stake_tx = await self._stake()
        challenge: npb.IssueRegistrationChallengeResponse | None = None
        while True:
            if challenge is None:
                challenge = await nodes.IssueRegistrationChallenge(
                    npb.IssueRegistrationChallengeRequest(node_address=self.keys.address),
                    metadata=self._metadata(),
                    timeout=CALL_TIMEOUT_S,
                )
            try:
                registered = await nodes.RegisterNode(
                    self._application(challenge, stake_tx),
                    metadata=self._metadata(),
                    timeout=CALL_TIMEOUT_S,
                )
            except grpc.aio.AioRpcError as exc:
                reason = ErrorDetails.from_rpc_error(exc)
                if reason.reason == STAKE_UNCONFIRMED:  # the open challenge waits for it
                    log.info("stake %s not confirmed yet: %s", stake_tx, reason.message)
                    await asyncio.sleep(min(reason.retry_after_s or 5.0, 30.0))
                    continue
                if reason.reason == CHALLENGE_INVALID:  # it expired meanwhile
                    challenge = None
                    continue
                raise
            log.info("registered node %s (%s)", registered.node.node_id, self.keys.address)
            return str(registered.node.node_id)

    def _application(
        self, challenge: npb.IssueRegistrationChallengeResponse, stake_tx: str
    ) -> npb.RegisterNodeRequest:
        return npb.RegisterNodeRequest(
            registration_id=challenge.registration_id,
            signature=self.keys.sign_message(challenge.message),
            name=self.options.name,
            node_type=npb.NODE_TYPE_WORKER,
            hardware_info=hardware(self.options.state_dir, self.options.bandwidth_mbps),
            initial_pool_id=self.options.pool_id,
            port=self.probe.port,
            capabilities=["relay", "validation"],
            node_public_key=self.keys.public_key_hex,
            stake_amount_micros=STAKE_MICROS,
            stake_tx_hash=stake_tx,
        )

    async def heartbeat(self, sampler: Sampler) -> None:
        """One heartbeat with a resource sample; keeps data it is given and answers the
        slot's storage challenge with a storage proof."""
        assert self._channel is not None
        reply: npb.SendHeartbeatResponse = await nodes_pb2_grpc.NodeServiceStub(
            self._channel
        ).SendHeartbeat(
            npb.SendHeartbeatRequest(
                node_id=self.node_id,
                sample=sampler.sample(),
                held_assignment_id=self.storage.assignment_id,
            ),
            metadata=self._metadata(),
            timeout=CALL_TIMEOUT_S,
        )
        if reply.HasField("storage_assignment"):
            given = reply.storage_assignment
            self.storage.keep(given.assignment_id, given.data)
            log.info("keeping %d bytes of assignment %s", len(given.data), given.assignment_id)
        if reply.HasField("storage_challenge") and reply.storage_challenge.slot not in self._stored:
            self._stored.add(reply.storage_challenge.slot)  # one answer a challenge takes
            await self.prove_storage(reply.storage_challenge)
        task = reply.validation_task
        if reply.HasField("validation_task") and task.slot not in self._validated:
            self._validated.add(task.slot)
            await self.prove_validation(task)

    async def prove_validation(self, task: npb.ValidationTask) -> poot_pb2.SubmitWorkProofResponse:
        """Checks each signature of a validation task: the slot's validation proof."""
        valid = [i.item_id for i in task.items if _verifies(i)]
        return await self._submit(
            task.slot,
            poot_pb2.TASK_TYPE_VALIDATION_SIGNATURE,
            len(task.items),
            valid_item_ids=valid,
            votes=[self._vote(task.slot, i, i.item_id in valid) for i in task.items],
        )

    def _vote(self, slot: int, item: npb.ValidationItem, approve: bool) -> poot_pb2.ItemVote:
        """The node's signed PoOT vote on an item: its verdict on the proof's node."""
        vote = pootvotes.poot_vote(
            voter_id=self.node_id,
            public_key=self.keys.public_key_hex,
            target_id=item.node_id,
            slot=slot,
            approve=approve,
            proof_signature=item.signature,
        )
        return poot_pb2.ItemVote(
            item_id=item.item_id, signature=pootvotes.sign(vote, self.keys.signing)
        )

    async def prove_storage(
        self, challenge: npb.StorageChallenge
    ) -> poot_pb2.SubmitWorkProofResponse:
        """Answers a storage challenge from the kept data: the slot's storage proof."""
        return await self._submit(
            challenge.slot,
            poot_pb2.TASK_TYPE_STORAGE_PROOF,
            1,
            storage_answer=self.storage.answer(challenge),
        )

    async def prove_uptime(self, slot: int) -> poot_pb2.SubmitWorkProofResponse:
        """The uptime beacon of a slot, signed and submitted."""
        return await self._submit(slot, poot_pb2.TASK_TYPE_UPTIME_BEACON, taskproofs.SLOT_S)

    async def _submit(
        self,
        slot: int,
        task_type: int,
        value: int,
        *,
        storage_answer: str = "",
        valid_item_ids: list[str] | None = None,
        votes: list[poot_pb2.ItemVote] | None = None,
    ) -> poot_pb2.SubmitWorkProofResponse:
        """A task proof of a slot, signed with the node's Ed25519 key and submitted."""
        assert self._channel is not None
        proof = taskproofs.task_proof(
            node_id=self.node_id,
            pool_id=self.pool_id,
            slot=slot,
            task_type=task_type,
            value=value,
            public_key=self.keys.public_key_hex,
        )
        response: poot_pb2.SubmitWorkProofResponse = await poot_pb2_grpc.WorkCreditServiceStub(
            self._channel
        ).SubmitWorkProof(
            poot_pb2.SubmitWorkProofRequest(
                node_id=self.node_id,
                pool_id=self.pool_id,
                slot=slot,
                task_type=task_type,  # type: ignore[arg-type]
                value=value,
                signature=taskproofs.sign(proof, self.keys.signing),
                storage_answer=storage_answer,
                valid_item_ids=valid_item_ids or [],
                votes=votes or [],
            ),
            metadata=self._metadata(),
            timeout=CALL_TIMEOUT_S,
        )
        return response

    async def run(self, stop: asyncio.Event) -> None:
        """Serves until ``stop`` is set."""
        try:
            await self.setup()
            sampler = Sampler(self.options.state_dir)
            proved = -1
            while not stop.is_set():
                await self._quietly(self.heartbeat, sampler)
                slot = taskproofs.slot_of(self.clock.now())
                if slot != proved and await self._quietly(self.prove_uptime, slot):
                    proved = slot
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.options.heartbeat_s)
        finally:
            await self.close()

    async def _quietly(self, call: Callable[..., object], *args: object) -> bool:
        """Runs one periodic call; a failure is logged and retried next round."""
        try:
            await call(*args)  # type: ignore[misc]
        except grpc.aio.AioRpcError as exc:
            log.warning("%s failed: %s %s", call.__name__, exc.code().name, exc.details())
            return False
        return True

    async def close(self) -> None:
        """Stops the probe endpoint and closes the channel."""
        await self.probe.stop()
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


async def run_agent(settings: Settings, options: AgentOptions) -> None:
    """``lucid node-agent``: runs until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await NodeAgent(settings, options).run(stop)
