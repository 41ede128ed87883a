"""The content-addressed blob store of chunk blobs on a local volume.

A blob is named by its SHA-256: ``<root>/<h[0:2]>/<h[2:4]>/<h>``. Writing goes
to a temporary file in ``<root>/tmp``, which is fsynced, renamed atomically into
place, and the directory is fsynced, so a blob that exists under its name is
complete and durable. Reading checks the name against the content: a blob
altered on disk is reported, never returned. Calls block; the service runs them
in a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import uuid
from pathlib import Path

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class BlobCorruptedError(Exception):
    """A stored blob does not match its hash (or is missing)."""


class BlobStore:
    """Blobs under one directory, by SHA-256."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"

    def ensure(self) -> None:
        """Creates the directories."""
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path_of(self, digest: str) -> Path:
        """Where the blob of ``digest`` lives."""
        if not _HEX64.match(digest):
            raise ValueError(f"not a SHA-256 hex digest: {digest!r}")
        return self.root / digest[:2] / digest[2:4] / digest

    def relative_path(self, digest: str) -> str:
        """The blob's path relative to the volume root (what manifests record)."""
        return str(self.path_of(digest).relative_to(self.root))

    def put(self, blob: bytes, digest: str | None = None) -> str:
        """Stores ``blob`` durably and returns its hex SHA-256."""
        digest = digest or hashlib.sha256(blob).hexdigest()
        final = self.path_of(digest)
        if final.exists() and final.stat().st_size == len(blob):
            return digest
        self.ensure()
        _make_dirs(self.root, final.parent)
        temp = self.tmp / f"{digest}.{uuid.uuid4().hex}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(blob)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        _fsync_dir(final.parent)
        return digest

    def get(self, digest: str) -> bytes:
        """The blob of ``digest``; raises ``BlobCorruptedError`` if it is missing or altered."""
        try:
            blob = self.path_of(digest).read_bytes()
        except FileNotFoundError as exc:
            raise BlobCorruptedError(f"blob {digest} is missing") from exc
        if hashlib.sha256(blob).hexdigest() != digest:
            raise BlobCorruptedError(f"blob {digest} does not match its hash")
        return blob

    def exists(self, digest: str) -> bool:
        """Whether a blob is stored under ``digest``."""
        return self.path_of(digest).is_file()

    def delete(self, digest: str) -> None:
        """Removes a blob (no error when it is already gone)."""
        path = self.path_of(digest)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            _fsync_dir(path.parent)

    def clean_temp(self) -> int:
        """Removes temporary files left by a crash; returns how many."""
        if not self.tmp.is_dir():
            return 0
        count = 0
        for entry in self.tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                count += 1
        return count

    def free_bytes(self) -> int:
        """Free space on the volume."""
        self.ensure()
        return shutil.disk_usage(self.root).free


def _make_dirs(root: Path, target: Path) -> None:
    """Creates ``target`` under ``root`` level by level, fsyncing each new entry's parent."""
    current = root
    for part in target.relative_to(root).parts:
        parent, current = current, current / part
        if not current.is_dir():
            with contextlib.suppress(FileExistsError):
                current.mkdir()
            _fsync_dir(parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
