"""PoOT validation (spec 05 §4): rejections first, then the score, validity and trust.

Rejected before scoring (each stored with score 0 and the reason, then refused):
a timestamp in the future or older than 24 h, output over 1 MiB or not base64,
a nonce under 8 characters, a missing or inactive node. A scored validation is
VALID at score ≥ 70 with a nonce the node has not used in 24 h, else INVALID.
The node's ``poot_score`` follows its latest validation; its last 100 scores are kept
on the node (reliability, confidence and suspicion read them) and its nonces for
24 h in ``poot_nonces``, so a validation reads and writes documents by id only. In a batch, an item
that fails counts as an error and the others keep their results.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.nodes import pootscore
from lucid.nodes.callers import Caller
from lucid.nodes.store.nodes import NodeStore
from lucid.nodes.store.poot import ValidationRecord, ValidationStore
from lucid.nodes.v1 import nodes_pb2 as npb
from lucid.nodes.v1 import poot_pb2 as ppb
from lucid.runtime.errors import ErrorCode, LucidError, not_found

HISTORY = 100
BATCH_PARALLEL = 8
NONCE_WINDOW = timedelta(hours=24)
WEEK = timedelta(days=7)


@dataclass(frozen=True)
class Submission:
    """One output to validate."""

    node_id: str
    output_data: str
    output_time: datetime
    nonce: str


@dataclass(frozen=True)
class BatchOutcome:
    """One item of a batch: its validation, or the error that stopped it."""

    index: int
    node_id: str
    validation: ValidationRecord | None
    error: str = ""


def decoded_size(output_data: str) -> int | None:
    """The byte size of strict base64 text, or None when it is not base64."""
    try:
        return len(base64.b64decode(output_data, validate=True))
    except (binascii.Error, ValueError):
        return None


class Validator:
    """Validates PoOT outputs."""

    def __init__(self, store: ValidationStore, nodes: NodeStore, clock: Clock) -> None:
        self.store = store
        self.nodes = nodes
        self.clock = clock

    def _rejection(self, item: Submission, now: datetime) -> tuple[int, str] | None:
        age = (now - item.output_time).total_seconds()
        if age < 0:
            return ErrorCode.ERROR_CODE_INVALID_ARGUMENT, "output_time is in the future"
        if age > pootscore.MAX_AGE_S:
            return ErrorCode.ERROR_CODE_INVALID_ARGUMENT, "output_time is older than 24 h"
        size = decoded_size(item.output_data)
        if size is None:
            return ErrorCode.ERROR_CODE_INVALID_FORMAT, "output_data is not base64"
        if size > pootscore.MAX_OUTPUT_BYTES:
            return ErrorCode.ERROR_CODE_PAYLOAD_TOO_LARGE, "output_data is over 1 MiB"
        if len(item.nonce) < pootscore.MIN_NONCE:
            return ErrorCode.ERROR_CODE_INVALID_ARGUMENT, "the nonce is under 8 characters"
        return None

    async def validate(
        self, item: Submission, caller: Caller, batch_id: str = ""
    ) -> ValidationRecord:
        """Validates one output; a rejection is stored (score 0) and raised."""
        started = time.perf_counter()
        now = self.clock.now()
        output_hash = hashlib.sha256(item.output_data.encode()).hexdigest()
        node = await self.nodes.get(item.node_id)
        if node is not None and not caller.may_act_on(node.owner_user_id):
            node = None
        refused = self._rejection(item, now)
        if refused is None and node is None:
            refused = ErrorCode.ERROR_CODE_NOT_FOUND, f"node {item.node_id} not found"
        if refused is None and node is not None and node.state != npb.NODE_STATE_ACTIVE:
            refused = ErrorCode.ERROR_CODE_INVALID_STATE, f"node {item.node_id} is not active"
        base = dict(
            validation_id=new_id(),
            node_id=item.node_id,
            output_hash=output_hash,
            output_time=item.output_time,
            nonce=item.nonce,
            created_at=now,
            batch_id=batch_id,
        )
        if refused is not None:
            code, reason = refused
            rejection = ValidationRecord(
                **base,  # type: ignore[arg-type]
                score=0.0,
                confidence=0.0,
                status=ppb.POOT_STATUS_INVALID,
                errors=[reason],
                validation_time_ms=round((time.perf_counter() - started) * 1000),
            )
            await self.store.insert(rejection)
            if node is not None:
                await self.nodes.update(node.node_id, {"poot_latest_id": rejection.validation_id})
            if code == ErrorCode.ERROR_CODE_NOT_FOUND:
                raise not_found(f"node {item.node_id}")
            raise LucidError(code, f"PoOT rejected: {reason}")
        assert node is not None
        last = node.poot_history[-HISTORY:]
        history = pootscore.History(
            count=len(last),
            valid_rate=sum(bool(r["valid"]) for r in last) / len(last) if last else 0.0,
            mean_score=sum(float(r["score"]) for r in last) / len(last) if last else 0.0,
        )
        parts = pootscore.score(
            len(item.output_data), (now - item.output_time).total_seconds(), item.nonce, history
        )
        total = parts.total
        week = [float(r["score"]) for r in last if r["at"] >= now - WEEK]
        day = [float(r["score"]) for r in last if r["at"] >= now - NONCE_WINDOW]
        reused = await self.store.nonce_seen(item.node_id, item.nonce, now - NONCE_WINDOW)
        valid = total >= pootscore.VALID_SCORE and not reused
        record = ValidationRecord(
            **base,  # type: ignore[arg-type]
            score=total,
            confidence=pootscore.confidence(total, week),
            status=ppb.POOT_STATUS_VALID if valid else ppb.POOT_STATUS_INVALID,
            complexity=parts.complexity,
            freshness=parts.freshness,
            reliability=parts.reliability,
            nonce_score=parts.nonce,
            suspicious=pootscore.suspicious(total, day),
            alert=pootscore.alert(total, week),
            validation_time_ms=round((time.perf_counter() - started) * 1000),
        )
        await self.store.insert(record)
        await self.store.remember_nonce(item.node_id, item.nonce, now)
        entry = {"score": total, "valid": valid, "at": now}
        await self.nodes.update(
            item.node_id,
            {
                "poot_score": total,
                "poot_history": [*last, entry][-HISTORY:],
                "poot_latest_id": record.validation_id,
                "updated_at": now,
            },
        )
        return record

    async def batch(
        self, items: list[Submission], caller: Caller, batch_id: str
    ) -> list[BatchOutcome]:
        """Validates each item; one that fails is an error, not the batch's failure.

        Items of one node run in order (each reads the history the one before wrote);
        different nodes run side by side, at most ``BATCH_PARALLEL`` at once.
        """
        by_node: dict[str, list[int]] = {}
        for index, item in enumerate(items):
            by_node.setdefault(item.node_id, []).append(index)
        outcomes: dict[int, BatchOutcome] = {}
        gate = asyncio.Semaphore(BATCH_PARALLEL)

        async def run_node(indexes: list[int]) -> None:
            async with gate:
                for index in indexes:
                    item = items[index]
                    try:
                        record = await self.validate(item, caller, batch_id)
                    except LucidError as exc:
                        outcomes[index] = BatchOutcome(index, item.node_id, None, exc.message)
                        continue
                    outcomes[index] = BatchOutcome(index, item.node_id, record)

        await asyncio.gather(*(run_node(indexes) for indexes in by_node.values()))
        return [outcomes[i] for i in range(len(items))]

    async def latest(self, node_id: str, caller: Caller) -> ValidationRecord | None:
        """A node's latest validation (after an ownership check)."""
        node = await self.nodes.get(node_id)
        if node is None or not caller.may_act_on(node.owner_user_id):
            raise not_found(f"node {node_id}")
        return await self.store.get(node.poot_latest_id) if node.poot_latest_id else None

    async def history(
        self,
        node_id: str,
        *,
        status: int,
        start: datetime | None,
        end: datetime | None,
        caller: Caller,
        offset: int,
        limit: int,
    ) -> tuple[list[ValidationRecord], int]:
        """A page of a node's validations."""
        await self.latest(node_id, caller)
        return await self.store.history(
            node_id, status=status, start=start, end=end, offset=offset, limit=limit
        )
