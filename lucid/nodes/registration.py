"""Node registration (spec 05 §4): a TIP-191 challenge, then the checks that approve a node.

Flow: IssueRegistrationChallenge allocates a node id and keeps the registration,
CHALLENGE_ISSUED, in Redis (``lucid.nodes.challenges``) with the message
``lucid_node_registration_{node_id}_{unix_ts}`` (the challenge is valid 120 s, the
registration 300 s, at most 1000 pending); how it ends (approved, rejected, expired)
is stored in ``node_registrations``.
RegisterNode then scores it, each check adding to a score capped at 1.0:

- the signature recovers (tronpy, TIP-191) to the node address: +0.3, required;
- capability (≥ 10 Mbps on an interface, ≥ 50 GB storage, ≥ 2 cores): +0.3;
- reachability (the cluster dials the node agent over mTLS): +0.2;
- a storage proof when storage is claimed: +0.2 (not run yet; never counted).

The stake (≥ 100 USDT, ``stake_tx_hash``) is verified through cluster 07
(``lucid.nodes.stakes``: a solid USDT transfer from the node address to the stake
address of at least the declared amount) and is required, like the signature. A
stake that cannot be verified (not confirmed yet, not a valid stake, paid by another
address, payments unreachable) refuses the call with the payments cluster's code and
stores nothing: the challenge stays open, so the agent asks again once its stake is
solid. A stake transaction backs one node only (``node_stakes``, keyed by the
transaction id).

A registration is approved at a score of at least 0.8 (signature, capability
and reachability) with its stake verified (``stake_verified``), and the node is
created ``inactive``, owned by the caller, with the Ed25519 key that signs its task
proofs and the stake it paid. Anything less is REJECTED with the reason. The store
reads, the stake check and the reachability probe run side by side, and the ended
registration and its audit entry are written together (registrations/s, spec 05 §6).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from lucid.lib import tip191
from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.nodes.alerts import AUTH_FAILURES, Alerts
from lucid.nodes.callers import Caller, audit
from lucid.nodes.challenges import ChallengeStore
from lucid.nodes.limits import RateLimiter
from lucid.nodes.pools import check_room
from lucid.nodes.reachability import Prober
from lucid.nodes.stakes import Stake, StakeVerifier
from lucid.nodes.store import DuplicateError
from lucid.nodes.store.nodes import NodeRecord, NodeStore
from lucid.nodes.store.pools import PoolStore
from lucid.nodes.store.registrations import RegistrationRecord, RegistrationStore
from lucid.nodes.store.stakes import StakeRecord, StakeStore
from lucid.nodes.v1 import nodes_pb2 as npb
from lucid.runtime.audit import AuditTrail
from lucid.runtime.errors import ErrorCode, LucidError, not_found
from lucid.runtime.events import EventPublisher

CHALLENGE_TTL_S = 120
REGISTRATION_TTL_S = 300
MAX_PENDING = 1000
APPROVAL_SCORE = 0.8
MIN_BANDWIDTH_MBPS = 10
MIN_STORAGE_BYTES = 50 * 10**9
MIN_CORES = 2
OPEN = (npb.REGISTRATION_STATE_PENDING, npb.REGISTRATION_STATE_CHALLENGE_ISSUED)


def challenge_message(node_id: str, unix_ts: int) -> str:
    """What the node key signs."""
    return f"lucid_node_registration_{node_id}_{unix_ts}"


def capable(hardware: dict[str, Any]) -> bool:
    """≥ 10 Mbps on some interface, ≥ 50 GB of storage, ≥ 2 cores."""
    bandwidth = max(
        (int(i.get("bandwidth_mbps", 0)) for i in hardware.get("network_interfaces", [])),
        default=0,
    )
    return (
        bandwidth >= MIN_BANDWIDTH_MBPS
        and int(hardware.get("storage_bytes", 0)) >= MIN_STORAGE_BYTES
        and int(hardware.get("cpu_cores", 0)) >= MIN_CORES
    )


@dataclass(frozen=True)
class Application:
    """What RegisterNode brings besides the registration id and signature."""

    name: str
    node_type: int
    hardware: dict[str, Any]
    location: dict[str, Any]
    configuration: dict[str, Any]
    initial_pool_id: str
    onion_address: str
    port: int
    capabilities: list[str]
    node_public_key: str
    stake_amount_micros: int
    stake_tx_hash: str


class Registrations:
    """The registration flow."""

    def __init__(  # noqa: PLR0917 (wiring: every collaborator once)
        self,
        registrations: RegistrationStore,
        challenges: ChallengeStore,
        nodes: NodeStore,
        pools: PoolStore,
        audit: AuditTrail,
        prober: Prober,
        clock: Clock,
        limiter: RateLimiter,
        alerts: Alerts,
        stakes: StakeStore,
        verifier: StakeVerifier,
        events: EventPublisher | None = None,
    ) -> None:
        self.stakes = stakes
        self.verifier = verifier
        self.events = events
        self.limiter = limiter
        self.alerts = alerts
        self.registrations = registrations
        self.challenges = challenges
        self.nodes = nodes
        self.pools = pools
        self.audit = audit
        self.prober = prober
        self.clock = clock

    async def issue(self, node_address: str, caller: Caller) -> RegistrationRecord:
        """A fresh challenge for a node address (kept in Redis until it ends)."""
        now = self.clock.now()
        node_id = new_id()
        record = RegistrationRecord(
            registration_id=new_id(),
            node_id=node_id,
            node_address=node_address,
            owner_user_id=caller.user_id,
            state=npb.REGISTRATION_STATE_CHALLENGE_ISSUED,
            message=challenge_message(node_id, int(now.timestamp())),
            created_at=now,
            challenge_expires_at=now + timedelta(seconds=CHALLENGE_TTL_S),
            expires_at=now + timedelta(seconds=REGISTRATION_TTL_S),
        )
        if not await self.challenges.issue(record, MAX_PENDING, now):
            raise LucidError(
                ErrorCode.ERROR_CODE_QUOTA_EXCEEDED,
                f"{MAX_PENDING} registrations are pending; try again later",
                retry_after_s=CHALLENGE_TTL_S,
            )
        return record

    async def sweep(self) -> int:
        """Records open registrations past their 300 s as EXPIRED."""
        expired = await self.challenges.past(self.clock.now())
        await asyncio.gather(
            *(
                self._end(reg, {"state": npb.REGISTRATION_STATE_EXPIRED, "rejection_reason": ""})
                for reg in expired
            )
        )
        return len(expired) + await self.registrations.expire(
            OPEN, npb.REGISTRATION_STATE_EXPIRED, self.clock.now()
        )

    async def _end(self, reg: RegistrationRecord, changes: dict[str, Any]) -> RegistrationRecord:
        """Stores an ended registration (approved, rejected or expired)."""
        ended = dataclasses.replace(reg, **changes)
        with contextlib.suppress(DuplicateError):  # stored already: the first record stands
            await self.registrations.insert(ended)
        await self.challenges.forget(reg.registration_id)
        return ended

    async def _open(self, registration_id: str, caller: Caller) -> RegistrationRecord:
        """The caller's open registration; NOT_FOUND or INVALID_STATE otherwise."""
        reg = await self.challenges.get(registration_id)
        if reg is None:
            reg = await self.registrations.get(registration_id)
        if reg is None or reg.owner_user_id != caller.user_id:
            raise not_found(f"registration {registration_id}")
        if reg.state not in OPEN:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"registration {registration_id} is {npb.RegistrationState.Name(reg.state)}",  # type: ignore[arg-type]
            )
        return reg

    async def register(
        self, registration_id: str, signature: str, app: Application, caller: Caller
    ) -> tuple[NodeRecord, RegistrationRecord]:
        """Checks a signed challenge and the application; the new node, inactive."""
        reg = await self._open(registration_id, caller)
        now = self.clock.now()
        if now >= reg.challenge_expires_at:
            if await self.challenges.claim(registration_id):
                await self._end(reg, {"state": npb.REGISTRATION_STATE_EXPIRED})
            raise LucidError(
                ErrorCode.ERROR_CODE_CHALLENGE_INVALID,
                "the registration challenge expired; ask for a new one",
            )
        if not tip191.signed_by(reg.node_address, reg.message, signature):
            await audit(self.audit, caller, "node.register", reg.node_id, failed="bad signature")
            if await self.limiter.exceeded("auth_failures", caller.display):
                await self.alerts.raise_alert(
                    "auth_failures",
                    reg.node_id,
                    caller,
                    {"failures": f"{AUTH_FAILURES}+ in 15 min", "caller": caller.display},
                )
            raise LucidError(
                ErrorCode.ERROR_CODE_SIGNATURE_INVALID,
                "the signature was not made by the node address's key over the challenge",
            )
        # The store reads, the stake check and the probe do not depend on each other.
        _, taken, used, stake, reachable = await asyncio.gather(
            check_room(self.pools, self.nodes, app.initial_pool_id)
            if app.initial_pool_id
            else asyncio.sleep(0),
            self.nodes.name_taken(app.initial_pool_id, app.name),
            self.stakes.get(app.stake_tx_hash),
            self.verifier.verify(app.stake_tx_hash, reg.node_address, app.stake_amount_micros),
            self.prober.reachable(app.port),
        )
        if taken:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS,
                f"a node named {app.name} is already in the pool",
            )
        if used is not None:
            raise _stake_backs(used, reg.node_id)
        checks = {
            "signature_verified": True,
            "capability_verified": capable(app.hardware),
            "reachability_verified": bool(reachable),
            "storage_verified": False,
            "stake_verified": True,
        }
        score = round(
            min(
                1.0,
                0.3 + 0.3 * checks["capability_verified"] + 0.2 * checks["reachability_verified"],
            ),
            2,
        )
        # Claim the challenge first so that one challenge makes at most one node.
        if not await self.challenges.claim(registration_id):
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE, "the registration was completed meanwhile"
            )
        if score < APPROVAL_SCORE:
            failed = [k.removesuffix("_verified") for k, ok in checks.items() if not ok]
            reason = f"verification score {score} < {APPROVAL_SCORE}: " + ", ".join(
                f for f in failed if f in ("capability", "reachability")
            )
            await asyncio.gather(
                self._end(
                    reg,
                    {
                        **checks,
                        "state": npb.REGISTRATION_STATE_REJECTED,
                        "verification_score": score,
                        "rejection_reason": reason,
                    },
                ),
                audit(self.audit, caller, "node.register", reg.node_id, failed=reason),
            )
            raise LucidError(ErrorCode.ERROR_CODE_NOT_ALLOWED, f"registration rejected: {reason}")
        node = NodeRecord(
            node_id=reg.node_id,
            owner_user_id=caller.user_id,
            name=app.name,
            node_type=app.node_type,
            state=npb.NODE_STATE_INACTIVE,
            node_address=reg.node_address,
            node_public_key=app.node_public_key,
            created_at=now,
            updated_at=now,
            pool_id=app.initial_pool_id,
            pool_join_time=now if app.initial_pool_id else None,
            onion_address=app.onion_address,
            port=app.port,
            hardware=app.hardware,
            location=app.location,
            configuration=app.configuration,
            capabilities=app.capabilities,
            stake_amount_micros=stake.amount_micros,
        )
        try:
            await self._claim(stake, node)
        except BaseException:
            await self.challenges.release(reg)
            raise
        try:
            await self.nodes.insert(node)
        except LucidError:  # the store failed: the challenge stays open for a retry
            await self.stakes.release(stake.tx_id, node.node_id)
            await self.challenges.release(reg)
            raise
        except DuplicateError:
            await self.stakes.release(stake.tx_id, node.node_id)
            await self._end(
                reg,
                {
                    **checks,
                    "state": npb.REGISTRATION_STATE_REJECTED,
                    "verification_score": score,
                    "rejection_reason": "the node address is registered already",
                },
            )
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS,
                f"a node with address {reg.node_address} is registered already",
            ) from None
        approved, _ = await asyncio.gather(
            self._end(
                reg,
                {
                    **checks,
                    "state": npb.REGISTRATION_STATE_APPROVED,
                    "verification_score": score,
                    "stake_tx_hash": app.stake_tx_hash,
                },
            ),
            audit(self.audit, caller, "node.register", node.node_id),
        )
        if self.events is not None:
            self.events.emit(
                "node.registered",
                {
                    "node_id": node.node_id,
                    "owner_user_id": node.owner_user_id,
                    "node_address": node.node_address,
                    "pool_id": node.pool_id,
                    "state": "inactive",
                },
            )
        return node, approved

    async def _claim(self, stake: Stake, node: NodeRecord) -> None:
        """Binds the stake to the node (once: ALREADY_EXISTS when it backs another)."""
        try:
            await self.stakes.claim(
                StakeRecord(
                    tx_id=stake.tx_id,
                    node_id=node.node_id,
                    node_address=node.node_address,
                    amount_micros=stake.amount_micros,
                    claimed_at=node.created_at,
                )
            )
        except DuplicateError:
            raise _stake_used(stake.tx_id) from None


def _stake_backs(used: StakeRecord, node_id: str) -> LucidError:
    """The refusal of a stake already claimed: by this registration's own node (a replay
    of a completed registration) or by another node."""
    if used.node_id == node_id:
        return LucidError(
            ErrorCode.ERROR_CODE_INVALID_STATE, "the registration was completed meanwhile"
        )
    return _stake_used(used.tx_id)


def _stake_used(tx_id: str) -> LucidError:
    return LucidError(
        ErrorCode.ERROR_CODE_ALREADY_EXISTS,
        f"stake transaction {tx_id} already backs another node; pay a stake for this one",
    )
