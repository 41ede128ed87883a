"""The sealed chunk blob, the blob store and the synthetic screen source (pure parts)."""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import zstandard

from lucid.lib import manifestdoc, merkle
from lucid.sessions import blobformat
from lucid.sessions.blobstore import BlobCorruptedError, BlobStore
from lucid.sessions.frames import FrameSource
from lucid.sessions.states import TRANSITIONS, State, can_move

SESSION = str(uuid.uuid4())
MASTER = bytes(range(32))


def _seal(data: bytes, seq: int = 1, key_id: str = "chunk-0123456789ab") -> blobformat.SealedChunk:
    return blobformat.seal_chunk(
        data,
        session_id=SESSION,
        sequence_number=seq,
        key=blobformat.session_key(MASTER, SESSION),
        key_id=key_id,
    )


def test_blob_is_compressed_size_plus_header_and_tag_and_opens() -> None:
    """§7.4 with the blob format of DECISIONS (versioned header instead of a salt)."""
    data = os.urandom(4096) + bytes(60_000)
    sealed = _seal(data)
    compressed = zstandard.ZstdCompressor(level=3).compress(data)
    overhead = blobformat.header_size("chunk-0123456789ab") + blobformat.TAG_BYTES
    assert len(sealed.blob) == len(compressed) + overhead == sealed.compressed_size + overhead
    assert sealed.blob_sha256 == hashlib.sha256(sealed.blob).hexdigest()
    assert sealed.checksum == hashlib.sha256(data).hexdigest()
    key = blobformat.session_key(MASTER, SESSION)
    assert (
        blobformat.open_chunk(sealed.blob, session_id=SESSION, sequence_number=1, key=key) == data
    )
    header = blobformat.read_header(sealed.blob)
    assert header.version == 1 and header.key_id == "chunk-0123456789ab"


def test_every_flipped_byte_fails_authentication() -> None:
    sealed = _seal(b"screen bytes " * 100)
    key = blobformat.session_key(MASTER, SESSION)
    for index in range(len(sealed.blob)):
        altered = bytearray(sealed.blob)
        altered[index] ^= 0x40
        with pytest.raises(blobformat.BlobError):
            blobformat.open_chunk(bytes(altered), session_id=SESSION, sequence_number=1, key=key)


def test_a_blob_is_bound_to_its_session_sequence_and_key() -> None:
    sealed = _seal(b"bound", seq=7)
    key = blobformat.session_key(MASTER, SESSION)
    other = str(uuid.uuid4())
    with pytest.raises(blobformat.BlobError):
        blobformat.open_chunk(sealed.blob, session_id=SESSION, sequence_number=8, key=key)
    with pytest.raises(blobformat.BlobError):
        blobformat.open_chunk(
            sealed.blob,
            session_id=other,
            sequence_number=7,
            key=blobformat.session_key(MASTER, other),
        )
    with pytest.raises(blobformat.BlobError):
        blobformat.open_chunk(
            sealed.blob,
            session_id=SESSION,
            sequence_number=7,
            key=blobformat.session_key(bytes(32), SESSION),
        )
    assert blobformat.session_key(MASTER, SESSION) != blobformat.session_key(MASTER, other)


def test_same_bytes_seal_to_different_blobs() -> None:
    assert _seal(b"same").blob != _seal(b"same").blob


def test_chunks_over_10_mib_are_refused() -> None:
    with pytest.raises(blobformat.BlobError):
        _seal(bytes(blobformat.MAX_CHUNK_BYTES + 1))


def test_blob_store_is_content_addressed_and_finds_alteration(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(b"a blob")
    assert digest == hashlib.sha256(b"a blob").hexdigest()
    assert store.get(digest) == b"a blob"
    assert store.put(b"a blob") == digest
    assert not list(store.tmp.iterdir())
    store.path_of(digest).write_bytes(b"a blob!")
    with pytest.raises(BlobCorruptedError):
        store.get(digest)
    store.delete(digest)
    with pytest.raises(BlobCorruptedError):
        store.get(digest)
    (store.tmp / "left-by-a-crash").write_bytes(b"x")
    assert store.clean_temp() == 1


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_session_roots_match_the_reference(count: int) -> None:
    """§7.5: roots of 1, 2, 3, 5 chunk leaves, and every proof verifies."""
    entries = [hashlib.sha256(bytes([i])).digest() for i in range(count)]
    leaves = [merkle.leaf_hash(e) for e in entries]

    def reference(nodes: list[bytes]) -> bytes:
        if len(nodes) == 1:
            return nodes[0]
        k = 1 << ((len(nodes) - 1).bit_length() - 1)
        return hashlib.sha256(b"\x01" + reference(nodes[:k]) + reference(nodes[k:])).digest()

    tree = merkle.MerkleTree(leaves)
    assert tree.root == reference(leaves) == merkle.root(leaves)
    for index in range(count):
        assert merkle.verify_inclusion(leaves[index], index, count, tree.proof(index), tree.root)


def test_manifest_document_is_canonical() -> None:
    moment = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    document = manifestdoc.signed_document(
        manifest_id="m",
        manifest_version="1.0",
        session_id="s",
        owner_user_id="o",
        merkle_root="ab" * 32,
        total_checksum=manifestdoc.total_checksum(["aa", "bb"]),
        generate_time=moment,
    )
    assert document.startswith(b'{"generate_time":"2024-05-01T12:00:00.123Z","manifest_id":"m"')
    assert manifestdoc.total_checksum(["aa", "bb"]) == hashlib.sha256(b"aabb").hexdigest()


def test_frame_source_is_seeded_and_sized() -> None:
    source = FrameSource(width=320, height=240, fps=30, seed=7)
    first = list(source.frames(3))
    assert [len(f) for f in first] == [320 * 240 * 3] * 3
    assert first == list(FrameSource(width=320, height=240, fps=30, seed=7).frames(3))
    assert first[0] != first[1]
    assert first != list(FrameSource(width=320, height=240, fps=30, seed=8).frames(3))
    assert len(zstandard.ZstdCompressor(level=3).compress(first[0])) < len(first[0]) // 2


def test_state_machine_moves() -> None:
    assert can_move(State.RECORDING, State.PAUSED) and can_move(State.PAUSED, State.RECORDING)
    assert not can_move(State.CREATED, State.STOPPED)
    assert not can_move(State.COMPLETED, State.RECORDING)
    assert TRANSITIONS[State.DELETED] == frozenset()
    for state in State:
        if state not in (State.COMPLETED, State.FAILED, State.DELETED):
            assert can_move(state, State.FAILED)
