"""The seed's phase-2 checkpoint (gateway + chain), through the Envoy edge over real gRPC
with mTLS behind it: a user signed in with a fresh TRON key reads ``/api/v1/chain/info``
with a height > 0 once the validator has made a block of a submitted transaction;
the route is public (it answers without a token too), while an authenticated chain
route answers 401 with the error envelope without one, and a plain user may not submit
transactions. The gateway's health aggregates MongoDB, Redis, every cluster and the
validator, and turns unavailable (503 naming finality) once the validator stops.

Auth, the chain validator and the gateway run on ports of their own with a database of
their own, so what is down is exactly what this test left down.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from google.protobuf import json_format
from tronpy.keys import PrivateKey

from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.common.v1 import access_pb2
from lucid.runtime.config import CLUSTERS, Settings
from lucid.supervisor.localservers import free_port
from tests.auth_support import address_of, sign
from tests.chain_support import ChainStubs, data_body, signed, wait_for
from tests.support import Mesh, https_client, serve_edge
from tests.waiting import eventually

STARTED = ("auth", "blockchain", "gateway")


@dataclass(frozen=True)
class System:
    """Auth, one chain validator and the gateway behind the edge."""

    mesh: Mesh
    edge_url: str


@pytest.fixture(scope="module")
async def system(settings: Settings) -> AsyncIterator[System]:
    own = settings.replace(
        ports={cluster: free_port() for cluster in CLUSTERS},  # the others: nobody there
        mongodb_db=f"lucid_phase2_{uuid.uuid4().hex[:8]}",
    )
    mesh = Mesh(own)
    try:
        for cluster in STARTED:
            await mesh.start(cluster)
        async with mesh.channel("blockchain") as channel:
            await wait_for(ChainStubs(channel).ready, timeout_s=60)
        async with serve_edge(own) as url:
            yield System(mesh, url)
    finally:
        await mesh.stop_all()


async def _sign_in(http: Any, edge: str) -> str:
    """A fresh TRON key signs in through the edge; its access token."""
    key = PrivateKey.random()
    address = address_of(key)
    async with http.post(f"{edge}/api/v1/auth/challenge", json={"tron_address": address}) as r:
        assert r.status == 200, await r.text()
        message = (await r.json())["message"]
    async with http.post(
        f"{edge}/api/v1/auth/login",
        json={"tron_address": address, "message": message, "signature": sign(key, message)},
    ) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["tokens"]["access_token"])


async def _get(http: Any, url: str, token: str = "") -> tuple[int, dict[str, Any]]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with http.get(url, headers=headers) as response:
        return response.status, await response.json()


def _by_name(health: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in health["dependencies"]}


async def test_phase2_chain_info_through_the_edge(system: System) -> None:
    mesh, edge = system.mesh, system.edge_url
    chain = f"{edge}/api/v1/chain"
    async with https_client(mesh.settings) as http:
        token = await _sign_in(http, edge)
        status, before = await _get(http, f"{chain}/info", token)
        assert status == 200, before
        assert before["network_name"] == "lucid_blocks" and before["consensus_algorithm"] == "PoOT"
        assert int(before["genesis_block"]["height"]) == 0 and before["validator_count"] == 1

        body = json_format.MessageToDict(
            pb.SubmitTransactionRequest(transaction=signed(data_body("phase2"))),
            preserving_proto_field_name=True,
        )
        async with mesh.channel("blockchain", "admin") as channel:
            stubs = ChainStubs(channel)
            pending = await stubs.chain.ListPendingTransactions(pb.ListPendingTransactionsRequest())
            # A plain user may not submit: 403 envelope, nothing pooled.
            async with http.post(
                f"{chain}/transactions", json=body, headers={"authorization": f"Bearer {token}"}
            ) as response:
                assert response.status == 403, await response.text()
                error = (await response.json())["error"]
            assert error["code"] == "LUCID_ERR_2004", error
            after = await stubs.chain.ListPendingTransactions(pb.ListPendingTransactionsRequest())
            assert after.total_size <= pending.total_size
            assert all(t.body.nonce != "phase2" for t in after.transactions)

            # The operator's super admin submits it through the edge; a block follows.
            admin = await mesh.token(role=access_pb2.ROLE_SUPER_ADMIN)
            async with http.post(
                f"{chain}/transactions", json=body, headers={"authorization": f"Bearer {admin}"}
            ) as response:
                assert response.status == 200, await response.text()
                tx_hash = (await response.json())["tx_hash"]

            async def confirmed() -> pb.GetTransactionResponse | None:
                reply = await stubs.chain.GetTransaction(pb.GetTransactionRequest(tx_hash=tx_hash))
                done = reply.transaction.status == pb.TRANSACTION_STATUS_CONFIRMED
                return reply if done else None

            done = await wait_for(confirmed, timeout_s=60)
        height = done.transaction.block_height
        assert height > 0

        status, info = await _get(http, f"{chain}/info", token)
        assert status == 200, info
        assert int(info["current_height"]) >= int(info["final_height"]) >= height > 0
        assert info["genesis_block"]["hash"] == before["genesis_block"]["hash"]
        assert len(info["latest_block_hash"]) == 64
        # Public (its access rule says so): the same answer without a token.
        status, anonymous = await _get(http, f"{chain}/info")
        assert status == 200
        assert anonymous["genesis_block"]["hash"] == info["genesis_block"]["hash"]
        assert int(anonymous["current_height"]) >= height

        # An authenticated chain route: 401 envelope without a token, the block with one.
        status, refused = await _get(http, f"{chain}/blocks/height/{height}")
        assert status == 401, refused
        assert refused["error"]["code"] == "LUCID_ERR_2001"
        assert refused["error"]["request_id"]
        status, block = await _get(http, f"{chain}/blocks/height/{height}", token)
        assert status == 200, block
        assert tx_hash in block["block"]["tx_hashes"] and block["block"]["final"] is True
        status, broken = await _get(http, f"{chain}/blocks/latest", token[:-4] + "AAAA")
        assert status == 401 and broken["error"]["code"] == "LUCID_ERR_2001", broken
        assert broken["error"]["details"]["reason"].startswith("jwt_authn_access_denied")


async def test_phase2_gateway_health_aggregates(system: System) -> None:
    mesh, edge = system.mesh, system.edge_url
    async with https_client(mesh.settings) as http:
        status, health = await _get(http, f"{edge}/api/v1/meta/health")
        assert status == 200, health
        assert health["service"] == "api-gateway"
        found = _by_name(health)
        for name in ("mongodb", "redis", "auth", "blockchain", "validator-0", "finality"):
            assert found[name]["status"] == "HEALTH_STATUS_HEALTHY", found[name]
        assert found["mongodb"]["required"] is True and found["finality"]["required"] is True
        assert found["payments"]["status"] == "HEALTH_STATUS_DEGRADED"  # not started here
        assert found["payments"]["message"].startswith("unreachable")
        assert "gateway" not in found
        # The overall status is the worst: degraded (clusters down), not unhealthy.
        assert health["status"] == "HEALTH_STATUS_DEGRADED"

        # The only validator stops: no block can become final, the gateway says so.
        await mesh.stop("blockchain")
        try:

            async def unavailable() -> dict[str, Any] | None:
                status, body = await _get(http, f"{edge}/api/v1/meta/health")
                return body if status == 503 else None

            down = await eventually(
                unavailable, timeout_s=30, interval_s=0.5, what="the gateway to turn 503"
            )
            assert isinstance(down, dict)
            assert down["error"]["code"] == "LUCID_ERR_5002", down
            assert "finality" in down["error"]["message"]
        finally:
            await mesh.start("blockchain")
        async with mesh.channel("blockchain") as channel:
            await wait_for(ChainStubs(channel).ready, timeout_s=60)

        async def healthy_again() -> bool:
            status, body = await _get(http, f"{edge}/api/v1/meta/health")
            return status == 200 and _by_name(body)["finality"]["status"] == "HEALTH_STATUS_HEALTHY"

        await eventually(
            healthy_again, timeout_s=30, interval_s=0.5, what="finality to be healthy again"
        )
