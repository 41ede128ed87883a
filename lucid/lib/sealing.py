"""Private keys at rest: libsodium secretbox under a key derived with Argon2id.

Used for every secret Lucid stores (the dev CA key, JWT signing keys, validator
keys, wallet keys). A sealed blob is self-describing:

    b"LSEAL1" ‖ salt (16 B) ‖ secretbox(nonce ‖ ciphertext ‖ MAC)

The derivation is deliberately slow (Argon2id, interactive limits); callers that
unseal often keep a ``Sealer`` whose derived keys are cached per salt.
"""

from __future__ import annotations

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

MAGIC = b"LSEAL1"
SALT_BYTES = nacl.pwhash.argon2id.SALTBYTES


class SealError(Exception):
    """A sealed blob is malformed, or the passphrase is wrong."""


class Sealer:
    """Seals and unseals secrets with one passphrase."""

    def __init__(
        self,
        passphrase: str | bytes,
        *,
        opslimit: int = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
        memlimit: int = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE,
    ) -> None:
        if not passphrase:
            raise ValueError("a sealing passphrase is required")
        self._passphrase = passphrase.encode() if isinstance(passphrase, str) else passphrase
        self._opslimit = opslimit
        self._memlimit = memlimit
        self._keys: dict[bytes, bytes] = {}

    def _key(self, salt: bytes) -> bytes:
        key = self._keys.get(salt)
        if key is None:
            key = nacl.pwhash.argon2id.kdf(
                nacl.secret.SecretBox.KEY_SIZE,
                self._passphrase,
                salt,
                opslimit=self._opslimit,
                memlimit=self._memlimit,
            )
            self._keys[salt] = key
        return key

    def seal(self, secret: bytes) -> bytes:
        """Encrypts ``secret`` under a fresh salt and nonce."""
        salt = nacl.utils.random(SALT_BYTES)
        box = nacl.secret.SecretBox(self._key(salt))
        return MAGIC + salt + bytes(box.encrypt(secret))

    def unseal(self, blob: bytes) -> bytes:
        """Decrypts a blob made by ``seal``; raises ``SealError`` if it was altered."""
        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + SALT_BYTES + 40:
            raise SealError("not a sealed Lucid secret")
        salt = blob[len(MAGIC) : len(MAGIC) + SALT_BYTES]
        box = nacl.secret.SecretBox(self._key(salt))
        try:
            return bytes(box.decrypt(blob[len(MAGIC) + SALT_BYTES :]))
        except nacl.exceptions.CryptoError as exc:
            raise SealError("wrong passphrase or altered secret") from exc
