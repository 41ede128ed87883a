"""The payments process SIGKILLed at the worst moments: every payout and every wallet
transaction is still paid once.

The payments server runs as a real ``lucid serve payments`` process against a real
devnet process; the test kills it after it stored a signed transaction but before
the node admitted it, and after the broadcast but before confirmation. USDT
balances on the devnet prove the outcome.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from pymongo import MongoClient

from lucid.common.v1 import access_pb2
from lucid.payments import schema
from lucid.payments.v1 import payouts_pb2, payouts_pb2_grpc, tron_pb2, wallets_pb2, wallets_pb2_grpc
from lucid.payments.wallets import HOT_WALLET_ID
from lucid.runtime.config import Settings
from lucid.supervisor.localservers import free_port
from tests.devnet_support import USDT, Devnet
from tests.payments_support import USDT_UNIT, new_address, until
from tests.support import Mesh, bearer, operator_channel


class PaymentsProcess:
    """``lucid serve payments`` in a child process."""

    def __init__(self, settings: Settings, var_dir: Path, devnet: Devnet) -> None:
        self.var_dir = var_dir
        var_dir.mkdir(parents=True, exist_ok=True)
        if not (var_dir / "certs").exists():
            shutil.copytree(settings.certs_dir, var_dir / "certs")
        self.settings = settings.replace(
            ports={**settings.ports, "payments": free_port()},
            mongodb_db=f"lucid_paycrash_{uuid.uuid4().hex[:10]}",
        )
        self.devnet = devnet
        self.process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "LUCID_VAR_DIR": str(self.var_dir),
            "LUCID_MONGODB_URI": s.mongodb_uri,
            "LUCID_MONGODB_DB": s.mongodb_db,
            "LUCID_REDIS_URL": s.redis_url,
            "LUCID_KEY_PASSPHRASE": s.key_passphrase,
            "LUCID_PORT_PAYMENTS": str(s.port("payments")),
            "LUCID_PORT_AUTH": str(s.port("auth")),
            "LUCID_PORT_STORAGE": str(s.port("storage")),
            "LUCID_TRON_ENDPOINT": self.devnet.url,
            "LUCID_PAYOUT_POLL_INTERVAL_S": "0.05",
            "LUCID_HEALTH_INTERVAL_S": "0.5",
            "LUCID_LOG_LEVEL": "INFO",
        }

    def start(self) -> None:
        with (self.var_dir / "payments.log").open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lucid", "serve", "payments"],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                env=self.env(),
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def wallet_stub(self) -> wallets_pb2_grpc.WalletServiceStub:
        return wallets_pb2_grpc.WalletServiceStub(
            operator_channel(self.settings, "payments", "operator")
        )

    def stub(self) -> payouts_pb2_grpc.PayoutServiceStub:
        return payouts_pb2_grpc.PayoutServiceStub(
            operator_channel(self.settings, "payments", "nodes")
        )


@pytest.fixture
def mongo(settings: Settings) -> Iterator[MongoClient[Any]]:
    client: MongoClient[Any] = MongoClient(settings.mongodb_uri)
    yield client
    client.close()


@pytest.fixture
async def rig(
    settings: Settings, mesh: Mesh, tmp_path: Path
) -> AsyncIterator[tuple[Devnet, PaymentsProcess]]:
    del mesh  # auth must be up: the payments process verifies tokens with its keys
    devnet = Devnet(tmp_path / "devnet")
    devnet.start()
    payments = PaymentsProcess(settings, tmp_path / "var", devnet)
    try:
        yield devnet, payments
    finally:
        await asyncio.to_thread(payments.stop)
        await asyncio.to_thread(devnet.stop)


async def _serving(payments: PaymentsProcess) -> None:
    async def ask() -> bool:
        try:
            await payments.stub().ListPayouts(payouts_pb2.ListPayoutsRequest(), timeout=2)
        except grpc.aio.AioRpcError:
            return False
        return True

    await until(ask, bool, timeout_s=60)


async def _start_and_fund(devnet: Devnet, payments: PaymentsProcess, mongo: Any) -> None:
    payments.start()
    await _serving(payments)
    wallets = mongo[payments.settings.mongodb_db][schema.WALLETS]
    hot = await until(
        lambda: asyncio.to_thread(wallets.find_one, {"_id": HOT_WALLET_ID}), bool, timeout_s=30
    )
    await asyncio.to_thread(
        devnet.admin,
        "fund",
        address=hot["address"],
        trx_sun=10_000 * 1_000_000,
        usdt_micros=1_000 * USDT_UNIT,
    )


def _balance(devnet: Devnet, address: str) -> int:
    return int(devnet.client().get_contract(USDT).functions.balanceOf(address))


async def _payout_doc(mongo: Any, payments: PaymentsProcess, payout_id: str) -> Any:
    collection = mongo[payments.settings.mongodb_db][schema.PAYOUTS]
    return await asyncio.to_thread(collection.find_one, {"_id": payout_id})


async def test_killed_after_signing_before_broadcast_pays_once(
    rig: tuple[Devnet, PaymentsProcess], mongo: Any
) -> None:
    devnet, payments = rig
    await _start_and_fund(devnet, payments, mongo)
    await asyncio.to_thread(devnet.admin, "fail_next", hang_s=20)  # the node never admits it
    recipient = new_address()
    created = await payments.stub().CreatePayout(
        payouts_pb2.CreatePayoutRequest(
            idempotency_key=str(uuid.uuid4()),
            recipient_address=recipient,
            amount_micros=4 * USDT_UNIT,
            reason="crash after signing",
        )
    )
    payout_id = created.payout.payout_id
    signed = await until(
        lambda: _payout_doc(mongo, payments, payout_id), lambda d: bool(d and d.get("tx"))
    )
    txid = signed["tx"]["txid"]
    assert signed["status"] == "processing"
    payments.kill()
    await asyncio.to_thread(devnet.mine)
    assert await asyncio.to_thread(devnet.post, "wallet/gettransactioninfobyid", value=txid) == {}

    payments.start()
    await _serving(payments)
    await until(
        lambda: _payout_doc(mongo, payments, payout_id), lambda d: d["status"] == "broadcast"
    )
    await asyncio.to_thread(devnet.mine, 20)
    done = await until(
        lambda: _payout_doc(mongo, payments, payout_id), lambda d: d["status"] == "confirmed"
    )
    assert done["tx"]["txid"] == txid  # the very transaction signed before the kill
    assert done["attempts"] == 1
    assert await asyncio.to_thread(_balance, devnet, recipient) == 4 * USDT_UNIT


async def test_killed_after_broadcast_before_confirmation_pays_once(
    rig: tuple[Devnet, PaymentsProcess], mongo: Any
) -> None:
    devnet, payments = rig
    await _start_and_fund(devnet, payments, mongo)
    recipient = new_address()
    request = payouts_pb2.CreatePayoutRequest(
        idempotency_key=str(uuid.uuid4()),
        recipient_address=recipient,
        amount_micros=6 * USDT_UNIT,
        reason="crash after broadcast",
    )
    created = await payments.stub().CreatePayout(request)
    payout_id = created.payout.payout_id
    sent = await until(
        lambda: _payout_doc(mongo, payments, payout_id), lambda d: d["status"] == "broadcast"
    )
    payments.kill()
    await asyncio.to_thread(devnet.mine)
    payments.start()
    await _serving(payments)
    again = await payments.stub().CreatePayout(request)  # the caller retries too
    assert again.replayed and again.payout.payout_id == payout_id
    await asyncio.to_thread(devnet.mine, 19)
    done = await until(
        lambda: _payout_doc(mongo, payments, payout_id), lambda d: d["status"] == "confirmed"
    )
    assert done["tx"]["txid"] == sent["tx"]["txid"] and done["attempts"] == 1
    assert await asyncio.to_thread(_balance, devnet, recipient) == 6 * USDT_UNIT


async def _transfer_doc(mongo: Any, payments: PaymentsProcess, transfer_id: str) -> Any:
    collection = mongo[payments.settings.mongodb_db][schema.TRANSFERS]
    return await asyncio.to_thread(collection.find_one, {"_id": transfer_id})


async def _funded_user_wallet(
    devnet: Devnet, payments: PaymentsProcess, user: Any
) -> wallets_pb2.Wallet:
    created = await payments.wallet_stub().CreateWallet(
        wallets_pb2.CreateWalletRequest(name="crash", currency=tron_pb2.CURRENCY_USDT),
        metadata=user,
    )
    await asyncio.to_thread(
        devnet.admin,
        "fund",
        address=created.wallet.address,
        trx_sun=100 * 1_000_000,
        usdt_micros=50 * USDT_UNIT,
    )
    return created.wallet


async def test_a_wallet_transaction_signed_before_a_kill_is_rebroadcast_once(
    rig: tuple[Devnet, PaymentsProcess], mongo: Any, mesh: Mesh
) -> None:
    devnet, payments = rig
    await _start_and_fund(devnet, payments, mongo)
    user = bearer(await mesh.token(role=access_pb2.ROLE_USER))
    wallet = await _funded_user_wallet(devnet, payments, user)
    recipient = new_address()
    request = wallets_pb2.CreateWalletTransactionRequest(
        wallet_id=wallet.wallet_id,
        type=wallets_pb2.WALLET_TRANSACTION_TYPE_TRANSFER,
        amount_micros=9 * USDT_UNIT,
        recipient_address=recipient,
        currency=tron_pb2.CURRENCY_USDT,
        idempotency_key=str(uuid.uuid4()),
    )
    await asyncio.to_thread(devnet.admin, "fail_next", hang_s=20)  # the node never admits it
    call = asyncio.ensure_future(
        payments.wallet_stub().CreateWalletTransaction(request, metadata=user)
    )
    collection = mongo[payments.settings.mongodb_db][schema.TRANSFERS]
    signed = await until(
        lambda: asyncio.to_thread(
            collection.find_one, {"idempotency_key": request.idempotency_key}
        ),
        lambda d: bool(d and d.get("tx")),
    )
    assert signed["status"] == "pending"
    txid, transfer_id = signed["tx"]["txid"], signed["_id"]
    payments.kill()
    with pytest.raises(grpc.aio.AioRpcError):
        await call  # the caller never got an answer
    await asyncio.to_thread(devnet.mine)
    assert await asyncio.to_thread(devnet.post, "wallet/gettransactioninfobyid", value=txid) == {}

    payments.start()
    await _serving(payments)
    again = await payments.wallet_stub().CreateWalletTransaction(request, metadata=user)
    assert again.transaction.transaction_id == transfer_id  # the caller's retry: the same one
    await until(
        lambda: _transfer_doc(mongo, payments, transfer_id), lambda d: d["status"] == "broadcast"
    )
    await asyncio.to_thread(devnet.mine, 20)
    done = await until(
        lambda: _transfer_doc(mongo, payments, transfer_id), lambda d: d["status"] == "confirmed"
    )
    assert done["tx"]["txid"] == txid and done["attempts"] == 1  # the very signed bytes
    assert await asyncio.to_thread(_balance, devnet, recipient) == 9 * USDT_UNIT
    assert await asyncio.to_thread(_balance, devnet, wallet.address) == 41 * USDT_UNIT


async def test_a_wallet_transaction_broadcast_before_a_kill_is_confirmed_once(
    rig: tuple[Devnet, PaymentsProcess], mongo: Any, mesh: Mesh
) -> None:
    devnet, payments = rig
    await _start_and_fund(devnet, payments, mongo)
    user = bearer(await mesh.token(role=access_pb2.ROLE_USER))
    wallet = await _funded_user_wallet(devnet, payments, user)
    recipient = new_address()
    request = wallets_pb2.CreateWalletTransactionRequest(
        wallet_id=wallet.wallet_id,
        type=wallets_pb2.WALLET_TRANSACTION_TYPE_TRANSFER,
        amount_micros=4 * USDT_UNIT,
        recipient_address=recipient,
        currency=tron_pb2.CURRENCY_USDT,
        idempotency_key=str(uuid.uuid4()),
    )
    sent = await payments.wallet_stub().CreateWalletTransaction(request, metadata=user)
    assert sent.transaction.status == tron_pb2.TRANSFER_STATUS_BROADCAST
    payments.kill()
    await asyncio.to_thread(devnet.mine)
    payments.start()
    await _serving(payments)
    again = await payments.wallet_stub().CreateWalletTransaction(request, metadata=user)
    assert again.transaction.transaction_id == sent.transaction.transaction_id
    await asyncio.to_thread(devnet.mine, 19)
    done = await until(
        lambda: _transfer_doc(mongo, payments, sent.transaction.transaction_id),
        lambda d: d["status"] == "confirmed",
    )
    assert done["tx"]["txid"] == sent.transaction.transaction.tx_hash and done["attempts"] == 1
    assert await asyncio.to_thread(_balance, devnet, recipient) == 4 * USDT_UNIT
