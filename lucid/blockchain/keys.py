"""Validator keys: each validator's Ed25519 key, sealed at rest, and the validator set.

A validator makes its key on first start: the private seed is sealed with
``lucid.lib.sealing`` (secretbox under an Argon2id-derived key) into
``<keys_dir>/<id>.key`` (mode 0600) and the public key is written to
``<keys_dir>/<id>.pub``. The validator set (every validator's id and public key,
in index order) is read from those public files; it is written into the genesis
block, so every validator and every offline verifier checks approvals against the
same keys.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.signing

from lucid.lib.sealing import Sealer
from lucid.lib.trustanchor import Validator

ValidatorInfo = Validator
"""One member of the validator set (the trust anchor's member type)."""


@dataclass(frozen=True)
class ValidatorSet:
    """The validators of the chain, in index order."""

    members: tuple[ValidatorInfo, ...]

    def __iter__(self) -> Iterator[ValidatorInfo]:
        return iter(self.members)

    def __len__(self) -> int:
        return len(self.members)

    @property
    def ids(self) -> list[str]:
        """The validator ids."""
        return [m.validator_id for m in self.members]

    def key_of(self, validator_id: str) -> str | None:
        """The public key of a validator, hex; ``None`` for a stranger."""
        for member in self.members:
            if member.validator_id == validator_id:
                return member.public_key
        return None

    @property
    def required_approvals(self) -> int:
        """The least ``a`` with 3a ≥ 2N (DECISIONS "Chain")."""
        return required_approvals(len(self.members))


def required_approvals(n: int) -> int:
    """The least ``a`` with 3a ≥ 2n."""
    return (2 * n + 2) // 3


@functools.lru_cache(maxsize=1024)
def _verify_key(public_key_hex: str) -> nacl.signing.VerifyKey:
    """The key of a hex public key (a chain has few signers: validators and services sign
    block after block, so each key is decoded once)."""
    return nacl.signing.VerifyKey(bytes.fromhex(public_key_hex))


def verify_signature(public_key_hex: str, message: bytes, signature_hex: str) -> bool:
    """Whether an Ed25519 signature (hex) over ``message`` verifies with the key (hex)."""
    try:
        _verify_key(public_key_hex).verify(message, bytes.fromhex(signature_hex))
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


def public_key_hex(key: nacl.signing.SigningKey) -> str:
    """The public key of a signing key, hex."""
    return bytes(key.verify_key).hex()


def sign_hex(key: nacl.signing.SigningKey, message: bytes) -> str:
    """An Ed25519 signature over ``message``, hex."""
    return bytes(key.sign(message).signature).hex()


class KeyDirectory:
    """The key files of the validators of one machine."""

    def __init__(self, root: Path, sealer: Sealer) -> None:
        self.root = root
        self.sealer = sealer

    def _paths(self, validator_id: str) -> tuple[Path, Path]:
        return self.root / f"{validator_id}.key", self.root / f"{validator_id}.pub"

    def load_or_create(self, validator_id: str) -> nacl.signing.SigningKey:
        """This validator's key: unsealed from disk, or made, sealed and stored."""
        private_path, public_path = self._paths(validator_id)
        if private_path.exists():
            key = nacl.signing.SigningKey(self.sealer.unseal(private_path.read_bytes()))
        else:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            key = nacl.signing.SigningKey.generate()
            temporary = private_path.with_suffix(".key.tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(self.sealer.seal(bytes(key)))
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, private_path)
        expected = public_key_hex(key)
        if not public_path.exists() or public_path.read_text().strip() != expected:
            temporary = public_path.with_suffix(".pub.tmp")
            temporary.write_text(expected + "\n")
            os.replace(temporary, public_path)
        return key

    def public_key(self, validator_id: str) -> str | None:
        """A validator's published public key, if it has one yet."""
        path = self._paths(validator_id)[1]
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            return None
        return text if len(text) == 64 else None

    def validator_set(self, ids: Sequence[str]) -> ValidatorSet | None:
        """The set of ``ids`` once every one has published its key."""
        members = []
        for validator_id in ids:
            key = self.public_key(validator_id)
            if key is None:
                return None
            members.append(ValidatorInfo(validator_id, key))
        return ValidatorSet(tuple(members))

    async def wait_for_set(self, ids: Sequence[str], poll_s: float = 0.2) -> ValidatorSet:
        """Waits until every validator of ``ids`` has published its key."""
        while True:
            found = self.validator_set(ids)
            if found is not None:
                return found
            await asyncio.sleep(poll_s)
