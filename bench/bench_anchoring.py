"""Anchoring latency: StopRecording → session completed (its root in a final block),
in block intervals, against three chain validator processes at a 0.5 s interval."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from lucid.sessions.v1 import sessions_pb2

from bench.common import BenchContext, Figure
from lucid.sessions import app as sessions_app
from lucid.sessions.config import SessionsConfig
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
        env = SessionsEnv(mesh, ctx.mesh, None, config, mesh.channel("sessions"))  # type: ignore[arg-type]
        try:
            md = await env.token()
            for _ in range(SESSIONS):
                session_id = await env.recording(md, name="anchoring latency")
                await env.upload(md, session_id, 1, os.urandom(64 * 1024))
                started = time.perf_counter()
                await env.sessions.StopRecording(
                    sessions_pb2.StopRecordingRequest(session_id=session_id), metadata=md
                )
                while True:
                    state = (await env.get(md, session_id)).state
                    if state == sessions_pb2.SESSION_STATE_COMPLETED:
                        break
                    await asyncio.sleep(0.01)
                latencies.append(time.perf_counter() - started)
        finally:
            await env.channel.close()
            await mesh.stop_all()
    finally:
        validators.stop_all()
    intervals = [latency / INTERVAL_S for latency in latencies]
    return [
        Figure(f"stop → completed, median of {SESSIONS}", statistics.median(intervals), "blocks"),
        Figure("stop → completed, worst", max(intervals), "blocks"),
        Figure("stop → completed, median", statistics.median(latencies), "s"),
    ]
