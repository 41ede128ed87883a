"""Cluster 05 through the REST edge (spec 05 §7 checks 1-11, 13 and 14 as HTTP):
JSON with proto field names, the error envelope, and paths such as ``/nodes/pools``
and ``/nodes/fleet/status`` that never reach the ``{node_id}`` routes."""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from lucid.common.v1 import access_pb2
from lucid.lib import taskproofs
from lucid.nodeagent.probe import ProbeServer
from tests.nodes_support import NodeKeys, NodesKit, Operator, serve_nodes, start_probe
from tests.stake_support import session_net
from tests.support import Mesh, https_client, serve_edge


@pytest.fixture(scope="module")
async def edge(mesh: Mesh) -> AsyncIterator[tuple[str, ProbeServer]]:
    await serve_nodes(mesh)
    probe = await start_probe(mesh)
    async with serve_edge(mesh.settings) as url:
        yield url, probe
    await probe.stop()
    await mesh.stop("nodes")


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_nodes_over_rest(edge: tuple[str, ProbeServer], mesh: Mesh) -> None:
    url, probe = edge
    base = f"{url}/api/v1/nodes"
    operator = auth(
        await mesh.token(
            role=access_pb2.ROLE_NODE_OPERATOR, kyc=access_pb2.KYC_STATUS_VERIFIED, ttl_s=3600
        )
    )
    admin = auth(await mesh.token(role=access_pb2.ROLE_SUPER_ADMIN, ttl_s=3600))
    keys = NodeKeys()
    async with https_client(mesh.settings) as http:

        async def call(
            method: str, path: str, headers: dict[str, str], body: Any = None
        ) -> tuple[int, Any]:
            async with http.request(method, f"{base}{path}", headers=headers, json=body) as r:
                return r.status, await r.json()

        status, body = await call("GET", "", {})
        assert status == 401
        assert body["error"]["code"] == "LUCID_ERR_2001"

        status, pool = await call("POST", "/pools", operator, {"name": "rest-pool"})
        assert status == 403
        status, pool = await call("POST", "/pools", admin, {"name": "rest-pool", "max_nodes": 1})
        assert status == 200, pool
        pool_id = pool["pool"]["pool_id"]
        status, pools = await call("GET", "/pools", operator)
        assert status == 200
        assert pool_id in [p["pool_id"] for p in pools["pools"]]

        status, challenge = await call(
            "POST", "/registrations/challenge", operator, {"node_address": keys.address}
        )
        assert status == 200, challenge
        register = {
            "registration_id": challenge["registration_id"],
            "signature": keys.tron.sign_msg(challenge["message"].encode()).hex(),
            "name": "rest-node",
            "node_type": "NODE_TYPE_WORKER",
            "hardware_info": {
                "cpu_cores": 4,
                "memory_bytes": str(8 * 1024**3),
                "storage_bytes": str(100 * 10**9),
                "network_interfaces": [{"name": "eth0", "bandwidth_mbps": 100}],
            },
            "initial_pool_id": pool_id,
            "port": probe.port,
            "node_public_key": keys.public_hex,
            "stake_amount_micros": "100000000",
            "stake_tx_hash": session_net().pay(keys.tron),
        }
        status, created = await call("POST", "", operator, register)
        assert status == 200, created
        node = created["node"]
        assert node["state"] == "NODE_STATE_INACTIVE"
        assert node["pool_id"] == pool_id
        status, again = await call("POST", "", operator, register)
        assert status == 400  # FAILED_PRECONDITION: the registration was used
        assert again["error"]["code"] == "LUCID_ERR_4007"

        status, body = await call("GET", "/node_01", operator)
        assert status == 400
        assert body["error"]["code"] == "LUCID_ERR_1001"

        node_id = node["node_id"]
        status, started = await call("POST", f"/{node_id}/start", operator, {})
        assert status == 200, started
        assert started["result"]["state"] == "NODE_STATE_ACTIVE"

        other_keys = NodeKeys()
        status, challenge = await call(
            "POST", "/registrations/challenge", operator, {"node_address": other_keys.address}
        )
        second = {
            **register,
            "registration_id": challenge["registration_id"],
            "signature": other_keys.tron.sign_msg(challenge["message"].encode()).hex(),
            "name": "rest-node-2",
            "initial_pool_id": "",
            "node_public_key": other_keys.public_hex,
            "stake_tx_hash": session_net().pay(other_keys.tron),
        }
        status, created = await call("POST", "", operator, second)
        assert status == 200, created
        status, full = await call(
            "POST", f"/pools/{pool_id}/nodes", admin, {"node_id": created["node"]["node_id"]}
        )
        assert status == 429
        assert full["error"]["code"] == "LUCID_ERR_3002"

        status, rejected = await call(
            "POST",
            f"/{node_id}/poot/validate",
            operator,
            {
                "output_data": base64.b64encode(secrets.token_bytes(64)).decode(),
                "output_time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "nonce": "short",
            },
        )
        assert status == 400, rejected

        slot = taskproofs.slot_of(datetime.now(UTC))
        proof = taskproofs.task_proof(
            node_id=node_id,
            pool_id=pool_id,
            slot=slot,
            task_type=4,
            value=taskproofs.SLOT_S,
            public_key=keys.public_hex,
        )
        status, accepted = await call(
            "POST",
            f"/{node_id}/work-proofs",
            operator,
            {
                "pool_id": pool_id,
                "slot": str(slot),
                "task_type": "TASK_TYPE_UPTIME_BEACON",
                "value": taskproofs.SLOT_S,
                "signature": taskproofs.sign(proof, keys.signing),
            },
        )
        assert status == 200, accepted
        status, report = await call("GET", f"/{node_id}/work-credits", operator)
        assert status == 200, report
        assert report["credits"] == pytest.approx(0.1)
        status, pool_report = await call("GET", f"/pools/{pool_id}/work-credits", operator)
        assert status == 200, pool_report
        assert pool_report["credits"] == pytest.approx(0.1)

        status, fleet = await call("GET", "/fleet/status", admin)
        assert status == 200, fleet
        assert fleet["total_nodes"] >= 2


async def test_paging_poot_batches_payouts_and_limits_over_rest(
    edge: tuple[str, ProbeServer], mesh: Mesh
) -> None:
    """Checks 3, 7, 8, 9, 11 and 13 as HTTP."""
    url, probe = edge
    base = f"{url}/api/v1/nodes"
    operator_id = str(uuid.uuid4())
    operator = auth(
        await mesh.token(
            role=access_pb2.ROLE_NODE_OPERATOR,
            kyc=access_pb2.KYC_STATUS_VERIFIED,
            user_id=operator_id,
            ttl_s=3600,
        )
    )
    admin = auth(await mesh.token(role=access_pb2.ROLE_SUPER_ADMIN, ttl_s=3600))
    async with mesh.channel("nodes") as channel:
        kit = NodesKit(mesh, channel, probe.port, admin=())
        op = Operator(operator_id, tuple(operator.items()))
        for i in range(12):
            await kit.register(op, name=f"rest-{i:02d}")
        node, _ = await kit.active_node(op)

    async with https_client(mesh.settings) as http:

        async def call(
            method: str, path: str, headers: dict[str, str], body: Any = None
        ) -> tuple[int, Any]:
            async with http.request(method, f"{base}{path}", headers=headers, json=body) as r:
                return r.status, await r.json()

        status, first = await call("GET", "?page_size=5", operator)
        assert status == 200
        assert (first["total_size"], len(first["nodes"])) == (13, 5)
        status, second = await call(
            "GET", f"?page_size=5&page_token={first['next_page_token']}", operator
        )
        assert status == 200
        assert not {n["node_id"] for n in second["nodes"]} & {n["node_id"] for n in first["nodes"]}

        node_id = node.node_id
        poot = {
            "output_data": base64.b64encode(secrets.token_bytes(20 * 1024)).decode(),
            "output_time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "nonce": secrets.token_hex(16),
        }
        status, valid = await call("POST", f"/{node_id}/poot/validate", operator, poot)
        assert status == 200, valid
        assert valid["validation"]["status"] == "POOT_STATUS_VALID"
        status, reused = await call("POST", f"/{node_id}/poot/validate", operator, poot)
        assert status == 200, reused
        assert reused["validation"]["status"] == "POOT_STATUS_INVALID"

        items = [{**poot, "node_id": node_id, "nonce": secrets.token_hex(16)} for _ in range(3)]
        items[2]["output_data"] = "%%%"
        status, batch = await call("POST", "/poot/batch-validate", admin, {"items": items})
        assert status == 200, batch
        assert batch["summary"]["errors"] == 1
        assert batch["summary"]["total"] == 3

        status, bad = await call(
            "POST",
            "/payouts/batch",
            admin,
            {
                "batch_id": str(uuid.uuid4()),
                "items": [
                    {
                        "node_id": node_id,
                        "amount_micros": "0",
                        "currency": "PAYOUT_CURRENCY_USDT",
                        "wallet_address": "T" + "1" * 33,
                    }
                ],
            },
        )
        assert status == 400
        assert bad["error"]["code"] == "LUCID_ERR_1001"

        short = {**poot, "nonce": "x"}
        codes = [
            (await call("POST", f"/{node_id}/poot/validate", operator, short))[0]
            for _ in range(98)  # 2 calls above: 100 in this minute
        ]
        assert set(codes) == {400}
        status, limited = await call("POST", f"/{node_id}/poot/validate", operator, short)
        assert status == 429
        assert limited["error"]["code"] == "LUCID_ERR_3001"
