"""The interface every hardware-wallet backend implements (Ledger, Trezor, KeepKey, the
software wallet), and the failures a device can report.

Everything is asynchronous and addressed by device id: a real backend talks to a
device over USB HID or a bridge, the user confirms on the device, and any call may
find the device unplugged, locked, declined or silent. Nothing here assumes the key
is in this process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from lucid.auth.v1 import auth_pb2


@dataclass(frozen=True)
class Device:
    """A device as its backend sees it."""

    device_id: str
    wallet_type: int
    """A ``HardwareWalletType``."""
    model: str
    firmware_version: str
    state: int
    """A ``DeviceState``: connected, disconnected or locked."""

    @property
    def connected(self) -> bool:
        """Present and unlocked."""
        return self.state == auth_pb2.DEVICE_STATE_CONNECTED


@dataclass(frozen=True)
class DeviceAddress:
    """The address at a BIP-44 index of a device."""

    tron_address: str
    public_key: str
    """The uncompressed public key (64 bytes) as hex."""


class WalletError(Exception):
    """A device could not do what was asked."""


class DeviceNotFoundError(WalletError):
    """No backend knows the device."""


class DeviceNotConnectedError(WalletError):
    """The device is unplugged or its session was closed."""


class DeviceLockedError(WalletError):
    """The device waits for its PIN."""


class UserRejectedError(WalletError):
    """The user declined on the device."""


class DeviceTimeoutError(WalletError):
    """The device did not answer in time."""


class FirmwareUnsupportedError(WalletError):
    """The firmware (or TRON app) is older than supported."""


class WalletBackend(Protocol):
    """One family of devices."""

    wallet_type: int
    """The ``HardwareWalletType`` of the devices this backend drives."""

    async def discover(self) -> list[Device]:
        """The devices this backend can see now (connected or not)."""
        ...

    async def connect(self, device_id: str) -> Device:
        """Opens a session with a device."""
        ...

    async def get_address(self, device_id: str, index: int) -> DeviceAddress:
        """The TRON address at ``m/44'/195'/0'/0/index``."""
        ...

    async def sign_message(self, device_id: str, index: int, message: bytes) -> bytes:
        """A TIP-191 signature (65 bytes r‖s‖v) by the key at ``index``, after the user
        confirms on the device."""
        ...

    async def status(self, device_id: str) -> Device:
        """The device's state now."""
        ...

    async def disconnect(self, device_id: str) -> None:
        """Closes the session with a device."""
        ...
