"""The chain's trust anchor fetched from a chain endpoint given explicitly: a URL (the
edge's public REST route ``GET /api/v1/chain/trust-anchor``) or a validator's
``host:port`` (``GetTrustAnchor`` over gRPC with the operator's mTLS identity). What is
fetched is checked like a document (``lucid.lib.trustanchor.parse``); an endpoint that
does not answer with one raises ``ChainUnreachableError``, never a silent pass.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from google.protobuf import json_format

from lucid.blockchain.v1 import blockchain_pb2, blockchain_pb2_grpc
from lucid.lib import trustanchor
from lucid.lib.trustanchor import TrustAnchor
from lucid.runtime import tls
from lucid.runtime.config import Settings

CHAIN_TIMEOUT_S = 5.0
TRUST_ANCHOR_ROUTE = "/api/v1/chain/trust-anchor"


class ChainUnreachableError(Exception):
    """The chain endpoint given with ``--chain`` did not answer with a trust anchor."""


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


def chain_channel(settings: Settings, address: str) -> grpc.aio.Channel:
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


def is_url(address: str) -> bool:
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
    if is_url(address):
        response = await _fetch_rest(address, ca)
    else:
        try:
            async with chain_channel(settings, address) as channel:
                response = await blockchain_pb2_grpc.BlockchainServiceStub(channel).GetTrustAnchor(
                    blockchain_pb2.GetTrustAnchorRequest(), timeout=CHAIN_TIMEOUT_S
                )
        except grpc.aio.AioRpcError as exc:
            raise ChainUnreachableError(f"{address}: {exc.code().name} {exc.details()}") from None
    return anchor_of_response(response)
