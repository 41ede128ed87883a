"""KYC records of spec 07 §4: compliance-signed, bound to one address, valid 365 days.

A record is accepted only with a compliance officer's TIP-191 signature over
``kyc|{node_id}|{kyc_hash}|{recipient}|{level}|{signed_time RFC 3339}`` that is at
most 24 hours old and not future-dated. A KYC payout needs an active, unexpired
record of its node with that hash, bound to its recipient.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from tronpy.keys import BadSignature, PublicKey, Signature

from lucid.lib.clock import Clock
from lucid.payments.store.audit import AuditStore
from lucid.payments.store.kyc import KycHashTakenError, KycRecord, KycStore
from lucid.payments.wallets import Actor, check_address
from lucid.runtime.errors import ErrorCode, LucidError

VALID_S = 365 * 86_400
SIGNATURE_MAX_AGE_S = 24 * 3600
MIN_LEVEL = 1


@dataclass(frozen=True)
class Submission:
    """What a compliance officer signed."""

    node_id: str
    user_id: str
    kyc_hash: str
    recipient: str
    level: int
    verifier: str
    signed_time: float
    signature: str


def signed_message(s: Submission) -> str:
    """The text the compliance officer signs."""
    when = datetime.fromtimestamp(s.signed_time, UTC).isoformat().replace("+00:00", "Z")
    return f"kyc|{s.node_id}|{s.kyc_hash}|{s.recipient}|{s.level}|{when}"


def tip191_signer(message: str, signature_hex: str) -> str | None:
    """The Base58Check address whose key made a TIP-191 signature, or None."""
    try:
        raw = bytes.fromhex(signature_hex.removeprefix("0x"))
        if raw[64] >= 27:
            raw = raw[:64] + bytes([raw[64] - 27])
        public = PublicKey.recover_from_msg(message.encode(), Signature(raw))
    except (ValueError, IndexError, BadSignature):
        return None
    return str(public.to_base58check_address())


def _denied(message: str, reason: str) -> LucidError:
    return LucidError(ErrorCode.ERROR_CODE_KYC_REQUIRED, message, metadata={"reason": reason})


class Kyc:
    """KYC records and the check of the KYC router."""

    def __init__(self, store: KycStore, audit: AuditStore, clock: Clock) -> None:
        self.store = store
        self.audit = audit
        self.clock = clock

    async def submit(self, actor: Actor, s: Submission) -> KycRecord:
        check_address(s.recipient, "recipient_address")
        check_address(s.verifier, "verifier_address")
        now = self.clock.timestamp()
        if s.signed_time > now + 60:
            raise _denied("the compliance signature is dated in the future", "future_signature")
        if now - s.signed_time > SIGNATURE_MAX_AGE_S:
            raise _denied("the compliance signature is older than 24 h", "stale_signature")
        if tip191_signer(signed_message(s), s.signature) != s.verifier:
            raise LucidError(
                ErrorCode.ERROR_CODE_SIGNATURE_INVALID,
                "the compliance signature does not verify",
            )
        existing = await self.store.find({"kyc_hash": s.kyc_hash})
        if existing is not None:
            if (existing.node_id, existing.recipient) == (s.node_id, s.recipient):
                return existing
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS, "this kyc_hash is bound to another address"
            )
        record = KycRecord(
            kyc_record_id=str(uuid.uuid4()),
            node_id=s.node_id,
            user_id=s.user_id,
            kyc_hash=s.kyc_hash,
            recipient=s.recipient,
            level=s.level,
            verifier=s.verifier,
            signed_time=s.signed_time,
            create_time=now,
            expire_time=now + VALID_S,
        )
        try:
            await self.store.insert(record)
        except KycHashTakenError:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS, "this kyc_hash is already bound"
            ) from None
        await self.audit.record(
            "kyc.recorded", actor.display, details={"kyc_record_id": record.kyc_record_id}
        )
        return record

    async def verify(
        self, node_id: str, kyc_hash: str, recipient: str, min_level: int = 0
    ) -> tuple[KycRecord | None, str]:
        """The record a KYC payout may rely on, or why there is none."""
        record = await self.store.find({"kyc_hash": kyc_hash})
        if record is None or record.node_id != node_id:
            return None, "not_found"
        if record.status == "revoked":
            return record, "revoked"
        if record.expire_time <= self.clock.timestamp():
            return record, "expired"
        if record.recipient != recipient:
            return record, "address_mismatch"
        if record.level < (min_level or MIN_LEVEL):
            return record, "level_too_low"
        return record, ""

    async def require(self, node_id: str, kyc_hash: str, recipient: str) -> None:
        """Refuses a KYC payout without a valid record (PERMISSION_DENIED, LUCID_ERR_2012)."""
        if not (node_id and kyc_hash):
            raise _denied("the KYC router needs a node_id and a kyc_hash", "missing")
        _, reason = await self.verify(node_id, kyc_hash, recipient)
        if reason:
            raise _denied(f"no valid KYC record: {reason}", reason)

    async def get(self, actor: Actor, record_id: str) -> KycRecord:
        record = await self.store.find({"_id": record_id})
        if record is None or not (actor.may_see(record.user_id) or not actor.user_id):
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, "no such KYC record")
        return record

    async def list(
        self, actor: Actor, filters: dict[str, object], offset: int, limit: int
    ) -> tuple[list[KycRecord], int]:
        """Records, newest first; a user sees only their own."""
        query = dict(filters)
        if actor.user_id and not actor.sees_all:
            if query.get("user_id", actor.user_id) != actor.user_id:
                raise LucidError(ErrorCode.ERROR_CODE_PERMISSION_DENIED, "not your records")
            query["user_id"] = actor.user_id
        if query.get("status") == "expired":
            query["status"] = "active"
            query["expire_time"] = {"$lte": self.clock.timestamp()}
        elif query.get("status") == "active":
            query["expire_time"] = {"$gt": self.clock.timestamp()}
        return await self.store.page(query, offset, limit)

    async def revoke(self, actor: Actor, record_id: str, reason: str) -> KycRecord:
        record = await self.store.revoke(record_id, self.clock.timestamp())
        if record is None:
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, "no such KYC record")
        await self.audit.record(
            "kyc.revoked", actor.display, details={"kyc_record_id": record_id, "reason": reason}
        )
        return record
