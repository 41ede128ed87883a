"""A synthetic screen source (spec 03 §8): seeded RGB frames at a resolution and rate.

``FrameSource`` stands in for RDP capture in tests, benchmarks and the
checkpoint: the same seed gives the same frames, byte for byte. A frame is raw
RGB24 (width * height * 3 bytes): a moving gradient background with a few
seeded rectangles and a noisy "video" region in a corner, so consecutive frames
differ and compress roughly the way screen content does.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


def parse_resolution(text: str) -> tuple[int, int]:
    """``"1920x1080"`` → ``(1920, 1080)``."""
    width, _, height = text.partition("x")
    return int(width), int(height)


@dataclass
class FrameSource:
    """Seeded RGB24 frames."""

    width: int = 320
    height: int = 240
    fps: int = 30
    seed: int = 0

    @property
    def frame_bytes(self) -> int:
        """The size of one frame."""
        return self.width * self.height * 3

    @property
    def frame_interval_s(self) -> float:
        """The recorded time one frame covers."""
        return 1.0 / self.fps

    def frame(self, index: int) -> bytes:
        """Frame ``index`` (deterministic in seed and index)."""
        rng = random.Random(self.seed * 1_000_003 + index)  # noqa: S311 (synthetic pixels)
        row = bytes(
            channel % 256
            for x in range(self.width)
            for channel in (x + index, 2 * x + index, 255 - x + index)
        )
        pixels = bytearray(row * self.height)
        for _ in range(4):
            w = rng.randint(1, max(1, self.width // 4))
            h = rng.randint(1, max(1, self.height // 4))
            x0 = rng.randint(0, self.width - w)
            y0 = rng.randint(0, self.height - h)
            color = bytes(rng.getrandbits(8) for _ in range(3)) * w
            for y in range(y0, y0 + h):
                start = (y * self.width + x0) * 3
                pixels[start : start + w * 3] = color
        # a "video" region of noise (a ninth of the screen) keeps compression realistic
        w, h = max(1, self.width // 3), max(1, self.height // 3)
        noise = rng.randbytes(w * h * 3)
        for y in range(h):
            start = (y * self.width) * 3
            pixels[start : start + w * 3] = noise[y * w * 3 : (y + 1) * w * 3]
        return bytes(pixels)

    def frames(self, count: int, start: int = 0) -> Iterator[bytes]:
        """``count`` frames from index ``start``."""
        for index in range(start, start + count):
            yield self.frame(index)
