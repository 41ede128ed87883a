"""``lucid proof verify FILE --trust ANCHOR | --chain ADDR``: checks a chunk proof
against the chain's trust anchor and says which link fails.

FILE is the JSON of a ``GetChunkProofResponse`` (or of its ``ChunkProof``), as
``GetChunkProof`` returns it over REST or grpcurl. A proof is only worth the keys it
is checked against, so the command never calls a proof valid without a trust anchor:
``--trust ANCHOR`` reads one (the JSON ``lucid chain trust-anchor`` prints), ``--chain
ADDR`` fetches one with ``GetTrustAnchor`` from a chain endpoint given explicitly
(``https://edge:port`` over REST, or ``host:port`` over gRPC with the operator's mTLS
identity); an unreachable chain fails the command. With ``--chain host:port`` and a
token the chain's own view (VerifyAnchoring, GetBlock) is checked too. ``--blob``
also checks a downloaded encrypted blob against the proof's leaf entry.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TextIO

import grpc
from google.protobuf import json_format

from lucid.blockchain.v1 import (
    anchoring_pb2,
    anchoring_pb2_grpc,
    blockchain_pb2,
    blockchain_pb2_grpc,
)
from lucid.lib import trustanchor
from lucid.lib.chunkproof import verify_chunk_proof
from lucid.lib.trustanchor import Check, TrustAnchor, TrustAnchorError
from lucid.runtime.chaintrust import (
    CHAIN_TIMEOUT_S,
    ChainUnreachableError,
    chain_channel,
    fetch_anchor,
    is_url,
)
from lucid.runtime.config import Settings
from lucid.sessions.v1 import chunks_pb2

UNANCHORED = "unanchored: pass --trust or --chain URL"


def load_proof(path: Path) -> chunks_pb2.ChunkProof:
    """Reads a proof file (a GetChunkProofResponse or a bare ChunkProof, as JSON)."""
    data = json.loads(path.read_text())
    if "proof" in data and isinstance(data["proof"], dict):
        data = data["proof"]
    return json_format.ParseDict(data, chunks_pb2.ChunkProof(), ignore_unknown_fields=False)


async def chain_checks(
    settings: Settings, address: str, proof: chunks_pb2.ChunkProof, token: str
) -> list[Check]:
    """What the chain says about the proof's anchor (VerifyAnchoring and the block itself)."""
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    async with chain_channel(settings, address) as channel:
        verify = await anchoring_pb2_grpc.AnchoringServiceStub(channel).VerifyAnchoring(
            anchoring_pb2.VerifyAnchoringRequest(
                session_id=proof.session_id,
                merkle_root=proof.merkle_root,
                block_height=proof.anchor.block_header.height,
            ),
            metadata=metadata,
            timeout=CHAIN_TIMEOUT_S,
        )
        block = (
            await blockchain_pb2_grpc.BlockchainServiceStub(channel).GetBlock(
                blockchain_pb2.GetBlockRequest(height=proof.anchor.block_header.height),
                metadata=metadata,
                timeout=CHAIN_TIMEOUT_S,
            )
        ).block
    return [
        Check(
            "chain: anchoring verified",
            verify.verified and verify.merkle_proof_valid,
            f"verified={verify.verified} merkle_proof_valid={verify.merkle_proof_valid}"
            f" at height {verify.block_height}",
        ),
        Check(
            "chain: block on the chain",
            block.hash == proof.anchor.block_hash and block.final,
            f"the chain's block {block.header.height} is {block.hash} (final={block.final})",
        ),
    ]


def report(checks: list[Check], out: TextIO) -> bool:
    """Prints one line per check; whether all held."""
    for check in checks:
        mark = "ok  " if check.ok else "FAIL"
        out.write(f"{mark} {check.name}" + (f": {check.detail}" if check.detail else "") + "\n")
    bad = [c for c in checks if not c.ok]
    if bad:
        out.write(f"proof NOT valid: {len(bad)} check(s) failed, first: {bad[0].name}\n")
    else:
        out.write("proof valid\n")
    return not bad


async def load_anchor(
    settings: Settings, trust: Path | None, chain: str, ca: Path | None, out: TextIO
) -> TrustAnchor | None:
    """The trust anchor from a file or a chain endpoint; None (and why, on ``out``) if
    there is none (also used by ``lucid replay``)."""
    try:
        if trust is not None:
            return trustanchor.loads(await asyncio.to_thread(trust.read_text))
        return await fetch_anchor(settings, chain, ca)
    except OSError as exc:
        out.write(f"FAIL reading the trust anchor {trust}: {exc}\n")
    except TrustAnchorError as exc:
        out.write(f"FAIL {exc}\n")
    except ChainUnreachableError as exc:
        out.write(f"FAIL the chain is unreachable: {exc}\n")
    return None


async def verify_file(
    settings: Settings,
    path: Path,
    out: TextIO,
    *,
    trust: Path | None = None,
    chain: str = "",
    blob: Path | None = None,
    token: str = "",
    ca: Path | None = None,
) -> bool:
    """The command: the proof against a trust anchor, then the chain's view when asked."""
    if trust is None and not chain:
        out.write(UNANCHORED + "\n")
        return False
    try:
        proof = load_proof(path)
    except (OSError, ValueError, json_format.ParseError) as exc:
        out.write(f"FAIL reading {path}: {exc}\n")
        return False
    anchor = await load_anchor(settings, trust, chain, ca, out)
    if anchor is None:
        return False
    out.write(f"trust anchor: genesis {anchor.genesis_hash}, {anchor.validator_count} validators\n")
    blob_bytes = await asyncio.to_thread(blob.read_bytes) if blob else None
    checks = verify_chunk_proof(proof, anchor=anchor, blob=blob_bytes)
    if chain and token and not is_url(chain):
        try:
            checks += await chain_checks(settings, chain, proof, token)
        except grpc.aio.AioRpcError as exc:
            checks.append(Check("chain", False, f"{exc.code().name} {exc.details()}"))
    return report(checks, out)
