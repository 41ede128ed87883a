"""The recorder (issue 10): CPU and bytes per minute of capturing and encoding a desktop
at 1024x768 and 1920x1080, static and busy; capture-to-stored latency through the real
sessions cluster; and how many desktops one machine records at 10 fps at once without
dropping frames.

Displays are Xvfb servers (the recorder grabs any X display the same way; xrdp's
sessions are TigerVNC's Xvnc), a busy one scrolls a terminal listing files without
pause. Each capture is the production ``python -m lucid.rdp.capture`` process; its CPU
is read from /proc (user + system of the process) over the wall time, in percent of one
core. A capture keeps up when it delivers at least 95 % of fps x seconds frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench.common import BenchContext, Figure
from lucid.rdp.recorder import read_segments
from lucid.rdp.recording import Recordings
from lucid.runtime.server import Runtime
from lucid.sessions.v1 import sessions_pb2
from tests.rdpkit import free_display
from tests.sessionkit import start_env
from tests.support import bearer

FPS = 10
SEGMENT_S = 2.0
SECONDS = 20.0
KEEPS_UP = 0.95
SIZES = ("1024x768", "1920x1080")
CONCURRENCY = (1, 2, 3, 4, 6, 8)


@dataclass
class Display:
    """An X display and what runs on it."""

    name: str
    processes: list[subprocess.Popen[bytes]]

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            if process.poll() is None:
                process.kill()


@contextlib.contextmanager
def display(size: str, busy: bool) -> Iterator[Display]:
    """An Xvfb display of ``size``, with a terminal that scrolls without pause if busy."""
    number = free_display(first=400)
    name = f":{number}"
    xvfb = subprocess.Popen(
        ["Xvfb", name, "-screen", "0", f"{size}x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    socket_path = Path(f"/tmp/.X11-unix/X{number}")
    deadline = time.monotonic() + 30
    while not socket_path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("Xvfb did not start")
        time.sleep(0.05)  # waiting for the X socket (a condition), not a fixed delay
    processes = [xvfb]
    width, height = (int(v) for v in size.split("x"))
    command = "while :; do ls -lR /usr/share; done" if busy else "sleep 3600"
    processes.append(
        subprocess.Popen(
            ["xterm", "-geometry", f"{width // 7}x{height // 14}+0+0", "-e", "sh", "-c", command],
            env={**os.environ, "DISPLAY": name},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    handle = Display(name, processes)
    try:
        yield handle
    finally:
        handle.stop()


@dataclass
class Capture:
    """What one capture process did."""

    frames: int
    bytes: int
    cpu_s: float
    wall_s: float
    segments: list[tuple[bytes, float, int]]

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s

    @property
    def span_s(self) -> float:
        """From the first captured frame to the end of the last one's frame slot."""
        if not self.segments:
            return 0.0
        _, last_start, last_frames = self.segments[-1]
        return last_start + last_frames / FPS - self.segments[0][1]

    @property
    def frame_rate(self) -> float:
        """Frames delivered per second of capturing."""
        return self.frames / self.span_s if self.span_s else 0.0

    def keeps_up(self) -> bool:
        return self.frame_rate >= KEEPS_UP * FPS


async def capture(name: str, seconds: float) -> Capture:
    """Runs the production capture process on a display for ``seconds``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lucid.rdp.capture",
        "--display",
        name,
        "--fps",
        str(FPS),
        "--segment-s",
        str(SEGMENT_S),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    handle = psutil.Process(process.pid)
    segments: list[tuple[bytes, float, int]] = []
    started = time.monotonic()

    async def read() -> None:
        assert process.stdout is not None
        segments.extend([s async for s in read_segments(process.stdout)])

    reader = asyncio.create_task(read())
    await asyncio.sleep(seconds)  # the measured recording time
    times = handle.cpu_times()
    cpu_s = times.user + times.system
    process.terminate()
    await reader
    await process.wait()
    wall = time.monotonic() - started
    return Capture(
        frames=sum(f for _, _, f in segments),
        bytes=sum(len(d) for d, _, _ in segments),
        cpu_s=cpu_s,
        wall_s=wall,
        segments=segments,
    )


async def _latency(ctx: BenchContext, segments: list[tuple[bytes, float, int]]) -> list[float]:
    """Stores segments through the real sessions cluster as the recorder does; seconds from
    the end of each segment's capture window to its chunk being durable, when sent at the
    moment the capture process hands it over."""
    env = await start_env(ctx.mesh, ctx.settings)
    try:
        md = bearer(await ctx.mesh.token())
        session = await env.create(md)
        await env.sessions.StartRecording(
            sessions_pb2.StartRecordingRequest(session_id=session.session_id), metadata=md
        )
        rdp = Runtime(env.mesh.settings, "rdp")  # calls go out as the rdp cluster
        sink = Recordings(rdp.channels)
        latencies = []
        for data, _, frames in segments:
            handed_over = time.time()
            await sink.upload(session.session_id, data, frames, datetime.now(UTC))
            latencies.append(time.time() - handed_over)
        await rdp.close()
        return latencies
    finally:
        await env.mesh.stop_all()


async def run(ctx: BenchContext) -> list[Figure]:
    if not (shutil.which("Xvfb") and shutil.which("xterm")):
        return []
    figures: list[Figure] = []
    busy_segments: list[tuple[bytes, float, int]] = []
    for size in SIZES:
        for busy in (False, True):
            label = f"{size} {'busy' if busy else 'static'}"
            with display(size, busy) as shown:
                result = await capture(shown.name, SECONDS)
            figures += [
                Figure(f"recorder CPU, {label}", result.cpu_percent, "% of one core"),
                Figure(
                    f"recorded bytes per minute, {label}",
                    result.bytes * 60 / result.wall_s / 1e6,
                    "MB/min",
                ),
                Figure(f"frames captured, {label}", result.frame_rate, "frames/s"),
            ]
            if busy and size == SIZES[0]:
                busy_segments = result.segments
    latencies = await _latency(ctx, busy_segments)
    figures += [
        Figure(
            "segment handed over → chunk durable, p50", statistics.median(latencies) * 1000, "ms"
        ),
        Figure("segment handed over → chunk durable, max", max(latencies) * 1000, "ms"),
        Figure(
            "frame captured → chunk durable, worst (segment length + upload)",
            (SEGMENT_S + max(latencies)) * 1000,
            "ms",
        ),
    ]
    sustained = 0
    for count in CONCURRENCY:
        with contextlib.ExitStack() as stack:
            shown = [stack.enter_context(display(SIZES[0], True)) for _ in range(count)]
            results = await asyncio.gather(*(capture(d.name, 15.0) for d in shown))
        slowest = min(r.frame_rate for r in results)
        figures.append(
            Figure(f"slowest of {count} busy {SIZES[0]} captures at once", slowest, "frames/s")
        )
        if not all(r.keeps_up() for r in results):
            break
        sustained = count
    figures.append(
        Figure(
            f"busy {SIZES[0]} desktops recorded at {FPS} fps at once without dropping",
            sustained,
            f"sessions ({os.cpu_count()} cores)",
        )
    )
    return figures
