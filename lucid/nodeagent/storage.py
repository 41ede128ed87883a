"""The data a node agent keeps for storage proofs, in its state directory.

The nodes cluster gives an active node data to keep (a heartbeat reply's
``storage_assignment``) and then asks each task slot for a random range of it
(``storage_challenge``); the answer is SHA-256(nonce ‖ data[offset:offset+length]),
the same as ``lucid.nodes.storageproofs.answer`` computes from what the cluster
knows. The data is kept as ``storage.bin`` with its assignment id in
``storage.id``, so a restarted agent still holds it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from lucid.nodes.v1 import nodes_pb2 as npb


class KeptData:
    """One assignment's data on disk."""

    def __init__(self, state_dir: Path) -> None:
        self._data_file = state_dir / "storage.bin"
        self._id_file = state_dir / "storage.id"

    @property
    def assignment_id(self) -> str:
        """The assignment held, or empty."""
        if not (self._id_file.exists() and self._data_file.exists()):
            return ""
        return self._id_file.read_text().strip()

    def keep(self, assignment_id: str, data: bytes) -> None:
        """Stores the data of an assignment (replacing any earlier one)."""
        self._data_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self._data_file.with_suffix(".partial")
        partial.write_bytes(data)
        os.replace(partial, self._data_file)
        self._id_file.write_text(assignment_id)

    def answer(self, challenge: npb.StorageChallenge) -> str:
        """The answer to a challenge, from the kept data."""
        data = self._data_file.read_bytes()
        piece = data[challenge.offset : challenge.offset + challenge.length]
        return hashlib.sha256(bytes.fromhex(challenge.nonce) + piece).hexdigest()
