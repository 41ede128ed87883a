"""Chaos (issue 14): the whole mesh runs under ``lucid up`` (real processes) while three
users record sessions through the edge (chunks uploaded, sessions stopped and anchored)
and a payout is in flight on the local TRON devnet. Each cluster, each validator, the
edge, the node agents, the devnet, Redis and FerretDB is SIGKILLed in turn; the
supervisor starts it again. Afterwards: no acknowledged chunk is lost, every stopped
session ends completed (anchored) or failed with a reason, the payout is paid exactly
once, and every validator's stored chain verifies (which includes: no session anchored
twice). The recovery time of each kill is printed as a table.

Run it alone with ``pytest -m chaos tests/chaos``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import grpc
import pytest
from tronpy import Tron
from tronpy.keys import PrivateKey
from tronpy.providers import HTTPProvider

from lucid.blockchain.verify import verify_stored_chain
from lucid.nodeagent.agent import STAKE_MICROS
from lucid.nodes.v1 import payout_pb2, payout_pb2_grpc
from lucid.runtime.config import CLUSTERS, Settings
from lucid.supervisor import demopay, devnodes
from lucid.supervisor.devnet import DEV_NODE_USDT_MICROS
from tests.support import https_client
from tests.upkit import Up, lucid_up
from tests.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(540)]
"""About three minutes on an idle 2-core machine; the bound leaves room for a loaded one."""

USERS = 3
CHUNKS_PER_SESSION = 4
CHUNK_BYTES = 64 * 1024
RECOVERY_TIMEOUT_S = 90.0
RETRY_FOR_S = 120.0
RETRYABLE = frozenset({401, 429, 500, 502, 503, 504})
"""Statuses a client retries while a process is down (401: the edge could not check the
token while auth or Redis was away)."""
PAYOUT_MICROS = 7_000_000
STOPPED = ("SESSION_STATE_COMPLETED", "SESSION_STATE_FAILED")


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with lucid_up(tmp_path_factory.mktemp("chaos-var")) as running:
        yield running


@dataclass
class Recorded:
    """What the users saw acknowledged."""

    acked: dict[str, dict[int, str]] = field(default_factory=dict)
    """session id → sequence number → sha256 of the acknowledged chunk."""
    stopped: set[str] = field(default_factory=set)
    owner: dict[str, dict[str, str]] = field(default_factory=dict)
    """session id → the authorization header of its user."""
    unexpected: list[str] = field(default_factory=list)
    retried: dict[int | str, int] = field(default_factory=dict)

    @property
    def ack_count(self) -> int:
        return sum(len(chunks) for chunks in self.acked.values())


class User:
    """One signed-in user of the edge's REST api that retries through outages."""

    def __init__(self, http: aiohttp.ClientSession, edge: str, seen: Recorded) -> None:
        self.http = http
        self.edge = edge
        self.seen = seen
        self.headers: dict[str, str] = {}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """The status and body of the first answer that is not an outage's."""
        deadline = time.monotonic() + RETRY_FOR_S
        while True:
            try:
                async with self.http.request(
                    method,
                    f"{self.edge}{path}",
                    json=body,
                    headers=self.headers,
                    timeout=aiohttp.ClientTimeout(total=20),
                ) as r:
                    text = await r.text()
                    if r.status not in RETRYABLE:
                        return r.status, json.loads(text) if text else {}
                    reason: int | str = r.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = type(exc).__name__
            self.seen.retried[reason] = self.seen.retried.get(reason, 0) + 1
            assert time.monotonic() < deadline, f"{method} {path}: still failing ({reason})"
            await asyncio.sleep(0.25)

    async def sign_in(self) -> None:
        key = PrivateKey.random()
        address = key.public_key.to_base58check_address()
        status, body = await self.call("POST", "/api/v1/auth/challenge", {"tron_address": address})
        assert status == 200, body
        message = body["message"]
        login = {
            "tron_address": address,
            "message": message,
            "signature": key.sign_msg(message.encode()).hex(),
        }
        status, body = await self.call("POST", "/api/v1/auth/login", login)
        assert status == 200, body
        self.headers = {"authorization": f"Bearer {body['tokens']['access_token']}"}

    async def state(self, session_id: str) -> str:
        status, body = await self.call("GET", f"/api/v1/sessions/{session_id}")
        assert status == 200, body
        return str(body["session"]["state"])

    async def record_one(self, n: int) -> None:
        """Creates, starts, uploads and stops one session, retrying through outages."""
        status, body = await self.call("POST", "/api/v1/sessions", {"name": f"chaos {n}"})
        assert status == 200, body
        session_id = body["session"]["session_id"]
        base = f"/api/v1/sessions/{session_id}"
        self.seen.acked[session_id] = {}
        self.seen.owner[session_id] = self.headers
        status, body = await self.call("POST", f"{base}:start", {})
        if status != 200 and await self.state(session_id) != "SESSION_STATE_RECORDING":
            self.seen.unexpected.append(f"start {session_id}: {status} {body}")
            return
        for seq in range(1, CHUNKS_PER_SESSION + 1):
            data = os.urandom(CHUNK_BYTES)
            payload = {"sequence_number": seq, "data": _b64(data)}
            status, body = await self.call("POST", f"{base}/chunks", payload)
            if status != 200:
                self.seen.unexpected.append(f"upload {session_id}#{seq}: {status} {body}")
                return
            self.seen.acked[session_id][seq] = hashlib.sha256(data).hexdigest()
            await asyncio.sleep(0.05)  # a recorder's pace, not a wait for a condition
        status, body = await self.call("POST", f"{base}:stop", {})
        if status != 200 and await self.state(session_id) == "SESSION_STATE_RECORDING":
            self.seen.unexpected.append(f"stop {session_id}: {status} {body}")
            return
        self.seen.stopped.add(session_id)

    async def run(self, stop: asyncio.Event) -> None:
        await self.sign_in()
        n = 0
        while not stop.is_set():
            n += 1
            await self.record_one(n)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def _healthy(http: aiohttp.ClientSession, edge: str) -> bool:
    """The edge's ``/health``: the whole mesh and every dependency healthy."""
    try:
        async with http.get(f"{edge}/health", timeout=aiohttp.ClientTimeout(total=5)) as r:
            if r.status != 200:
                return False
            body = await r.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return False
    return body.get("status") == "HEALTH_STATUS_HEALTHY" and all(
        d.get("status") == "HEALTH_STATUS_HEALTHY" for d in body.get("dependencies", [])
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _submit_payout(settings: Settings) -> tuple[str, str, str]:
    """BatchPayouts of one payout to ``dev-node-1`` (retried with the same batch id);
    its node id, address and payout id."""
    md = await demopay._bearer(settings)
    batch_id = str(uuid.uuid4())
    deadline = time.monotonic() + RETRY_FOR_S
    async with devnodes.nodes_channel(settings) as channel:
        node = await demopay._dev_node(
            demopay.nodes_pb2_grpc.NodeServiceStub(channel), md, deadline
        )
        assert node is not None, "dev-node-1 never registered"
        request = payout_pb2.BatchPayoutsRequest(
            batch_id=batch_id,
            items=[
                payout_pb2.PayoutItem(
                    node_id=node.node_id,
                    amount_micros=PAYOUT_MICROS,
                    currency=payout_pb2.PAYOUT_CURRENCY_USDT,
                    wallet_address=node.node_address,
                    reason="chaos",
                )
            ],
        )
        batch = await payout_pb2_grpc.PayoutServiceStub(channel).BatchPayouts(
            request, metadata=md, timeout=20
        )
    return node.node_id, node.node_address, batch.payout_ids[0]


async def _node_payouts(settings: Settings, node_id: str) -> list[payout_pb2.Payout]:
    md = await demopay._bearer(settings)
    async with devnodes.nodes_channel(settings) as channel:
        listed = await payout_pb2_grpc.PayoutServiceStub(channel).ListNodePayouts(
            payout_pb2.ListNodePayoutsRequest(node_id=node_id, page_size=100),
            metadata=md,
            timeout=10,
        )
    return list(listed.payouts)


async def _dev_nodes(settings: Settings) -> list[Any]:
    """The dev operator's nodes (the dev agents registered)."""
    md = await demopay._bearer(settings)
    async with devnodes.nodes_channel(settings) as channel:
        listed = await demopay.nodes_pb2_grpc.NodeServiceStub(channel).ListNodes(
            demopay.nodes_pb2.ListNodesRequest(owner_user_id=devnodes.DEV_OPERATOR, page_size=100),
            metadata=md,
            timeout=10,
        )
    return list(listed.nodes)


async def _beat_since(settings: Settings, name: str, since: datetime) -> bool:
    """Whether agent ``name``'s node sent a heartbeat after ``since``."""
    try:
        nodes = await _dev_nodes(settings)
    except grpc.aio.AioRpcError:
        return False
    return any(
        n.name == name
        and n.HasField("last_heartbeat_time")
        and n.last_heartbeat_time.ToDatetime(tzinfo=UTC) > since
        for n in nodes
    )


def _usdt_balance(settings: Settings, address: str) -> int:
    tron = Tron(HTTPProvider(f"http://127.0.0.1:{settings.devnet_tron_port}"))
    return int(tron.get_contract(settings.tron_usdt_contract).functions.balanceOf(address))


def _targets(pids: dict[str, int | None]) -> list[str]:
    """What is killed, in order: payments, the devnet and nodes first (the payout is in
    flight then), every other cluster, the validators, the edge, the agents, the stores."""
    first = ["payments", "devnet-tron", "nodes"]
    clusters = [c for c in CLUSTERS if c not in first]
    rest = ["validator-1", "validator-2", "edge", *devnodes.AGENTS, "redis", "ferretdb"]
    targets = [*first, *clusters, *rest]
    missing = [t for t in targets if not pids.get(t)]
    assert not missing, f"not running under lucid up: {missing} ({pids})"
    return targets


async def test_sigkill_everything_in_turn_loses_nothing(
    up: Up, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = up.settings
    edge = f"https://localhost:{settings.edge_port}"
    seen = Recorded()
    stop = asyncio.Event()
    recovery: list[tuple[str, float, int]] = []
    started = time.monotonic()
    async with https_client(settings) as probe:
        await eventually(
            lambda: _healthy(probe, edge), timeout_s=120, interval_s=0.5, what="a healthy mesh"
        )
        clients = [https_client(settings, local_ip=f"127.0.0.{10 + i}") for i in range(USERS)]
        users = [User(c, edge, seen) for c in clients]
        workload = [asyncio.create_task(u.run(stop)) for u in users]
        try:
            node_id, address, payout_id = await _submit_payout(settings)
            await eventually(
                lambda: seen.ack_count >= USERS, timeout_s=90, what="the users uploading"
            )
            for target in _targets(up.pids()):
                old = up.pids()[target]
                assert old is not None
                acks_before = seen.ack_count
                killed_at = time.monotonic()
                killed_wall = datetime.now(UTC)
                os.kill(old, signal.SIGKILL)

                async def recovered(
                    target: str = target,
                    old: int = old,
                    acks: int = acks_before,
                    since: datetime = killed_wall,
                ) -> bool:
                    new = up.pids().get(target)
                    return (
                        new is not None
                        and new != old
                        and _alive(new)
                        and seen.ack_count > acks
                        and await _healthy(probe, edge)
                        and (
                            target not in devnodes.AGENTS
                            or await _beat_since(settings, target, since)
                        )
                    )

                await eventually(
                    recovered,
                    timeout_s=RECOVERY_TIMEOUT_S,
                    interval_s=0.2,
                    what=f"the mesh recovered from SIGKILL of {target}",
                )
                with capsys.disabled():
                    print(
                        f"  chaos: {target} back in {time.monotonic() - killed_at:.2f}s", flush=True
                    )
                recovery.append(
                    (target, time.monotonic() - killed_at, seen.ack_count - acks_before)
                )
                for task in workload:
                    if task.done():
                        task.result()  # a user that gave up fails the test here
        finally:
            stop.set()
            results = await asyncio.gather(*workload, return_exceptions=True)
            for client in clients:
                await client.close()
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, errors

        table = [
            "",
            "chaos: recovery after SIGKILL (pid back, a chunk acknowledged, edge /health "
            "healthy; an agent: its node beats again)",
            f"  {'killed':<14} {'recovered in':>12} {'chunks acked meanwhile':>24}",
        ]
        table += [f"  {t:<14} {s:>11.2f}s {n:>24}" for t, s, n in recovery]
        table.append(
            f"  {len(recovery)} kills in {time.monotonic() - started:.0f}s; "
            f"{seen.ack_count} chunks acknowledged in {len(seen.acked)} sessions; "
            f"retries by cause: {seen.retried}"
        )
        with capsys.disabled():
            print("\n".join(table), flush=True)
        (up.var_dir / "chaos-recovery.txt").write_text("\n".join(table) + "\n")

        assert not seen.unexpected, seen.unexpected

        # Every stopped session ends completed (anchored, final) or failed with a reason,
        # and no session (stopped or not) misses or changed an acknowledged chunk.
        outcomes: dict[str, str] = {}
        problems: list[str] = []
        for session_id, chunks in seen.acked.items():
            owner = User(probe, edge, seen)
            owner.headers = seen.owner[session_id]
            base = f"/api/v1/sessions/{session_id}"

            async def ended(owner: User = owner, base: str = base) -> Any:
                status, body = await owner.call("GET", base)
                assert status == 200, body
                return body["session"] if body["session"]["state"] in STOPPED else None

            if session_id in seen.stopped:
                session = await eventually(
                    ended, timeout_s=120, interval_s=0.5, what=f"session {session_id} ended"
                )
                outcomes[session_id] = session["state"]
                anchoring = session.get("anchoring", {})
                if session["state"] == "SESSION_STATE_FAILED" and not session.get("error_message"):
                    problems.append(f"failed without a reason: {json.dumps(session)}")
                if session["state"] == "SESSION_STATE_COMPLETED" and not (
                    session.get("merkle_root") and anchoring.get("final")
                ):
                    problems.append(f"completed but not anchored: {json.dumps(session)}")
            status, body = await owner.call("GET", f"{base}/chunks")
            assert status == 200, body
            stored = {int(c["sequence_number"]): c["checksum"] for c in body.get("chunks", [])}
            if stored != chunks:
                problems.append(f"{session_id}: acknowledged {chunks}, stored {stored}")
        assert not problems, "\n".join(problems)
        counts = {s: list(outcomes.values()).count(s) for s in sorted(set(outcomes.values()))}
        with capsys.disabled():
            print(f"  sessions stopped: {len(outcomes)}, outcomes: {counts}", flush=True)
        assert outcomes, "no session was stopped during the chaos"

    # The payout in flight was paid exactly once.
    async def settled() -> list[payout_pb2.Payout] | None:
        payouts = await _node_payouts(settings, node_id)
        ours = [p for p in payouts if p.payout_id == payout_id]
        return payouts if ours and ours[0].state in demopay.DONE else None

    payouts = await eventually(settled, timeout_s=120, interval_s=1.0, what="the payout settled")
    ours = [p for p in payouts if p.payout_id == payout_id]
    assert len(ours) == 1 and ours[0].state == payout_pb2.PAYOUT_STATE_COMPLETED, ours
    paid = sum(p.amount_micros for p in payouts if p.state == payout_pb2.PAYOUT_STATE_COMPLETED)
    balance = await asyncio.to_thread(_usdt_balance, settings, address)
    # The dev node's genesis USDT, less its one registration stake (a restarted agent
    # never pays it again), plus what it was paid.
    assert balance == DEV_NODE_USDT_MICROS - STAKE_MICROS + paid, (balance, paid, payouts)

    # A restarted agent kept its node (none registered twice).
    names = sorted(n.name for n in await _dev_nodes(settings))
    assert names == sorted(devnodes.AGENTS), names

    # Every validator's chain verifies (each session anchored at most once).
    for index in range(settings.validators):
        report = await verify_stored_chain(settings, index)
        assert report.ok, f"validator-{index}: {report.describe()}"
