"""Three real ``lucid node-agent`` processes against the nodes cluster and the chain.

They pay their stakes on the devnet (100 USDT each, solid before they register) and
register with their TRON keys, their pool becomes active, their uptime beacons reach
the chain and their credits grow slot by slot, storage proofs of the data they
were given and validation proofs of each other's signatures among them; an agent
that is killed earns nothing for the slots it misses and its node goes unhealthy
once its heartbeat is older than 300 s (the cluster's clock is moved forward instead of waiting)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.common.v1 import access_pb2
from lucid.lib import taskproofs
from lucid.lib.sealing import Sealer
from lucid.nodeagent import keys as keyfiles
from lucid.nodes.v1 import nodes_pb2 as npb
from lucid.nodes.v1 import pool_pb2 as ppb
from lucid.nodes.v1 import poot_pb2 as tpb
from lucid.supervisor.devnodes import agent_argv, agents_dir
from tests.chain_support import ChainStubs, wait_for
from tests.nodes_support import NodesKit, OffsetClock, nodes_kit
from tests.sessionkit import process_environment
from tests.stake_support import STAKE_MICROS, StakeNet, mining, session_net
from tests.support import Mesh, bearer

CLOCK = OffsetClock()
SLOT_WAIT_S = taskproofs.SLOT_S + 30


@pytest.fixture(scope="module")
async def kit(mesh: Mesh) -> AsyncIterator[NodesKit]:
    async with nodes_kit(mesh, CLOCK, probe=False) as kit:
        yield kit


class Agents:
    """``python -m lucid node-agent`` processes."""

    def __init__(self, mesh: Mesh, root: Path, token_file: Path, pool_id: str) -> None:
        self.mesh = mesh
        self.root = root
        self.token_file = token_file
        self.pool_id = pool_id
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, net: StakeNet) -> None:
        """Starts an agent whose TRON address holds enough to pay its own stake."""
        settings = self.mesh.settings
        keys = keyfiles.load_or_create(
            agents_dir(settings) / name, Sealer(settings.sealing_passphrase())
        )
        net.fund(keys.address, usdt_micros=STAKE_MICROS)
        log = (self.root / f"{name}.log").open("ab")
        argv = agent_argv(settings, name, self.token_file, self.pool_id)
        self.processes[name] = subprocess.Popen(
            [*argv, "--heartbeat-s", "0.5"],
            env={**process_environment(settings), "LUCID_TRON_ENDPOINT": net.url},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.kill()
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_three_agents_form_an_active_pool_and_earn_credits(
    kit: NodesKit, tmp_path: Path
) -> None:
    operator_id = str(uuid.uuid4())
    token = await kit.mesh.token(
        role=access_pb2.ROLE_NODE_OPERATOR,
        kyc=access_pb2.KYC_STATUS_VERIFIED,
        user_id=operator_id,
        ttl_s=3600,
    )
    token_file = tmp_path / "token"
    token_file.write_text(token)
    md = bearer(token)
    pool = await kit.pool()
    agents = Agents(kit.mesh, tmp_path, token_file, pool.pool_id)
    names = ["agent-a", "agent-b", "agent-c"]
    net = session_net()
    try:
        async with mining(net, 0.1):  # the agents wait for solid stakes
            for name in names:
                agents.start(name, net)

            async def pool_active() -> ppb.GetPoolResponse | None:
                got = await kit.pools.GetPool(ppb.GetPoolRequest(pool_id=pool.pool_id), metadata=md)
                return got if got.pool.state == ppb.POOL_STATE_ACTIVE else None

            active = await wait_for(pool_active, timeout_s=120)
        assert active.pool.active_node_count == 3
        listed = await kit.nodes.ListNodes(npb.ListNodesRequest(), metadata=md)
        by_name = {n.name: n for n in listed.nodes}
        assert sorted(by_name) == names
        assert all(n.owner_user_id == operator_id for n in listed.nodes)
        assert len({n.node_address for n in listed.nodes}) == 3
        assert all(n.stake_amount_micros == STAKE_MICROS for n in listed.nodes)

        async def credits(name: str) -> float:
            report = await kit.credits.GetWorkCredits(
                tpb.GetWorkCreditsRequest(node_id=by_name[name].node_id), metadata=md
            )
            return report.credits

        async def all_earning() -> dict[str, float] | None:
            found = {name: await credits(name) for name in names}
            return found if all(found.values()) else None

        await wait_for(all_earning, timeout_s=60)

        async def on_chain() -> set[str] | None:
            async with kit.mesh.channel("blockchain") as channel:
                tallies = await ChainStubs(channel).consensus.GetWorkCredits(
                    cpb.GetWorkCreditsRequest(entity_type=cpb.ENTITY_TYPE_NODE, page_size=1000),
                    metadata=kit.admin,
                )
            found = {t.entity_id for t in tallies.tallies}
            return found if {n.node_id for n in listed.nodes} <= found else None

        await wait_for(on_chain, timeout_s=60)  # the beacons reached the chain

        async def beacons(name: str) -> float:
            report = await kit.credits.GetWorkCredits(
                tpb.GetWorkCreditsRequest(node_id=by_name[name].node_id), metadata=md
            )
            tasks = {t.task_type: t.value for t in report.by_task}
            return tasks.get(tpb.TASK_TYPE_UPTIME_BEACON, 0.0)

        agents.kill("agent-c")
        # A slot's tasks land at different moments, so credits are compared by uptime
        # beacons, one per slot: once the live agents beaconed in a new slot, agent-c has
        # none for it.
        at_kill = {name: await beacons(name) for name in names}

        async def grown() -> dict[str, float] | None:
            now = {name: await beacons(name) for name in names}
            live_grew = all(now[n] > at_kill[n] for n in ("agent-a", "agent-b"))
            return now if live_grew else None

        later = await wait_for(grown, timeout_s=SLOT_WAIT_S, interval_s=1.0)
        assert later["agent-c"] == at_kill["agent-c"], (at_kill, later)  # the slot it missed

        async def work_proved() -> bool | None:  # data kept since the slot before; peers
            for name in ("agent-a", "agent-b"):
                report = await kit.credits.GetWorkCredits(
                    tpb.GetWorkCreditsRequest(node_id=by_name[name].node_id), metadata=md
                )
                tasks = {t.task_type: t for t in report.by_task}
                weights = {
                    tpb.TASK_TYPE_STORAGE_PROOF: 0.5,
                    tpb.TASK_TYPE_VALIDATION_SIGNATURE: 0.3,
                }
                if not set(weights) <= set(tasks):
                    return None
                for task_type, weight in weights.items():
                    assert tasks[task_type].credits == pytest.approx(
                        weight * tasks[task_type].value
                    )
            return True

        await wait_for(work_proved, timeout_s=30)

        async def voted() -> list[cpb.ConsensusVote] | None:  # their verdicts: PoOT votes
            async with kit.mesh.channel("blockchain") as channel:
                reply = await ChainStubs(channel).consensus.ListConsensusVotes(
                    cpb.ListConsensusVotesRequest(
                        vote_type=pb.VOTE_TYPE_POOT_VALIDATION,
                        voter_id=by_name["agent-a"].node_id,
                        page_size=100,
                    ),
                    metadata=kit.admin,
                )
            return list(reply.votes) or None

        votes = await wait_for(voted, timeout_s=30)
        assert all(v.target_id != by_name["agent-a"].node_id for v in votes)
        assert all(v.decision == pb.VOTE_DECISION_APPROVE for v in votes)  # real proofs verify
        assert all(v.public_key == by_name["agent-a"].node_public_key for v in votes)

        CLOCK.advance(1000)  # more than the 300 s heartbeat window, for the cluster

        async def fleet() -> npb.GetFleetStatusResponse | None:
            status = await kit.nodes.GetFleetStatus(npb.GetFleetStatusRequest(), metadata=kit.admin)
            return status if status.healthy_nodes == 2 else None

        await wait_for(fleet, timeout_s=30)
        dead = await kit.nodes.GetNode(
            npb.GetNodeRequest(node_id=by_name["agent-c"].node_id), metadata=md
        )
        alive = await kit.nodes.GetNode(
            npb.GetNodeRequest(node_id=by_name["agent-a"].node_id), metadata=md
        )
        assert (
            alive.node.last_heartbeat_time.ToSeconds() - dead.node.last_heartbeat_time.ToSeconds()
            > 300
        )
    finally:
        agents.stop_all()
