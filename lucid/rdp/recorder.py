"""The recorder: one capture process per recorded RDP session, its segments streamed
into cluster 03's chunk upload.

It waits until the desktop account has an X session (the display appears when a
client has logged in; a wrong password never starts one, so nothing is recorded),
runs ``python -m lucid.rdp.capture`` against that display with the account's
cookie file, at the recording's frame rate and resolution, and uploads each
segment as it comes. If the display goes away it waits for the next one.
``stop`` ends the capture with SIGTERM (the partial last segment is written) and
returns once every segment is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lucid.rdp.backend import Display, RdpBackend
from lucid.rdp.capture import SEGMENT_HEADER
from lucid.rdp.recording import SegmentSink

log = logging.getLogger("lucid.rdp.recorder")

DISPLAY_POLL_S = 0.2
STOP_TIMEOUT_S = 20.0


async def read_segments(stream: asyncio.StreamReader) -> AsyncIterator[tuple[bytes, float, int]]:
    """The segments a capture process writes: (data, capture time of the first frame,
    frame count), until it exits. A segment cut short by the process dying is dropped
    (it would not decode)."""
    while True:
        try:
            header = await stream.readexactly(SEGMENT_HEADER.size)
            size, started, frames = SEGMENT_HEADER.unpack(header)
            data = await stream.readexactly(size)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                log.warning(
                    "a capture process ended inside a segment; %d bytes dropped", len(exc.partial)
                )
            return
        yield data, started, frames


@dataclass
class RecorderStats:
    """What one recording did."""

    segments: int = 0
    frames: int = 0
    bytes: int = 0
    last_sequence: int = 0
    latencies_s: list[float] = field(default_factory=list)
    """Capture of a segment's first frame → its chunk durable."""
    started: float = field(default_factory=time.monotonic)

    @property
    def fps(self) -> float:
        """Frames stored per second since the recording began."""
        elapsed = time.monotonic() - self.started
        return self.frames / elapsed if elapsed > 0 else 0.0


@dataclass
class _Recording:
    session_id: str
    username: str
    stopping: asyncio.Event
    stats: RecorderStats
    task: asyncio.Task[None] | None = None
    process: asyncio.subprocess.Process | None = None


class Recorder:
    """Runs and stops the captures of recorded sessions."""

    def __init__(
        self,
        backend: RdpBackend,
        sink: SegmentSink,
        *,
        frame_rate: int,
        resolution: str,
        segment_s: float,
    ) -> None:
        self.backend = backend
        self.sink = sink
        self.frame_rate = frame_rate
        self.resolution = resolution
        self.segment_s = segment_s
        self._recordings: dict[str, _Recording] = {}

    def start(self, session_id: str, username: str) -> None:
        """Begins recording the account's desktop for a session."""
        if session_id in self._recordings:
            return
        recording = _Recording(session_id, username, asyncio.Event(), RecorderStats())
        recording.task = asyncio.create_task(self._run(recording))
        self._recordings[session_id] = recording

    def stats(self, session_id: str) -> RecorderStats | None:
        """The statistics of a running recording."""
        recording = self._recordings.get(session_id)
        return recording.stats if recording else None

    def rates(self) -> dict[str, float]:
        """Frames stored per second of each running recording, by session id."""
        return {sid: r.stats.fps for sid, r in list(self._recordings.items())}

    async def stop(self, session_id: str) -> RecorderStats:
        """Ends a recording once its last segment is stored."""
        recording = self._recordings.pop(session_id, None)
        if recording is None:
            return RecorderStats()
        recording.stopping.set()
        if recording.process is not None and recording.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                recording.process.send_signal(signal.SIGTERM)
        assert recording.task is not None
        try:
            await asyncio.wait_for(recording.task, STOP_TIMEOUT_S)
        except TimeoutError:
            log.error("recording %s did not end in time", session_id)
        return recording.stats

    async def stop_all(self) -> None:
        """Ends every recording."""
        await asyncio.gather(*(self.stop(sid) for sid in list(self._recordings)))

    async def _wait_display(self, recording: _Recording) -> Display | None:
        while not recording.stopping.is_set():
            display = await asyncio.to_thread(self.backend.display, recording.username)
            if display is not None:
                return display
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(recording.stopping.wait(), DISPLAY_POLL_S)
        return None

    async def _run(self, recording: _Recording) -> None:
        while not recording.stopping.is_set():
            display = await self._wait_display(recording)
            if display is None:
                return
            try:
                await self._capture(recording, display)
            except Exception:
                log.exception("recording %s: capture failed", recording.session_id)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(recording.stopping.wait(), 1.0)

    async def _capture(self, recording: _Recording, display: Display) -> None:
        env = {**os.environ, "XAUTHORITY": str(display.xauthority)}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lucid.rdp.capture",
            "--display",
            display.name,
            "--fps",
            str(self.frame_rate),
            "--size",
            self.resolution,
            "--segment-s",
            str(self.segment_s),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
        )
        recording.process = process
        if recording.stopping.is_set():  # stop() ran before the process existed
            process.send_signal(signal.SIGTERM)
        assert process.stdout is not None
        try:
            async for data, started, frames in read_segments(process.stdout):
                await self._store(recording, data, started, frames)
        finally:
            if process.returncode is None and not recording.stopping.is_set():
                process.send_signal(signal.SIGTERM)
            await process.wait()
            recording.process = None

    async def _store(self, recording: _Recording, data: bytes, started: float, frames: int) -> None:
        captured = datetime.fromtimestamp(started, UTC)
        sequence = await self.sink.upload(recording.session_id, data, frames, captured)
        stats = recording.stats
        stats.segments += 1
        stats.frames += frames
        stats.bytes += len(data)
        stats.last_sequence = sequence
        stats.latencies_s.append(time.time() - started)
