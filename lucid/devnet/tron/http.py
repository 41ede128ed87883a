"""The devnet's HTTP API: java-tron's ``/wallet/*`` and ``/walletsolidity/*`` JSON POSTs.

Only the endpoints tronpy (and the payments cluster) use, plus test controls under
``/admin/*`` (mine, fund, advance the resource clock, inject broadcast faults).
Every handler runs on the event loop without awaiting while it touches the chain,
so requests and block production never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from lucid.devnet.tron import usdt
from lucid.devnet.tron.chain import Chain, NodeError, to_hex_address
from lucid.devnet.tron.config import DAY_MS
from lucid.lib import tron
from lucid.lib.tron import keccak256

log = logging.getLogger("lucid.devnet.tron")
Handler = Callable[[Chain, dict[str, Any]], dict[str, Any]]


def _address_param(body: dict[str, Any], key: str = "address") -> str:
    try:
        return to_hex_address(body.get(key))
    except ValueError as exc:
        raise NodeError("OTHER_ERROR", f"invalid {key}: {exc}") from None


def _show(address: str, visible: bool) -> str:
    return tron.from_hex(address) if visible else address


def getaccount(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    address = _address_param(body)
    account = chain.accounts.get(address)
    if account is None:
        return {}
    return account.view(_show(address, bool(body.get("visible"))), chain.resource_ms())


def getaccountresource(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    return chain.account_resource(_address_param(body))


def getaccountnet(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    resource = chain.account_resource(_address_param(body))
    keys = ("freeNetLimit", "freeNetUsed", "NetLimit", "NetUsed", "TotalNetLimit")
    return {k: v for k, v in resource.items() if k in keys}


def getreward(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    account = chain.accounts.get(_address_param(body))
    return {"reward": account.reward if account is not None else 0}


def getcontract(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    if _address_param(body, "value") != chain.usdt_hex:
        return {}
    return {
        "origin_address": _show(chain.usdt_hex, bool(body.get("visible"))),
        "contract_address": _show(chain.usdt_hex, bool(body.get("visible"))),
        "abi": {"entrys": usdt.ABI},
        "name": "TetherToken",
        "consume_user_resource_percent": 100,
        "origin_energy_limit": 10_000_000,
        "bytecode": "",
    }


def _call_data(body: dict[str, Any]) -> str:
    if body.get("data"):
        return str(body["data"])
    selector = str(body.get("function_selector", ""))
    return keccak256(selector.encode())[:4].hex() + str(body.get("parameter", ""))


def triggerconstantcontract(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    if _address_param(body, "contract_address") != chain.usdt_hex:
        return {"result": {"code": "CONTRACT_VALIDATE_ERROR", "message": "No contract"}}
    return chain.constant_call(_address_param(body, "owner_address"), _call_data(body))


def estimateenergy(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    answer = triggerconstantcontract(chain, body)
    if "energy_used" not in answer or answer["result"].get("code"):
        return {"result": answer["result"]}
    return {"result": {"result": True}, "energy_required": answer["energy_used"]}


def triggersmartcontract(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    """An unsigned call transaction (for clients that do not build it themselves)."""
    owner = _address_param(body, "owner_address")
    contract = _address_param(body, "contract_address")
    head = chain.head
    raw = {
        "contract": [
            {
                "parameter": {
                    "value": {
                        "owner_address": owner,
                        "contract_address": contract,
                        "data": _call_data(body),
                    },
                    "type_url": "type.googleapis.com/protocol.TriggerSmartContract",
                },
                "type": "TriggerSmartContract",
            }
        ],
        "ref_block_bytes": head["id"][12:16],
        "ref_block_hash": head["id"][16:32],
        "expiration": head["timestamp"] + 60_000,
        "timestamp": chain.now_ms(),
        "fee_limit": int(body.get("fee_limit", 0)),
    }
    signed = chain.sign_weight({"raw_data": raw})["transaction"]
    return {"result": {"result": True}, "transaction": signed["transaction"]}


def getnodeinfo(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    head, solid = chain.head, chain.headers[chain.solid_number]
    return {
        "beginSyncNum": head["number"],
        "block": f"Num:{head['number']},ID:{head['id']}",
        "solidityBlock": f"Num:{solid['number']},ID:{solid['id']}",
        "currentConnectCount": 0,
        "activeConnectCount": 0,
        "configNodeInfo": {"codeVersion": "lucid-devnet", "p2pVersion": "devnet"},
    }


def getnowblock(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    return chain.block_view(chain.head)


def solid_getnowblock(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    return chain.block_view(chain.headers[chain.solid_number])


def getblockbynum(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    number = body.get("num")
    if not isinstance(number, int) or not 0 <= number < len(chain.headers):
        return {}
    return chain.block_view(chain.headers[number])


def getblockbyid(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    header = chain.block_by_id(str(body.get("value", "")))
    return {} if header is None else chain.block_view(header)


def getchainparameters(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    config = chain.config
    params = {
        "getEnergyFee": config.energy_fee_sun,
        "getTransactionFee": config.bandwidth_fee_sun,
        "getCreateNewAccountFeeInSystemContract": config.create_account_fee_sun,
        "getFreeNetLimit": config.free_net_limit,
        "getUnfreezeDelayDays": config.unfreeze_delay_days,
        "getAllowNewResourceModel": 1,
        **config.extra_params,
    }
    return {"chainParameter": [{"key": k, "value": v} for k, v in params.items()]}


def getsignweight(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    return chain.sign_weight(body)


def broadcasttransaction(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    return chain.broadcast(body)


def _txid(body: dict[str, Any]) -> str:
    value = str(body.get("value", ""))
    if len(value) != 64:
        raise NodeError("OTHER_ERROR", "a transaction id is 64 hex digits")
    return value.lower()


def _delegations(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    owner = _address_param(body, "fromAddress")
    receiver = _address_param(body, "toAddress")
    account = chain.accounts.get(owner)
    if account is None:
        return {}
    entry: dict[str, Any] = {"from": owner, "to": receiver}
    for resource, key in (("ENERGY", "energy"), ("BANDWIDTH", "bandwidth")):
        amount = account.delegated_out.get(f"{resource}:{receiver}", 0)
        if amount:
            entry[f"frozen_balance_for_{key}"] = amount
    return {"delegatedResource": [entry]} if len(entry) > 2 else {}


def _can_delegate(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    account = chain.accounts.get(_address_param(body, "owner_address"))
    kind = int(body.get("type", 0))
    resource = "ENERGY" if kind == 1 else "BANDWIDTH"
    return {"max_size": account.available_stake(resource) if account else 0}


ROUTES: dict[str, Handler] = {
    "wallet/getaccount": getaccount,
    "wallet/getaccountresource": getaccountresource,
    "wallet/getaccountnet": getaccountnet,
    "wallet/getcontract": getcontract,
    "wallet/triggerconstantcontract": triggerconstantcontract,
    "wallet/triggersmartcontract": triggersmartcontract,
    "wallet/estimateenergy": estimateenergy,
    "wallet/getnodeinfo": getnodeinfo,
    "wallet/getnowblock": getnowblock,
    "walletsolidity/getnowblock": solid_getnowblock,
    "wallet/getblockbynum": getblockbynum,
    "wallet/getblockbyid": getblockbyid,
    "wallet/getchainparameters": getchainparameters,
    "wallet/getsignweight": getsignweight,
    "wallet/broadcasttransaction": broadcasttransaction,
    "wallet/gettransactioninfobyid": lambda c, b: c.tx_info(_txid(b), solid=False),
    "walletsolidity/gettransactioninfobyid": lambda c, b: c.tx_info(_txid(b), solid=True),
    "wallet/gettransactionbyid": lambda c, b: c.tx_by_id(_txid(b), solid=False),
    "walletsolidity/gettransactionbyid": lambda c, b: c.tx_by_id(_txid(b), solid=True),
    "wallet/getdelegatedresourcev2": _delegations,
    "wallet/getcandelegatedmaxsize": _can_delegate,
    "wallet/getReward": getreward,
}


def _admin_mine(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    count = int(body.get("n", 1))
    if not 1 <= count <= 1000:
        raise NodeError("OTHER_ERROR", "n must be 1..1000")
    for _ in range(count):
        chain.mine()
    return {"head": chain.head["number"], "solid": chain.solid_number}


def _admin_fund(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    address = _address_param(body)
    trx, usdt_micros = int(body.get("trx_sun", 0)), int(body.get("usdt_micros", 0))
    if trx < 0 or usdt_micros < 0:
        raise NodeError("OTHER_ERROR", "amounts must not be negative")
    chain.fund(address, trx, usdt_micros)
    chain.mine()
    return {"head": chain.head["number"]}


def _admin_reward(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    address = _address_param(body)
    sun = int(body.get("sun", 0))
    if sun <= 0:
        raise NodeError("OTHER_ERROR", "sun must be positive")
    chain.reward(address, sun)
    chain.mine()
    return {"head": chain.head["number"]}


def _admin_advance(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    seconds = float(body.get("seconds", 0))
    days = float(body.get("days", 0))
    if seconds < 0 or days < 0:
        raise NodeError("OTHER_ERROR", "time only moves forward")
    chain.resource_offset_ms += int(seconds * 1000 + days * DAY_MS)
    return {"resource_offset_ms": chain.resource_offset_ms}


def _admin_fail_next(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    if body.get("clear"):
        chain.faults.clear()
        return {"queued": 0}
    count = int(body.get("count", 1))
    names = ("code", "message", "lost_response", "hang_s")
    fault: dict[str, Any] = {k: body[k] for k in names if k in body}
    chain.faults.extend(dict(fault) for _ in range(count))
    return {"queued": len(chain.faults)}


def _admin_requests(chain: Chain, body: dict[str, Any]) -> dict[str, Any]:
    return {"requests": dict(chain.requests)}


ADMIN: dict[str, Handler] = {
    "admin/requests": _admin_requests,
    "admin/mine": _admin_mine,
    "admin/fund": _admin_fund,
    "admin/reward": _admin_reward,
    "admin/advance_time": _admin_advance,
    "admin/fail_next": _admin_fail_next,
}


def make_app(chain: Chain) -> web.Application:
    """The aiohttp application serving ``chain``."""

    def endpoint(path: str, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            chain.requests[path] += 1
            text = await request.text()
            try:
                body = json.loads(text) if text.strip() else {}
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
            except ValueError as exc:
                return web.json_response({"Error": f"invalid JSON: {exc}"})
            body.update({k: v for k, v in request.query.items() if k not in body})
            for key in ("n", "num", "count", "trx_sun", "usdt_micros", "type", "sun"):
                if isinstance(body.get(key), str) and body[key].lstrip("-").isdigit():
                    body[key] = int(body[key])
            lost = False
            if path == "wallet/broadcasttransaction" and chain.faults:
                fault = chain.faults[0]
                lost = bool(fault.get("lost_response"))
                if lost:
                    chain.faults.pop(0)
                elif fault.get("hang_s"):
                    chain.faults.pop(0)
                    log.info(
                        "broadcast: not admitted, answering in %s s (injected)", fault["hang_s"]
                    )
                    await asyncio.sleep(float(fault["hang_s"]))
                    return web.json_response({"Error": "injected: the node hung"}, status=504)
            try:
                answer = handler(chain, body)
            except NodeError as exc:
                answer = exc.payload()
            if lost:
                log.info("broadcast %s: admitted, answer dropped (injected)", answer)
                return web.json_response({"Error": "injected: the answer was lost"}, status=503)
            return web.json_response(answer)

        return handle

    app = web.Application(client_max_size=4 * 1024 * 1024)
    for path, handler in {**ROUTES, **ADMIN}.items():
        app.router.add_post("/" + path, endpoint(path, handler))
        app.router.add_get("/" + path, endpoint(path, handler))
    return app


async def produce_blocks(chain: Chain, interval_s: float) -> None:
    """Mines a block every ``interval_s`` (the block timer)."""
    while True:
        await asyncio.sleep(interval_s)
        chain.mine()


async def serve(chain: Chain, host: str, port: int, ready: Callable[[int], None]) -> None:
    """Serves until cancelled; ``ready`` gets the bound port (0 picks a free one)."""
    if host not in {"127.0.0.1", "localhost", "::1"}:
        raise ValueError("the devnet listens on loopback only")
    runner = web.AppRunner(make_app(chain), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, shutdown_timeout=1.0)
    await site.start()
    bound = port
    for address in runner.addresses:
        bound = int(address[1])
    ready(bound)
    timer = asyncio.create_task(produce_blocks(chain, chain.config.block_interval_s))
    try:
        await asyncio.Event().wait()
    finally:
        timer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await timer
        await runner.cleanup()
