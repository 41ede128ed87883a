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
import ssl
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import grpc
from google.protobuf import json_format

from lucid.blockchain.v1 import (
    anchoring_pb2,
    anchoring_pb2_grpc,
    blockchain_pb2,
    blockchain_pb2_grpc,
)
from lucid.lib import trustanchor
from lucid.lib.trustanchor import Check, TrustAnchor, TrustAnchorError
from lucid.runtime import tls
from lucid.runtime.config import Settings
from lucid.sessions.proofs import verify_chunk_proof
from lucid.sessions.v1 import chunks_pb2

CHAIN_TIMEOUT_S = 5.0
TRUST_ANCHOR_ROUTE = "/api/v1/chain/trust-anchor"
UNANCHORED = "unanchored: pass --trust or --chain URL"


class ChainUnreachableError(Exception):
    """The chain endpoint given with ``--chain`` did not answer with a trust anchor."""


def load_proof(path: Path) -> chunks_pb2.ChunkProof:
    """Reads a proof file (a GetChunkProofResponse or a bare ChunkProof, as JSON)."""
    data = json.loads(path.read_text())
    if "proof" in data and isinstance(data["proof"], dict):
        data = data["proof"]
    return json_format.ParseDict(data, chunks_pb2.ChunkProof(), ignore_unknown_fields=False)


def anchor_of_response(response: blockchain_pb2.GetTrustAnchorResponse) -> TrustAnchor:
    """The trust anchor a GetTrustAnchor response states (checked like a document)."""
    document: dict[str, Any] = {
        "format": response.format,
        "network": response.network_name,
        "genesis_hash": response.genesis_hash,
        "genesis_header": response.genesis_header.hex(),
        "genesis_transaction": trustanchor.b64(response.genesis_transaction),
        "validators": [
            {"validator_id": v.validator_id, "public_key": v.public_key}
            for v in response.validators
        ],
        "validator_count": response.validator_count,
        "validator_set_changes": response.validator_set_changes,
    }
    return trustanchor.parse(document)


def _chain_channel(settings: Settings, address: str) -> grpc.aio.Channel:
    try:
        credentials = tls.channel_credentials(tls.CertPaths.of(settings.certs_dir, "operator"))
    except OSError as exc:
        raise ChainUnreachableError(
            f"no operator certificate for mTLS to {address}: {exc}"
        ) from None
    return grpc.aio.secure_channel(
        address,
        credentials,
        options=[("grpc.ssl_target_name_override", tls.dns_name("blockchain"))],
    )


def _is_url(address: str) -> bool:
    return address.startswith(("https://", "http://"))


async def _fetch_rest(url: str, ca: Path | None) -> blockchain_pb2.GetTrustAnchorResponse:
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    timeout = aiohttp.ClientTimeout(total=CHAIN_TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as client,
            client.get(url.rstrip("/") + TRUST_ANCHOR_ROUTE, ssl=context) as reply,
        ):
            text = await reply.text()
            if reply.status != 200:
                raise ChainUnreachableError(f"{url} answered HTTP {reply.status}: {text[:200]}")
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        raise ChainUnreachableError(f"{url}: {exc or type(exc).__name__}") from None
    try:
        return json_format.Parse(
            text, blockchain_pb2.GetTrustAnchorResponse(), ignore_unknown_fields=True
        )
    except json_format.ParseError as exc:
        raise ChainUnreachableError(f"{url} did not answer with a trust anchor: {exc}") from None


async def fetch_anchor(settings: Settings, address: str, ca: Path | None = None) -> TrustAnchor:
    """The trust anchor from the chain endpoint ``address`` (a URL: REST; else gRPC)."""
    if _is_url(address):
        response = await _fetch_rest(address, ca)
    else:
        try:
            async with _chain_channel(settings, address) as channel:
                response = await blockchain_pb2_grpc.BlockchainServiceStub(channel).GetTrustAnchor(
                    blockchain_pb2.GetTrustAnchorRequest(), timeout=CHAIN_TIMEOUT_S
                )
        except grpc.aio.AioRpcError as exc:
            raise ChainUnreachableError(f"{address}: {exc.code().name} {exc.details()}") from None
    return anchor_of_response(response)


async def chain_checks(
    settings: Settings, address: str, proof: chunks_pb2.ChunkProof, token: str
) -> list[Check]:
    """What the chain says about the proof's anchor (VerifyAnchoring and the block itself)."""
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    async with _chain_channel(settings, address) as channel:
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


async def _anchor(
    settings: Settings, trust: Path | None, chain: str, ca: Path | None, out: TextIO
) -> TrustAnchor | None:
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
    anchor = await _anchor(settings, trust, chain, ca, out)
    if anchor is None:
        return False
    out.write(f"trust anchor: genesis {anchor.genesis_hash}, {anchor.validator_count} validators\n")
    blob_bytes = await asyncio.to_thread(blob.read_bytes) if blob else None
    checks = verify_chunk_proof(proof, anchor=anchor, blob=blob_bytes)
    if chain and token and not _is_url(chain):
        try:
            checks += await chain_checks(settings, chain, proof, token)
        except grpc.aio.AioRpcError as exc:
            checks.append(Check("chain", False, f"{exc.code().name} {exc.details()}"))
    return report(checks, out)
