"""``lucid up``'s dev fleet: three node agents in one pool, so a fresh mesh has a pool
that becomes active and nodes that earn work credits.

A fresh dev mesh has no operator accounts. The supervisor holds the key passphrase,
as the auth cluster does, so it issues tokens with auth's own ``TokenIssuer``: a
super-admin token to create the pool ``dev-pool`` and a node-operator token (KYC
verified) for a fixed dev operator, which the agents read from
``var/node-agents/token``; it is issued again every 10 minutes (access tokens last
15). Each agent is a supervised ``lucid node-agent`` child with its state (sealed
keys, node id) under ``var/node-agents/<name>``, so a restarted mesh keeps its nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from pathlib import Path

import grpc

from lucid.auth import keystore
from lucid.auth.tokens import TokenIssuer
from lucid.common.v1 import access_pb2
from lucid.lib.clock import SystemClock
from lucid.lib.sealing import Sealer
from lucid.nodes.v1 import (
    nodes_pb2,
    nodes_pb2_grpc,
    pool_pb2,
    pool_pb2_grpc,
    poot_pb2,
    poot_pb2_grpc,
)
from lucid.runtime import tls
from lucid.runtime.config import Settings
from lucid.runtime.datastores import Datastores
from lucid.runtime.identity import OPERATOR

AGENTS = ("dev-node-1", "dev-node-2", "dev-node-3")
POOL_NAME = "dev-pool"
DEV_OPERATOR = str(uuid.uuid5(uuid.NAMESPACE_URL, "lucid.local/dev-operator"))
REISSUE_S = 600.0


def agents_dir(settings: Settings) -> Path:
    """Where the dev agents keep their state and token."""
    return settings.var_dir / "node-agents"


async def issue(settings: Settings, role: int, user_id: str) -> str:
    """An access token signed with the auth cluster's current key."""
    stores = Datastores(settings, mongo=True, redis=False)
    try:
        keys = keystore.SigningKeyStore(
            stores.db[keystore.COLLECTION], Sealer(settings.sealing_passphrase()), SystemClock()
        )
        issued = await TokenIssuer(keys, SystemClock()).issue(
            user_id=user_id,
            role=role,
            kyc_status=access_pb2.KYC_STATUS_VERIFIED,
            session_id=str(uuid.uuid4()),
        )
    finally:
        await stores.close()
    return issued.token


def nodes_channel(settings: Settings) -> grpc.aio.Channel:
    """An mTLS channel to the nodes cluster as the operator identity."""
    credentials = tls.channel_credentials(tls.CertPaths.of(settings.certs_dir, OPERATOR))
    return grpc.aio.secure_channel(
        f"{settings.host}:{settings.port('nodes')}",
        credentials,
        options=[("grpc.ssl_target_name_override", tls.dns_name("nodes"))],
    )


async def dev_pool(settings: Settings) -> str:
    """The id of ``dev-pool``, created on first use."""
    md = (
        (
            "authorization",
            f"Bearer {await issue(settings, access_pb2.ROLE_SUPER_ADMIN, DEV_OPERATOR)}",
        ),
    )
    async with nodes_channel(settings) as channel:
        pools = pool_pb2_grpc.PoolServiceStub(channel)
        listed = await pools.ListPools(pool_pb2.ListPoolsRequest(page_size=100), metadata=md)
        for pool in listed.pools:
            if pool.name == POOL_NAME:
                return str(pool.pool_id)
        created = await pools.CreatePool(
            pool_pb2.CreatePoolRequest(name=POOL_NAME, description="lucid up's dev nodes"),
            metadata=md,
        )
    return str(created.pool.pool_id)


async def write_token(settings: Settings) -> Path:
    """The dev operator's token file, freshly issued."""
    path = agents_dir(settings) / "token"
    path.parent.mkdir(parents=True, exist_ok=True)
    token = await issue(settings, access_pb2.ROLE_NODE_OPERATOR, DEV_OPERATOR)
    path.touch(mode=0o600)
    path.write_text(token)
    return path


async def keep_token_fresh(settings: Settings, stop: asyncio.Event) -> None:
    """Issues the token again every 10 minutes until ``stop``."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), REISSUE_S)
        if not stop.is_set():
            await write_token(settings)


def agent_argv(settings: Settings, name: str, token_file: Path, pool_id: str) -> list[str]:
    """The command line of one dev agent."""
    return [
        sys.executable,
        "-m",
        "lucid",
        "node-agent",
        "--name",
        name,
        "--token-file",
        str(token_file),
        "--pool-id",
        pool_id,
        "--state-dir",
        str(agents_dir(settings) / name),
    ]


async def credits_line(settings: Settings) -> str | None:
    """``dev-node-1 0.1, …`` once every dev node has earned credits, else None."""
    md = (("authorization", f"Bearer {(agents_dir(settings) / 'token').read_text().strip()}"),)
    async with nodes_channel(settings) as channel:
        listed = await nodes_pb2_grpc.NodeServiceStub(channel).ListNodes(
            nodes_pb2.ListNodesRequest(), metadata=md
        )
        found = {}
        for node in listed.nodes:
            report = await poot_pb2_grpc.WorkCreditServiceStub(channel).GetWorkCredits(
                poot_pb2.GetWorkCreditsRequest(node_id=node.node_id), metadata=md
            )
            found[node.name] = report.credits
    if set(AGENTS) - set(found) or not all(found.values()):
        return None
    return ", ".join(f"{name} {found[name]:.1f}" for name in AGENTS)
