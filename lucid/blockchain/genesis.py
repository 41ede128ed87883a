"""The genesis block: height 0, previous hash zeros, the validator set — deterministic.

Every validator computes the same genesis block from the validator set alone, so no
validator has to hand it to another: one ``genesis`` system transaction names the
network (``lucid_blocks``), the consensus (``PoOT``), the hash (SHA-256) and every
validator's id and public key; the block time is 2024-01-01T00:00:00Z (the PoOT
origin), the proposer ``genesis``, the slot 0. The genesis transaction and block are
signed by a key anyone can derive from the validator set (seed: SHA-256 of
``lucid_blocks/genesis/v1`` and the set's canonical JSON), so they are well-formed;
their authority is the validator set, which each validator checks against the keys
it knows, not the signature. The genesis block has no approvals.
"""

from __future__ import annotations

import hashlib

import nacl.signing
from google.protobuf import struct_pb2, timestamp_pb2
from lucid.blockchain.v1 import blockchain_pb2 as pb

from lucid.blockchain import blocks, transactions
from lucid.blockchain.config import CONSENSUS_ALGORITHM, NETWORK_NAME
from lucid.blockchain.keys import ValidatorInfo, ValidatorSet
from lucid.lib import canonical

GENESIS_PROPOSER = "genesis"
GENESIS_SECONDS = 1_704_067_200  # 2024-01-01T00:00:00Z


def _set_data(validators: ValidatorSet) -> list[dict[str, str]]:
    return [{"validator_id": v.validator_id, "public_key": v.public_key} for v in validators]


def genesis_key(validators: ValidatorSet) -> nacl.signing.SigningKey:
    """The public, derivable key that signs the genesis block of a validator set."""
    seed = hashlib.sha256(
        canonical.GENESIS_TAG + canonical.canonical_json(_set_data(validators))
    ).digest()
    return nacl.signing.SigningKey(seed)


def genesis_block(validators: ValidatorSet) -> pb.Block:
    """The genesis block of a validator set."""
    key = genesis_key(validators)
    parameters = struct_pb2.Struct()
    parameters.update(
        {
            "network_name": NETWORK_NAME,
            "consensus_algorithm": CONSENSUS_ALGORITHM,
            "hash_algorithm": "sha256",
            "header_version": canonical.HEADER_VERSION,
            "validators": _set_data(validators),
        }
    )
    body = pb.TransactionBody(
        type=pb.TRANSACTION_TYPE_SYSTEM,
        system=pb.SystemPayload(action=transactions.GENESIS_ACTION, parameters=parameters),
        create_time=timestamp_pb2.Timestamp(seconds=GENESIS_SECONDS),
        nonce=NETWORK_NAME,
    )
    signed = transactions.sign(body, GENESIS_PROPOSER, key)
    checked = transactions.check(signed, validators, genesis=True)
    parent = blocks.Tip(height=-1, hash=canonical.ZERO_HASH, time_ns=0)
    block = blocks.build(
        parent=parent,
        transactions=[checked],
        proposer_id=GENESIS_PROPOSER,
        key=key,
        slot=0,
        block_time_ns=GENESIS_SECONDS * blocks.NANOS,
    )
    block.status = pb.BLOCK_STATUS_CONFIRMED
    block.final = True
    block.validator_count = len(validators)
    return block


def validator_set_of(block: pb.Block) -> ValidatorSet:
    """The validator set a genesis block names (raises ``ValueError`` if it names none)."""
    if block.header.height != 0 or len(block.transactions) != 1:
        raise ValueError("not a genesis block with its transaction")
    body = block.transactions[0].signed.body
    if body.system.action != transactions.GENESIS_ACTION:
        raise ValueError("the genesis transaction is missing")
    data = canonical.to_canonical_data(body.system.parameters)
    try:
        members = tuple(
            ValidatorInfo(str(v["validator_id"]), str(v["public_key"])) for v in data["validators"]
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"the genesis transaction names no validator set: {exc}") from None
    if not members:
        raise ValueError("the genesis transaction names no validator")
    return ValidatorSet(members)


def check_genesis(block: pb.Block) -> list[str]:
    """What is wrong with a genesis block: it must be exactly the genesis of its set."""
    try:
        validators = validator_set_of(block)
    except ValueError as exc:
        return [str(exc)]
    expected = genesis_block(validators)
    errors = []
    if block.hash != expected.hash or block.header != expected.header:
        errors.append("the genesis block is not the genesis of its validator set")
    if (block.proposer_public_key, block.proposer_signature) != (
        expected.proposer_public_key,
        expected.proposer_signature,
    ):
        errors.append("the genesis signature is not the genesis key's")
    if list(block.tx_hashes) != list(expected.tx_hashes):
        errors.append("the genesis transaction differs")
    if block.header.previous_hash != canonical.ZERO_HASH:
        errors.append("the genesis previous_hash is not zeros")
    return errors


def signer_set(block: pb.Block) -> ValidatorSet:
    """The one-member set of the genesis proposer's derivable key (empty if unreadable)."""
    try:
        validators = validator_set_of(block)
    except ValueError:
        return ValidatorSet(())
    key = genesis_key(validators)
    return ValidatorSet((ValidatorInfo(GENESIS_PROPOSER, bytes(key.verify_key).hex()),))
