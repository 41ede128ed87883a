"""The devnet's node: admission checks of a broadcast, the pool, block production, queries.

Admission refuses what java-tron refuses, in its order: a duplicate, a bad TaPoS
reference, an expired (or too distant) expiration, a signature that does not
recover to the owner, a contract that does not validate, bandwidth the owner cannot
pay for. Admitted transactions wait in the pool (lost if the process dies, as a
node may lose them) and are executed when the next block is made; the block, its
receipts and the world state are written in one store transaction before any query
can see them.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import coincurve

from lucid.devnet.tron import protobuf, usdt
from lucid.devnet.tron.accounts import RESOURCE_NAMES, Account, Unfreezing
from lucid.devnet.tron.config import DAY_MS, SUN, DevnetConfig
from lucid.devnet.tron.store import ChainStore
from lucid.lib import tron

BLOCK_MS = 3000
"""A lock period counts in 3-second blocks whatever the devnet's block time."""
MAX_UNFREEZING = 32
WITNESS = "41" + tron.keccak256(b"lucid devnet witness")[-20:].hex()


class NodeError(Exception):
    """A refusal with java-tron's response code (``SIGERROR``, ``TAPOS_ERROR``, …)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def payload(self) -> dict[str, Any]:
        return {"result": False, "code": self.code, "message": self.message.encode().hex()}


def _validate(message: str) -> NodeError:
    return NodeError("CONTRACT_VALIDATE_ERROR", message)


def to_hex_address(value: Any) -> str:
    """A hex address (``41…``) from either form; raises ``ValueError``."""
    if not isinstance(value, str) or not value:
        raise ValueError("address missing")
    if value.startswith("T"):
        return tron.decode_address(value).hex()
    raw = bytes.fromhex(value)
    if len(raw) != tron.ADDRESS_BYTES or raw[0] != tron.ADDRESS_PREFIX:
        raise ValueError("not a TRON address")
    return raw.hex()


def recover_address(txid: str, signature_hex: str) -> str:
    """The hex address whose key made ``signature_hex`` (r‖s‖v) over ``txid``."""
    sig = bytes.fromhex(signature_hex)
    if len(sig) != 65:
        raise ValueError("a signature is 65 bytes")
    v = sig[64] - 27 if sig[64] >= 27 else sig[64]
    public = coincurve.PublicKey.from_signature_and_message(
        sig[:64] + bytes([v]), bytes.fromhex(txid), hasher=None
    )
    return tron.decode_address(tron.address_of_public_key(public.format(False)[1:])).hex()


@dataclass
class Pending:
    """An admitted transaction waiting for a block."""

    txid: str
    tx: dict[str, Any]
    kind: str
    value: dict[str, Any]
    owner: str
    size: int


class Chain:
    """The whole node: state, pool, blocks."""

    def __init__(
        self,
        config: DevnetConfig,
        store: ChainStore,
        now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.config = config
        self.store = store
        self._now_ms = now_ms
        self.usdt_hex = to_hex_address(config.usdt_contract)
        self.accounts: dict[str, Account] = {}
        self.token = usdt.Token(self.usdt_hex)
        self.resource_offset_ms = 0
        self.headers: list[dict[str, Any]] = []
        self.pool: dict[str, Pending] = {}
        self.faults: list[dict[str, Any]] = []
        self.requests: Counter[str] = Counter()
        """Requests served per path (``/admin/requests``: what a client really called)."""
        self._open()

    # --- state -------------------------------------------------------------------------

    def _open(self) -> None:
        state = self.store.load_state()
        if state is None:
            self._genesis()
            return
        self.accounts = {k: Account.from_json(v) for k, v in state["accounts"].items()}
        self.token = usdt.Token.from_json(self.usdt_hex, state["token"])
        self.resource_offset_ms = int(state.get("resource_offset_ms", 0))
        self.headers = self.store.block_headers()

    def _genesis(self) -> None:
        now = self._now_ms()
        for entry in self.config.genesis:
            address = to_hex_address(entry.address)
            if entry.trx_sun:
                self.accounts.setdefault(address, Account(address, create_ms=now))
                self.accounts[address].balance += entry.trx_sun
            if entry.usdt_micros:
                self.token.balances[address] = self.token.balance(address) + entry.usdt_micros
        self._seal_block(now, [])

    def state_json(self) -> dict[str, Any]:
        return {
            "accounts": {k: a.to_json() for k, a in self.accounts.items()},
            "token": self.token.to_json(),
            "resource_offset_ms": self.resource_offset_ms,
        }

    def now_ms(self) -> int:
        return int(self._now_ms())

    def resource_ms(self) -> int:
        """The clock of stake delays and usage recovery (``/admin/advance_time`` moves it)."""
        return self._now_ms() + self.resource_offset_ms

    @property
    def head(self) -> dict[str, Any]:
        return self.headers[-1]

    @property
    def solid_number(self) -> int:
        return max(0, int(self.head["number"]) - self.config.solid_depth)

    # --- blocks ------------------------------------------------------------------------

    def _seal_block(
        self, timestamp: int, txs: list[tuple[str, dict[str, Any], dict[str, Any]]]
    ) -> dict[str, Any]:
        number = len(self.headers)
        parent = bytes.fromhex(self.headers[-1]["id"]) if self.headers else b"\0" * 32
        txids = [t for t, _, _ in txs]
        root = hashlib.sha256(b"".join(bytes.fromhex(t) for t in txids)).digest()
        header = {
            "number": number,
            "id": protobuf.block_id(number, timestamp, parent, root, bytes.fromhex(WITNESS)),
            "parent": parent.hex(),
            "timestamp": timestamp,
            "tx_root": root.hex(),
            "txids": txids,
        }
        self.store.append(header, txs, self.state_json())
        self.headers.append(header)
        return header

    def mine(self) -> dict[str, Any]:
        """Makes the next block from the pool (invalid or expired entries are dropped)."""
        timestamp = max(self.head["timestamp"] + 1, self._now_ms())
        number = len(self.headers)
        mined: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        pool, self.pool = self.pool, {}
        for item in pool.values():
            if item.tx["raw_data"]["expiration"] <= timestamp:
                continue
            try:
                self._check_contract(item.kind, item.value, item.tx["raw_data"], item.owner)
                self._check_bandwidth(item.owner, item.size, item.kind, item.value)
            except NodeError:
                continue
            info, ret = self._execute(item, number, timestamp)
            mined.append((item.txid, {**item.tx, "ret": [{"contractRet": ret}]}, info))
        return self._seal_block(timestamp, mined)

    def block_view(self, header: dict[str, Any]) -> dict[str, Any]:
        """A block in java-tron's JSON."""
        out: dict[str, Any] = {
            "blockID": header["id"],
            "block_header": {
                "raw_data": {
                    "number": header["number"],
                    "txTrieRoot": header["tx_root"],
                    "witness_address": WITNESS,
                    "parentHash": header["parent"],
                    "version": 30,
                    "timestamp": header["timestamp"],
                },
                "witness_signature": "",
            },
        }
        if header["txids"]:
            out["transactions"] = self.store.block_transactions(header["number"])
        return out

    def block_by_id(self, block_id: str) -> dict[str, Any] | None:
        try:
            number = int(block_id[:16], 16)
        except ValueError:
            return None
        if 0 <= number < len(self.headers) and self.headers[number]["id"] == block_id:
            return self.headers[number]
        return None

    # --- admission ---------------------------------------------------------------------

    def parse(self, tx: dict[str, Any]) -> tuple[str, str, dict[str, Any], str, int]:
        """txid, contract type, contract value, owner (hex) and size of a transaction."""
        raw = tx.get("raw_data")
        if not isinstance(raw, dict):
            raise NodeError("OTHER_ERROR", "raw_data missing")
        try:
            encoded = protobuf.encode_raw(raw)
            contract = raw["contract"][0]
            kind = contract["type"]
            value = contract["parameter"]["value"]
            owner = to_hex_address(value.get("owner_address"))
        except (protobuf.EncodeError, KeyError, ValueError, TypeError) as exc:
            raise NodeError("OTHER_ERROR", f"malformed transaction: {exc}") from None
        size = len(encoded) + 65 * max(1, len(tx.get("signature") or [])) + 64
        return hashlib.sha256(encoded).hexdigest(), kind, value, owner, size

    def sign_weight(self, tx: dict[str, Any]) -> dict[str, Any]:
        """``wallet/getsignweight``: the txID and the owner's permission."""
        txid, _, _, owner, _ = self.parse(tx)
        raw = tx["raw_data"]
        out: dict[str, Any] = {
            "result": {},
            "transaction": {
                "result": {"result": True},
                "txid": txid,
                "transaction": {
                    "txID": txid,
                    "raw_data": raw,
                    "raw_data_hex": protobuf.encode_raw(raw).hex(),
                    "signature": tx.get("signature") or [],
                    "visible": False,
                },
            },
        }
        if owner in self.accounts:
            out["permission"] = {
                "type": "Owner",
                "permission_name": "owner",
                "threshold": 1,
                "keys": [{"address": owner, "weight": 1}],
            }
            out["current_weight"] = 0
        return out

    def broadcast(self, tx: dict[str, Any]) -> dict[str, Any]:
        """Admits a signed transaction or raises ``NodeError``."""
        if self.faults and self.faults[0].get("code"):
            fault = self.faults.pop(0)
            raise NodeError(str(fault["code"]), str(fault.get("message", "injected")))
        txid, kind, value, owner, size = self.parse(tx)
        raw = tx["raw_data"]
        if txid in self.pool or self.store.transaction(txid) is not None:
            raise NodeError("DUP_TRANSACTION_ERROR", "dup transaction")
        self._check_tapos(raw)
        now = self._now_ms()
        if raw["expiration"] <= now:
            raise NodeError(
                "TRANSACTION_EXPIRATION_ERROR",
                f"Transaction expiration, transaction expiration time is {raw['expiration']}, "
                f"but now is {now}",
            )
        if raw["expiration"] > now + self.config.max_tx_age_ms:
            raise NodeError("TRANSACTION_EXPIRATION_ERROR", "expiration is too far ahead")
        signatures = tx.get("signature") or []
        if len(signatures) != 1:
            raise NodeError("SIGERROR", "Validate signature error: one signature expected")
        try:
            signer = recover_address(txid, signatures[0])
        except (ValueError, TypeError) as exc:
            raise NodeError("SIGERROR", f"Validate signature error: {exc}") from None
        if signer != owner:
            raise NodeError(
                "SIGERROR",
                f"Validate signature error: {tron.from_hex(signer)} is signed by "
                f"{tron.from_hex(signer)} but it is not contained of permission.",
            )
        self._check_contract(kind, value, raw, owner)
        self._check_bandwidth(owner, size, kind, value)
        self.pool[txid] = Pending(txid, {**tx, "txID": txid}, kind, value, owner, size)
        return {"result": True, "txid": txid}

    def _check_tapos(self, raw: dict[str, Any]) -> None:
        try:
            ref = int(raw["ref_block_bytes"], 16)
            ref_hash = raw["ref_block_hash"].lower()
        except (KeyError, ValueError, AttributeError, TypeError):
            raise NodeError("TAPOS_ERROR", "Tapos check error: no reference block") from None
        head = self.head["number"]
        number = head - ((head - ref) % 65536)
        if number < 0 or self.headers[number]["id"][16:32] != ref_hash:
            raise NodeError(
                "TAPOS_ERROR", f"Tapos check error: no block {raw['ref_block_bytes']} {ref_hash}"
            )

    def _owner(self, owner: str, kind: str) -> Account:
        account = self.accounts.get(owner)
        if account is None:
            raise _validate(f"Validate {kind} error, no OwnerAccount.")
        return account

    def _check_contract(
        self, kind: str, value: dict[str, Any], raw: dict[str, Any], owner: str
    ) -> None:
        account = self._owner(owner, kind)
        check = self._checks().get(kind)
        if check is None:
            raise _validate(f"contract type {kind} is not supported by this node")
        try:
            check(account, value, raw)
        except (ValueError, TypeError) as exc:
            raise _validate(f"Validate {kind} error: {exc}") from None

    def _checks(self) -> dict[str, Callable[[Account, dict[str, Any], dict[str, Any]], None]]:
        return {
            "TransferContract": self._check_transfer,
            "TriggerSmartContract": self._check_trigger,
            "FreezeBalanceV2Contract": self._check_freeze,
            "UnfreezeBalanceV2Contract": self._check_unfreeze,
            "WithdrawExpireUnfreezeContract": self._check_withdraw,
            "DelegateResourceContract": self._check_delegate,
            "UnDelegateResourceContract": self._check_undelegate,
        }

    def _check_transfer(self, account: Account, value: dict[str, Any], _: dict[str, Any]) -> None:
        target = to_hex_address(value.get("to_address"))
        amount = int(value.get("amount", 0))
        if amount <= 0:
            raise _validate("Amount must be greater than 0.")
        if target == account.address:
            raise _validate("Cannot transfer TRX to yourself.")
        fee = 0 if target in self.accounts else self.config.create_account_fee_sun
        if account.balance < amount + fee:
            raise _validate("Validate TransferContract error, balance is not sufficient.")

    def _check_trigger(self, _: Account, value: dict[str, Any], raw: dict[str, Any]) -> None:
        if to_hex_address(value.get("contract_address")) != self.usdt_hex:
            raise _validate("No contract or not a smart contract")
        fee_limit = int(raw.get("fee_limit", 0))
        if not 0 <= fee_limit <= 15_000 * SUN:
            raise _validate("fee_limit must be >= 0 and <= 15000000000")
        if int(value.get("call_value", 0)) or int(value.get("call_token_value", 0)):
            raise _validate("the USDT contract is not payable")

    def _check_freeze(self, account: Account, value: dict[str, Any], _: dict[str, Any]) -> None:
        _resource(value)
        amount = int(value.get("frozen_balance", 0))
        if amount < self.config.minimum_stake_sun:
            raise _validate("frozenBalance must be greater than or equal to 1 TRX")
        if amount > account.balance:
            raise _validate("frozenBalance must be less than or equal to accountBalance")

    def _check_unfreeze(self, account: Account, value: dict[str, Any], _: dict[str, Any]) -> None:
        amount = int(value.get("unfreeze_balance", 0))
        if amount <= 0 or amount > account.available_stake(_resource(value)):
            raise _validate("Invalid unfreeze_balance, [1, frozen amount] is expected")
        if len(account.unfreezing) >= MAX_UNFREEZING:
            raise _validate("too many unfreezing entries")

    def _check_withdraw(self, account: Account, _v: dict[str, Any], _r: dict[str, Any]) -> None:
        if not any(u.expire_ms <= self.resource_ms() for u in account.unfreezing):
            raise _validate("no unFreeze balance to withdraw ")

    def _check_delegate(self, account: Account, value: dict[str, Any], _: dict[str, Any]) -> None:
        receiver = to_hex_address(value.get("receiver_address"))
        amount = int(value.get("balance", 0))
        if amount < SUN:
            raise _validate("delegateBalance must be greater than or equal to 1 TRX")
        if amount > account.available_stake(_resource(value)):
            raise _validate("delegateBalance must be less than or equal to available")
        if receiver == account.address:
            raise _validate("receiverAddress must not be the same as ownerAddress")
        if receiver not in self.accounts:
            raise _validate("Account does not exist")

    def _check_undelegate(self, account: Account, value: dict[str, Any], _: dict[str, Any]) -> None:
        key = f"{_resource(value)}:{to_hex_address(value.get('receiver_address'))}"
        amount = int(value.get("balance", 0))
        if amount <= 0 or amount > account.delegated_out.get(key, 0):
            raise _validate("insufficient delegated balance")
        if account.delegation_locks.get(key, 0) > self.resource_ms():
            raise _validate("the delegation is still locked")

    def _net_source(self, account: Account, size: int) -> str:
        now = self.resource_ms()
        if account.net_limit(self.config) - account.net.current(now) >= size:
            return "stake"
        if self.config.free_net_limit - account.free_net.current(now) >= size:
            return "free"
        return "burn"

    def _check_bandwidth(self, owner: str, size: int, kind: str, value: dict[str, Any]) -> None:
        account = self.accounts[owner]
        if self._net_source(account, size) != "burn":
            return
        spend = int(value.get("amount", 0)) if kind == "TransferContract" else 0
        if account.balance - spend < size * self.config.bandwidth_fee_sun:
            raise NodeError(
                "BANDWITH_ERROR", "Account resource insufficient error: not enough bandwidth"
            )

    # --- execution ---------------------------------------------------------------------

    def _charge_net(self, account: Account, size: int) -> dict[str, int]:
        now = self.resource_ms()
        source = self._net_source(account, size)
        if source == "stake":
            account.net.add(size, now)
            return {"net_usage": size}
        if source == "free":
            account.free_net.add(size, now)
            return {"net_usage": size}
        fee = size * self.config.bandwidth_fee_sun
        account.balance -= fee
        return {"net_fee": fee}

    def _execute(self, item: Pending, number: int, timestamp: int) -> tuple[dict[str, Any], str]:
        account = self.accounts[item.owner]
        receipt: dict[str, Any] = self._charge_net(account, item.size)
        info: dict[str, Any] = {"id": item.txid, "blockNumber": number, "blockTimeStamp": timestamp}
        result = "SUCCESS"
        if item.kind == "TriggerSmartContract":
            result = self._trigger(item, account, info, receipt)
        else:
            self._appliers()[item.kind](account, item.value, info, receipt)
        fee = sum(int(receipt.get(k, 0)) for k in ("net_fee", "energy_fee", "account_create_fee"))
        if fee:
            info["fee"] = fee
        receipt.pop("account_create_fee", None)
        if item.kind == "TriggerSmartContract":
            receipt["result"] = result
        info["receipt"] = receipt
        return info, result

    def _appliers(
        self,
    ) -> dict[str, Callable[[Account, dict[str, Any], dict[str, Any], dict[str, Any]], None]]:
        return {
            "TransferContract": self._apply_transfer,
            "FreezeBalanceV2Contract": self._apply_freeze,
            "UnfreezeBalanceV2Contract": self._apply_unfreeze,
            "WithdrawExpireUnfreezeContract": self._apply_withdraw,
            "DelegateResourceContract": self._apply_delegate,
            "UnDelegateResourceContract": self._apply_undelegate,
        }

    def _apply_transfer(
        self, account: Account, value: dict[str, Any], info: dict[str, Any], receipt: dict[str, Any]
    ) -> None:
        target = to_hex_address(value["to_address"])
        amount = int(value["amount"])
        if target not in self.accounts:
            self.accounts[target] = Account(target, create_ms=info["blockTimeStamp"])
            account.balance -= self.config.create_account_fee_sun
            receipt["account_create_fee"] = self.config.create_account_fee_sun
        account.balance -= amount
        self.accounts[target].balance += amount

    def _apply_freeze(
        self, account: Account, value: dict[str, Any], _i: dict[str, Any], _r: dict[str, Any]
    ) -> None:
        resource, amount = _resource(value), int(value["frozen_balance"])
        account.balance -= amount
        account.frozen[resource] = account.frozen.get(resource, 0) + amount

    def _apply_unfreeze(
        self, account: Account, value: dict[str, Any], _i: dict[str, Any], _r: dict[str, Any]
    ) -> None:
        resource, amount = _resource(value), int(value["unfreeze_balance"])
        account.frozen[resource] -= amount
        expire = self.resource_ms() + self.config.unfreeze_delay_days * DAY_MS
        account.unfreezing.append(Unfreezing(resource, amount, expire))

    def _apply_withdraw(
        self, account: Account, _v: dict[str, Any], info: dict[str, Any], _r: dict[str, Any]
    ) -> None:
        now = self.resource_ms()
        due = [u for u in account.unfreezing if u.expire_ms <= now]
        account.unfreezing = [u for u in account.unfreezing if u.expire_ms > now]
        withdrawn = sum(u.amount for u in due)
        account.balance += withdrawn
        info["withdraw_expire_amount"] = withdrawn

    def _apply_delegate(
        self, account: Account, value: dict[str, Any], _i: dict[str, Any], _r: dict[str, Any]
    ) -> None:
        resource, amount = _resource(value), int(value["balance"])
        receiver = to_hex_address(value["receiver_address"])
        key = f"{resource}:{receiver}"
        account.delegated_out[key] = account.delegated_out.get(key, 0) + amount
        if value.get("lock"):
            period = int(value.get("lock_period") or 86_400)
            account.delegation_locks[key] = self.resource_ms() + period * BLOCK_MS
        target = self.accounts[receiver]
        target.acquired[resource] = target.acquired.get(resource, 0) + amount

    def _apply_undelegate(
        self, account: Account, value: dict[str, Any], _i: dict[str, Any], _r: dict[str, Any]
    ) -> None:
        resource, amount = _resource(value), int(value["balance"])
        receiver = to_hex_address(value["receiver_address"])
        key = f"{resource}:{receiver}"
        account.delegated_out[key] -= amount
        if not account.delegated_out[key]:
            del account.delegated_out[key]
            account.delegation_locks.pop(key, None)
        self.accounts[receiver].acquired[resource] -= amount

    def _trigger(
        self, item: Pending, account: Account, info: dict[str, Any], receipt: dict[str, Any]
    ) -> str:
        config, now = self.config, self.resource_ms()
        info["contract_address"] = self.usdt_hex
        fee_limit = int(item.tx["raw_data"].get("fee_limit", 0))
        saved = (copy.copy(self.token.balances), copy.copy(self.token.allowances))
        output, revert = "", ""
        logs: list[dict[str, Any]] = []
        try:
            call = usdt.decode_call(str(item.value.get("data", "")))
            if call.method in usdt.VIEW_METHODS:
                output = self.token.view(call)
                need = 1_000
            else:
                fresh = call.method != "approve" and self.token.balance(call.args[-2]) == 0
                output, logs = self.token.execute(item.owner, call)
                need = {
                    "approve": config.usdt_approve_energy,
                }.get(
                    call.method,
                    config.usdt_transfer_energy_new_holder
                    if fresh
                    else config.usdt_transfer_energy,
                )
        except usdt.RevertError as exc:
            revert, output, need = exc.reason, exc.encoded(), config.usdt_revert_energy
        except usdt.CallError as exc:
            revert, output, need = str(exc), "", config.usdt_revert_energy
        staked = max(0, account.energy_limit(config) - account.energy.current(now))
        burn_units = min(fee_limit, account.balance) // config.energy_fee_sun
        if need > staked + burn_units:
            self.token.balances, self.token.allowances = saved
            from_stake, burnt = staked, burn_units * config.energy_fee_sun
            result, logs, output = "OUT_OF_ENERGY", [], ""
            message = f"Not enough energy for 'SSTORE' operation executing: need {need}"
        else:
            from_stake = min(need, staked)
            burnt = (need - from_stake) * config.energy_fee_sun
            result = "REVERT" if revert else "SUCCESS"
            message = "REVERT opcode executed" if revert else ""
        account.energy.add(from_stake, now)
        account.balance -= burnt
        receipt.update(
            {
                **({"energy_usage": from_stake} if from_stake else {}),
                **({"energy_fee": burnt} if burnt else {}),
                "energy_usage_total": from_stake + burnt // config.energy_fee_sun,
            }
        )
        info["contractResult"] = [output]
        if logs:
            info["log"] = logs
        if result != "SUCCESS":
            info["result"] = "FAILED"
            info["resMessage"] = message.encode().hex()
        return result

    def _energy_of(self, method: str, fresh_holder: bool) -> int:
        config = self.config
        if method == "approve":
            return config.usdt_approve_energy
        if fresh_holder:
            return config.usdt_transfer_energy_new_holder
        return config.usdt_transfer_energy

    # --- queries -----------------------------------------------------------------------

    def tx_info(self, txid: str, solid: bool) -> dict[str, Any]:
        found = self.store.transaction(txid)
        if found is None or (solid and found[0] > self.solid_number):
            return {}
        return found[2]

    def tx_by_id(self, txid: str, solid: bool) -> dict[str, Any]:
        found = self.store.transaction(txid)
        if found is None or (solid and found[0] > self.solid_number):
            return {}
        return found[1]

    def constant_call(self, owner: str, data_hex: str) -> dict[str, Any]:
        """``triggerconstantcontract`` on the USDT contract: nothing is changed."""
        saved = (copy.copy(self.token.balances), copy.copy(self.token.allowances))
        try:
            call = usdt.decode_call(data_hex)
            if call.method in usdt.VIEW_METHODS:
                output, energy = self.token.view(call), 1_000
            else:
                fresh = call.method != "approve" and self.token.balance(call.args[-2]) == 0
                output, _ = self.token.execute(owner, call)
                energy = self._energy_of(call.method, fresh)
            return {"result": {"result": True}, "energy_used": energy, "constant_result": [output]}
        except usdt.RevertError as exc:
            return {
                "result": {"code": "CONTRACT_EXE_ERROR", "message": "REVERT opcode executed"},
                "energy_used": self.config.usdt_revert_energy,
                "constant_result": [exc.encoded()],
            }
        except usdt.CallError as exc:
            return {"result": {"code": "CONTRACT_EXE_ERROR", "message": str(exc)}}
        finally:
            self.token.balances, self.token.allowances = saved

    def account_resource(self, address: str) -> dict[str, Any]:
        account = self.accounts.get(address)
        if account is None:
            return {}
        now, config = self.resource_ms(), self.config
        out: dict[str, Any] = {
            "freeNetLimit": config.free_net_limit,
            "TotalNetLimit": 43_200_000_000,
            "TotalEnergyLimit": 90_000_000_000,
        }
        fields = {
            "freeNetUsed": account.free_net.current(now),
            "NetLimit": account.net_limit(config),
            "NetUsed": account.net.current(now),
            "EnergyLimit": account.energy_limit(config),
            "EnergyUsed": account.energy.current(now),
        }
        out.update({k: v for k, v in fields.items() if v})
        return out

    def fund(self, address: str, trx_sun: int, usdt_micros: int) -> None:
        """Test control: mints TRX and USDT to an address, in the next block."""
        if trx_sun:
            self.accounts.setdefault(address, Account(address, create_ms=self._now_ms()))
            self.accounts[address].balance += trx_sun
        if usdt_micros:
            self.token.balances[address] = self.token.balance(address) + usdt_micros

    def reward(self, address: str, sun: int) -> None:
        """Test control: credits voting reward to an address, in the next block."""
        self.accounts.setdefault(address, Account(address, create_ms=self._now_ms()))
        self.accounts[address].reward += sun


def _resource(value: dict[str, Any]) -> str:
    resource = value.get("resource") or "BANDWIDTH"
    if isinstance(resource, int):
        names = {v: k for k, v in protobuf.RESOURCES.items()}
        resource = names.get(resource, "")
    if resource not in RESOURCE_NAMES:
        raise _validate("ResourceCode error, valid ResourceCode[BANDWIDTH、ENERGY]")
    return str(resource)
