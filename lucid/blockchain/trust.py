"""The chain's trust anchor (``lucid.lib.trustanchor``) as this chain states it: from a
validator set (what ``GetTrustAnchor`` answers) or from a validator's stored genesis
block (``lucid chain trust-anchor``, offline from MongoDB)."""

from __future__ import annotations

import asyncio
import sys

from pymongo.errors import PyMongoError

from lucid.blockchain import blocks, genesis, transactions
from lucid.blockchain.config import NETWORK_NAME
from lucid.blockchain.keys import ValidatorSet
from lucid.blockchain.store.chain import Repository, doc_to_block
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.blockchain.verify import stored_replica, with_transactions
from lucid.lib import trustanchor
from lucid.lib.trustanchor import TrustAnchor
from lucid.runtime.config import Settings


def trust_anchor(validators: ValidatorSet) -> TrustAnchor:
    """The trust anchor of the chain of a validator set (its genesis commits to the set)."""
    block = genesis.genesis_block(validators)
    return TrustAnchor(
        network=NETWORK_NAME,
        genesis_hash=block.hash,
        genesis_header=blocks.encoded_header(block.header),
        genesis_transaction=transactions.encode_body(block.transactions[0].signed.body),
        validators=validators.members,
    )


def response(anchor: TrustAnchor) -> pb.GetTrustAnchorResponse:
    """The anchor as the GetTrustAnchor response."""
    return pb.GetTrustAnchorResponse(
        format=trustanchor.FORMAT,
        network_name=anchor.network,
        genesis_hash=anchor.genesis_hash,
        genesis_header=anchor.genesis_header,
        genesis_transaction=anchor.genesis_transaction,
        validators=[
            pb.TrustedValidator(validator_id=v.validator_id, public_key=v.public_key)
            for v in anchor.validators
        ],
        validator_count=anchor.validator_count,
        finality_rule=trustanchor.FINALITY_RULE,
        validator_set_changes=trustanchor.SET_CHANGES,
    )


async def stored_trust_anchor(repo: Repository) -> TrustAnchor:
    """The trust anchor of a stored chain; raises ``ValueError`` if its genesis is unsound."""
    doc = await repo.block_doc(height=0)
    if doc is None:
        raise ValueError("no chain stored (no genesis block)")
    block = doc_to_block(doc)
    block = with_transactions(block, await repo.tx_docs(block.tx_hashes))
    problems = genesis.check_genesis(block)
    if problems:
        raise ValueError("the stored genesis block is unsound: " + "; ".join(problems))
    return trust_anchor(genesis.validator_set_of(block))


async def _read(settings: Settings, validator_index: int) -> TrustAnchor:
    async with stored_replica(settings, validator_index) as repo:
        return await stored_trust_anchor(repo)


def main(settings: Settings, validator_index: int) -> int:
    """``lucid chain trust-anchor``: prints the anchor as JSON; 1 when there is none."""
    try:
        anchor = asyncio.run(_read(settings, validator_index))
    except (ValueError, PyMongoError) as exc:
        print(f"no trust anchor: {exc}", file=sys.stderr)
        return 1
    print(anchor.to_json())
    return 0
