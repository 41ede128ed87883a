"""The local TRON network against unmodified tronpy: the contract test of the devnet.

Every test drives a real ``lucid devnet tron`` process over HTTP with tronpy's own
client, real secp256k1 keys and signatures; blocks are mined on request so each
step is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tronpy import Tron
from tronpy.exceptions import (
    AddressNotFound,
    BadSignature,
    TaposError,
    TransactionError,
    TransactionNotFound,
    TvmError,
    UnknownError,
    ValidationError,
)
from tronpy.keys import PrivateKey
from tronpy.proto import calculate_txid_from_raw_data

from lucid.devnet.tron import protobuf
from tests.devnet_support import USDT, Devnet

TRX = 1_000_000


@pytest.fixture(scope="module")
def owner() -> PrivateKey:
    return PrivateKey.random()


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory, owner: PrivateKey) -> Iterator[Devnet]:
    net = Devnet(tmp_path_factory.mktemp("devnet"))
    net.fund_at_genesis(owner, 100_000 * TRX, 1_000_000_000)
    net.start()
    yield net
    net.stop()


def send(method: Any, owner: str, key: PrivateKey, *args: Any, fee_limit: int) -> Any:
    """Calls a contract method as tronpy users do: build, sign, broadcast."""
    builder = method(*args).with_owner(owner).fee_limit(fee_limit)
    return builder.build().sign(key).broadcast()


def fresh_address() -> str:
    return str(PrivateKey.random().public_key.to_base58check_address())


def test_txid_is_sha256_of_trons_own_protobuf_encoding(owner: PrivateKey) -> None:
    a, b = owner.public_key.to_hex_address(), PrivateKey.random().public_key.to_hex_address()
    base = {"timestamp": 1, "expiration": 60_001, "ref_block_bytes": "0a0b"}
    transfer = {
        **base,
        "ref_block_hash": "0011223344556677",
        "contract": [
            {
                "type": "TransferContract",
                "parameter": {
                    "type_url": "type.googleapis.com/protocol.TransferContract",
                    "value": {"owner_address": a, "to_address": b, "amount": 7},
                },
            }
        ],
    }
    trigger = {
        **transfer,
        "fee_limit": 50 * TRX,
        "contract": [
            {
                "type": "TriggerSmartContract",
                "parameter": {
                    "type_url": "type.googleapis.com/protocol.TriggerSmartContract",
                    "value": {"owner_address": a, "contract_address": b, "data": "a9059cbb"},
                },
            }
        ],
    }
    # tronpy compiles TRON's Transaction.raw for these two types: the same bytes.
    assert protobuf.txid(transfer) == calculate_txid_from_raw_data(transfer)
    assert protobuf.txid(trigger) == calculate_txid_from_raw_data(trigger)
    assert protobuf.txid(transfer) != protobuf.txid({**transfer, "expiration": 60_002})


def test_accounts_blocks_and_parameters(devnet: Devnet, owner: PrivateKey) -> None:
    client = devnet.client()
    address = owner.public_key.to_base58check_address()
    assert client.get_account_balance(address) == 100_000
    with pytest.raises(AddressNotFound):
        client.get_account(fresh_address())
    head = devnet.mine(2)
    assert client.get_latest_block_number() == head
    block = client.get_block(head)
    assert block["blockID"] == client.get_latest_block_id()
    assert int(block["blockID"][:16], 16) == head
    assert client.get_block(block["blockID"])["block_header"]["raw_data"]["number"] == head
    params = {p["key"]: p["value"] for p in client.get_chain_parameters()}
    assert params["getEnergyFee"] == 420 and params["getTransactionFee"] == 1000
    assert params["getUnfreezeDelayDays"] == 14
    assert client.get_bandwidth(address) == 600


def test_trx_transfer_confirms_and_solidifies_after_19_blocks(
    devnet: Devnet, owner: PrivateKey
) -> None:
    client = devnet.client()
    sender = owner.public_key.to_base58check_address()
    target = fresh_address()
    sent = client.trx.transfer(sender, target, 5 * TRX).build().sign(owner).broadcast()
    with pytest.raises(TransactionNotFound):
        client.get_transaction_info(sent.txid)
    devnet.mine()
    info = sent.wait(timeout=10, interval=0.05)
    assert info["id"] == sent.txid and info["fee"] == TRX  # the account creation fee
    assert client.get_account_balance(target) == 5
    assert client.get_transaction(sent.txid)["ret"][0]["contractRet"] == "SUCCESS"
    with pytest.raises(TransactionNotFound):
        client.get_solid_transaction_info(sent.txid)
    devnet.mine(18)
    with pytest.raises(TransactionNotFound):
        client.get_solid_transaction_info(sent.txid)
    devnet.mine(1)
    assert client.get_solid_transaction_info(sent.txid)["blockNumber"] == info["blockNumber"]


def test_usdt_trc20_transfer_approve_allowance_transfer_from(
    devnet: Devnet, owner: PrivateKey
) -> None:
    client = devnet.client()
    sender = owner.public_key.to_base58check_address()
    contract = client.get_contract(USDT)
    assert contract.functions.decimals() == 6
    assert contract.functions.symbol() == "USDT"
    before = contract.functions.balanceOf(sender)
    target = fresh_address()
    sent = send(contract.functions.transfer, sender, owner, target, 5_500_000, fee_limit=100 * TRX)
    devnet.mine()
    assert sent.result(timeout=10, interval=0.05) is True
    info = client.get_transaction_info(sent.txid)
    assert info["receipt"]["result"] == "SUCCESS"
    assert info["receipt"]["energy_usage_total"] == 130_000  # a new holder
    assert info["fee"] >= 130_000 * 420
    (log,) = info["log"]
    assert log["topics"][0].startswith("ddf252ad")  # Transfer(address,address,uint256)
    assert int(log["data"], 16) == 5_500_000
    assert contract.functions.balanceOf(target) == 5_500_000
    assert contract.functions.balanceOf(sender) == before - 5_500_000

    spender_key = PrivateKey.random()
    spender = spender_key.public_key.to_base58check_address()
    client.trx.transfer(sender, spender, 200 * TRX).build().sign(owner).broadcast()
    approved = send(
        contract.functions.approve, sender, owner, spender, 2_000_000, fee_limit=100 * TRX
    )
    devnet.mine()
    assert approved.result(timeout=10, interval=0.05) is True
    assert contract.functions.allowance(sender, spender) == 2_000_000
    pulled = send(
        contract.functions.transferFrom,
        spender,
        spender_key,
        sender,
        target,
        1_500_000,
        fee_limit=100 * TRX,
    )
    devnet.mine()
    assert pulled.result(timeout=10, interval=0.05) is True
    assert contract.functions.allowance(sender, spender) == 500_000
    assert contract.functions.balanceOf(target) == 7_000_000
    assert client.get_estimated_energy(sender, USDT, "transfer(address,uint256)", "00" * 64) > 0


def test_insufficient_usdt_reverts_and_a_low_fee_limit_runs_out_of_energy(
    devnet: Devnet, owner: PrivateKey
) -> None:
    client = devnet.client()
    sender = owner.public_key.to_base58check_address()
    contract = client.get_contract(USDT)
    poor_key = PrivateKey.random()
    poor = poor_key.public_key.to_base58check_address()
    client.trx.transfer(sender, poor, 100 * TRX).build().sign(owner).broadcast()
    devnet.mine()
    reverted = send(contract.functions.transfer, poor, poor_key, sender, 1, fee_limit=50 * TRX)
    devnet.mine()
    with pytest.raises(TvmError, match="insufficient balance"):
        reverted.result(timeout=10, interval=0.05)
    assert client.get_transaction_info(reverted.txid)["receipt"]["result"] == "REVERT"

    balance = client.get_account_balance(sender)
    starved = send(
        contract.functions.transfer, sender, owner, poor, 1_000_000, fee_limit=10 * TRX
    )  # tronpy's default; a USDT transfer needs more
    devnet.mine()
    with pytest.raises(TvmError):
        starved.result(timeout=10, interval=0.05)
    info = client.get_transaction_info(starved.txid)
    assert info["receipt"]["result"] == "OUT_OF_ENERGY" and info["result"] == "FAILED"
    assert contract.functions.balanceOf(poor) == 0  # nothing moved
    burnt = balance - client.get_account_balance(sender)
    assert 10 <= burnt <= 11  # the whole fee_limit, and the bandwidth


def test_a_node_refuses_what_a_real_node_refuses(devnet: Devnet, owner: PrivateKey) -> None:
    client = devnet.client()
    sender = owner.public_key.to_base58check_address()
    target = fresh_address()

    signed_by_other = client.trx.transfer(sender, target, TRX).build()
    signed_by_other._signature = []
    signed_by_other._permission = None
    with pytest.raises(BadSignature):
        signed_by_other.sign(PrivateKey.random()).broadcast()

    expired = client.trx.transfer(sender, target, TRX).expiration(-1000).build()
    expired._signature = [owner.sign_msg_hash(bytes.fromhex(expired.txid)).hex()]
    with pytest.raises(TransactionError, match="expiration"):
        expired.broadcast()

    bad_ref = client.trx.transfer(sender, target, TRX).build(offline=True, ref_block_id="00" * 32)
    bad_ref._client = client
    with pytest.raises(TaposError):
        bad_ref.sign(owner).broadcast()

    tampered = client.trx.transfer(sender, target, TRX).build().sign(owner)
    tampered._raw_data["contract"][0]["parameter"]["value"]["amount"] = 2 * TRX
    with pytest.raises(BadSignature):
        tampered.broadcast()  # the node hashes raw_data itself: the signature no longer fits

    too_much = client.trx.transfer(sender, target, 10**12 * TRX).build().sign(owner)
    with pytest.raises(ValidationError, match="balance is not sufficient"):
        too_much.broadcast()

    once = client.trx.transfer(sender, target, TRX).build().sign(owner)
    once.broadcast()
    with pytest.raises(UnknownError, match="dup"):
        once.broadcast()
    devnet.mine()
    with pytest.raises(UnknownError, match="dup"):
        once.broadcast()
    assert client.get_account_balance(target) == 1


def test_stake_2_freeze_delegate_unfreeze_withdraw_after_14_days(
    devnet: Devnet, owner: PrivateKey
) -> None:
    client = devnet.client()
    sender = owner.public_key.to_base58check_address()
    friend = fresh_address()
    client.trx.transfer(sender, friend, 10 * TRX).build().sign(owner).broadcast()
    client.trx.freeze_balance(sender, 1000 * TRX, "ENERGY").build().sign(owner).broadcast()
    devnet.mine()
    assert client.get_account_resource(sender)["EnergyLimit"] > 0
    delegated = client.trx.delegate_resource(sender, friend, 400 * TRX, "ENERGY")
    delegated.build().sign(owner).broadcast()
    devnet.mine()
    assert client.get_account_resource(friend)["EnergyLimit"] > 0
    with pytest.raises(ValidationError):  # 400 of the 1000 are delegated
        client.trx.unfreeze_balance(sender, "ENERGY", unfreeze_balance=700 * TRX).build().sign(
            owner
        ).broadcast()
    undelegated = client.trx.undelegate_resource(sender, friend, 400 * TRX, "ENERGY")
    undelegated.build().sign(owner).broadcast()
    devnet.mine()
    client.trx.unfreeze_balance(sender, "ENERGY", unfreeze_balance=1000 * TRX).build().sign(
        owner
    ).broadcast()
    devnet.mine()
    with pytest.raises(ValidationError, match="no unFreeze balance"):
        client.trx.withdraw_stake_balance(sender).build().sign(owner).broadcast()
    devnet.admin("advance_time", days=14)
    before = client.get_account_balance(sender)
    client.trx.withdraw_stake_balance(sender).build().sign(owner).broadcast()
    devnet.mine()
    assert client.get_account_balance(sender) - before >= 999


def test_mined_state_survives_sigkill_and_pending_may_be_lost(
    tmp_path: Path, owner: PrivateKey
) -> None:
    net = Devnet(tmp_path)
    net.fund_at_genesis(owner, 1000 * TRX, 50_000_000)
    net.start()
    try:
        client: Tron = net.client()
        sender = owner.public_key.to_base58check_address()
        target = fresh_address()
        contract = client.get_contract(USDT)
        mined = send(
            contract.functions.transfer, sender, owner, target, 1_000_000, fee_limit=100 * TRX
        )
        net.mine()
        pending = send(
            contract.functions.transfer, sender, owner, target, 2_000_000, fee_limit=100 * TRX
        )
        head = client.get_latest_block_number()
        net.kill()
        net.start()
        client = net.client()
        assert client.get_latest_block_number() == head
        assert client.get_transaction_info(mined.txid)["receipt"]["result"] == "SUCCESS"
        assert client.get_contract(USDT).functions.balanceOf(target) == 1_000_000
        net.mine()
        with pytest.raises(TransactionNotFound):
            client.get_transaction_info(pending.txid)
    finally:
        net.stop()


ISSUE_ENDPOINTS = {
    "wallet/getaccount",
    "wallet/getaccountresource",
    "wallet/getaccountnet",
    "wallet/getcontract",
    "wallet/triggerconstantcontract",
    "wallet/getnodeinfo",
    "wallet/getsignweight",
    "wallet/broadcasttransaction",
    "wallet/gettransactioninfobyid",
    "walletsolidity/gettransactioninfobyid",
    "wallet/gettransactionbyid",
    "wallet/getnowblock",
    "wallet/getblockbynum",
    "wallet/getchainparameters",
    "wallet/estimateenergy",
}
"""The endpoints of issue 12 that tronpy itself calls (``triggersmartcontract`` is for
clients that do not build call transactions themselves: tronpy never calls it)."""


def test_tronpy_reaches_every_endpoint_of_the_issue(devnet: Devnet, owner: PrivateKey) -> None:
    client = devnet.client()
    sender = owner.public_key.to_base58check_address()
    target = fresh_address()
    contract = client.get_contract(USDT)
    sent = send(contract.functions.transfer, sender, owner, target, 1, fee_limit=100 * TRX)
    devnet.mine(20)
    sent.wait(timeout=10, interval=0.05)
    client.get_solid_transaction_info(sent.txid)
    client.get_transaction(sent.txid)
    client.get_latest_block()
    client.get_block(1)
    client.get_chain_parameters()
    client.get_account_resource(sender)
    client.get_bandwidth(sender)
    client.get_estimated_energy(sender, USDT, "transfer(address,uint256)", "00" * 64)
    unsigned = devnet.post(
        "wallet/triggersmartcontract",
        owner_address=sender,
        contract_address=USDT,
        function_selector="balanceOf(address)",
        parameter="00" * 32,
    )
    assert len(unsigned["transaction"]["txID"]) == 64
    served = devnet.admin("requests")["requests"]
    print("tronpy run, requests served per endpoint:", sorted(served.items()))
    missing = ISSUE_ENDPOINTS - {path for path, count in served.items() if count}
    assert not missing, missing
