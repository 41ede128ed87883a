"""The on-disk format of a backup: framed, compressed, encrypted BSON and a manifest.

A backup is a directory holding one file per collection and ``manifest.json``:

* a collection file is a sequence of frames, each ``length (4 bytes, big
  endian) ‖ payload``; a payload is a batch of raw BSON documents, compressed
  with zstd and sealed with a secretbox (random 24-byte nonce) under the
  backup's data key;
* the data key is random per backup and stored in the manifest sealed with
  ``lucid.lib.sealing`` (secretbox under the Argon2id key of the sealing
  passphrase);
* the manifest lists each file's SHA-256, size and document count and the
  collection's indexes, and carries a BLAKE2b MAC under the data key;
* the backup record keeps the SHA-256 of the manifest.

``verify`` checks all of it and decodes every frame before a restore writes
anything, so a flipped byte, a truncated file or an edited manifest is refused
with nothing restored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bson
import nacl.exceptions
import nacl.secret
import nacl.utils
import zstandard
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

from lucid.lib.sealing import Sealer, SealError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FRAME_TARGET_BYTES = 4 * 1024 * 1024
MAX_FRAME_BYTES = 64 * 1024 * 1024
ZSTD_LEVEL = 3
RAW = CodecOptions(document_class=RawBSONDocument, tz_aware=True)


class BackupCorruptedError(Exception):
    """A backup's files or manifest fail their checks."""


@dataclass
class CollectionEntry:
    """One collection in a manifest."""

    name: str
    file: str
    documents: int = 0
    size_bytes: int = 0
    sha256: str = ""
    indexes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Manifest:
    """What a backup holds and how to check it."""

    backup_id: str
    database: str
    created: str
    compression: bool
    encryption: bool
    sealed_key: str = ""
    collections: list[CollectionEntry] = field(default_factory=list)
    mac: str = ""

    def body(self) -> dict[str, Any]:
        """The manifest without its MAC, as stored."""
        return {
            "format": FORMAT_VERSION,
            "backup_id": self.backup_id,
            "database": self.database,
            "created": self.created,
            "compression": "zstd" if self.compression else "none",
            "encryption": "secretbox" if self.encryption else "none",
            "sealed_key": self.sealed_key,
            "collections": [vars(c) for c in self.collections],
        }

    def to_bytes(self) -> bytes:
        """The manifest file's content."""
        return json.dumps({**self.body(), "mac": self.mac}, indent=1, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Reads a manifest; raises ``BackupCorruptedError`` if it is not one."""
        try:
            raw = json.loads(data)
            if raw["format"] != FORMAT_VERSION:
                raise BackupCorruptedError(f"unknown backup format {raw['format']}")
            return cls(
                backup_id=raw["backup_id"],
                database=raw["database"],
                created=raw["created"],
                compression=raw["compression"] == "zstd",
                encryption=raw["encryption"] == "secretbox",
                sealed_key=raw["sealed_key"],
                collections=[CollectionEntry(**c) for c in raw["collections"]],
                mac=raw["mac"],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise BackupCorruptedError(f"the manifest cannot be read: {exc}") from exc


def _mac(key: bytes, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.blake2b(canonical, key=key, digest_size=32).hexdigest()


def manifest_checksum(data: bytes) -> str:
    """The SHA-256 of a manifest file, hex (kept in the backup record)."""
    return hashlib.sha256(data).hexdigest()


class FrameCodec:
    """Compresses and seals frames with one backup's settings."""

    def __init__(self, *, compression: bool, key: bytes | None) -> None:
        self.compression = compression
        self.box = nacl.secret.SecretBox(key) if key is not None else None
        self._compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self._decompressor = zstandard.ZstdDecompressor()

    def encode(self, plain: bytes) -> bytes:
        """A frame of ``plain`` (raw BSON documents)."""
        data = self._compressor.compress(plain) if self.compression else plain
        if self.box is not None:
            data = bytes(self.box.encrypt(data))
        return struct.pack(">I", len(data)) + data

    def decode(self, payload: bytes) -> bytes:
        """The raw BSON of a frame's payload; raises ``BackupCorruptedError``."""
        try:
            data = bytes(self.box.decrypt(payload)) if self.box is not None else payload
            if self.compression:
                data = self._decompressor.decompress(data, max_output_size=MAX_FRAME_BYTES * 4)
        except (nacl.exceptions.CryptoError, zstandard.ZstdError) as exc:
            raise BackupCorruptedError(
                f"a frame cannot be decrypted or decompressed: {exc}"
            ) from exc
        return data


def frames(path: Path) -> Iterator[bytes]:
    """The payloads of a collection file; raises ``BackupCorruptedError`` on truncation."""
    with path.open("rb") as fh:
        while header := fh.read(4):
            if len(header) < 4:
                raise BackupCorruptedError(f"{path.name} is truncated")
            (length,) = struct.unpack(">I", header)
            if length > MAX_FRAME_BYTES:
                raise BackupCorruptedError(f"{path.name} has an impossible frame length")
            payload = fh.read(length)
            if len(payload) != length:
                raise BackupCorruptedError(f"{path.name} is truncated")
            yield payload


def documents(data: bytes) -> list[RawBSONDocument]:
    """The raw documents of a decoded frame."""
    try:
        return bson.decode_all(data, RAW)
    except (bson.errors.InvalidBSON, ValueError) as exc:
        raise BackupCorruptedError(f"a frame holds invalid BSON: {exc}") from exc


def new_data_key(sealer: Sealer | None) -> tuple[bytes | None, str]:
    """A fresh data key and its sealed form (``None``, "" without encryption)."""
    if sealer is None:
        return None, ""
    key = nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE)
    return key, base64.b64encode(sealer.seal(key)).decode()


def seal_manifest(manifest: Manifest, key: bytes | None) -> bytes:
    """The manifest's bytes with its MAC set (no MAC without encryption)."""
    manifest.mac = _mac(key, manifest.body()) if key is not None else ""
    return manifest.to_bytes()


@dataclass
class VerifiedBackup:
    """A backup whose every check passed, ready to restore."""

    directory: Path
    manifest: Manifest
    codec: FrameCodec


def verify(
    directory: Path, expected_checksum: str, sealer: Sealer | None, collections: list[str]
) -> VerifiedBackup:
    """Checks a backup completely (blocking; run it in a thread): the manifest's
    SHA-256 against the record, its MAC, each chosen file's SHA-256 and size, and
    that every frame decrypts, decompresses and holds the counted documents."""
    try:
        data = (directory / MANIFEST).read_bytes()
    except FileNotFoundError as exc:
        raise BackupCorruptedError("the manifest is missing") from exc
    if not hmac.compare_digest(manifest_checksum(data), expected_checksum):
        raise BackupCorruptedError("the manifest does not match the backup's recorded SHA-256")
    manifest = Manifest.from_bytes(data)
    key: bytes | None = None
    if manifest.encryption:
        if sealer is None:
            raise BackupCorruptedError("the backup is encrypted and no key is configured")
        try:
            key = sealer.unseal(base64.b64decode(manifest.sealed_key))
        except (SealError, ValueError) as exc:
            raise BackupCorruptedError("the backup's data key cannot be unsealed") from exc
        if not hmac.compare_digest(_mac(key, manifest.body()), manifest.mac):
            raise BackupCorruptedError("the manifest's MAC does not verify")
    codec = FrameCodec(compression=manifest.compression, key=key)
    entries = {c.name: c for c in manifest.collections}
    for name in collections or list(entries):
        entry = entries.get(name)
        if entry is None:
            raise KeyError(name)
        path = directory / entry.file
        if not path.is_file():
            raise BackupCorruptedError(f"{entry.file} is missing")
        digest = hashlib.sha256()
        size = 0
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
        if size != entry.size_bytes or not hmac.compare_digest(digest.hexdigest(), entry.sha256):
            raise BackupCorruptedError(f"{entry.file} does not match its SHA-256 in the manifest")
        count = sum(len(documents(codec.decode(p))) for p in frames(path))
        if count != entry.documents:
            raise BackupCorruptedError(
                f"{entry.file} holds {count} documents, not {entry.documents}"
            )
    return VerifiedBackup(directory, manifest, codec)


def file_name(index: int, manifest: Manifest) -> str:
    """The file name of the ``index``-th collection (names never come from user input)."""
    suffix = ".zst" if manifest.compression else ""
    suffix += ".enc" if manifest.encryption else ""
    return f"{index:04d}.bson{suffix}"
