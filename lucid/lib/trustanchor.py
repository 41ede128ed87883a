"""The chain's trust anchor and the checks of a block against it (pure; no I/O).

A proof from ``lucid_blocks`` is worth only the keys it is checked against. The
trust anchor is the small document that names them::

    {"format": "lucid_blocks/trust-anchor/v1",
     "network": "lucid_blocks",
     "genesis_hash": <64 hex>,
     "genesis_header": <hex of the canonical genesis header>,
     "genesis_transaction": <base64 of the canonical genesis transaction body>,
     "validators": [{"validator_id": ..., "public_key": <64 hex Ed25519>}, ...],
     "validator_count": N,
     "finality_rule": "3*approvals >= 2*validator_count",
     "validator_set_changes": "none"}

Genesis commits to it: the genesis transaction names every validator's id and key,
the genesis header's transaction root is the RFC 9162 root of that one transaction,
and the genesis hash is the SHA-256 of that header. ``parse`` checks each link, so
pinning the genesis hash pins the set. The chain has no validator-set changes: the set
named at genesis is the set for every height, and a block signed by any other key is
refused (``block_checks``). Whoever obtains the document (``lucid chain trust-anchor``,
``GetTrustAnchor``) should compare its genesis hash with one they trust.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.signing

from lucid.lib import canonical, merkle

FORMAT = "lucid_blocks/trust-anchor/v1"
FINALITY_RULE = "3*approvals >= 2*validator_count"
SET_CHANGES = "none"
_HEADER = struct.Struct(">8sBQ32s32sqIQI")


class TrustAnchorError(ValueError):
    """A document that is not a sound trust anchor."""


@dataclass(frozen=True)
class Check:
    """One link of a proof and whether it holds."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Validator:
    """One member of the trusted set."""

    validator_id: str
    public_key: str


@dataclass(frozen=True)
class Approval:
    """One validator's signed approval of a block, as a proof carries it."""

    validator_id: str
    public_key: str
    signature: str
    round: int


@dataclass(frozen=True)
class TrustAnchor:
    """The genesis of a chain and the validator set it fixes."""

    network: str
    genesis_hash: str
    genesis_header: bytes
    genesis_transaction: bytes
    validators: tuple[Validator, ...]

    @property
    def validator_count(self) -> int:
        """N of the finality rule."""
        return len(self.validators)

    def key_of(self, validator_id: str) -> str | None:
        """The trusted key of a validator; ``None`` for a stranger."""
        for member in self.validators:
            if member.validator_id == validator_id:
                return member.public_key
        return None

    def document(self) -> dict[str, Any]:
        """The anchor as its JSON document."""
        return {
            "format": FORMAT,
            "network": self.network,
            "genesis_hash": self.genesis_hash,
            "genesis_header": self.genesis_header.hex(),
            "genesis_transaction": b64(self.genesis_transaction),
            "validators": [
                {"validator_id": v.validator_id, "public_key": v.public_key}
                for v in self.validators
            ],
            "validator_count": self.validator_count,
            "finality_rule": FINALITY_RULE,
            "validator_set_changes": SET_CHANGES,
        }

    def to_json(self) -> str:
        """The document as indented JSON (what ``lucid chain trust-anchor`` prints)."""
        return json.dumps(self.document(), indent=2, sort_keys=True)


def b64(data: bytes) -> str:
    """Standard base64 (how the document carries the genesis transaction)."""
    return base64.b64encode(data).decode()


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise TrustAnchorError(f"trust anchor: {name} is missing")
    return value


def _hex32(value: str, name: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != 32 or value != value.lower():
        raise TrustAnchorError(f"trust anchor: {name} is not 64 lowercase hex digits")
    return raw


def _validators(data: dict[str, Any]) -> tuple[Validator, ...]:
    listed = data.get("validators")
    if not isinstance(listed, list) or not listed:
        raise TrustAnchorError("trust anchor: validators is missing or empty")
    members = []
    for entry in listed:
        if not isinstance(entry, dict):
            raise TrustAnchorError("trust anchor: a validator entry is not an object")
        member = Validator(_text(entry, "validator_id"), _text(entry, "public_key"))
        _hex32(member.public_key, f"the key of {member.validator_id}")
        members.append(member)
    if len({m.validator_id for m in members}) != len(members):
        raise TrustAnchorError("trust anchor: a validator id appears twice")
    if len({m.public_key for m in members}) != len(members):
        raise TrustAnchorError("trust anchor: a validator key appears twice")
    return tuple(members)


def _header_errors(anchor: TrustAnchor) -> list[str]:
    """Why the genesis header is not the one-transaction genesis of genesis_transaction."""
    header = anchor.genesis_header
    if hashlib.sha256(header).hexdigest() != anchor.genesis_hash:
        return ["the genesis header does not hash to genesis_hash"]
    if len(header) < _HEADER.size + 2:
        return ["the genesis header is too short"]
    magic, version, height, previous, root, _, _, _, count = _HEADER.unpack_from(header)
    if magic != canonical.HEADER_MAGIC or version != canonical.HEADER_VERSION:
        return ["the genesis header is not a version-1 block header"]
    if height != 0 or previous != bytes(32) or count != 1:
        return ["the genesis header is not height 0 with a zero parent and one transaction"]
    if root != merkle.leaf_hash(hashlib.sha256(anchor.genesis_transaction).digest()):
        return ["the genesis header's transaction root is not that of genesis_transaction"]
    return []


def _genesis_errors(anchor: TrustAnchor) -> list[str]:
    """Why the genesis evidence does not commit to the anchor's set (empty: it does)."""
    errors = _header_errors(anchor)
    if errors:
        return errors
    try:
        body = canonical.decode_tagged(anchor.genesis_transaction, canonical.TX_TAG)
        system = body["system"]
        parameters = system["parameters"]
        named = [(str(v["validator_id"]), str(v["public_key"])) for v in parameters["validators"]]
        network = parameters.get("network_name")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return [f"the genesis transaction does not decode: {exc}"]
    if system.get("action") != "genesis":
        errors.append("genesis_transaction is not the genesis system transaction")
    if named != [(v.validator_id, v.public_key) for v in anchor.validators]:
        errors.append("the genesis transaction names another validator set")
    if network != anchor.network:
        errors.append(f"the genesis transaction is of network {network!r}")
    return errors


def parse(data: Any) -> TrustAnchor:
    """A trust anchor from its JSON document; raises ``TrustAnchorError`` if unsound."""
    if not isinstance(data, dict):
        raise TrustAnchorError("trust anchor: not a JSON object")
    if data.get("format") != FORMAT:
        raise TrustAnchorError(f"trust anchor: format must be {FORMAT!r}")
    if data.get("validator_set_changes", SET_CHANGES) != SET_CHANGES:
        raise TrustAnchorError("trust anchor: validator-set changes are not supported")
    genesis_hash = _text(data, "genesis_hash")
    _hex32(genesis_hash, "genesis_hash")
    try:
        header = bytes.fromhex(_text(data, "genesis_header"))
        transaction = base64.b64decode(_text(data, "genesis_transaction"), validate=True)
    except (ValueError, binascii.Error) as exc:
        raise TrustAnchorError(f"trust anchor: genesis evidence does not decode: {exc}") from None
    anchor = TrustAnchor(
        network=_text(data, "network"),
        genesis_hash=genesis_hash,
        genesis_header=header,
        genesis_transaction=transaction,
        validators=_validators(data),
    )
    count = data.get("validator_count")
    if count != anchor.validator_count:
        raise TrustAnchorError(
            f"trust anchor: validator_count {count} but {anchor.validator_count} validators"
        )
    errors = _genesis_errors(anchor)
    if errors:
        raise TrustAnchorError("trust anchor: " + "; ".join(errors))
    return anchor


def loads(text: str) -> TrustAnchor:
    """A trust anchor from JSON text."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise TrustAnchorError(f"trust anchor: not JSON: {exc}") from None
    return parse(data)


def signature_ok(public_key_hex: str, message: bytes, signature_hex: str) -> bool:
    """Whether an Ed25519 signature (hex) over ``message`` verifies with a key (hex)."""
    try:
        key, signature = bytes.fromhex(public_key_hex), bytes.fromhex(signature_hex)
    except ValueError:
        return False
    if len(key) != 32 or len(signature) != 64:
        return False
    try:
        nacl.signing.VerifyKey(key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, ValueError):
        return False
    return True


def _member(anchor: TrustAnchor, validator_id: str, public_key: str) -> str:
    """Why ``(validator_id, public_key)`` is not a trusted validator ("" if it is)."""
    trusted = anchor.key_of(validator_id)
    if trusted is None:
        return f"{validator_id} (key {public_key}) is not a validator of the trust anchor"
    if trusted != public_key:
        return f"key {public_key} is not {validator_id}'s key in the trust anchor"
    return ""


def block_checks(
    anchor: TrustAnchor,
    *,
    height: int,
    block_hash: str,
    proposer_id: str,
    proposer_public_key: str,
    proposer_signature: str,
    approvals: Sequence[Approval],
    stated_validator_count: int,
) -> list[Check]:
    """The proposer signature and the approvals of a block, against the trusted set and
    the finality rule: approvals of one round by at least two thirds of its validators
    (3a ≥ 2N, N from the anchor), each by a member with the member's key."""
    checks: list[Check] = []
    stranger = _member(anchor, proposer_id, proposer_public_key)
    checks.append(
        Check(
            "proposer signature",
            not stranger
            and signature_ok(
                proposer_public_key, canonical.proposal_message(block_hash), proposer_signature
            ),
            stranger or f"Ed25519 by {proposer_id} ({proposer_public_key})",
        )
    )
    strangers = [s for a in approvals if (s := _member(anchor, a.validator_id, a.public_key))]
    checks.append(
        Check(
            "approvers in the trusted set",
            not strangers,
            "; ".join(strangers) or f"every approver is one of {anchor.validator_count}",
        )
    )
    by_round: dict[int, set[str]] = {}
    for approval in approvals:
        key = anchor.key_of(approval.validator_id)
        message = canonical.approval_message(height, approval.round, block_hash)
        if key == approval.public_key and signature_ok(key, message, approval.signature):
            by_round.setdefault(approval.round, set()).add(approval.validator_id)
    valid = max((len(v) for v in by_round.values()), default=0)
    total = anchor.validator_count
    checks.append(
        Check(
            "validator approvals",
            3 * valid >= 2 * total,
            f"{valid} valid approvals of one round by trusted validators, of {total} "
            f"(final: 3a ≥ 2N)",
        )
    )
    checks.append(
        Check(
            "validator count",
            stated_validator_count == total,
            f"the block states {stated_validator_count} validators, the trust anchor {total}",
        )
    )
    return checks


def signer_check(anchor: TrustAnchor, name: str, public_key: str) -> Check:
    """Whether a key (e.g. a session anchor's signer) belongs to a trusted validator."""
    for member in anchor.validators:
        if member.public_key == public_key:
            return Check(name, True, f"signed by {member.validator_id}")
    return Check(name, False, f"key {public_key} is not a validator of the trust anchor")
