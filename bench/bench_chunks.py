"""The chunk pipeline: MB/s through UploadChunks (mTLS, pipeline, zstd + XChaCha20-
Poly1305 + SHA-256, fsynced blob store, FerretDB rows) next to the raw in-process
rate of the same compression, sealing and hashing of the same bytes, in one run.
The ratio (upload / raw) is the figure.

The machine is shared, so its load moves both rates from one second to the next: the
run alternates the two measurements (raw, then upload of the same bytes into a new
session) ``ROUNDS`` times and reports the median of each and of the per-round ratios,
and the sessions process's CPU time per upload over the raw CPU time of the same bytes
(a figure the load moves less: how much work the server does besides the raw one).
Admin runs in the mesh as it does in a deployment: the sessions pipeline asks it for
the lockdown mode (at most once a second), and without it that question waits for its
1 s timeout inside the measured call."""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import BenchContext, Figure
from lucid.sessions import blobformat
from lucid.sessions.frames import FrameSource
from lucid.sessions.v1 import chunks_pb2
from lucid.supervisor.localservers import free_port
from tests.sessionkit import SessionsEnv, SessionsProcess, retrying
from tests.support import Mesh

CHUNKS = 8
ROUNDS = 5
FRAME_BYTES = 1024 * 1024
MB = 1_000_000


def _data() -> bytes:
    """Screen-like bytes: seeded 1280x720 RGB frames, CHUNKS x 10 MiB."""
    source = FrameSource(width=1280, height=720, fps=30, seed=1)
    total = CHUNKS * blobformat.MAX_CHUNK_BYTES
    frames = bytearray()
    index = 0
    while len(frames) < total:
        frames += source.frame(index)
        index += 1
    return bytes(frames[:total])


def _raw_rate(data: bytes) -> tuple[float, float, float]:
    """In-process: zstd 3 → XChaCha20-Poly1305 → SHA-256 of blob and plaintext; MB/s, the
    stored / raw size ratio, the CPU seconds it took."""
    session_id = str(uuid.uuid4())
    key = blobformat.session_key(bytes(32), session_id)
    size = blobformat.MAX_CHUNK_BYTES
    stored = 0
    cpu = time.thread_time()
    started = time.perf_counter()
    for seq, offset in enumerate(range(0, len(data), size), start=1):
        sealed = blobformat.seal_chunk(
            data[offset : offset + size],
            session_id=session_id,
            sequence_number=seq,
            key=key,
            key_id="bench",
        )
        stored += len(sealed.blob)
    elapsed = time.perf_counter() - started
    return len(data) / elapsed / MB, stored / len(data), time.thread_time() - cpu


def _cpu_s(server: SessionsProcess) -> float:
    """The CPU time (user + system) the sessions process has used so far (Linux /proc)."""
    assert server.process is not None
    stat = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


async def run(ctx: BenchContext) -> list[Figure]:
    logging.getLogger("lucid").setLevel(logging.WARNING)
    data = _data()
    await ctx.mesh.start("admin")
    settings = ctx.settings.replace(
        ports={**ctx.settings.ports, "sessions": free_port(), "blockchain": free_port()}
    )
    server = SessionsProcess(settings, Path(tempfile.mkdtemp()) / "sessions.log")
    client = Mesh(settings)
    channel = client.channel("sessions")
    env = SessionsEnv(client, ctx.mesh, None, None, channel)  # type: ignore[arg-type]
    server.start()
    raws: list[float] = []
    uploads: list[float] = []
    cpus: list[float] = []
    try:
        await server.wait_serving(channel)
        md = await env.token()
        for _ in range(ROUNDS):
            raw, ratio, raw_cpu = _raw_rate(data)
            session_id = await retrying(lambda: env.recording(md, name="bench"))

            async def frames(session_id: str = session_id):  # type: ignore[no-untyped-def]
                for i, offset in enumerate(range(0, len(data), FRAME_BYTES)):
                    yield chunks_pb2.UploadChunksRequest(
                        session_id=session_id if i == 0 else "",
                        data=data[offset : offset + FRAME_BYTES],
                        frame_count=1,
                    )

            cpu = _cpu_s(server)
            started = time.perf_counter()
            reply = await env.chunks.UploadChunks(frames(), metadata=md)
            elapsed = time.perf_counter() - started
            assert reply.durable_bytes == len(data), reply
            raws.append(raw)
            uploads.append(len(data) / elapsed / MB)
            cpus.append((_cpu_s(server) - cpu) / raw_cpu)
    finally:
        await channel.close()
        server.stop()
    return [
        Figure(
            f"raw zstd-3 + XChaCha20-Poly1305 + SHA-256 ({len(data) // MB} MB), median",
            statistics.median(raws),
            "MB/s",
        ),
        Figure(
            "UploadChunks to a sessions process (mTLS, fsync, FerretDB), median",
            statistics.median(uploads),
            "MB/s",
        ),
        Figure(
            "UploadChunks / raw",
            statistics.median(u / r for u, r in zip(uploads, raws, strict=True)),
            "ratio",
        ),
        Figure(
            "sessions process CPU seconds / raw CPU seconds, median",
            statistics.median(cpus),
            "ratio",
        ),
        Figure("stored / raw size (screen-like frames)", ratio, "ratio"),
    ]
