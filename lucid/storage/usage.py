"""Disk usage of a directory under a logical quota: du, statvfs and alert levels.

Spec 08 §4: usage alerts at 80 % (warning) and 90 % (critical). The usage of a
volume is the larger of its use of its quota and the use of the file system it
lives on, so a full disk raises the alert even when the quota has room.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from lucid.storage.v1 import volume_pb2

WARNING_PERCENT = 80.0
CRITICAL_PERCENT = 90.0


@dataclass(frozen=True)
class DirectoryUsage:
    """What a directory holds and how full its quota and file system are."""

    used_bytes: int
    file_count: int
    quota_bytes: int
    fs_total_bytes: int
    fs_free_bytes: int

    @property
    def free_bytes(self) -> int:
        """Bytes that can still be written: under the quota and on the disk."""
        return max(0, min(self.quota_bytes - self.used_bytes, self.fs_free_bytes))

    @property
    def usage_percent(self) -> float:
        """The larger of quota use and file-system use, in percent."""
        quota = 100.0 * self.used_bytes / self.quota_bytes if self.quota_bytes else 0.0
        disk = (
            100.0 * (self.fs_total_bytes - self.fs_free_bytes) / self.fs_total_bytes
            if self.fs_total_bytes
            else 0.0
        )
        return round(max(quota, disk), 3)

    @property
    def alert_level(self) -> volume_pb2.AlertLevel.ValueType:
        """``ALERT_LEVEL_*`` of ``usage_percent``."""
        return alert_level(self.usage_percent)


def alert_level(percent: float) -> volume_pb2.AlertLevel.ValueType:
    """The alert level of a usage percentage."""
    if percent >= CRITICAL_PERCENT:
        return volume_pb2.ALERT_LEVEL_CRITICAL
    if percent >= WARNING_PERCENT:
        return volume_pb2.ALERT_LEVEL_WARNING
    return volume_pb2.ALERT_LEVEL_UNSPECIFIED


def du(path: Path) -> tuple[int, int]:
    """Bytes and files under ``path`` (apparent sizes, symlinks not followed)."""
    total = files = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:  # removed while walking
                continue
            files += 1
    return total, files


def measure(path: Path, quota_bytes: int) -> DirectoryUsage:
    """The usage of ``path`` (which must exist) against ``quota_bytes``."""
    used, files = du(path)
    stats = os.statvfs(path)
    return DirectoryUsage(
        used_bytes=used,
        file_count=files,
        quota_bytes=quota_bytes,
        fs_total_bytes=stats.f_blocks * stats.f_frsize,
        fs_free_bytes=stats.f_bavail * stats.f_frsize,
    )


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, hex, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def probe_writable(path: Path) -> None:
    """Writes and removes a probe file; raises ``OSError`` if the directory is not writable."""
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a directory")
    probe = path / f".lucid-probe-{os.getpid()}"
    probe.write_bytes(b"probe")
    probe.unlink()
