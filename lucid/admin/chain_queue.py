"""The chain's anchoring queue as the console shows it (GetAnchoringQueue): the
blockchain cluster's ListAnchorings and its counts, called as the admin service. Each
session anchoring is shown as an anchoring operation of one session; with no state
given, the queue is what waits (pending and processing), oldest first."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from lucid.admin.clusters import CALL_TIMEOUT_S, refused
from lucid.admin.store.anchoring_ops import AnchoringOpRecord
from lucid.blockchain.v1 import anchoring_pb2 as apb
from lucid.blockchain.v1 import anchoring_pb2_grpc
from lucid.runtime.channels import Channels
from lucid.runtime.wire import moment

STATUSES = {
    "pending": [apb.ANCHORING_STATUS_PENDING],
    "processing": [apb.ANCHORING_STATUS_PROCESSING],
    "completed": [apb.ANCHORING_STATUS_CONFIRMED],
    "failed": [apb.ANCHORING_STATUS_FAILED, apb.ANCHORING_STATUS_EXPIRED],
    "": [apb.ANCHORING_STATUS_PENDING, apb.ANCHORING_STATUS_PROCESSING],
}
CONSOLE_STATE = {
    apb.ANCHORING_STATUS_PENDING: "pending",
    apb.ANCHORING_STATUS_PROCESSING: "processing",
    apb.ANCHORING_STATUS_CONFIRMED: "completed",
    apb.ANCHORING_STATUS_FAILED: "failed",
    apb.ANCHORING_STATUS_EXPIRED: "failed",
}


@dataclass(frozen=True)
class QueuePage:
    """A page of anchorings and the chain's waiting counts."""

    operations: list[AnchoringOpRecord]
    next_page_token: str
    total: int
    pending: int
    processing: int


def operation_of(a: apb.SessionAnchoring) -> AnchoringOpRecord:
    """A chain anchoring as an operation of one session."""
    return AnchoringOpRecord(
        operation_id=a.anchoring_id,
        session_ids=[a.session_id],
        priority="normal",
        state=CONSOLE_STATE.get(a.status, "pending"),
        requested_by="",
        reason="",
        created_at=moment(a.submit_time),
        finished_at=moment(a.confirm_time) if a.HasField("confirm_time") else None,
        tx_hash=a.tx_hash,
        block_height=a.block_height,
        error_message=a.error_message,
    )


class ChainQueue:
    """ListAnchorings and GetAnchoringServiceStatus."""

    def __init__(self, channels: Channels) -> None:
        self._channels = channels

    async def page(self, state: str, page_size: int, page_token: str) -> QueuePage:
        """Anchorings in a console state ("" for the queue), one page."""
        stub = await self._channels.stub("blockchain", anchoring_pb2_grpc.AnchoringServiceStub)
        request = apb.ListAnchoringsRequest(
            statuses=STATUSES.get(state, STATUSES[""]), page_size=page_size, page_token=page_token
        )
        try:
            listed = await stub.ListAnchorings(request, timeout=CALL_TIMEOUT_S)
            counts = await stub.GetAnchoringServiceStatus(
                apb.GetAnchoringServiceStatusRequest(), timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            raise refused("blockchain", exc) from exc
        return QueuePage(
            operations=[operation_of(a) for a in listed.anchorings],
            next_page_token=listed.next_page_token,
            total=int(listed.total_size),
            pending=int(counts.pending_count),
            processing=int(counts.processing_count),
        )
