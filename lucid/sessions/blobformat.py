"""The sealed chunk blob (DECISIONS "Cryptography"): zstd, then XChaCha20-Poly1305-IETF.

A chunk's raw bytes are compressed with zstd (level 3 by default) and encrypted
under a per-session key derived from a master key with a BLAKE2b KDF. The stored
blob is self-describing:

    magic "LCB" ‖ format version (1 B) ‖ key id length (1 B) ‖ key id (ASCII)
    ‖ nonce (24 B) ‖ ciphertext ‖ Poly1305 tag (16 B)

The associated data binds the header, the session id and the sequence number,
so a blob moved to another session or position fails authentication. The
chunk's Merkle leaf entry is the SHA-256 of the whole blob (checkable without
keys); the SHA-256 of the raw bytes is its checksum. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, replace

import nacl.bindings
import nacl.exceptions
import nacl.utils
import zstandard

MAGIC = b"LCB"
FORMAT_VERSION = 1
NONCE_BYTES = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
TAG_BYTES = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES
KEY_BYTES = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
MAX_CHUNK_BYTES = 10 * 1024 * 1024
"""The largest raw chunk (10,485,760 B, spec 03 §4)."""
DEFAULT_ZSTD_LEVEL = 3
KDF_PERSON = b"lucid-chunk-key1"
"""BLAKE2b personalization of the per-session key derivation (16 bytes)."""
COMPRESSION = "zstd"
AEAD = "xchacha20poly1305-ietf"
KEY_DERIVATION = "blake2b-kdf"


class BlobError(ValueError):
    """A blob that is malformed, altered, or sealed under another key or position."""


@dataclass(frozen=True)
class SealedChunk:
    """What sealing one chunk produced."""

    blob: bytes
    blob_sha256: str
    """Hex SHA-256 of the blob: the Merkle leaf entry."""
    checksum: str
    """Hex SHA-256 of the raw bytes."""
    raw_size: int
    compressed_size: int


def session_key(master_key: bytes, session_id: str) -> bytes:
    """The session's 32-byte key: BLAKE2b keyed by the master key, salted with the session id."""
    if len(master_key) != KEY_BYTES:
        raise ValueError("the master key must be 32 bytes")
    salt = uuid.UUID(session_id).bytes
    return hashlib.blake2b(
        b"", digest_size=KEY_BYTES, key=master_key, salt=salt, person=KDF_PERSON
    ).digest()


def associated_data(header: bytes, session_id: str, sequence_number: int) -> bytes:
    """What the tag authenticates besides the ciphertext."""
    return header + f"{session_id}:{sequence_number}".encode()


def _header(key_id: str, nonce: bytes) -> bytes:
    raw_id = key_id.encode("ascii")
    if not 0 < len(raw_id) < 256:
        raise ValueError("a key id is 1 to 255 ASCII characters")
    return MAGIC + bytes([FORMAT_VERSION, len(raw_id)]) + raw_id + nonce


def header_size(key_id: str) -> int:
    """The header's size for a key id; a blob is compressed size + header + 16 B."""
    return len(MAGIC) + 2 + len(key_id.encode("ascii")) + NONCE_BYTES


def checksum_of(*pieces: bytes) -> str:
    """The hex SHA-256 of a chunk's raw bytes (its checksum), given whole or in pieces."""
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(piece)
    return digest.hexdigest()


def seal_blob(
    data: bytes,
    *,
    session_id: str,
    sequence_number: int,
    key: bytes,
    key_id: str,
    level: int = DEFAULT_ZSTD_LEVEL,
) -> SealedChunk:
    """Compresses and encrypts one chunk's raw bytes and hashes the blob: everything
    ``seal_chunk`` does but hashing the raw bytes (``checksum`` is left empty, for a
    caller that hashes them at the same time in another thread)."""
    if len(data) > MAX_CHUNK_BYTES:
        raise BlobError(f"a chunk holds at most {MAX_CHUNK_BYTES} bytes")
    compressed = zstandard.ZstdCompressor(level=level).compress(data)
    nonce = nacl.utils.random(NONCE_BYTES)
    header = _header(key_id, nonce)
    sealed = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        compressed, associated_data(header, session_id, sequence_number), nonce, key
    )
    blob = header + sealed
    return SealedChunk(
        blob=blob,
        blob_sha256=hashlib.sha256(blob).hexdigest(),
        checksum="",
        raw_size=len(data),
        compressed_size=len(compressed),
    )


def seal_chunk(
    data: bytes,
    *,
    session_id: str,
    sequence_number: int,
    key: bytes,
    key_id: str,
    level: int = DEFAULT_ZSTD_LEVEL,
    checksum: str | None = None,
) -> SealedChunk:
    """Compresses and encrypts one chunk's raw bytes (``checksum``: their hex SHA-256
    when the caller already has it, so the bytes are not hashed again)."""
    sealed = seal_blob(
        data,
        session_id=session_id,
        sequence_number=sequence_number,
        key=key,
        key_id=key_id,
        level=level,
    )
    return replace(sealed, checksum=checksum or checksum_of(data))


@dataclass(frozen=True)
class BlobHeader:
    """The parsed header of a blob."""

    version: int
    key_id: str
    nonce: bytes
    size: int


def read_header(blob: bytes) -> BlobHeader:
    """Parses a blob's header; raises ``BlobError`` when it is not one."""
    if len(blob) < len(MAGIC) + 2 or not blob.startswith(MAGIC):
        raise BlobError("not a Lucid chunk blob")
    version, id_len = blob[3], blob[4]
    if version != FORMAT_VERSION:
        raise BlobError(f"unknown blob format version {version}")
    end = 5 + id_len + NONCE_BYTES
    if id_len == 0 or len(blob) < end + TAG_BYTES:
        raise BlobError("truncated blob")
    try:
        key_id = blob[5 : 5 + id_len].decode("ascii")
    except UnicodeDecodeError as exc:
        raise BlobError("malformed key id") from exc
    return BlobHeader(version, key_id, blob[5 + id_len : end], end)


def open_chunk(
    blob: bytes,
    *,
    session_id: str,
    sequence_number: int,
    key: bytes,
    max_size: int = MAX_CHUNK_BYTES,
) -> bytes:
    """Decrypts and decompresses a blob; raises ``BlobError`` if anything was altered."""
    header = read_header(blob)
    try:
        compressed = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            blob[header.size :],
            associated_data(blob[: header.size], session_id, sequence_number),
            header.nonce,
            key,
        )
    except nacl.exceptions.CryptoError as exc:
        raise BlobError("the blob fails authentication") from exc
    try:
        return bytes(zstandard.ZstdDecompressor().decompress(compressed, max_output_size=max_size))
    except zstandard.ZstdError as exc:
        raise BlobError(f"the blob does not decompress: {exc}") from exc
