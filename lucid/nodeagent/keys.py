"""The agent's keys, sealed at rest: the node's TRON key (its identity, signs the
registration challenge) and its Ed25519 key (signs task proofs).

Both live in ``<state dir>/keys.sealed`` (``lucid.lib.sealing``: secretbox under an
Argon2id key from the passphrase); the node id and probe port, once registered, in ``node.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import nacl.signing
from tronpy.keys import PrivateKey

from lucid.lib.sealing import Sealer

KEYS_FILE = "keys.sealed"
NODE_FILE = "node.json"


@dataclass(frozen=True)
class AgentKeys:
    """The two keys of a node."""

    tron: PrivateKey
    signing: nacl.signing.SigningKey

    @property
    def address(self) -> str:
        """The node's TRON address."""
        return str(self.tron.public_key.to_base58check_address())

    @property
    def public_key_hex(self) -> str:
        """The Ed25519 public key, hex."""
        return bytes(self.signing.verify_key).hex()

    def sign_message(self, message: str) -> str:
        """A TIP-191 signature of ``message``, hex."""
        return str(self.tron.sign_msg(message.encode()).hex())


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def load_or_create(state_dir: Path, sealer: Sealer) -> AgentKeys:
    """The keys in ``state_dir``, made (and sealed) on first use."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / KEYS_FILE
    if path.exists():
        raw = sealer.unseal(path.read_bytes())
        return AgentKeys(PrivateKey(raw[:32]), nacl.signing.SigningKey(raw[32:64]))
    keys = AgentKeys(PrivateKey.random(), nacl.signing.SigningKey.generate())
    _write_private(path, sealer.seal(keys.tron.to_bytes() + bytes(keys.signing)))
    return keys


def load_node(state_dir: Path) -> tuple[str, int]:
    """The registered node id and probe port (``("", 0)`` before registration)."""
    path = state_dir / NODE_FILE
    if not path.exists():
        return "", 0
    data = json.loads(path.read_text())
    return str(data["node_id"]), int(data["port"])


def save_node(state_dir: Path, node_id: str, port: int) -> None:
    """Remembers the node so a restarted agent does not register again."""
    (state_dir / NODE_FILE).write_text(json.dumps({"node_id": node_id, "port": port}))
