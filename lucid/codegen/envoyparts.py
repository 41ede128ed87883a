"""Pieces every generated Envoy bootstrap shares: typed configs, certificate files and
mTLS to a peer that must present its SPIFFE id."""

from __future__ import annotations

from typing import Any

from lucid.runtime.identity import ServiceIdentity
from lucid.runtime.tls import CA_CERT, dns_name

Json = dict[str, Any]


def typed(type_name: str, **fields: Any) -> Json:
    """A ``typed_config`` of ``type_name``."""
    return {"@type": f"type.googleapis.com/{type_name}", **fields}


def cert_files(name: str, certs: str) -> Json:
    """Identity ``name``'s certificate and key in ``certs``."""
    return {
        "certificate_chain": {"filename": f"{certs}/{name}.crt"},
        "private_key": {"filename": f"{certs}/{name}.key"},
    }


def upstream_mtls(own: str, peer: ServiceIdentity, certs: str) -> Json:
    """mTLS to a peer: present our certificate, accept only the peer's SPIFFE id."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": typed(
            "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            sni=dns_name(peer.name),
            common_tls_context={
                "tls_certificates": [cert_files(own, certs)],
                "alpn_protocols": ["h2"],
                "validation_context": {
                    "trusted_ca": {"filename": f"{certs}/{CA_CERT}"},
                    "match_typed_subject_alt_names": [
                        {"san_type": "URI", "matcher": {"exact": peer.spiffe_id}}
                    ],
                },
            },
        ),
    }
