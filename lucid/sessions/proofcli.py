"""``lucid proof verify FILE``: checks a chunk proof offline, and against the chain
when it can be reached, and says which link fails.

FILE is the JSON of a ``GetChunkProofResponse`` (or of its ``ChunkProof``), as
``GetChunkProof`` returns it over REST or grpcurl. ``--blob`` also checks a
downloaded encrypted blob against the proof's leaf entry.
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
from lucid.sessions.v1 import chunks_pb2

from lucid.runtime import tls
from lucid.runtime.config import Settings
from lucid.sessions.proofs import Check, verify_chunk_proof

CHAIN_TIMEOUT_S = 5.0


def load_proof(path: Path) -> chunks_pb2.ChunkProof:
    """Reads a proof file (a GetChunkProofResponse or a bare ChunkProof, as JSON)."""
    data = json.loads(path.read_text())
    if "proof" in data and isinstance(data["proof"], dict):
        data = data["proof"]
    return json_format.ParseDict(data, chunks_pb2.ChunkProof(), ignore_unknown_fields=False)


async def chain_checks(settings: Settings, proof: chunks_pb2.ChunkProof, token: str) -> list[Check]:
    """What the chain says about the proof's anchor (VerifyAnchoring and the block itself)."""
    credentials = tls.channel_credentials(tls.CertPaths.of(settings.certs_dir, "operator"))
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    async with grpc.aio.secure_channel(
        f"{settings.host}:{settings.port('blockchain')}",
        credentials,
        options=[("grpc.ssl_target_name_override", tls.dns_name("blockchain"))],
    ) as channel:
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


async def verify_file(
    settings: Settings,
    path: Path,
    out: TextIO,
    *,
    blob: Path | None = None,
    chain: bool = False,
    token: str = "",
) -> bool:
    """The command: offline checks, then the chain's view when asked and reachable."""
    try:
        proof = load_proof(path)
    except (OSError, ValueError, json_format.ParseError) as exc:
        out.write(f"FAIL reading {path}: {exc}\n")
        return False
    blob_bytes = await asyncio.to_thread(blob.read_bytes) if blob else None
    checks = verify_chunk_proof(proof, blob=blob_bytes)
    if chain:
        try:
            checks += await chain_checks(settings, proof, token)
        except grpc.aio.AioRpcError as exc:
            out.write(f"note chain not consulted: {exc.code().name} {exc.details()}\n")
    return report(checks, out)
