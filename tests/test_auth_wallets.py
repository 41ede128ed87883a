"""Hardware wallets behind one backend interface, with the software wallet as the device:
spec 09 §7 check 16, the device states, timeouts and retries, firmware minimums."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from lucid.auth.v1 import auth_pb2

from lucid.auth.wallets.backend import Device
from lucid.auth.wallets.manager import HardwareWallets
from lucid.auth.wallets.software import Behaviour, SoftwareWallet, SoftwareWalletBackend
from lucid.runtime.errors import LucidError
from tests.auth_support import AuthClient, auth_client, refused, servicer_of
from tests.support import Mesh, details

MNEMONIC = "abandon " * 11 + "about"


@pytest.fixture
async def device(mesh: Mesh) -> AsyncIterator[SoftwareWallet]:
    """A software wallet plugged into the running auth server, in a normal state after."""
    wallets = servicer_of(mesh.servers["auth"]).core.wallets
    backend = wallets.backends[0]
    assert isinstance(backend, SoftwareWalletBackend)
    wallet = backend.add(SoftwareWallet.from_mnemonic(MNEMONIC))
    try:
        yield wallet
    finally:
        wallet.set_state(Behaviour.CONNECTED)
        backend.wallets.pop(wallet.device_id, None)


@pytest.fixture
async def client(mesh: Mesh) -> AuthClient:
    return auth_client(mesh.settings)


def test_software_wallet_derives_the_bip44_tron_address() -> None:
    """m/44'/195'/0'/0/0 of the all-"abandon" mnemonic, as TronWeb and tronbox derive it."""
    wallet = SoftwareWallet.from_mnemonic(MNEMONIC)
    assert wallet.private_key(0).hex() == (
        "b5a4cea271ff424d7c31dc12a3e43e401df7a40d7412a15750f3f0b6b5449a28"
    )
    assert wallet.address(0).tron_address == "TUEZSdKsoDHQMeZwihtdoBiN46zxhGWYdH"
    assert wallet.address(1).tron_address != wallet.address(0).tron_address


def _ref(wallet: SoftwareWallet) -> auth_pb2.HardwareWalletRef:
    return auth_pb2.HardwareWalletRef(
        wallet_type=auth_pb2.HARDWARE_WALLET_TYPE_SOFTWARE, device_id=wallet.device_id
    )


async def _wallet_login(
    client: AuthClient, device: SoftwareWallet, index: int, *, unplug_before_login: bool = False
) -> auth_pb2.LoginResponse:
    """The device signs a challenge; the login names the device."""
    address = device.address(index).tron_address
    issued = await client.challenge(address)
    signature = device.sign(index, issued.message.encode()).hex()
    if unplug_before_login:
        device.set_state(Behaviour.DISCONNECTED)
    return await client.stub.Login(
        auth_pb2.LoginRequest(
            tron_address=address,
            message=issued.message,
            signature=signature,
            hardware_wallet=_ref(device),
        ),
        metadata=client.md(),
    )


async def test_check16_software_wallet_signs_a_challenge_and_logs_in(
    client: AuthClient, device: SoftwareWallet
) -> None:
    reply = await _wallet_login(client, device, 0)
    assert reply.user.tron_address == device.address(0).tron_address
    assert reply.tokens.access_token


async def test_check16_a_disconnected_device_is_refused(
    client: AuthClient, device: SoftwareWallet, mesh: Mesh
) -> None:
    address = device.address(2).tron_address
    error = await refused(_wallet_login(client, device, 2, unplug_before_login=True))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(error).reason == "LUCID_ERR_4801"
    db = mesh.servers["auth"].runtime.datastores.db
    assert await db.users.find_one({"tron_address": address}) is None


async def test_wallet_rpcs_and_device_states(client: AuthClient, device: SoftwareWallet) -> None:
    user = await client.login(device.private_key(3))
    md = client.md(user.tokens.access_token)
    stub = client.stub
    listed = await stub.ListHardwareWallets(auth_pb2.ListHardwareWalletsRequest(), metadata=md)
    assert device.device_id in {d.device_id for d in listed.devices}
    connected = await stub.ConnectHardwareWallet(
        auth_pb2.ConnectHardwareWalletRequest(device_id=device.device_id, address_index=3),
        metadata=md,
    )
    assert connected.tron_address == user.user.tron_address
    assert connected.device.state == auth_pb2.DEVICE_STATE_CONNECTED
    signed = await stub.SignWithHardwareWallet(
        auth_pb2.SignWithHardwareWalletRequest(
            device_id=device.device_id, address_index=3, message="hello"
        ),
        metadata=md,
    )
    assert signed.tron_address == user.user.tron_address and len(signed.signature) == 130

    # a signed challenge registers the wallet on the user
    issued = await client.challenge(user.user.tron_address)
    sig = await stub.SignWithHardwareWallet(
        auth_pb2.SignWithHardwareWalletRequest(
            device_id=device.device_id, address_index=3, message=issued.message
        ),
        metadata=md,
    )
    verified = await stub.VerifyHardwareWallet(
        auth_pb2.VerifyHardwareWalletRequest(
            wallet=_ref(device),
            challenge=auth_pb2.SignedChallenge(
                tron_address=user.user.tron_address,
                message=issued.message,
                signature=sig.signature,
            ),
        ),
        metadata=md,
    )
    assert verified.verified and verified.user.hardware_wallet_enabled

    status = await stub.GetHardwareWalletStatus(
        auth_pb2.GetHardwareWalletStatusRequest(device_id=device.device_id), metadata=md
    )
    assert status.connected and len(status.public_key) == 128

    sign = auth_pb2.SignWithHardwareWalletRequest(
        device_id=device.device_id, address_index=3, message="m"
    )
    for behaviour, code, reason in (
        (Behaviour.DISCONNECTED, grpc.StatusCode.FAILED_PRECONDITION, "LUCID_ERR_4801"),
        (Behaviour.LOCKED, grpc.StatusCode.FAILED_PRECONDITION, "LUCID_ERR_4802"),
        (Behaviour.REJECTED, grpc.StatusCode.ABORTED, "LUCID_ERR_4803"),
    ):
        device.set_state(behaviour)
        error = await refused(stub.SignWithHardwareWallet(sign, metadata=md))
        assert (error.code(), details(error).reason) == (code, reason), behaviour
    device.set_state(Behaviour.DISCONNECTED)
    status = await stub.GetHardwareWalletStatus(
        auth_pb2.GetHardwareWalletStatusRequest(device_id=device.device_id), metadata=md
    )
    assert not status.connected and status.device.state == auth_pb2.DEVICE_STATE_DISCONNECTED
    device.set_state(Behaviour.CONNECTED)
    await stub.DisconnectHardwareWallet(
        auth_pb2.DisconnectHardwareWalletRequest(device_id=device.device_id), metadata=md
    )
    assert not device.session_open


async def test_a_device_that_never_answers_times_out(
    client: AuthClient, device: SoftwareWallet, mesh: Mesh
) -> None:
    wallets = servicer_of(mesh.servers["auth"]).core.wallets
    saved = wallets.timeout_s, wallets.retry_delay_s
    wallets.timeout_s, wallets.retry_delay_s = 0.2, 0.01
    try:
        user = await client.login(device.private_key(4))
        device.set_state(Behaviour.TIMEOUT)
        error = await refused(
            client.stub.SignWithHardwareWallet(
                auth_pb2.SignWithHardwareWalletRequest(
                    device_id=device.device_id, address_index=4, message="m"
                ),
                metadata=client.md(user.tokens.access_token),
            )
        )
    finally:
        wallets.timeout_s, wallets.retry_delay_s = saved
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert details(error).reason == "LUCID_ERR_4804"


async def test_an_unknown_device_is_not_connected(client: AuthClient) -> None:
    user = await client.login(SoftwareWallet.from_mnemonic("legal " * 11 + "winner").private_key(0))
    error = await refused(
        client.stub.GetHardwareWalletStatus(
            auth_pb2.GetHardwareWalletStatusRequest(
                device_id="00000000-0000-4000-8000-000000000000"
            ),
            metadata=client.md(user.tokens.access_token),
        )
    )
    assert details(error).reason == "LUCID_ERR_4801"


class _Flaky:
    """A backend whose device answers after ``silent`` timed-out calls; old firmware."""

    wallet_type = auth_pb2.HARDWARE_WALLET_TYPE_LEDGER

    def __init__(self, silent: int, firmware: str) -> None:
        self.silent = silent
        self.calls = 0
        self.device = Device(
            "dev-1", self.wallet_type, "Nano X", firmware, auth_pb2.DEVICE_STATE_CONNECTED
        )

    async def _maybe_hang(self) -> None:
        self.calls += 1
        if self.calls <= self.silent:
            await asyncio.Event().wait()

    async def discover(self) -> list[Device]:
        return [self.device]

    async def connect(self, device_id: str) -> Device:
        await self._maybe_hang()
        return self.device

    async def get_address(self, device_id: str, index: int):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    async def sign_message(self, device_id: str, index: int, message: bytes) -> bytes:
        await self._maybe_hang()
        return b""

    async def status(self, device_id: str) -> Device:
        return self.device

    async def disconnect(self, device_id: str) -> None:
        return None


async def test_manager_retries_idempotent_calls_and_checks_firmware() -> None:
    backend = _Flaky(silent=2, firmware="1.6.1")
    wallets = HardwareWallets([backend], timeout_s=0.05, retries=3, retry_delay_s=0.01)
    started = time.monotonic()
    assert (await wallets.connect("dev-1")).model == "Nano X"
    assert backend.calls == 3 and time.monotonic() - started < 5
    # signing is never retried: the user confirms each request
    backend.calls, backend.silent = 0, 1
    with pytest.raises(LucidError) as caught:
        await wallets.sign("dev-1", 0, b"m")
    assert caught.value.reason == "LUCID_ERR_4804" and backend.calls == 1
    old = HardwareWallets([_Flaky(silent=0, firmware="1.5.9")])
    with pytest.raises(LucidError) as caught:
        await old.connect("dev-1")
    assert caught.value.reason == "LUCID_ERR_4805"
