"""The payments cluster's payout rpcs and auth's GetUser, called as the admin service
(payments lists admin among the callers of its payout rpcs; admin has authorized the
administrator with its own rule first)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.protobuf import struct_pb2

from lucid.admin.clusters import call_cluster
from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.payments.v1 import payouts_pb2 as ppb
from lucid.payments.v1 import payouts_pb2_grpc
from lucid.runtime.channels import Channels
from lucid.runtime.wire import moment, optional_timestamp

CONSOLE_STATE = {
    ppb.PAYOUT_STATUS_PENDING: "pending",
    ppb.PAYOUT_STATUS_PROCESSING: "processing",
    ppb.PAYOUT_STATUS_BROADCAST: "processing",
    ppb.PAYOUT_STATUS_CONFIRMED: "completed",
    ppb.PAYOUT_STATUS_FAILED: "failed",
    ppb.PAYOUT_STATUS_CANCELLED: "failed",
}
STATUS_FILTER = {
    "pending": ppb.PAYOUT_STATUS_PENDING,
    "processing": ppb.PAYOUT_STATUS_PROCESSING,
    "completed": ppb.PAYOUT_STATUS_CONFIRMED,
    "failed": ppb.PAYOUT_STATUS_FAILED,
}
PAGE_MAX = 100
REQUESTED_BY = "requested_by_user_id"


@dataclass(frozen=True)
class PayoutView:
    """What admin shows of a payout."""

    payout_id: str
    user_id: str
    node_id: str
    recipient_address: str
    amount_micros: int
    state: str
    tx_hash: str
    confirmations: int
    reason: str
    requested_by_user_id: str
    error_message: str
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True)
class PayoutQuery:
    """ListPayouts' filters."""

    state: str
    recipient_address: str
    start: datetime | None
    end: datetime | None


def payout_view(p: ppb.Payout) -> PayoutView:
    """The view of a payments-cluster Payout."""
    requested = p.custom_data.fields.get(REQUESTED_BY)
    paid = p.custom_data.fields.get("user_id")
    return PayoutView(
        payout_id=p.payout_id,
        user_id=p.user_id or (paid.string_value if paid is not None else ""),
        node_id=p.node_id,
        recipient_address=p.recipient_address,
        amount_micros=p.amount_micros,
        state=CONSOLE_STATE.get(p.status, "pending"),
        tx_hash=p.transaction.tx_hash,
        confirmations=p.transaction.confirmations,
        reason=p.reason,
        requested_by_user_id=requested.string_value if requested is not None else "",
        error_message=p.error_message,
        created_at=moment(p.create_time) if p.HasField("create_time") else None,
        updated_at=moment(p.update_time) if p.HasField("update_time") else None,
    )


class PaymentsAsAdmin:
    """CreatePayout, GetPayout and ListPayouts; recipients' addresses from auth."""

    def __init__(self, channels: Channels) -> None:
        self._channels = channels

    async def _call(self, method: str, request: Any) -> Any:
        stub_type = payouts_pb2_grpc.PayoutServiceStub
        return await call_cluster(self._channels, "payments", stub_type, method, request)

    async def address_of(self, user_id: str) -> str:
        """A user's TRON address (auth's GetUser; NOT_FOUND if auth does not know them)."""
        request = auth_pb2.GetUserRequest(user_id=user_id)
        stub_type = auth_pb2_grpc.AuthServiceStub
        reply = await call_cluster(self._channels, "auth", stub_type, "GetUser", request)
        return str(reply.user.tron_address)

    async def create(
        self, key: str, *, user_id: str, address: str, amount_micros: int, reason: str, by: str
    ) -> PayoutView:
        """CreatePayout (V0 router); a repeat of ``key`` returns the first payout."""
        data = struct_pb2.Struct()
        data.update({REQUESTED_BY: by, "user_id": user_id})
        request = ppb.CreatePayoutRequest(
            idempotency_key=key,
            recipient_address=address,
            amount_micros=amount_micros,
            reason=reason,
            router_type=ppb.ROUTER_TYPE_V0,
            custom_data=data,
        )
        return payout_view((await self._call("CreatePayout", request)).payout)

    async def get(self, payout_id: str) -> PayoutView:
        """GetPayout."""
        reply = await self._call("GetPayout", ppb.GetPayoutRequest(payout_id=payout_id))
        return payout_view(reply.payout)

    async def page(
        self, query: PayoutQuery, page_size: int, page_token: str
    ) -> tuple[list[PayoutView], str, int]:
        """One page of ListPayouts (at most 100, what payments serves at once)."""
        request = ppb.ListPayoutsRequest(
            status=STATUS_FILTER.get(query.state, ppb.PAYOUT_STATUS_UNSPECIFIED),
            recipient_address=query.recipient_address,
            start_time=optional_timestamp(query.start),
            end_time=optional_timestamp(query.end),
            page_size=min(page_size, PAGE_MAX),
            page_token=page_token,
        )
        reply = await self._call("ListPayouts", request)
        views = [payout_view(p) for p in reply.payouts]
        return views, reply.next_page_token, int(reply.total_size)
