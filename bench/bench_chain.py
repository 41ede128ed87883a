"""Chain verification (``lucid chain verify``): blocks/s of the whole walk from MongoDB, of
the same checks on blocks already in memory, and of the bare cryptography a block needs
(Ed25519 verify of the proposer, the approvals and every transaction; SHA-256 of the
header, of every transaction body and of the transaction Merkle tree)."""

from __future__ import annotations

import hashlib
import time
import uuid

import nacl.signing
from pymongo import AsyncMongoClient

from bench.common import BenchContext, Figure
from lucid.blockchain import blocks, schema, transactions
from lucid.blockchain.config import ChainConfig
from lucid.blockchain.keys import ValidatorInfo, ValidatorSet, public_key_hex, sign_hex
from lucid.blockchain.ledger import Ledger
from lucid.blockchain.store.chain import Repository, doc_to_block, doc_to_transaction
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.blockchain.verify import ChainWalk, verify_chain
from lucid.lib import canonical, merkle
from lucid.lib.clock import SystemClock
from lucid.runtime.schema import ensure_schema
from tests.chain_support import data_body

BLOCKS = 300
TXS_PER_BLOCK = 10
APPROVALS = 2


async def _build_chain(ledger: Ledger, keys: list[nacl.signing.SigningKey]) -> None:
    signer = nacl.signing.SigningKey.generate()
    for height in range(1, BLOCKS + 1):
        checked = [
            transactions.check(
                transactions.sign(data_body(f"{height}-{i}"), "bench", signer), ledger.validators
            )
            for i in range(TXS_PER_BLOCK)
        ]
        proposer = height % len(keys)
        block = blocks.build(
            parent=ledger.tip,
            transactions=checked,
            proposer_id=f"validator-{proposer}",
            key=keys[proposer],
            slot=0,
            block_time_ns=ledger.tip.time_ns + 10**9,
        )
        for voter in range(APPROVALS):
            voter_key = keys[(proposer + voter) % len(keys)]
            block.approvals.add(
                validator_id=f"validator-{(proposer + voter) % len(keys)}",
                public_key=public_key_hex(voter_key),
                signature=sign_hex(voter_key, canonical.approval_message(height, 0, block.hash)),
                round=0,
            )
        await ledger.append(block, checked)


def _bare(chain: list[tuple[pb.Block, list[pb.Transaction]]], keys: dict[str, str]) -> float:
    """Seconds for the bare primitives of every block: Ed25519 verifies and SHA-256s."""
    work = []
    for block, txs in chain:
        verifies = [
            (
                keys[block.header.proposer_id],
                canonical.proposal_message(block.hash),
                block.proposer_signature,
            )
        ]
        verifies += [
            (
                a.public_key,
                canonical.approval_message(block.header.height, a.round, block.hash),
                a.signature,
            )
            for a in block.approvals
        ]
        bodies = [transactions.encode_body(t.signed.body) for t in txs]
        verifies += [
            (t.signed.public_key, bytes.fromhex(t.tx_hash), t.signed.signature) for t in txs
        ]
        prepared = [
            (nacl.signing.VerifyKey(bytes.fromhex(k)), m, bytes.fromhex(s)) for k, m, s in verifies
        ]
        work.append(
            (
                blocks.encoded_header(block.header),
                bodies,
                prepared,
                [bytes.fromhex(t.tx_hash) for t in txs],
            )
        )
    sha256 = hashlib.sha256
    started = time.perf_counter()
    for header, bodies, prepared, hashes in work:
        sha256(header).digest()
        for body in bodies:
            sha256(body).digest()
        merkle.root(merkle.leaf_hash(h) for h in hashes)
        for key, message, signature in prepared:
            key.verify(message, signature)
    return time.perf_counter() - started


async def run(ctx: BenchContext) -> list[Figure]:
    settings = ctx.settings
    keys = [nacl.signing.SigningKey.generate() for _ in range(3)]
    validators = ValidatorSet(
        tuple(ValidatorInfo(f"validator-{i}", public_key_hex(k)) for i, k in enumerate(keys))
    )
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        settings.mongodb_uri, tz_aware=True
    )
    db = client[f"bench_chain_{uuid.uuid4().hex[:8]}"]
    try:
        config = ChainConfig.of(settings.replace(validators=3, validator_index=0))
        await ensure_schema(db, schema.collections(config.collection_prefix))  # type: ignore[arg-type]
        repo = Repository(db, config.collection_prefix)  # type: ignore[arg-type]
        ledger = Ledger(repo, validators, config, SystemClock())
        await ledger.open()
        started = time.perf_counter()
        await _build_chain(ledger, keys)
        build_s = time.perf_counter() - started

        report = await verify_chain(repo)
        assert report.ok, report.describe()
        walk_s = report.seconds
        walked = report.blocks_checked  # genesis and the BLOCKS built on it
        assert walked == BLOCKS + 1, report.describe()

        docs = []
        for height in range(BLOCKS + 1):
            doc = await repo.block_doc(height=height)
            assert doc is not None
            docs.append((doc, await repo.tx_docs(doc["tx_hashes"])))
        walk = ChainWalk()
        genesis_doc, genesis_txs = docs[0]  # checked outside the timing: bare crypto skips it
        genesis_block = doc_to_block(genesis_doc)
        assert not walk.check_block(genesis_block, genesis_txs, validators, None)
        parent = blocks.tip_of(genesis_block)
        started = time.perf_counter()
        for doc, tx_docs in docs[1:]:
            block = doc_to_block(doc)
            problems = walk.check_block(block, tx_docs, validators, parent)
            assert not problems, problems
            parent = blocks.tip_of(block)
        memory_s = time.perf_counter() - started
        in_memory = len(docs) - 1

        chain = [
            (doc_to_block(doc), [doc_to_transaction(tx_docs[h]) for h in doc["tx_hashes"]])
            for doc, tx_docs in docs[1:]
        ]
        bare_s = _bare(chain, {v.validator_id: v.public_key for v in validators})
        assert in_memory == len(chain) == BLOCKS
    finally:
        await client.drop_database(db.name)
        await client.close()

    # Every rate divides the blocks a timing covered by that timing: the walk from MongoDB
    # covers genesis too (walked = BLOCKS + 1); the in-memory checks and the bare crypto
    # cover the same BLOCKS blocks above genesis.
    walk_rate, memory_rate, bare_rate = walked / walk_s, in_memory / memory_s, BLOCKS / bare_s
    per_block = f"{1 + APPROVALS + TXS_PER_BLOCK} Ed25519 + SHA-256s"
    return [
        Figure(f"chain of {BLOCKS} blocks x {TXS_PER_BLOCK} tx appended", build_s, "s"),
        Figure(f"lucid chain verify, from MongoDB ({walked} blocks)", walk_rate, "blocks/s"),
        Figure(f"the same checks on {in_memory} blocks in memory", memory_rate, "blocks/s"),
        Figure(f"bare crypto per block ({per_block})", bare_rate, "blocks/s"),
        Figure("verify from MongoDB / bare crypto", walk_rate / bare_rate, "ratio"),
        Figure("checks in memory / bare crypto", memory_rate / bare_rate, "ratio"),
    ]
