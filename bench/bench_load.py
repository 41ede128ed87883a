"""Finalization under load (issue 8, item 5): 50 concurrent sessions, each uploading
5 chunks of 1 MiB through the edge (REST, HTTPS), then stopping; every session must
reach completed (its root in a final block of three validator processes).

The edge, the gateway, the sessions cluster and the three validators run as their own
processes (as under ``lucid up``); auth runs in the benchmark's process (it signs the
users' tokens). Figures:
chunk upload latency p50/p99 through the edge, stop → completed p50/p99 in block
intervals, failed requests, sessions not completed and finalizations that failed
unexpectedly (the sessions log). Where the time of stop → completed goes is read
back from the stores afterwards, per stage (medians and p99 in block intervals): stop →
the anchor in validator 0's pool (manifest, AnchorSession), pool → the block time of the
block that holds it (waiting for a proposal), block time → final on validator 0
(consensus rounds, commit), final → completed (the finalizer noticing and writing);
with how many blocks held the anchors and how many rounds failed. The store is FerretDB
on PostgreSQL by default; ``LUCID_FERRETDB_BACKEND=sqlite python -m bench load``
measures the SQLite backend, and ``LUCID_BENCH_LOAD_SESSIONS=N`` runs N sessions.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from pymongo import AsyncMongoClient

from bench.common import BenchContext, Figure
from lucid.common.v1 import access_pb2
from lucid.runtime.config import Settings
from lucid.sessions.v1 import sessions_pb2, sessions_pb2_grpc
from lucid.supervisor.localservers import free_port
from tests.chain_cluster import ValidatorCluster
from tests.chain_support import wait_for
from tests.sessionkit import SessionsProcess
from tests.support import Mesh, bearer, https_client

SESSIONS = int(os.environ.get("LUCID_BENCH_LOAD_SESSIONS", "50"))
CHUNKS = 5
CHUNK_BYTES = 1024 * 1024
INTERVAL_S = 0.5
COMPLETION_TIMEOUT_S = 300.0
POLL_S = 0.05
UNEXPECTED = "finalization failed unexpectedly"


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))])


class Load:
    """The load of one run and what it measured."""

    def __init__(self, own: Settings, mesh: Mesh, edge: str) -> None:
        self.own = own
        self.mesh = mesh
        self.edge = edge
        self.chunk_ms: list[float] = []
        self.errors: list[str] = []
        self.stopped_at: dict[str, float] = {}
        self.stopped_wall: dict[str, float] = {}
        self.completed_at: dict[str, float] = {}
        self.failed: set[str] = set()
        self.poll_errors: list[str] = []

    async def session(self, http: aiohttp.ClientSession, index: int, token: str) -> None:
        headers = {"authorization": f"Bearer {token}"}

        async def post(path: str, body: object) -> dict | None:  # type: ignore[type-arg]
            async with http.post(f"{self.edge}{path}", json=body, headers=headers) as r:
                if r.status != 200:
                    self.errors.append(
                        f"{path.rsplit('/', maxsplit=1)[-1]}: {r.status} {await r.text()}"
                    )
                    return None
                return await r.json()  # type: ignore[no-any-return]

        created = await post("/api/v1/sessions", {"name": f"load {index}"})
        if created is None:
            return
        session_id = created["session"]["session_id"]
        base = f"/api/v1/sessions/{session_id}"
        if await post(f"{base}:start", {}) is None:
            return
        for seq in range(1, CHUNKS + 1):
            data = base64.b64encode(os.urandom(CHUNK_BYTES)).decode()
            started = time.perf_counter()
            stored = await post(f"{base}/chunks", {"sequence_number": seq, "data": data})
            self.chunk_ms.append((time.perf_counter() - started) * 1000)
            if stored is None:
                return
        self.stopped_at[session_id] = time.perf_counter()
        self.stopped_wall[session_id] = time.time()
        if await post(f"{base}:stop", {}) is None:
            del self.stopped_at[session_id]

    async def follow(self, done: asyncio.Event) -> None:
        """Records when each stopped session is first seen completed (one admin poller)."""
        admin = bearer(await self.mesh.token(role=access_pb2.ROLE_SUPER_ADMIN))
        async with self.mesh.channel("sessions") as channel:
            stub = sessions_pb2_grpc.SessionServiceStub(channel)
            while not done.is_set() or len(self.completed_at) + len(self.failed) < len(
                self.stopped_at
            ):
                for state, seen in (
                    (sessions_pb2.SESSION_STATE_COMPLETED, self.completed_at),
                    (sessions_pb2.SESSION_STATE_FAILED, None),
                ):
                    token = ""
                    while True:
                        try:
                            page = await stub.ListSessions(
                                sessions_pb2.ListSessionsRequest(
                                    state=state, page_size=100, page_token=token
                                ),
                                metadata=admin,
                                timeout=10,
                            )
                        except grpc.aio.AioRpcError as exc:
                            self.poll_errors.append(exc.code().name)
                            break
                        now = time.perf_counter()
                        for session in page.sessions:
                            if session.session_id not in self.stopped_at:
                                continue
                            if seen is None:
                                self.failed.add(session.session_id)
                            else:
                                seen.setdefault(session.session_id, now)
                        token = page.next_page_token
                        if not token:
                            break
                await asyncio.sleep(POLL_S)


def _wall(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


async def stages(load: Load, own: Settings, chain_db: str) -> dict[str, Any]:
    """Where stop → completed went, per completed session, from the stored timestamps."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(own.mongodb_uri, tz_aware=True)
    try:
        sessions = client[own.mongodb_db]["sessions"]
        chain = client[chain_db]
        found: dict[str, list[float]] = {
            "stop → anchor in the pool": [],
            "pool → block time": [],
            "block time → final": [],
            "final → completed": [],
        }
        heights: set[int] = set()
        for session_id in load.completed_at:
            session = await sessions.find_one({"_id": session_id})
            anchoring = await chain["chain_v0_anchorings"].find_one({"session_id": session_id})
            if session is None or anchoring is None or anchoring.get("block_height") is None:
                continue
            height = int(anchoring["block_height"])
            heights.add(height)
            block = await chain["chain_v0_blocks"].find_one({"height": height})
            if block is None:
                continue
            marks = [
                load.stopped_wall[session_id],
                _wall(anchoring.get("submit_time")),
                _wall(block.get("block_time")),
                _wall(block.get("final_time")),
                _wall(session.get("completed_at")),
            ]
            if any(m is None for m in marks):
                continue
            for name, start, end in zip(found, marks, marks[1:], strict=False):
                found[name].append(max(0.0, (end or 0.0) - (start or 0.0)) / INTERVAL_S)
        blocks = await chain["chain_v0_blocks"].find({"height": {"$in": sorted(heights)}}).to_list()
        late = sum(1 for b in blocks if b.get("approvals") and b["approvals"][0]["round"] > 0)
        failed = await chain["chain_v0_rounds"].count_documents({"status": "failed"})
        for index in range(3):
            async for doc in chain[f"chain_v{index}_rounds"].find({"status": "failed"}):
                print(
                    f"  failed round led by validator {index}: height {doc['height']} round"
                    f" {doc['round']}, {doc['approval_count']} votes: {doc.get('reasons')}"
                )
        return {"stages": found, "blocks": len(heights), "late": late, "failed_rounds": failed}
    finally:
        await client.close()


async def run(ctx: BenchContext) -> list[Figure]:
    logging.getLogger("lucid").setLevel(logging.ERROR)
    root = Path(tempfile.mkdtemp(prefix="lucid-bench-load-"))
    validators = ValidatorCluster(
        ctx.settings, root / "chain", block_interval_s=INTERVAL_S, leader_timeout_s=2.0
    )
    validators.start_all()
    own = ctx.settings.replace(
        ports={
            **ctx.settings.ports,
            "sessions": free_port(),
            "gateway": free_port(),
            "blockchain": validators.ports[0],
        },
        edge_port=free_port(),
    )
    mesh = Mesh(own)
    mesh.servers["auth"] = ctx.mesh.servers["auth"]  # the benchmark's auth signs tokens
    sessions = SessionsProcess(own, root / "sessions.log")
    children: list[SessionsProcess] = []
    try:
        for index in range(validators.count):
            async with validators.stubs(index) as stubs:
                await wait_for(stubs.ready, timeout_s=300)  # a loaded machine is slow
        children.append(SessionsProcess(own, root / "gateway.log", ("serve", "gateway")))
        children[-1].start()
        sessions.start()
        async with mesh.channel("sessions") as channel:
            await sessions.wait_serving(channel)
        children.append(SessionsProcess(own, root / "edge.log", ("edge",)))
        children[-1].start()
        url = f"https://localhost:{own.edge_port}"
        async with https_client(own) as http:

            async def edge_serves() -> bool:
                try:
                    async with http.get(f"{url}/api/v1/meta/version") as r:
                        return r.status == 200
                except OSError:
                    return False

            await wait_for(edge_serves, timeout_s=60)
            load = Load(own, mesh, url)
            tokens = [await mesh.token(user_id=str(uuid.uuid4())) for _ in range(SESSIONS)]
            done = asyncio.Event()
            follower = asyncio.create_task(load.follow(done))
            started = time.perf_counter()
            await asyncio.gather(*(load.session(http, i, t) for i, t in enumerate(tokens)))
            uploaded_s = time.perf_counter() - started
            done.set()
            try:
                await asyncio.wait_for(follower, COMPLETION_TIMEOUT_S)
            except TimeoutError:
                load.errors.append("some sessions never completed")
        breakdown = await stages(load, own, validators.database)
    finally:
        for child in children:
            child.stop()
        sessions.stop()
        mesh.servers.pop("auth", None)
        await mesh.stop_all()
        validators.stop_all()
    log = (root / "sessions.log").read_text(errors="replace")
    blocks = [
        (load.completed_at[s] - load.stopped_at[s]) / INTERVAL_S
        for s in load.completed_at
        if s in load.stopped_at
    ]
    for error in load.errors[:5]:
        print(f"  error: {error[:300]}")
    backend = os.environ.get("LUCID_FERRETDB_BACKEND", "postgresql")
    label = f"{SESSIONS} sessions x {CHUNKS} x 1 MiB via the edge ({backend})"
    return [
        Figure(f"{label}: chunk upload p50", _percentile(load.chunk_ms, 0.5), "ms"),
        Figure(f"{label}: chunk upload p99", _percentile(load.chunk_ms, 0.99), "ms"),
        Figure(f"{label}: all uploads and stops", uploaded_s, "s"),
        Figure(f"{label}: stop → completed p50", _percentile(blocks, 0.5), "blocks"),
        Figure(f"{label}: stop → completed p99", _percentile(blocks, 0.99), "blocks"),
        Figure(f"{label}: stop → completed max", max(blocks, default=float("nan")), "blocks"),
        Figure(f"{label}: sessions completed", len(load.completed_at), "sessions"),
        Figure(f"{label}: sessions failed", len(load.failed), "sessions"),
        Figure(f"{label}: failed requests", len(load.errors), "requests"),
        Figure(f"{label}: failed completion polls (ListSessions)", len(load.poll_errors), "calls"),
        Figure(f"{label}: finalizations failed unexpectedly", log.count(UNEXPECTED), "sessions"),
        Figure(f"{label}: blocks holding the anchors", breakdown["blocks"], "blocks"),
        Figure(f"{label}: of them final after round 0", breakdown["late"], "blocks"),
        Figure(f"{label}: consensus rounds failed", breakdown["failed_rounds"], "rounds"),
        *(
            Figure(f"{label}: {stage} {name}", _percentile(values, fraction), "blocks")
            for stage, values in breakdown["stages"].items()
            for name, fraction in (("p50", 0.5), ("p99", 0.99))
        ),
    ]
