"""Cluster 05: registrations/s (spec target > 100/s), PoOT validation latency (target
< 500 ms) and validations/s, a batch of 1000 validations, and work credits for 10,000
nodes.

Registrations go through the production nodes server over gRPC and mTLS (challenge,
TIP-191 signature by a fresh TRON key, RegisterNode with a reachability probe of a
real agent endpoint and the stake verified by the payments cluster on a devnet
process; the stakes are paid before the clock starts), 16 clients at once. Single
validations are timed over gRPC (one caller stays under the 100-a-minute limit);
validations/s and the batch of 1000 (20 nodes, 50 items each) run the domain
validator directly on FerretDB, since the rpc limits callers to 100 a minute and
batches to 100 items. Credits: 70,000 stored proofs (10,000 nodes x one proof a day
for 7 days) read and summed, then ranking 10,000 nodes from their per-task sums of
7 days of beacons (5040 slots each).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import itertools
import os
import secrets
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from google.protobuf import timestamp_pb2

from bench.common import BenchContext, Figure, rate
from lucid.lib.clock import SystemClock
from lucid.lib.ids import new_id
from lucid.nodes import credits, schema
from lucid.nodes.callers import Caller
from lucid.nodes.store.nodes import NodeStore
from lucid.nodes.store.poot import ValidationStore
from lucid.nodes.store.proofs import ProofStore, ProofSum
from lucid.nodes.v1 import poot_pb2 as tpb
from lucid.nodes.validation import Submission, Validator
from lucid.runtime.datastores import Datastores
from tests.nodes_support import NodeKeys, NodesKit, start_probe
from tests.stake_support import StakeNet, serve_payments, session_net, stop_session_net

NODES = 10_000
STAKES = 800
"""Stakes paid before the registrations are timed (more than 3 s at the rate reached)."""
REGISTER_S = 3.0
SLOTS_7D = 5040


def _stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(moment)
    return out


def _ms(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


def _prepay(net: StakeNet, n: int) -> list[tuple[NodeKeys, str]]:
    """``n`` node keys with a solid stake each, paid before the clock starts."""
    keys = [NodeKeys() for _ in range(n)]
    with ThreadPoolExecutor(8) as pool:
        txs = list(pool.map(lambda k: net.pay(k.tron, solid=False), keys))
    net.mine()
    return list(zip(keys, txs, strict=True))


async def run(ctx: BenchContext) -> list[Figure]:
    mesh = ctx.mesh
    net = session_net()
    await serve_payments(mesh, net)
    await mesh.start("nodes")
    probe = await start_probe(mesh)
    figures: list[Figure] = []
    names = itertools.count()
    net.pay(NodeKeys().tron)  # loads the USDT contract once, before the threads
    prepaid = await asyncio.to_thread(_prepay, net, STAKES)
    async with mesh.channel("nodes") as channel:
        kit = NodesKit(mesh, channel, probe.port, stakes=net)
        op = await kit.operator()

        async def register() -> None:
            if not prepaid:
                raise RuntimeError(f"the {STAKES} prepaid stakes ran out: raise STAKES")
            keys, tx = prepaid.pop()
            challenge = await kit.challenge(op, keys)
            await kit.nodes.RegisterNode(
                kit.register_request(challenge, keys, name=f"bench-{next(names)}", stake_tx=tx),
                metadata=op.md,
            )

        per_s, latencies = await rate(register, seconds=REGISTER_S, concurrency=16)
        figures += [
            Figure(
                "registrations/s (16 clients, gRPC, TIP-191 + probe + stake via payments)",
                per_s,
                "1/s",
            ),
            Figure("registration p50", _ms(latencies, 0.5), "ms"),
        ]

        node, _ = await kit.active_node(op)
        timings = []
        for _ in range(50):
            request = tpb.ValidatePootRequest(
                node_id=node.node_id,
                output_data=base64.b64encode(secrets.token_bytes(20 * 1024)).decode(),
                output_time=_stamp(datetime.now(UTC)),
                nonce=secrets.token_hex(16),
            )
            started = time.perf_counter()
            await kit.poot.ValidatePoot(request, metadata=op.md)
            timings.append((time.perf_counter() - started) * 1000)
        timings.sort()
        active = [node.node_id] + [(await kit.active_node(op))[0].node_id for _ in range(19)]
        figures += [
            Figure("PoOT validation p50 (gRPC, 20 KB output)", _ms(timings, 0.5), "ms"),
            Figure("PoOT validation p99 (gRPC, 20 KB output)", _ms(timings, 0.99), "ms"),
        ]

    stores = Datastores(mesh.settings, mongo=True, redis=False)
    try:
        db = stores.db
        validator = Validator(
            ValidationStore(db[schema.POOT], db[schema.POOT_NONCES]),
            NodeStore(db[schema.NODES]),
            SystemClock(),
        )
        caller = dataclasses.replace(Caller.cluster(), user_id=op.user_id)
        data = base64.b64encode(secrets.token_bytes(20 * 1024)).decode()

        def item(node_id: str = "") -> Submission:
            return Submission(
                node_id or node.node_id, data, datetime.now(UTC), secrets.token_hex(16)
            )

        per_s, _ = await rate(
            lambda: validator.validate(item(), caller), seconds=3.0, concurrency=8
        )
        figures.append(Figure("PoOT validations/s (domain on FerretDB, 8 at once)", per_s, "1/s"))
        started = time.perf_counter()
        batch = [item(active[i % len(active)]) for i in range(1000)]
        outcomes = await validator.batch(batch, caller, new_id())
        assert len(outcomes) == 1000
        figures.append(
            Figure(
                "PoOT batch of 1000 over 20 nodes (domain on FerretDB)",
                time.perf_counter() - started,
                "s",
            )
        )

        proofs = ProofStore(db[schema.TASK_PROOFS])
        now = datetime.now(UTC)
        node_ids = [str(uuid.uuid4()) for _ in range(NODES)]
        docs = [
            {
                "_id": new_id(),
                "node_id": nid,
                "pool_id": "",
                "slot": day,
                "task_type": tpb.TASK_TYPE_UPTIME_BEACON,
                "value": 120.0,
                "proof_time": now - timedelta(days=day, minutes=1),
                "signature": "",
            }
            for nid in node_ids
            for day in range(7)
        ]
        for start in range(0, len(docs), 5000):
            await db[schema.TASK_PROOFS].insert_many(docs[start : start + 5000])
        started = time.perf_counter()
        ranked = credits.tally(await proofs.sums(now - credits.WINDOW, now, by_pool=False))
        figures.append(
            Figure(
                "credits: read + sum + rank 70,000 proofs of 10,000 nodes",
                time.perf_counter() - started,
                "s",
            )
        )
        assert len(ranked) >= NODES
        sums = [
            ProofSum(nid, tpb.TASK_TYPE_UPTIME_BEACON, SLOTS_7D, SLOTS_7D * 120.0)
            for nid in node_ids
        ]
        started = time.perf_counter()
        credits.tally(sums)
        figures.append(
            Figure(
                "credits: rank 10,000 nodes x 7 days of beacons (from sums)",
                (time.perf_counter() - started) * 1000,
                "ms",
            )
        )
    finally:
        await stores.close()
        await probe.stop()
        await mesh.stop("nodes")
        await mesh.stop("payments")
        stop_session_net()
    figures.append(Figure("machine load average (1 min) at the end", os.getloadavg()[0], ""))
    return figures
