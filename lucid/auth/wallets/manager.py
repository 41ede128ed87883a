"""The hardware wallets the auth cluster can reach, behind one manager.

The manager finds which backend drives a device, bounds every device call with the
spec's timeout (30 s), retries the calls that change nothing (3 times, 2 s apart),
refuses firmware older than the spec's minimums, and turns device failures into
Lucid errors (48xx).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from lucid.auth.v1 import auth_pb2

from lucid.auth.wallets.backend import (
    Device,
    DeviceAddress,
    DeviceLockedError,
    DeviceNotConnectedError,
    DeviceNotFoundError,
    DeviceTimeoutError,
    FirmwareUnsupportedError,
    UserRejectedError,
    WalletBackend,
    WalletError,
)
from lucid.runtime.errors import ErrorCode, LucidError

T = TypeVar("T")

MIN_FIRMWARE: dict[int, tuple[int, ...]] = {
    auth_pb2.HARDWARE_WALLET_TYPE_LEDGER: (1, 6, 0),  # the Ledger TRON app
    auth_pb2.HARDWARE_WALLET_TYPE_TREZOR: (1, 11, 0),
    auth_pb2.HARDWARE_WALLET_TYPE_KEEPKEY: (7, 0, 0),
}

_CODES = {
    DeviceNotFoundError: ErrorCode.ERROR_CODE_HARDWARE_WALLET_NOT_CONNECTED,
    DeviceNotConnectedError: ErrorCode.ERROR_CODE_HARDWARE_WALLET_NOT_CONNECTED,
    DeviceLockedError: ErrorCode.ERROR_CODE_HARDWARE_WALLET_LOCKED,
    UserRejectedError: ErrorCode.ERROR_CODE_HARDWARE_WALLET_REJECTED,
    DeviceTimeoutError: ErrorCode.ERROR_CODE_HARDWARE_WALLET_TIMEOUT,
    FirmwareUnsupportedError: ErrorCode.ERROR_CODE_HARDWARE_WALLET_FIRMWARE_UNSUPPORTED,
}


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def firmware_supported(device: Device) -> bool:
    """Whether a device's firmware meets the minimum of its family."""
    minimum = MIN_FIRMWARE.get(device.wallet_type)
    return minimum is None or _version(device.firmware_version) >= minimum


def as_lucid(error: WalletError, device_id: str) -> LucidError:
    """The Lucid error for a device failure."""
    code = next(
        (c for kind, c in _CODES.items() if isinstance(error, kind)),
        ErrorCode.ERROR_CODE_HARDWARE_WALLET_NOT_CONNECTED,
    )
    return LucidError(code, str(error) or type(error).__name__, metadata={"device_id": device_id})


class HardwareWallets:
    """Every installed backend, with the spec's timeouts and retries."""

    def __init__(
        self,
        backends: Sequence[WalletBackend],
        *,
        timeout_s: float = 30.0,
        retries: int = 3,
        retry_delay_s: float = 2.0,
    ) -> None:
        self.backends = list(backends)
        self.timeout_s = timeout_s
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self._owner: dict[str, WalletBackend] = {}

    async def _bounded(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await asyncio.wait_for(call(), self.timeout_s)
        except TimeoutError:
            raise DeviceTimeoutError(
                f"the device did not answer within {self.timeout_s:g} s"
            ) from None

    async def _run(
        self, device_id: str, call: Callable[[], Awaitable[T]], *, idempotent: bool
    ) -> T:
        attempts = 1 + (self.retries if idempotent else 0)
        for attempt in range(attempts):
            try:
                return await self._bounded(call)
            except DeviceTimeoutError as exc:
                if attempt + 1 >= attempts:
                    raise as_lucid(exc, device_id) from None
                await asyncio.sleep(self.retry_delay_s)
            except WalletError as exc:
                raise as_lucid(exc, device_id) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def discover(self) -> list[Device]:
        """Every device any backend sees."""
        found: list[Device] = []
        for backend in self.backends:
            try:
                devices = await self._bounded(backend.discover)
            except WalletError:
                continue  # a backend whose transport is down sees nothing
            for device in devices:
                self._owner[device.device_id] = backend
            found += devices
        return found

    async def _backend(self, device_id: str) -> WalletBackend:
        if device_id not in self._owner:
            await self.discover()
        try:
            return self._owner[device_id]
        except KeyError:
            raise LucidError(
                ErrorCode.ERROR_CODE_HARDWARE_WALLET_NOT_CONNECTED,
                f"no hardware wallet {device_id} is connected",
                metadata={"device_id": device_id},
            ) from None

    async def status(self, device_id: str) -> Device:
        """A device's state (raises if no backend knows it)."""
        backend = await self._backend(device_id)
        return await self._run(device_id, lambda: backend.status(device_id), idempotent=True)

    async def require_connected(self, device_id: str, wallet_type: int = 0) -> Device:
        """A device that is present and unlocked, of ``wallet_type`` when given."""
        device = await self.status(device_id)
        if wallet_type and device.wallet_type != wallet_type:
            raise LucidError(
                ErrorCode.ERROR_CODE_HARDWARE_WALLET_NOT_CONNECTED,
                f"device {device_id} is not a wallet of the type given",
                metadata={"device_id": device_id},
            )
        if device.state == auth_pb2.DEVICE_STATE_LOCKED:
            raise as_lucid(DeviceLockedError(f"device {device_id} is locked"), device_id)
        if not device.connected:
            raise as_lucid(
                DeviceNotConnectedError(f"device {device_id} is not connected"), device_id
            )
        return device

    async def connect(self, device_id: str) -> Device:
        """Opens a session with a device whose firmware is supported."""
        backend = await self._backend(device_id)
        device = await self._run(device_id, lambda: backend.connect(device_id), idempotent=True)
        if not firmware_supported(device):
            raise as_lucid(
                FirmwareUnsupportedError(
                    f"firmware {device.firmware_version} is older than supported"
                ),
                device_id,
            )
        return device

    async def address(self, device_id: str, index: int) -> DeviceAddress:
        """The address at a BIP-44 index."""
        backend = await self._backend(device_id)
        return await self._run(
            device_id, lambda: backend.get_address(device_id, index), idempotent=True
        )

    async def sign(self, device_id: str, index: int, message: bytes) -> bytes:
        """A TIP-191 signature; not retried (the user confirms each request)."""
        backend = await self._backend(device_id)
        return await self._run(
            device_id, lambda: backend.sign_message(device_id, index, message), idempotent=False
        )

    async def disconnect(self, device_id: str) -> None:
        """Closes the session with a device."""
        backend = await self._backend(device_id)
        await self._run(device_id, lambda: backend.disconnect(device_id), idempotent=True)
