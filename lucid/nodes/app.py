"""Cluster 05, node management: wiring of its server.

Worker nodes: registration with a TRON key (TIP-191), the lifecycle, heartbeats and
resources, pools, PoOT validation, task proofs put on the chain and the work
credits they earn, and payout batches handed to the payments cluster
(CreatePayout, idempotency key = payout id); a registering node's stake is verified
by the payments cluster (VerifyStake). Owns the proto package
``lucid.nodes.v1``, the collections of ``lucid.nodes.schema`` and the Redis prefix
``lucid:nodes:``.
"""

from __future__ import annotations

import asyncio
import logging

from lucid.nodes import schema
from lucid.nodes.alerts import Alerts
from lucid.nodes.chain import ChainClient
from lucid.nodes.challenges import ChallengeStore
from lucid.nodes.credits import WorkCredits
from lucid.nodes.epochs import EpochPayouts
from lucid.nodes.fleet import Fleet
from lucid.nodes.limits import RateLimiter
from lucid.nodes.payments import PaymentsClient
from lucid.nodes.payouts import Payouts
from lucid.nodes.pools import Pools
from lucid.nodes.reachability import AgentProber, Prober
from lucid.nodes.registration import Registrations
from lucid.nodes.resources import Resources
from lucid.nodes.schedule import Schedule
from lucid.nodes.servicers.nodes import NodeServiceServicer
from lucid.nodes.servicers.payouts import PayoutServiceServicer
from lucid.nodes.servicers.pools import PoolServiceServicer
from lucid.nodes.servicers.poot import PootServiceServicer, WorkCreditServiceServicer
from lucid.nodes.stakes import PaymentsStakeVerifier
from lucid.nodes.storageproofs import StorageProofs
from lucid.nodes.store.metrics import AllocationStore, MetricStore
from lucid.nodes.store.nodes import NodeStore
from lucid.nodes.store.payouts import PayoutStore
from lucid.nodes.store.pools import PoolStore
from lucid.nodes.store.poot import ValidationStore
from lucid.nodes.store.proofs import ProofStore
from lucid.nodes.store.registrations import RegistrationStore
from lucid.nodes.store.stakes import StakeStore
from lucid.nodes.v1 import nodes_pb2_grpc, payout_pb2_grpc, pool_pb2_grpc, poot_pb2_grpc
from lucid.nodes.validation import Validator
from lucid.nodes.validationwork import ValidationWork
from lucid.nodes.workproofs import WorkProofs
from lucid.runtime.audit import AuditTrail
from lucid.runtime.errors import LucidError
from lucid.runtime.server import ClusterApp, Runtime

log = logging.getLogger("lucid.nodes")
SWEEP_S = 60.0
HANDOFF_S = 2.0


async def build(runtime: Runtime, prober: Prober | None = None) -> ClusterApp:
    """The nodes server (tests may give another prober)."""
    db = runtime.datastores.db
    clock = runtime.clock
    nodes = NodeStore(db[schema.NODES])
    pools = PoolStore(db[schema.POOLS])
    metrics = MetricStore(db[schema.METRICS])
    audit = AuditTrail(db[schema.AUDIT], clock)
    agent_prober = AgentProber(runtime.settings.host, runtime.channels.credentials)
    prober = prober or agent_prober
    alerts = Alerts(audit)
    limiter = RateLimiter(runtime.datastores.cache, clock)
    fleet = Fleet(nodes, metrics, audit, prober, clock, alerts, pools)
    registrations = Registrations(
        RegistrationStore(db[schema.REGISTRATIONS]),
        ChallengeStore(runtime.datastores.cache),
        nodes,
        pools,
        audit,
        prober,
        clock,
        limiter,
        alerts,
        StakeStore(db[schema.STAKES]),
        PaymentsStakeVerifier(runtime.channels),
        runtime.events,
    )
    resources = Resources(fleet, metrics, AllocationStore(db[schema.ALLOCATIONS]), clock)
    storage = StorageProofs(nodes, runtime.datastores.cache, clock)
    proof_store = ProofStore(db[schema.TASK_PROOFS])
    validation = ValidationWork(nodes, proof_store, runtime.datastores.cache, clock)
    proofs = WorkProofs(
        nodes,
        proof_store,
        ChainClient(runtime.channels),
        clock,
        storage=storage,
        validation=validation,
    )
    payouts = Payouts(
        PayoutStore(db[schema.PAYOUTS], db[schema.PAYOUT_BATCHES], db[schema.PAYOUT_SCHEDULE]),
        nodes,
        PaymentsClient(runtime.channels),
        audit,
        clock,
        alerts,
    )
    schedule = Schedule(payouts.store, audit, clock)
    epochs = EpochPayouts(nodes, proofs.proofs, payouts, schedule, clock, pools=pools)
    return ClusterApp(
        servicers=[
            (
                nodes_pb2_grpc.add_NodeServiceServicer_to_server,
                NodeServiceServicer(registrations, fleet, resources, storage, validation),
            ),
            (
                pool_pb2_grpc.add_PoolServiceServicer_to_server,
                PoolServiceServicer(Pools(pools, nodes, audit, clock)),
            ),
            (
                poot_pb2_grpc.add_PootServiceServicer_to_server,
                PootServiceServicer(
                    Validator(
                        ValidationStore(db[schema.POOT], db[schema.POOT_NONCES]), nodes, clock
                    ),
                    limiter,
                ),
            ),
            (
                poot_pb2_grpc.add_WorkCreditServiceServicer_to_server,
                WorkCreditServiceServicer(proofs, WorkCredits(proofs.proofs, nodes, clock)),
            ),
            (
                payout_pb2_grpc.add_PayoutServiceServicer_to_server,
                PayoutServiceServicer(payouts, schedule, limiter),
            ),
        ],
        collections=schema.COLLECTIONS,
        tasks=[lambda: sweep(registrations), lambda: hand_off(payouts, epochs)],
        on_stop=[agent_prober.close],
    )


async def hand_off(payouts: Payouts, epochs: EpochPayouts) -> None:
    """Finishes batches a crash cut off, runs a finished epoch when due, hands pending
    payouts to cluster 07 and follows them, every few seconds."""
    while True:
        try:
            await payouts.recover()
            await epochs.due()
            await payouts.send_round()
            await payouts.follow_round()
        except LucidError as exc:
            log.warning("payout handoff failed: %s", exc.message)
        await asyncio.sleep(HANDOFF_S)


async def sweep(registrations: Registrations) -> None:
    """Expires stale registrations every minute."""
    while True:
        try:
            await registrations.sweep()
        except LucidError as exc:  # the store is down: try again next round
            log.warning("registration sweep failed: %s", exc.message)
        await asyncio.sleep(SWEEP_S)
