"""The production configuration of the many-machines column, generated from the sources
the servers run on: the plane table (``lucid.runtime.planes``), the contracts
(``gen/lucid.protoset``: services, http routes, kinds) and the port map.

- ``consul/agent.json``: agent settings (update check off, the TLS client
  certificate its gRPC health checks present to our mTLS servers);
  ``consul/services/<cluster>.json``: the service definition with its tags and
  gRPC health check; ``consul/config-entries/``: ``service-defaults`` (protocol
  grpc) and ``service-intentions`` per cluster — the plane table, method by
  method where a caller may reach only some rpcs.
- ``envoy/sidecar-<cluster>.json``: the sidecar bootstrap of each cluster —
  inbound mTLS termination on :15001 with an RBAC filter by SPIFFE id (the same
  table), forwarding to the local server with ``x-forwarded-client-cert``; an
  outbound listener per peer it may call, originating mTLS to the peer's sidecar.
- ``envoy/edge.json``: the front door (``lucid.codegen.edgeconfig``, the same
  generator ``lucid up`` runs the local edge from).

``lucid config generate`` writes them; ``make check-gen`` fails on drift. The docker
compose file and Kubernetes manifests that run these (``deploy/``) come from
``lucid.codegen.deployconfig``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lucid.codegen.edgeconfig import EdgeSite, edge
from lucid.codegen.envoyparts import cert_files, typed, upstream_mtls
from lucid.runtime.config import CLUSTERS, DEFAULT_PORTS
from lucid.runtime.contracts import Catalog
from lucid.runtime.identity import EDGE, ServiceIdentity, identity_for
from lucid.runtime.planes import Grant, PlanePolicy, grants
from lucid.runtime.tls import dns_name

CERTS = "/var/lib/lucid/certs"
"""``$LUCID_VAR_DIR/certs`` in the image of ``deploy/Dockerfile``."""
PROTOSET = "/opt/lucid/lucid.protoset"
"""Where ``deploy/Dockerfile`` puts ``gen/lucid.protoset``."""
INBOUND_PORT = 15001
ADMIN_PORT = 15000
EDGE_PORT = 8443
CHECK_INTERVAL = "30s"
CHECK_TIMEOUT = "10s"
DEREGISTER_AFTER = "90s"
MAX_REQUEST_BYTES = 100 * 1024 * 1024
HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIX = "/grpc.reflection."
RATE_LIMIT_METHOD = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
SAN_PREFIX = "spiffe://lucid.local/"
HEALTH_PROBER = "gateway"
"""The cluster whose aggregated health probes every other cluster."""

Json = dict[str, Any]


def _any(type_name: str, **fields: Any) -> Json:
    return typed(type_name, **fields)


def _cert(name: str, certs: str = CERTS) -> Json:
    return cert_files(name, certs)


def _upstream_tls(own: str, peer: ServiceIdentity, certs: str = CERTS) -> Json:
    return upstream_mtls(own, peer, certs)


def _http2() -> Json:
    return {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _any(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            explicit_http_config={"http2_protocol_options": {}},
        )
    }


def _cluster(name: str, host: str, port: int, *, dns: bool, tls: Json | None = None) -> Json:
    cluster: Json = {
        "name": name,
        "type": "STRICT_DNS" if dns else "STATIC",
        "connect_timeout": "5s",
        "lb_policy": "ROUND_ROBIN",
        "typed_extension_protocol_options": _http2(),
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": host, "port_value": port}}
                            }
                        }
                    ]
                }
            ],
        },
    }
    if tls is not None:
        cluster["transport_socket"] = tls
    return cluster


def _peer_host(cluster: str) -> str:
    """Where a cluster's sidecars are found: Consul DNS."""
    return f"{cluster}.service.consul"


def _admin(port: int = ADMIN_PORT) -> Json:
    return {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}


def _router() -> Json:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": _any("envoy.extensions.filters.http.router.v3.Router"),
    }


# -- RBAC -----------------------------------------------------------------------------------


def _principal(identity: ServiceIdentity) -> Json:
    return {"authenticated": {"principal_name": {"exact": identity.spiffe_id}}}


def _paths(methods: tuple[str, ...]) -> list[Json]:
    return [{"url_path": {"path": {"exact": m}}} for m in methods]


def rbac_policies(grant_list: list[Grant], destination: str) -> Json:
    """The RBAC policies of a cluster's inbound listener: one per caller with grants."""
    policies: Json = {}
    for grant in grant_list:
        if grant.none:
            continue
        permissions = [{"any": True}] if grant.all else _paths(grant.methods)
        policies[f"{grant.source.plane}-{grant.source.name}"] = {
            "permissions": permissions,
            "principals": [_principal(grant.source)],
        }
    policies["health-checks"] = {
        "permissions": [{"url_path": {"path": {"prefix": HEALTH_PREFIX}}}],
        "principals": [{"authenticated": {"principal_name": {"prefix": SAN_PREFIX}}}],
    }
    policies["operator-reflection"] = {
        "permissions": [{"url_path": {"path": {"prefix": REFLECTION_PREFIX}}}],
        "principals": [_principal(identity_for("operator"))],
    }
    if destination == "gateway":
        policies["edge-rate-limit-service"] = {
            "permissions": [{"url_path": {"path": {"exact": RATE_LIMIT_METHOD}}}],
            "principals": [_principal(identity_for(EDGE))],
        }
    return policies


# -- sidecars ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SidecarSite:
    """Where one cluster's sidecar runs and what it talks to."""

    certs: str
    inbound: tuple[str, int]
    """Address and port of the mTLS listener the other clusters reach."""
    app_port: int
    """The cluster's own server on loopback."""
    admin_port: int
    outbound: Mapping[str, tuple[int, str, int]]
    """Peer → (loopback port the cluster dials, host and port of the peer's sidecar)."""
    dns: bool
    health_only: frozenset[str] = frozenset()
    """Peers the table never lets this cluster call: only their health is reachable (the
    gateway's aggregated health probes every cluster)."""


def production_sidecar_site(
    cluster: str, policy: PlanePolicy, catalog: Catalog, ports: Mapping[str, int]
) -> SidecarSite:
    """Production: inbound on :15001, peers' sidecars through Consul DNS, outbound
    listeners at the peers' port-map ports."""
    return SidecarSite(
        certs=CERTS,
        inbound=("0.0.0.0", INBOUND_PORT),  # noqa: S104
        app_port=ports[cluster],
        admin_port=ADMIN_PORT,
        outbound={
            peer: (ports[peer], _peer_host(peer), INBOUND_PORT)
            for peer in reachable_peers(cluster, policy, catalog)
        },
        dns=True,
        health_only=health_only_peers(cluster, policy, catalog),
    )


def reachable_peers(cluster: str, policy: PlanePolicy, catalog: Catalog) -> list[str]:
    """The peers ``cluster``'s sidecar has an outbound listener for."""
    extra = health_only_peers(cluster, policy, catalog)
    return [p for p in CLUSTERS if p in extra or p in callable_peers(cluster, policy, catalog)]


def health_only_peers(cluster: str, policy: PlanePolicy, catalog: Catalog) -> frozenset[str]:
    """The clusters the gateway (whose aggregated health probes every cluster) reaches for
    health only; any other cluster has no route at all to a peer it may not call."""
    if cluster != HEALTH_PROBER:
        return frozenset()
    callable_ = set(callable_peers(cluster, policy, catalog))
    return frozenset(c for c in CLUSTERS if c not in callable_ and c != cluster)


def callable_peers(cluster: str, policy: PlanePolicy, catalog: Catalog) -> list[str]:
    """The clusters the plane table lets ``cluster`` call at all."""
    me = identity_for(cluster)
    return [
        peer
        for peer in CLUSTERS
        if peer != cluster
        and any(g.source == me and not g.none for g in grants(policy, catalog, peer))
    ]


def sidecar(cluster: str, policy: PlanePolicy, catalog: Catalog, site: SidecarSite) -> Json:
    """The Envoy bootstrap of one cluster's sidecar."""
    me = identity_for(cluster)
    inbound_hcm = _any(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix=f"inbound_{cluster}",
        codec_type="AUTO",
        forward_client_cert_details="SANITIZE_SET",
        set_current_client_cert_details={"uri": True},
        route_config={
            "name": "inbound",
            "virtual_hosts": [
                {
                    "name": cluster,
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "route": {"cluster": "local_app", "timeout": "0s"},
                        }
                    ],
                }
            ],
        },
        http_filters=[
            {
                "name": "envoy.filters.http.rbac",
                "typed_config": _any(
                    "envoy.extensions.filters.http.rbac.v3.RBAC",
                    rules={
                        "action": "ALLOW",
                        "policies": rbac_policies(grants(policy, catalog, cluster), cluster),
                    },
                ),
            },
            _router(),
        ],
    )
    listeners: list[Json] = [
        {
            "name": "inbound",
            "address": {
                "socket_address": {"address": site.inbound[0], "port_value": site.inbound[1]}
            },
            "filter_chains": [
                {
                    "filters": [
                        {
                            "name": "envoy.filters.network.http_connection_manager",
                            "typed_config": inbound_hcm,
                        }
                    ],
                    "transport_socket": {
                        "name": "envoy.transport_sockets.tls",
                        "typed_config": _any(
                            "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                            require_client_certificate=True,
                            common_tls_context={
                                "tls_certificates": [_cert(cluster, site.certs)],
                                "alpn_protocols": ["h2"],
                                "validation_context": {
                                    "trusted_ca": {"filename": f"{site.certs}/ca.crt"},
                                    "match_typed_subject_alt_names": [
                                        {"san_type": "URI", "matcher": {"prefix": SAN_PREFIX}}
                                    ],
                                },
                            },
                        ),
                    },
                }
            ],
        }
    ]
    clusters: list[Json] = [
        _cluster(
            "local_app",
            "127.0.0.1",
            site.app_port,
            dns=False,
            tls=_upstream_tls(cluster, me, site.certs),
        )
    ]
    for peer, (port, host, peer_port) in site.outbound.items():
        listeners.append(_outbound_listener(peer, port, peer in site.health_only))
        clusters.append(
            _cluster(
                f"peer_{peer}",
                host,
                peer_port,
                dns=site.dns,
                tls=_upstream_tls(cluster, identity_for(peer), site.certs),
            )
        )
    return {
        "node": {"id": f"{cluster}-sidecar", "cluster": cluster},
        "admin": _admin(site.admin_port),
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }


def _outbound_listener(peer: str, port: int, health_only: bool) -> Json:
    """Plain h2 from the local server on loopback (``sidecar = true``) to a peer's sidecar
    (only its health service, for a peer the table never lets us call)."""
    hcm = _any(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix=f"outbound_{peer}",
        codec_type="HTTP2",
        route_config={
            "name": f"outbound_{peer}",
            "virtual_hosts": [
                {
                    "name": peer,
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": HEALTH_PREFIX if health_only else "/"},
                            "route": {"cluster": f"peer_{peer}", "timeout": "0s"},
                        }
                    ],
                }
            ],
        },
        http_filters=[_router()],
    )
    return {
        "name": f"outbound_{peer}",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }


# -- the edge ---------------------------------------------------------------------------------


def production_edge_site() -> EdgeSite:
    """The front door in production: behind the load balancer on :8443, the clusters'
    sidecars found through Consul DNS."""
    return EdgeSite(
        certs=CERTS,
        protoset=PROTOSET,
        port=EDGE_PORT,
        admin_port=ADMIN_PORT,
        upstreams={c: (_peer_host(c), INBOUND_PORT) for c in CLUSTERS},
        dns=True,
        address="0.0.0.0",  # noqa: S104
        max_request_bytes=MAX_REQUEST_BYTES,
    )


# -- Consul -----------------------------------------------------------------------------------


def consul_agent() -> Json:
    """Agent settings every Lucid node's Consul agent loads."""
    return {
        "disable_update_check": True,
        "disable_anonymous_signature": True,
        "enable_agent_tls_for_checks": True,
        "tls": {
            "defaults": {
                "ca_file": f"{CERTS}/ca.crt",
                "cert_file": f"{CERTS}/operator.crt",
                "key_file": f"{CERTS}/operator.key",
            }
        },
    }


def consul_service(cluster: str, ports: Mapping[str, int], version: str) -> Json:
    """A cluster's service definition: tags, meta and the gRPC health check over mTLS."""
    identity = identity_for(cluster)
    return {
        "service": {
            "name": cluster,
            "port": INBOUND_PORT,
            "tags": [f"cluster:{cluster}", f"plane:{identity.plane}", f"version:{version}"],
            "meta": {"cluster": cluster, "plane": identity.plane, "version": version},
            "checks": [
                {
                    "name": f"{cluster} gRPC health",
                    "grpc": f"127.0.0.1:{ports[cluster]}",
                    "grpc_use_tls": True,
                    "tls_server_name": dns_name(cluster),
                    "interval": CHECK_INTERVAL,
                    "timeout": CHECK_TIMEOUT,
                    "deregister_critical_service_after": DEREGISTER_AFTER,
                }
            ],
        }
    }


def service_defaults(cluster: str) -> Json:
    """gRPC, so intentions can match methods (L7)."""
    return {"Kind": "service-defaults", "Name": cluster, "Protocol": "grpc"}


def intentions(cluster: str, policy: PlanePolicy, catalog: Catalog) -> Json:
    """The plane table for one destination as Consul intentions."""
    sources: list[Json] = []
    for grant in grants(policy, catalog, cluster):
        if grant.source.name == "operator":
            continue  # people's tools are not services of the mesh
        name = grant.source.name
        description = f"{grant.source.spiffe_id} → {cluster}"
        if grant.all:
            sources.append({"Name": name, "Action": "allow", "Description": description})
        elif grant.none:
            sources.append({"Name": name, "Action": "deny", "Description": description})
        else:
            permissions = [{"Action": "allow", "HTTP": {"PathExact": m}} for m in grant.methods]
            permissions.append({"Action": "deny", "HTTP": {"PathPrefix": "/"}})
            sources.append({"Name": name, "Permissions": permissions, "Description": description})
    sources.append({"Name": "*", "Action": "deny", "Description": "default deny across planes"})
    return {"Kind": "service-intentions", "Name": cluster, "Sources": sources}


# -- all files --------------------------------------------------------------------------------


def files(
    catalog: Catalog, version: str, policy: PlanePolicy | None = None
) -> Iterator[tuple[str, Json]]:
    """Every generated file: path relative to the repository, and its content."""
    policy = policy or PlanePolicy()
    ports = dict(DEFAULT_PORTS)
    yield "consul/agent.json", consul_agent()
    for cluster in CLUSTERS:
        yield f"consul/services/{cluster}.json", consul_service(cluster, ports, version)
        yield f"consul/config-entries/{cluster}-defaults.json", service_defaults(cluster)
        yield (
            f"consul/config-entries/{cluster}-intentions.json",
            intentions(cluster, policy, catalog),
        )
        site = production_sidecar_site(cluster, policy, catalog, ports)
        yield f"envoy/sidecar-{cluster}.json", sidecar(cluster, policy, catalog, site)
    yield "envoy/edge.json", edge(catalog, production_edge_site())


def render(content: Json) -> str:
    """The text of a generated file (stable: diffs show real changes)."""
    return json.dumps(content, indent=2, ensure_ascii=False) + "\n"


def write(root: Path, catalog: Catalog, version: str) -> list[str]:
    """Writes every file under ``root``; returns their paths."""
    written = []
    for path, content in files(catalog, version):
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(content))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    """``python -m lucid.codegen.meshconfig PROTOSET OUT_DIR VERSION`` (used by gen.sh)."""
    protoset, out, version = (argv or sys.argv[1:])[:3]
    for path in write(Path(out), Catalog.from_file(Path(protoset)), version):
        print(path)


if __name__ == "__main__":
    main()
