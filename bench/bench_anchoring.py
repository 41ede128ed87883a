"""Anchoring latency: StopRecording → session completed (its root in a final block),
against three chain validator processes at a 0.5 s block interval: in seconds, in
blocks (the anchoring block's height minus the tip's at stop, read from the chain), and
in measured block spacings (the median time between consecutive blocks of the run,
from their block times)."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import BenchContext, Figure
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.sessions import app as sessions_app
from lucid.sessions.config import SessionsConfig
from lucid.sessions.v1 import sessions_pb2
from lucid.supervisor.localservers import free_port
from tests.chain_cluster import ValidatorCluster
from tests.chain_support import wait_for
from tests.sessionkit import SessionsEnv, wait_serving
from tests.support import Mesh

INTERVAL_S = 0.5
SESSIONS = 8


async def run(ctx: BenchContext) -> list[Figure]:
    logging.getLogger("lucid").setLevel(logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="lucid-bench-anchoring-"))
    validators = ValidatorCluster(ctx.settings, root / "chain", block_interval_s=INTERVAL_S)
    validators.start_all()
    latencies: list[float] = []
    heights: list[int] = []
    spacings: list[float] = []
    try:
        for index in range(validators.count):
            async with validators.stubs(index) as stubs:
                await wait_for(stubs.ready, timeout_s=90)
        own = ctx.settings.replace(
            ports={
                **ctx.settings.ports,
                "sessions": free_port(),
                "blockchain": validators.ports[0],
            }
        )
        mesh = Mesh(own)
        config = SessionsConfig.of(own, blob_root=root / "blobs")
        server = await mesh.start("sessions", functools.partial(sessions_app.build, config=config))
        await wait_serving(server)
        env = SessionsEnv(mesh, ctx.mesh, None, config, mesh.channel("sessions"))
        try:
            md = await env.token()
            first = 0
            for _ in range(SESSIONS):
                session_id = await env.recording(md, name="anchoring latency")
                await env.upload(md, session_id, 1, os.urandom(64 * 1024))
                async with validators.stubs(0) as stubs:
                    tip_at_stop = await stubs.height()
                first = first or tip_at_stop
                started = time.perf_counter()
                await env.sessions.StopRecording(
                    sessions_pb2.StopRecordingRequest(session_id=session_id), metadata=md
                )
                while True:
                    session = await env.get(md, session_id)
                    if session.state == sessions_pb2.SESSION_STATE_COMPLETED:
                        break
                    await asyncio.sleep(0.01)
                latencies.append(time.perf_counter() - started)
                heights.append(session.anchoring.block_height - tip_at_stop)
            spacings = await _spacings(validators, first, session.anchoring.block_height)
        finally:
            await env.channel.close()
            await mesh.stop_all()
    finally:
        validators.stop_all()
    spacing = statistics.median(spacings)
    return [
        Figure(f"stop → completed, median of {SESSIONS}", statistics.median(latencies), "s"),
        Figure("stop → completed, worst", max(latencies), "s"),
        Figure(
            "blocks from the tip at stop to the anchoring block, median",
            statistics.median(heights),
            "blocks",
        ),
        Figure("blocks from the tip at stop to the anchoring block, worst", max(heights), "blocks"),
        Figure(f"spacing of consecutive blocks, median of {len(spacings)}", spacing, "s"),
        Figure(
            "stop → completed, median, in measured block spacings",
            statistics.median(latencies) / spacing,
            "spacings",
        ),
        Figure(
            "stop → completed, worst, in measured block spacings",
            max(latencies) / spacing,
            "spacings",
        ),
    ]


async def _spacings(validators: ValidatorCluster, first: int, last: int) -> list[float]:
    """Seconds between the block times of consecutive blocks ``first``…``last``."""
    found: list[pb.BlockSummary] = []
    request = pb.ListBlocksRequest(
        height_from=first, height_to=last, order=pb.BLOCK_ORDER_HEIGHT_ASC, page_size=100
    )
    async with validators.stubs(0, "admin") as stubs:
        while True:
            reply = await stubs.chain.ListBlocks(request, timeout=10)
            found += reply.blocks
            if not reply.next_page_token:
                break
            request.page_token = reply.next_page_token
    times = [b.block_time.ToNanoseconds() / 1e9 for b in found]
    assert len(times) == last - first + 1 >= 2, (first, last, len(times))
    return [later - earlier for earlier, later in itertools.pairwise(times)]
