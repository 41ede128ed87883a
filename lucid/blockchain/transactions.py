"""Chain transactions: their hash, their signature and the rules each one keeps.

A transaction is a ``TransactionBody`` signed with Ed25519 by its signer. Its hash
is the SHA-256 of the body's canonical encoding (``lucid.lib.canonical``, tag
``lucid_blocks/tx/v1``) and the signature covers the 32 raw bytes of that hash.
The rules, checked on submission, on relay and again in every proposed or synced
block:

- the field rules of the contract (protovalidate): type matches payload, fee
  0 to 1000 (micro-units), signature 128 hex, …; no field the contract does not know;
- no payout and nothing of TRON (the chain never touches it): no key, action or
  value that names TRON, TRX, TRC-20, USDT or payouts, no TRON address;
- the encoded transaction is at most 1 MiB, its time at most 30 s ahead;
- the signature verifies; session anchors, consensus votes and ``poot.*`` system
  transactions are signed by a validator of the set (they enter through
  AnchorSession, SubmitConsensusVote and SubmitTaskProof); ``genesis`` appears
  only in the genesis block;
- a consensus vote that carries the voter's signature (every PoOT validation vote
  does) verifies with the voter's key (``lucid.lib.pootvotes``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import nacl.signing

from lucid.blockchain import poot
from lucid.blockchain.config import MAX_TRANSACTION_BYTES, TIME_TOLERANCE_S
from lucid.blockchain.keys import ValidatorSet, sign_hex, verify_signature
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.lib import canonical, pootvotes
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError
from lucid.runtime.pipeline import validate

GENESIS_ACTION = "genesis"
TASK_PROOF_ACTION = "poot.task_proof"
VALIDATOR_SIGNED_TYPES = {pb.TRANSACTION_TYPE_SESSION_ANCHOR, pb.TRANSACTION_TYPE_CONSENSUS_VOTE}

_TRON_WORDS = {"tron", "trx", "trc10", "trc20", "usdt", "payout", "payouts", "sun"}
_TRON_ADDRESS = re.compile(r"T[1-9A-HJ-NP-Za-km-z]{33}")
_TRON_HEX_ADDRESS = re.compile(r"^41[0-9a-fA-F]{40}$")
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_TRON_PIECES = (b"tron", b"trx", b"trc", b"usdt", b"payout", b"sun")
"""One of these is in every word ``_tron_word`` refuses, once lowered."""
_TRON_ADDRESS_BYTES = re.compile(rb"T[1-9A-HJ-NP-Za-km-z]{33}")
_TRON_HEX_VALUE = re.compile(rb'"41[0-9a-f]{40}(?:\\n)?"')
"""A whole string value ``_TRON_HEX_ADDRESS`` matches, in lowered JSON (``$`` also
matches before a final newline)."""


TYPE_NAMES = {
    pb.TRANSACTION_TYPE_SESSION_ANCHOR: "session_anchor",
    pb.TRANSACTION_TYPE_DATA_STORAGE: "data_storage",
    pb.TRANSACTION_TYPE_CONSENSUS_VOTE: "consensus_vote",
    pb.TRANSACTION_TYPE_SYSTEM: "system",
}


def encode_body(body: pb.TransactionBody) -> bytes:
    """The canonical encoding of a body; its SHA-256 is the transaction hash."""
    try:
        return canonical.encode_message(canonical.TX_TAG, body)
    except canonical.EncodingError as exc:
        raise LucidError(
            ErrorCode.ERROR_CODE_TRANSACTION_INVALID, f"transaction body: {exc}"
        ) from None


def body_from_encoding(encoded: bytes) -> pb.TransactionBody:
    """The body a canonical encoding stands for."""
    body = pb.TransactionBody()
    canonical.from_canonical_data(canonical.decode_tagged(encoded, canonical.TX_TAG), body)
    return body


def sign(
    body: pb.TransactionBody, signer_id: str, key: nacl.signing.SigningKey
) -> pb.SignedTransaction:
    """Signs a body: the signature covers the raw bytes of its hash."""
    digest = canonical.sha256_hex(encode_body(body))
    return pb.SignedTransaction(
        body=body,
        signer_id=signer_id,
        public_key=bytes(key.verify_key).hex(),
        signature=sign_hex(key, bytes.fromhex(digest)),
    )


@functools.lru_cache(maxsize=4096)
def _tron_key(key: str) -> bool:
    """``_tron_word`` of a key (field and parameter names repeat from one transaction to
    the next, so they are looked at once)."""
    return _tron_word(key)


def _tron_word(text: str) -> bool:
    lowered = text.lower()
    if lowered.startswith(("tron", "trc")):
        return True
    return any(word.lower() in _TRON_WORDS for word in _WORDS.findall(text))


def _tron_value(text: str) -> bool:
    return bool(_TRON_ADDRESS.search(text) or _TRON_HEX_ADDRESS.match(text))


def tron_violation(data: Any, path: str = "body") -> str | None:
    """Where canonical transaction data names TRON or a payout, if it does."""
    if isinstance(data, dict):
        for key, value in data.items():
            if _tron_key(str(key)):
                return f"{path}.{key}"
            found = tron_violation(value, f"{path}.{key}")
            if found:
                return found
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found = tron_violation(value, f"{path}[{i}]")
            if found:
                return found
    elif isinstance(data, str) and _tron_value(data):
        return path
    return None


def may_name_tron(encoded: bytes) -> bool:
    """Whether a canonical encoding could name TRON or a payout; ``False`` means that
    ``_refuse_tron`` has nothing to find in it, so the walk over its data is skipped.

    Canonical JSON escapes no ASCII letter or digit, so whatever the walk refuses is in
    the bytes: a refused word holds one of ``_TRON_PIECES`` once lowered, an address its
    base58 or hex form.
    """
    lowered = encoded.lower()
    return (
        any(piece in lowered for piece in _TRON_PIECES)
        or _TRON_ADDRESS_BYTES.search(encoded) is not None
        or _TRON_HEX_VALUE.search(lowered) is not None
    )


def _refuse_tron(body: pb.TransactionBody, data: Any) -> None:
    where = tron_violation(data)
    if where is None and body.WhichOneof("payload") == "system":
        action = body.system.action
        if _tron_word(action) or any(_tron_word(p) for p in action.split(".")):
            where = "body.system.action"
    if where is not None:
        raise LucidError(
            ErrorCode.ERROR_CODE_TRON_FORBIDDEN,
            f"payouts and TRON data have no place on lucid_blocks ({where})",
            field_violations=[FieldViolation(where, "TRON data or a payout")],
        )


@dataclass(frozen=True)
class VoteFacts:
    """What a consensus vote says, as the vote reads (ListConsensusVotes) see it."""

    voter_id: str
    vote_type: int
    target_id: str
    decision: int
    reasoning: str
    slot: int
    """The task slot of the vote's time (0 when it carries none)."""
    vote_time: datetime | None
    public_key: str
    signature: str

    def as_doc(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "voter_id": self.voter_id,
            "vote_type": self.vote_type,
            "target_id": self.target_id,
            "decision": self.decision,
            "reasoning": self.reasoning,
            "slot": self.slot,
            "vote_time": self.vote_time,
            "public_key": self.public_key,
            "signature": self.signature,
        }


def check_vote(data: pb.ConsensusVotePayload) -> VoteFacts:
    """Checks the voter's signature a consensus vote carries (a PoOT validation vote must
    carry one, and its time); its facts."""
    poot_vote = data.vote_type == pb.VOTE_TYPE_POOT_VALIDATION
    if poot_vote and not (data.signature and data.public_key and data.HasField("vote_time")):
        raise _invalid(
            "a PoOT validation vote carries the voter's key, signature and vote time",
            "body.consensus_vote",
        )
    if data.signature and not pootvotes.verifies(pootvotes.from_payload(data)):
        raise _invalid(
            "the vote's signature does not verify with the voter's key",
            "body.consensus_vote.signature",
        )
    vote_time = data.vote_time.ToDatetime(tzinfo=UTC) if data.HasField("vote_time") else None
    return VoteFacts(
        voter_id=data.voter_id,
        vote_type=int(data.vote_type),
        target_id=data.target_id,
        decision=int(data.decision),
        reasoning=data.reasoning,
        slot=poot.task_slot(vote_time) if vote_time is not None else 0,
        vote_time=vote_time,
        public_key=data.public_key,
        signature=data.signature,
    )


@dataclass(frozen=True)
class CheckedTransaction:
    """A transaction that keeps every rule, with what the chain derives from it."""

    signed: pb.SignedTransaction
    tx_hash: str
    canonical: bytes
    size_bytes: int
    session_id: str = ""
    """For a session anchor: the session."""
    task: poot.TaskFacts | None = None
    """For a task proof: its facts (work credits are computed from these)."""
    rides_along: bool = False
    """A validator's own uptime beacon: included in blocks, but never the reason for one."""
    vote: VoteFacts | None = None
    """For a consensus vote: its facts (the vote reads are computed from these)."""

    @property
    def type(self) -> int:
        """The transaction type."""
        return int(self.signed.body.type)


def _invalid(message: str, field: str = "transaction") -> LucidError:
    return LucidError(
        ErrorCode.ERROR_CODE_TRANSACTION_INVALID,
        message,
        field_violations=[FieldViolation(field, message)],
    )


def check(
    signed: pb.SignedTransaction,
    validators: ValidatorSet,
    *,
    now: datetime | None = None,
    genesis: bool = False,
    stored: tuple[bytes, Any] | None = None,
) -> CheckedTransaction:
    """Checks every rule of a transaction; raises ``LucidError`` on the first broken one.

    ``stored`` is a stored canonical encoding of the body and its decoded JSON data, when
    the caller has read them: if the body encodes to exactly those bytes, that data is
    the body's and is not decoded again.
    """
    if canonical.has_unknown_fields(signed):
        raise _invalid("the transaction carries fields this chain does not know")
    validate(signed)
    encoded = encode_body(signed.body)
    if may_name_tron(encoded):
        if stored is not None and stored[0] == encoded:
            data = stored[1]
        else:
            data = canonical.decode_tagged(encoded, canonical.TX_TAG)
        _refuse_tron(signed.body, data)
    size = signed.ByteSize()
    if size > MAX_TRANSACTION_BYTES:
        raise _invalid(f"the transaction is {size} bytes; at most 1 MiB is allowed")
    digest = canonical.sha256_hex(encoded)
    if not verify_signature(signed.public_key, bytes.fromhex(digest), signed.signature):
        raise _invalid("the signature does not verify with the public key", "signature")
    body = signed.body
    if now is not None and not genesis:
        created = body.create_time.ToDatetime(tzinfo=now.tzinfo)
        if created > now + timedelta(seconds=TIME_TOLERANCE_S):
            raise _invalid("create_time lies in the future", "body.create_time")
    validator_signed = body.type in VALIDATOR_SIGNED_TYPES or (
        body.type == pb.TRANSACTION_TYPE_SYSTEM and body.system.action.startswith("poot.")
    )
    if validator_signed and validators.key_of(signed.signer_id) != signed.public_key:
        raise LucidError(
            ErrorCode.ERROR_CODE_NOT_ALLOWED,
            f"{TYPE_NAMES.get(body.type, 'this')} transactions are signed by a validator "
            "(they enter through AnchorSession, SubmitConsensusVote or SubmitTaskProof)",
        )
    if (body.type == pb.TRANSACTION_TYPE_SYSTEM and body.system.action == GENESIS_ACTION) != (
        genesis
    ):
        raise _invalid("the genesis action belongs to the genesis block only", "body.system")
    task = None
    rides_along = False
    if body.type == pb.TRANSACTION_TYPE_SYSTEM and body.system.action == TASK_PROOF_ACTION:
        proof = poot.proof_from_parameters(body.system.parameters)
        task = poot.check_task_proof(proof)
        rides_along = (
            proof.task_type == poot.UPTIME_BEACON
            and proof.node_id == poot.validator_node_id(signed.public_key)
        )
    vote = check_vote(body.consensus_vote) if body.HasField("consensus_vote") else None
    return CheckedTransaction(
        vote=vote,
        signed=signed,
        tx_hash=digest,
        canonical=encoded,
        size_bytes=size,
        session_id=body.session_anchor.session_id if body.HasField("session_anchor") else "",
        task=task,
        rides_along=rides_along,
    )
