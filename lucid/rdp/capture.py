"""The recorder's capture process: grabs an X display and writes video segments.

Run as ``python -m lucid.rdp.capture --display :10 --fps 10 --segment-s 2 --size
1024x768`` with ``XAUTHORITY`` set to the desktop account's cookie file. Frames come from FFmpeg's
``x11grab`` (MIT-SHM when the server offers it), bundled in PyAV's wheel, so the
capture is the session's own display, exactly what the RDP user sees. They are
encoded as H.264 (libx264, ``ultrafast``/``zerolatency``) in MPEG-TS: every segment
has its own encoder, so it starts with an IDR frame carrying SPS/PPS and decodes on
its own, and timestamps run on across segments, so the segments of a recording
concatenated byte for byte are one playable ``.ts`` file (as HLS does).

Each segment goes to stdout as a header (``SEGMENT_HEADER``: payload length, capture
time of its first frame, frame count) and the payload. SIGTERM ends the current
segment early, writes it, and exits 0. ``--size`` scales every frame to the
recording's resolution (FFmpeg's swscale, in the same step as the conversion to
YUV 4:2:0); without it frames keep the display's own size. ``--snapshot FILE``
saves one RGB frame as a NumPy ``.npy`` file instead (for checks against the
recording).
"""

from __future__ import annotations

import argparse
import io
import signal
import struct
import sys
import time
from typing import Any, BinaryIO

import av
import numpy as np
from av.video.stream import VideoStream

SEGMENT_HEADER = struct.Struct(">Idi")
"""Payload length (bytes), capture time of the first frame (epoch s), frame count."""
CODEC = "libx264"
CONTAINER = "mpegts"


class _Stop:
    requested = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.requested = True


def parse_size(size: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` → (width, height), each rounded down to even (YUV 4:2:0)."""
    width, _, height = size.partition("x")
    if not (width.isdigit() and height.isdigit()) or int(width) < 2 or int(height) < 2:
        raise ValueError(f"not a WIDTHxHEIGHT size: {size!r}")
    return int(width) & ~1, int(height) & ~1


def open_display(display: str, fps: int) -> Any:
    """The ``x11grab`` input of an X display."""
    return av.open(display, format="x11grab", options={"framerate": str(fps), "draw_mouse": "0"})


class SegmentWriter:
    """Encodes frames into one self-contained MPEG-TS segment."""

    def __init__(self, width: int, height: int, fps: int, first_pts: int) -> None:
        self.buffer = io.BytesIO()
        self.container = av.open(self.buffer, "w", format=CONTAINER)
        stream = self.container.add_stream(
            CODEC, rate=fps, options={"preset": "ultrafast", "tune": "zerolatency"}
        )
        assert isinstance(stream, VideoStream)
        self.stream = stream
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        self.width, self.height = width, height
        self.pts = first_pts
        self.frames = 0

    def add(self, frame: Any) -> None:
        """Encodes one captured frame."""
        out = frame.reformat(width=self.width, height=self.height, format="yuv420p")
        out.pts = self.pts
        self.pts += 1
        self.frames += 1
        for packet in self.stream.encode(out):
            self.container.mux(packet)

    def finish(self) -> bytes:
        """Flushes the encoder and returns the segment."""
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        return self.buffer.getvalue()


def write_segment(out: BinaryIO, data: bytes, started: float, frames: int) -> None:
    """One framed segment on ``out``."""
    out.write(SEGMENT_HEADER.pack(len(data), started, frames))
    out.write(data)
    out.flush()


def record(
    display: str, fps: int, segment_s: float, out: BinaryIO, size: tuple[int, int] | None = None
) -> int:
    """Captures until SIGTERM or until the display goes away; frames scaled to
    ``size`` when given."""
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    source = open_display(display, fps)
    video = source.streams.video[0]
    width, height = size or (video.codec_context.width & ~1, video.codec_context.height & ~1)
    per_segment = max(1, round(fps * segment_s))
    pts = 0
    writer: SegmentWriter | None = None
    started = 0.0
    status = 0
    try:
        for frame in source.decode(video):
            if writer is None:
                writer, started = SegmentWriter(width, height, fps, pts), time.time()
            writer.add(frame)
            if writer.frames >= per_segment or stop.requested:
                pts = writer.pts
                write_segment(out, writer.finish(), started, writer.frames)
                writer = None
            if stop.requested:
                break
    except (av.FFmpegError, OSError):
        status = 3  # the display went away
    finally:
        if writer is not None and writer.frames:
            write_segment(out, writer.finish(), started, writer.frames)
        source.close()
    return status


def snapshot(display: str) -> np.ndarray[Any, Any]:
    """One frame of the display as an RGB array."""
    source = open_display(display, 10)
    try:
        frame = next(source.decode(video=0))
        return frame.to_ndarray(format="rgb24")  # type: ignore[no-any-return]
    finally:
        source.close()


def main(argv: list[str] | None = None) -> int:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m lucid.rdp.capture")
    parser.add_argument("--display", required=True)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--segment-s", type=float, default=2.0)
    parser.add_argument("--size", default="", help="WIDTHxHEIGHT (default: the display's)")
    parser.add_argument("--snapshot", default="")
    args = parser.parse_args(argv)
    size = parse_size(args.size) if args.size else None
    if args.snapshot:
        np.save(args.snapshot, snapshot(args.display))
        return 0
    return record(args.display, args.fps, args.segment_s, sys.stdout.buffer, size)


if __name__ == "__main__":
    sys.exit(main())
