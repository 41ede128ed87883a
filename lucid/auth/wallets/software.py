"""The software wallet: a BIP-44 HD wallet in this process that behaves like a device.

It derives TRON keys at ``m/44'/195'/0'/0/i`` from its seed, signs with TIP-191, and
has the states of a real device that tests (and demos) set: connected, disconnected,
locked, rejecting (the user declines) and timing out (the device never answers). Its
seed lives in a file sealed with the cluster's passphrase.
"""

from __future__ import annotations

import asyncio
import enum
import json
import secrets
from pathlib import Path

from lucid.auth.v1 import auth_pb2
from tronpy.keys import PrivateKey

from lucid.auth.wallets.backend import (
    Device,
    DeviceAddress,
    DeviceLockedError,
    DeviceNotConnectedError,
    DeviceNotFoundError,
    UserRejectedError,
)
from lucid.lib import hdkeys, tron
from lucid.lib.ids import new_id
from lucid.lib.sealing import Sealer

MODEL = "Lucid software wallet"
FIRMWARE = "1.0.0"


class Behaviour(enum.Enum):
    """What the simulated device does."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    LOCKED = "locked"
    REJECTED = "rejected"
    """Present and unlocked, but the user declines every signature."""
    TIMEOUT = "timeout"
    """Present, but never answers."""


class SoftwareWallet:
    """One simulated device holding an HD seed."""

    def __init__(self, seed: bytes, device_id: str | None = None) -> None:
        hdkeys.master_key(seed)  # refuse a seed BIP-32 cannot use
        self._seed = seed
        self.device_id = device_id or new_id()
        self.behaviour = Behaviour.CONNECTED
        self.session_open = False

    @classmethod
    def from_mnemonic(cls, mnemonic: str, device_id: str | None = None) -> SoftwareWallet:
        """A wallet from a BIP-39 mnemonic (no passphrase)."""
        return cls(hdkeys.mnemonic_to_seed(mnemonic), device_id)

    def sealed_seed(self, sealer: Sealer) -> bytes:
        """The seed sealed for storage."""
        return sealer.seal(self._seed)

    def set_state(self, behaviour: Behaviour | str) -> None:
        """Makes the device connected, disconnected, locked, rejecting or silent."""
        self.behaviour = Behaviour(behaviour)
        if self.behaviour is Behaviour.DISCONNECTED:
            self.session_open = False

    def private_key(self, index: int) -> PrivateKey:
        """The TRON key at ``m/44'/195'/0'/0/index``."""
        return PrivateKey(hdkeys.derive(self._seed, hdkeys.tron_path(index)).private_key)

    def address(self, index: int) -> DeviceAddress:
        """The address and public key at ``index``."""
        public = hdkeys.derive(self._seed, hdkeys.tron_path(index)).uncompressed_public_key
        return DeviceAddress(tron.address_of_public_key(public), public.hex())

    def sign(self, index: int, message: bytes) -> bytes:
        """The TIP-191 signature of ``message`` by the key at ``index``."""
        return self.private_key(index).sign_msg(message).to_bytes()  # type: ignore[no-any-return]

    @property
    def device(self) -> Device:
        """The device as a backend reports it."""
        state = {
            Behaviour.DISCONNECTED: auth_pb2.DEVICE_STATE_DISCONNECTED,
            Behaviour.LOCKED: auth_pb2.DEVICE_STATE_LOCKED,
        }.get(self.behaviour, auth_pb2.DEVICE_STATE_CONNECTED)
        return Device(
            self.device_id, auth_pb2.HARDWARE_WALLET_TYPE_SOFTWARE, MODEL, FIRMWARE, state
        )

    async def answer(self, *, confirm: bool = False) -> None:
        """Behaves like the device receiving a request; raises what it would report."""
        if self.behaviour is Behaviour.DISCONNECTED:
            raise DeviceNotConnectedError(f"device {self.device_id} is not connected")
        if self.behaviour is Behaviour.TIMEOUT:
            await asyncio.Event().wait()  # never answers; the caller's timeout ends it
        if self.behaviour is Behaviour.LOCKED:
            raise DeviceLockedError(f"device {self.device_id} is locked")
        if confirm and self.behaviour is Behaviour.REJECTED:
            raise UserRejectedError("the user declined on the device")


class SoftwareWalletBackend:
    """The backend of software wallets (any number of simulated devices)."""

    wallet_type: int = auth_pb2.HARDWARE_WALLET_TYPE_SOFTWARE

    def __init__(self, wallets: list[SoftwareWallet] | None = None) -> None:
        self.wallets = {w.device_id: w for w in wallets or []}

    def add(self, wallet: SoftwareWallet) -> SoftwareWallet:
        """Plugs in another simulated device."""
        self.wallets[wallet.device_id] = wallet
        return wallet

    def _wallet(self, device_id: str) -> SoftwareWallet:
        try:
            return self.wallets[device_id]
        except KeyError:
            raise DeviceNotFoundError(f"no software wallet {device_id}") from None

    async def discover(self) -> list[Device]:
        return [w.device for w in self.wallets.values()]

    async def connect(self, device_id: str) -> Device:
        wallet = self._wallet(device_id)
        await wallet.answer()
        wallet.session_open = True
        return wallet.device

    async def get_address(self, device_id: str, index: int) -> DeviceAddress:
        wallet = self._wallet(device_id)
        await wallet.answer()
        return wallet.address(index)

    async def sign_message(self, device_id: str, index: int, message: bytes) -> bytes:
        wallet = self._wallet(device_id)
        await wallet.answer(confirm=True)
        return wallet.sign(index, message)

    async def status(self, device_id: str) -> Device:
        return self._wallet(device_id).device

    async def disconnect(self, device_id: str) -> None:
        self._wallet(device_id).session_open = False


def load_or_create(path: Path, sealer: Sealer) -> SoftwareWallet:
    """The software wallet whose sealed seed is in ``path`` (made on first use)."""
    if path.exists():
        data = json.loads(path.read_text())
        seed = sealer.unseal(bytes.fromhex(data["seed_sealed"]))
        return SoftwareWallet(seed, data["device_id"])
    wallet = SoftwareWallet(secrets.token_bytes(32))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    sealed = wallet.sealed_seed(sealer).hex()
    path.write_text(json.dumps({"device_id": wallet.device_id, "seed_sealed": sealed}))
    return wallet
