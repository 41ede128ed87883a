"""The Envoy bootstrap of the front door, for production (``envoy/edge.json``) and for
one machine (``lucid up``, the tests) alike: one function, and an ``EdgeSite`` saying
where things are (certificates, the protoset, ports, upstream addresses, CORS origins).

What the edge does, filter by filter (the order of ``http_filters``):

- ``lua`` (``edge.lua``): security headers on every response (local replies too); CORS
  for the configured origins (preflights answered, other origins refused); a non-JSON
  body refused (415); ``/health`` becomes the gateway's aggregated health (its status;
  503 when unhealthy); an error a cluster sends a relayed call carries its JSON envelope in the
  trailer ``lucid-error-envelope`` (``lucid.runtime.envelope``), which replaces the
  transcoder's body and sets the HTTP status; a bare gRPC status gets an envelope too.
- ``grpc_web``: binary and text, for rpcs with a route.
- ``jwt_authn``: a bearer token must verify against auth's JWKS (fetched through this
  Envoy itself, cached); no token passes (public rpcs), the cluster verifies again.
  Verified tokens are cached (no second signature check; expiry is checked each time).
- ``grpc_json_transcoder``: every annotated route, proto field names, NDJSON streams.
- ``lucid.stream_errors`` (``stream_errors.lua``, acting on server-streaming routes): a REST
  stream that fails after its first message ends with the line ``{"error": …}`` (the
  cluster sends the envelope as a last message, ``lucid.runtime.envelope``; the transcoder
  alone would drop the error, which travels in trailers an NDJSON reader never sees).
- ``ratelimit`` (after the transcoder, so REST and grpc-web calls of an rpc count alike):
  the gateway's ``RateLimitService/ShouldRateLimit`` with the tiers of
  spec 01 §9 as descriptors (public per IP without a token, authenticated per user,
  admin routes, chain block queries); the gateway adds ``x-ratelimit-*``/``retry-after``.
- ``router``: mTLS to the clusters as the ``edge`` identity.

The admin console (``web/console``, built into ``dist/`` by ``make console``) is served
at ``/admin/`` when the site names its directory: each file a route answering it directly
(Envoy reads them when it loads the bootstrap), with a content security policy that lets
the page run its own script and call the edge (``'self'``) and nothing else.

With ``otlp_endpoint`` set, the edge traces: a span per request (OpenTelemetry, sent over
OTLP/HTTP as ``lucid-edge``), the child of a client's ``traceparent`` and the parent of
the cluster's span (``lucid.runtime.tracing``).

The API documentation (``docs/openapi/``, written by ``make gen``) is served at
``/api/docs`` (the rendered page) and ``/api/docs/openapi.json`` when the site names its
directory: Envoy answers them itself from the files (``_docs_routes``).

Envoy's own refusals (401, 404, 413, 429, 503, bad JSON) become the same envelope
through the local reply mapper. A call that never reached a cluster (connection refused,
a cluster restarting) is tried twice more; the edge has no breaker of its own (Envoy's
outlier ejection flapped after restarts: a restarted cluster was ejected again after its
first answer), the clusters' breakers stay in the mesh. The access log is JSON with the request id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc

from lucid.codegen.envoyparts import cert_files, typed, upstream_mtls
from lucid.runtime.config import CLUSTERS
from lucid.runtime.contracts import Catalog, MethodInfo
from lucid.runtime.envelope import (
    ENVELOPE_TRAILER,
    FALLBACK_REASON,
    STATUS_TRAILER,
    STREAM_ERROR_TAG,
    STREAM_ERRORS_HEADER,
)
from lucid.runtime.errors import reason_of
from lucid.runtime.identity import EDGE, identity_for
from lucid.runtime.planes import RELAYED_HEADER, RELAYED_VALUE
from lucid.runtime.tls import CA_CERT, WEB_CERT
from lucid.runtime.tokens import AUDIENCE, ISSUER

Json = dict[str, Any]

JWKS_PATH = "/.well-known/jwks.json"
HEALTH_PATH = "/health"
AGGREGATED_HEALTH = "/api/v1/meta/health"
CHAIN_QUERY_PREFIX = "/api/v1/chain/blocks"
ADMIN_PREFIXES = ("/api/v1/admin/", "/api/v1/meta/metrics", "/api/v1/meta/rate-limits")
JWT_METADATA = "jwt_payload"
JWT_CACHE_SIZE = 4096
"""Verified tokens Envoy keeps per worker (skips the signature check of a repeat)."""
JWT_CLOCK_SKEW_S = 5
"""Leeway on exp/nbf (Envoy's default is 60 s; the edge and auth share a clock source)."""
RATE_LIMITED = grpc.StatusCode.RESOURCE_EXHAUSTED
STREAM_ROUTE = "stream:"
"""Route name prefix of server-streaming rpcs (their REST answer is NDJSON)."""
STREAM_ERRORS_FILTER = "lucid.stream_errors"
"""The Lua step of server-streaming routes (``stream_errors.lua``)."""
GRPC_PATH = r"^/[A-Za-z_][A-Za-z0-9_.]*\.[A-Za-z0-9_]+/[A-Za-z0-9_]+$"
"""A gRPC method path, ``/package.Service/Method``."""
RETRY = {"retry_on": "connect-failure,refused-stream", "num_retries": 2}
"""Only what never reached a server is tried again (a cluster restarting)."""
RELAYED_HEADERS = [
    {
        # overwriting whatever the client sent: a marked call acts for its end user
        "header": {"key": RELAYED_HEADER, "value": RELAYED_VALUE},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
    },
    {
        "header": {"key": "x-forwarded-user-agent", "value": "%REQ(user-agent)%"},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
    },
]
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
HSTS = "max-age=63072000; includeSubDomains"
CONSOLE_PREFIX = "/admin/"
CONSOLE_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
"""The console's files (``EdgeSite.console``) and their media types; ``index.html`` is
also the answer to ``/admin/`` itself."""
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; media-src blob:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
"""The console's policy; ``media-src blob:`` lets the recording player feed its video
element through Media Source Extensions (the segments come over grpc-web)."""
MAX_CONSOLE_FILE_BYTES = 4 * 1024 * 1024
CORS_ALLOW_HEADERS = (
    "authorization",
    "content-type",
    "grpc-timeout",
    "keep-alive",
    "x-grpc-web",
    "x-request-id",
    "x-user-agent",
)
CORS_EXPOSE_HEADERS = (
    "grpc-message, grpc-status, grpc-status-details-bin, retry-after, x-ratelimit-limit, "
    "x-ratelimit-remaining, x-ratelimit-reset, x-request-id"
)
CORS_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
LOCAL_REPLIES: tuple[tuple[Json, str, str, str], ...] = (
    # Envoy's own replies: which (an access-log filter) → Lucid code, service named in
    # the envelope, the field it names ("" none). The transcoder refuses a bad path or
    # query "early", a bad body later.
    (
        {
            "header_filter": {
                "header": {"name": "lucid-refused", "string_match": {"exact": "origin"}}
            }
        },
        "LUCID_ERR_2004",
        "edge",
        "origin",
    ),
    (
        {"header_filter": {"header": {"name": "lucid-refused", "present_match": True}}},
        "LUCID_ERR_1001",
        "edge",
        "body",
    ),
    (
        {"status": 400, "cel": "response.code_details.startsWith('early_')"},
        "LUCID_ERR_1001",
        "edge",
        "",
    ),
    ({"status": 400}, "LUCID_ERR_1009", "edge", "body"),
    ({"status": 401}, "LUCID_ERR_2001", "edge", ""),
    ({"status": 403}, "LUCID_ERR_2004", "edge", ""),
    ({"status": 404}, "LUCID_ERR_4001", "edge", ""),
    ({"status": 413}, "LUCID_ERR_1010", "edge", "body"),
    ({"status": 414}, "LUCID_ERR_1001", "edge", "url"),
    ({"status": 415}, "LUCID_ERR_1008", "edge", "content-type"),
    ({"status": 429}, "LUCID_ERR_3001", "gateway", ""),
    ({"status": 431}, "LUCID_ERR_1001", "edge", "headers"),
    ({"status": 503}, "LUCID_ERR_5008", "edge", ""),
)
MAX_URL_BYTES = 8192
MAX_HEADER_BYTES = 8192
MAX_HEADERS = 100
"""A longer URL is refused with 414, more header bytes or headers with 431, by the Lua
step with the envelope (Envoy's codec refuses beyond 16 KiB or 1000 headers, bare)."""
REFUSED_HEADER = "lucid-refused"
"""Set (on the request) by the Lua step when it refuses a body as invalid (1001)."""
MAX_JSON_DEPTH = 10
DEPTH_CHECK_BYTES = 1024 * 1024
LOCAL_CODE_HEADER = "lucid-local-code"
"""Set on Envoy's own replies (``<code> <service>``): a transcoded call's local reply is
gRPC, so the Lua step makes its envelope from this rather than from the body."""


@dataclass(frozen=True)
class EdgeSite:
    """Where the edge runs and what it talks to."""

    certs: str
    """Directory of ``ca.crt``, ``edge.crt``/``.key`` (mTLS to the clusters) and
    ``edge-web.crt``/``.key`` (HTTPS)."""
    protoset: str
    port: int
    admin_port: int
    upstreams: Mapping[str, tuple[str, int]]
    """Cluster → (host, port) of its server or sidecar."""
    dns: bool = False
    """Upstream hosts are DNS names (Consul) rather than addresses."""
    address: str = "127.0.0.1"
    tls: bool = True
    cors_origins: tuple[str, ...] = ()
    max_request_bytes: int = 100 * 1024 * 1024
    access_log: str = "/dev/stdout"
    jwks_host: str = "localhost"
    rate_limit: bool = True
    """Whether requests are counted by the gateway (off only to measure Envoy alone)."""
    console: str = ""
    """Directory of the built admin console (``web/console/dist``); "" serves none."""
    api_docs: str = ""
    """Directory of the OpenAPI document and its page (``docs/openapi``); "" serves none."""
    otlp_endpoint: str = ""
    """An OTLP/HTTP traces URL (``http://host:port/v1/traces``); "" traces nothing."""


def _any(type_name: str, **fields: Any) -> Json:
    return typed(type_name, **fields)


def _endpoint(name: str, host: str, port: int) -> Json:
    return {
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
    }


def _tls_files(site: EdgeSite, name: str) -> Json:
    return cert_files(name, site.certs)


def _upstream(site: EdgeSite, cluster: str, host: str, port: int) -> Json:
    peer = identity_for(cluster)
    return {
        "name": cluster,
        "type": "STRICT_DNS" if site.dns else "STATIC",
        "connect_timeout": "5s",
        "lb_policy": "ROUND_ROBIN",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _any(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                explicit_http_config={
                    "http2_protocol_options": {
                        "initial_stream_window_size": 16 * 1024 * 1024,
                        "initial_connection_window_size": 32 * 1024 * 1024,
                    }
                },
            )
        },
        "load_assignment": _endpoint(cluster, host, port),
        "transport_socket": upstream_mtls(EDGE, peer, site.certs),
    }


def _self_cluster(site: EdgeSite) -> Json:
    """The edge calling itself for auth's JWKS (a route like any other)."""
    cluster: Json = {
        "name": "edge_self",
        "type": "STATIC",
        "connect_timeout": "5s",
        "load_assignment": _endpoint("edge_self", "127.0.0.1", site.port),
    }
    if site.tls:
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": _any(
                "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                sni=site.jwks_host,
                common_tls_context={
                    "tls_params": {"tls_maximum_protocol_version": "TLSv1_3"},
                    "validation_context": {"trusted_ca": {"filename": f"{site.certs}/{CA_CERT}"}},
                },
            ),
        }
    return cluster


def _lua_value(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        items = ", ".join(f"[{json.dumps(k)}] = {_lua_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, list | tuple):
        return "{" + ", ".join(_lua_value(v) for v in value) + "}"
    return "true" if value is True else str(value)


def _lua(site: EdgeSite) -> str:
    """``edge.lua`` with this site's tables."""
    headers = dict(SECURITY_HEADERS)
    if site.tls:
        headers["strict-transport-security"] = HSTS
    fallback = {
        str(status.value[0]): [reason_of(code), "gateway" if status == RATE_LIMITED else "edge"]
        for status, code in FALLBACK_REASON.items()
    }
    tables = {
        "ORIGINS": dict.fromkeys(site.cors_origins, True),
        "SECURITY_HEADERS": headers,
        "FALLBACK": fallback,
        "HEALTH_PATH": HEALTH_PATH,
        "AGGREGATED_HEALTH": AGGREGATED_HEALTH,
        "ENVELOPE_TRAILER": ENVELOPE_TRAILER,
        "STATUS_TRAILER": STATUS_TRAILER,
        "STREAM_ROUTE": STREAM_ROUTE,
        "STREAM_ERRORS_HEADER": STREAM_ERRORS_HEADER,
        "LOCAL_CODE_HEADER": LOCAL_CODE_HEADER,
        "REFUSED_HEADER": REFUSED_HEADER,
        "MAX_JSON_DEPTH": MAX_JSON_DEPTH,
        "DEPTH_CHECK_BYTES": DEPTH_CHECK_BYTES,
        "MAX_URL_BYTES": MAX_URL_BYTES,
        "MAX_HEADER_BYTES": MAX_HEADER_BYTES,
        "MAX_HEADERS": MAX_HEADERS,
        "CORS_METHODS": dict.fromkeys(CORS_METHODS, True),
        "CORS_METHODS_TEXT": ", ".join(CORS_METHODS),
        "CORS_ALLOW_HEADERS": dict.fromkeys(CORS_ALLOW_HEADERS, True),
        "CORS_ALLOW_HEADERS_TEXT": ", ".join(CORS_ALLOW_HEADERS),
        "CORS_EXPOSE_HEADERS": CORS_EXPOSE_HEADERS,
        "CONSOLE_PREFIX": CONSOLE_PREFIX,
        "CONSOLE_CSP": CONSOLE_CSP,
    }
    config = "\n".join(f"local {name} = {_lua_value(v)}" for name, v in tables.items())
    source = (Path(__file__).parent / "edge.lua").read_text()
    return source.replace("-- CONFIG\n", config + "\n", 1)


def _stream_errors_lua() -> str:
    """``stream_errors.lua`` with its tables (the tag as Lua decimal escapes)."""
    tag = '"' + "".join(f"\\{byte}" for byte in STREAM_ERROR_TAG) + '"'
    config = f"local STREAM_ERROR_TAG = {tag}\nlocal STREAM_ROUTE = {_lua_value(STREAM_ROUTE)}\n"
    source = (Path(__file__).parent / "stream_errors.lua").read_text()
    return source.replace("-- CONFIG\n", config, 1)


def _rate_limit_filter() -> Json:
    return {
        "name": "envoy.filters.http.ratelimit",
        "typed_config": _any(
            "envoy.extensions.filters.http.ratelimit.v3.RateLimit",
            domain="lucid",
            failure_mode_deny=False,
            timeout="2s",
            rate_limit_service={
                "grpc_service": {"envoy_grpc": {"cluster_name": "gateway"}},
                "transport_api_version": "V3",
            },
        ),
    }


def _http_filters(site: EdgeSite, catalog: Catalog) -> list[Json]:
    services = sorted({m.service for m in catalog.methods.values()})
    limits = [_rate_limit_filter()] if site.rate_limit else []
    return [
        {
            "name": "envoy.filters.http.lua",
            "typed_config": _any(
                "envoy.extensions.filters.http.lua.v3.Lua",
                default_source_code={"inline_string": _lua(site)},
            ),
        },
        {
            "name": "envoy.filters.http.grpc_web",
            "typed_config": _any("envoy.extensions.filters.http.grpc_web.v3.GrpcWeb"),
        },
        {
            "name": "envoy.filters.http.jwt_authn",
            "typed_config": _any(
                "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                providers={
                    "lucid": {
                        "issuer": ISSUER,
                        "audiences": [AUDIENCE],
                        "forward": True,
                        "payload_in_metadata": JWT_METADATA,
                        # a verified token is not verified again while cached (its
                        # exp/nbf still are, on every request); the cluster checks again
                        "jwt_cache_config": {"jwt_cache_size": JWT_CACHE_SIZE},
                        "clock_skew_seconds": JWT_CLOCK_SKEW_S,
                        "remote_jwks": {
                            "http_uri": {
                                "uri": f"https://{site.jwks_host}:{site.port}{JWKS_PATH}"
                                if site.tls
                                else f"http://{site.jwks_host}:{site.port}{JWKS_PATH}",
                                "cluster": "edge_self",
                                "timeout": "5s",
                            },
                            "cache_duration": "300s",
                        },
                    }
                },
                rules=[
                    {
                        "match": {"prefix": "/"},
                        "requires": {
                            "requires_any": {
                                "requirements": [{"provider_name": "lucid"}, {"allow_missing": {}}]
                            }
                        },
                    }
                ],
            ),
        },
        {
            "name": "envoy.filters.http.grpc_json_transcoder",
            "typed_config": _any(
                "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
                proto_descriptor=site.protoset,
                services=services,
                print_options={
                    "preserve_proto_field_names": True,
                    "always_print_primitive_fields": True,
                    "stream_newline_delimited": True,
                },
                convert_grpc_status=True,
                max_request_body_size=site.max_request_bytes,
                max_response_body_size=site.max_request_bytes,
                request_validation_options={"reject_unknown_query_parameters": True},
            ),
        },
        {
            "name": STREAM_ERRORS_FILTER,
            "typed_config": _any(
                "envoy.extensions.filters.http.lua.v3.Lua",
                default_source_code={"inline_string": _stream_errors_lua()},
            ),
        },
        *limits,
        {
            "name": "envoy.filters.http.router",
            "typed_config": _any("envoy.extensions.filters.http.router.v3.Router"),
        },
    ]


def _tier(name: str) -> Json:
    return {"generic_key": {"descriptor_key": "tier", "descriptor_value": name}}


def _claim(claim: str, descriptor_key: str) -> Json:
    return {
        "metadata": {
            "descriptor_key": descriptor_key,
            "metadata_key": {
                "key": "envoy.filters.http.jwt_authn",
                "path": [{"key": JWT_METADATA}, {"key": claim}],
            },
            "source": "DYNAMIC",
        }
    }


def _user() -> Json:
    return _claim("sub", "identifier")


def _anonymous() -> Json:
    """Matches only a request without a token (a token that fails is refused earlier)."""
    return {
        "header_value_match": {
            "descriptor_key": "tier",
            "descriptor_value": "public",
            "expect_match": False,
            "headers": [{"name": "authorization", "present_match": True}],
        }
    }


def rate_limits(kind: str) -> list[Json]:
    """The descriptors of spec 01 §9 for a kind of route (``default``, ``admin``,
    ``chain``)."""
    public = {"actions": [_anonymous(), {"remote_address": {}}]}
    if kind == "chain":
        return [{"actions": [_tier("blockchain_query"), {"remote_address": {}}]}]
    if kind == "admin":  # the gateway counts admins in the admin tier, others as users
        return [public, {"actions": [_tier("admin"), _claim("role", "role"), _user()]}]
    return [public, {"actions": [_tier("authenticated"), _user()]}]


def _kind(info: MethodInfo) -> str:
    """The rate-limit kind of an rpc, from its REST routes (grpc-web counts the same)."""
    templates = [route.template for route in info.routes]
    if any(t.startswith(CHAIN_QUERY_PREFIX) for t in templates):
        return "chain"
    if any(t.startswith(ADMIN_PREFIXES) for t in templates):
        return "admin"
    return "default"


def _route(info: MethodInfo) -> Json:
    action: Json = {"cluster": info.cluster, "timeout": "0s", "retry_policy": RETRY}
    route: Json = {
        "match": {"path": info.path},
        "route": action,
        "request_headers_to_add": RELAYED_HEADERS,
    }
    if _kind(info) != "default":
        action["rate_limits"] = rate_limits(_kind(info))
    if info.server_streaming:
        route["name"] = f"{STREAM_ROUTE}{info.path}"
    return route


def _direct_limit(site: EdgeSite) -> Json:
    """Envoy answers at most 4 KiB directly unless told more (the console's bundle, the
    OpenAPI document)."""
    if not (site.console or site.api_docs):
        return {}
    return {"max_direct_response_body_size_bytes": max(MAX_CONSOLE_FILE_BYTES, MAX_DOCS_BYTES)}


def _console_routes(directory: str) -> list[Json]:
    """``/admin/`` and each file of the console, answered by Envoy from ``directory``;
    ``/admin`` redirects to ``/admin/``."""
    routes: list[Json] = [
        {
            "match": {"path": CONSOLE_PREFIX.rstrip("/")},
            "redirect": {"path_redirect": CONSOLE_PREFIX},
        }
    ]
    paths = [(CONSOLE_PREFIX, "index.html")]
    paths += [(CONSOLE_PREFIX + name, name) for name in CONSOLE_FILES]
    for path, name in paths:
        routes.append(
            {
                "match": {"path": path},
                "direct_response": {
                    "status": 200,
                    "body": {"filename": str(Path(directory) / name)},
                },
                "response_headers_to_add": [
                    {
                        "header": {"key": "content-type", "value": CONSOLE_FILES[name]},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }
                ],
            }
        )
    return routes


DOCS_PREFIX = "/api/docs"
DOCS_FILES = {
    DOCS_PREFIX: ("index.html", "text/html; charset=utf-8"),
    f"{DOCS_PREFIX}/": ("index.html", "text/html; charset=utf-8"),
    f"{DOCS_PREFIX}/openapi.json": ("openapi.json", "application/json"),
}
MAX_DOCS_BYTES = 4 * 1024 * 1024
"""Envoy answers at most 4 KiB directly unless told more (the documents are ~1.5 MB)."""


OTLP_CLUSTER = "otlp_collector"


def _tracing(site: EdgeSite) -> Json:
    """The connection manager's tracer: OpenTelemetry over OTLP/HTTP (none when off)."""
    if not site.otlp_endpoint:
        return {}
    return {
        # Envoy would write the trace decision into the request id's UUID version digit:
        # the request id must reach the clusters as the client sent it.
        "request_id_extension": {
            "typed_config": _any(
                "envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig",
                pack_trace_reason=False,
                use_request_id_for_trace_sampling=False,
            )
        },
        "tracing": {
            "provider": {
                "name": "envoy.tracers.opentelemetry",
                "typed_config": _any(
                    "envoy.config.trace.v3.OpenTelemetryConfig",
                    service_name="lucid-edge",
                    http_service={
                        "http_uri": {
                            "uri": site.otlp_endpoint,
                            "cluster": OTLP_CLUSTER,
                            "timeout": "2s",
                        }
                    },
                ),
            }
        },
    }


def _otlp_cluster(site: EdgeSite) -> list[Json]:
    """Where the edge's spans go (plain HTTP to the collector), if anywhere."""
    if not site.otlp_endpoint:
        return []
    url = urlsplit(site.otlp_endpoint)
    host, port = url.hostname or "127.0.0.1", url.port or 4318
    return [
        {
            "name": OTLP_CLUSTER,
            "type": "STRICT_DNS" if site.dns else "STATIC",
            "connect_timeout": "2s",
            "load_assignment": _endpoint(OTLP_CLUSTER, host, port),
        }
    ]


def _docs_routes(site: EdgeSite) -> list[Json]:
    """``/api/docs`` and its OpenAPI document, answered by Envoy from ``site.api_docs``."""
    if not site.api_docs:
        return []
    return [
        {
            "match": {"path": path},
            "direct_response": {
                "status": 200,
                "body": {"filename": str(Path(site.api_docs) / name)},
            },
            "response_headers_to_add": [
                {
                    "header": {"key": "content-type", "value": kind},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
            ],
        }
        for path, (name, kind) in DOCS_FILES.items()
    ]


def _routes(catalog: Catalog, console: str = "") -> list[Json]:
    """The console's files (when built), the gRPC path of every rpc the edge relays (REST
    requests are matched after the transcoder has turned them into their rpc), then 403
    for any other rpc (the edge never relays a service-only rpc or one without a route)
    and 404 for the rest."""
    routes = _console_routes(console) if console else []
    routes += [
        _route(info)
        for info in sorted(catalog.methods.values(), key=lambda m: m.path)
        if info.cluster in CLUSTERS and info.client_callable
    ]
    routes.append(
        {  # any other rpc: not one a client may call (grpc-web sees PERMISSION_DENIED)
            "match": {"safe_regex": {"regex": GRPC_PATH}},
            "direct_response": {
                "status": 403,
                "body": {"inline_string": "not an rpc a client may call through the edge"},
            },
        }
    )
    routes.append(
        {
            "match": {"prefix": "/"},
            "direct_response": {"status": 404, "body": {"inline_string": "no route for this path"}},
        }
    )
    return routes


def _reply_filter(which: Json) -> Json:
    if "status" not in which:
        return which
    status = which["status"]
    by_status = {
        "status_code_filter": {
            "comparison": {
                "op": "EQ",
                "value": {"default_value": status, "runtime_key": f"lucid.reply_{status}"},
            }
        }
    }
    if "cel" not in which:
        return by_status
    expression = {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": _any(
                "envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                expression=which["cel"],
            ),
        }
    }
    return {"and_filter": {"filters": [by_status, expression]}}


def _details(field: str) -> Json:
    details: Json = {"reason": "%RESPONSE_CODE_DETAILS%"}
    if field:
        details["field_violations"] = [{"field": field, "description": "%LOCAL_REPLY_BODY%"}]
    return details


def _local_replies() -> Json:
    mappers = [
        {
            "filter": _reply_filter(which),
            "headers_to_add": [
                {
                    "header": {"key": LOCAL_CODE_HEADER, "value": f"{code} {service}"},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
            ],
            "body_format_override": {
                "json_format": {
                    "error": {
                        "code": code,
                        "message": "%LOCAL_REPLY_BODY%",
                        "details": _details(field),
                        "request_id": "%REQ(X-REQUEST-ID)%",
                        "timestamp": "%START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ)%",
                        "service": service,
                        "version": "v1",
                    }
                },
            },
        }
        for which, code, service, field in LOCAL_REPLIES
    ]
    return {"mappers": mappers}


def _access_log(site: EdgeSite) -> list[Json]:
    return [
        {
            "name": "envoy.access_loggers.file",
            "typed_config": _any(
                "envoy.extensions.access_loggers.file.v3.FileAccessLog",
                path=site.access_log,
                log_format={
                    "json_format": {
                        "time": "%START_TIME%",
                        "logger": "lucid.edge",
                        "request_id": "%REQ(X-REQUEST-ID)%",
                        "http_method": "%REQ(X-ENVOY-ORIGINAL-METHOD?:METHOD)%",
                        "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
                        "status": "%RESPONSE_CODE%",
                        "grpc_status": "%GRPC_STATUS%",
                        "details": "%RESPONSE_CODE_DETAILS%",
                        "upstream": "%UPSTREAM_CLUSTER%",
                        "bytes_in": "%BYTES_RECEIVED%",
                        "bytes_out": "%BYTES_SENT%",
                        "duration_ms": "%DURATION%",
                        "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                    }
                },
            ),
        }
    ]


def _listener(site: EdgeSite, catalog: Catalog) -> Json:
    hcm = _any(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix="edge",
        codec_type="AUTO",
        use_remote_address=True,
        max_request_headers_kb=16,
        common_http_protocol_options={"max_headers_count": 1000},
        xff_num_trusted_hops=0,
        preserve_external_request_id=True,
        always_set_request_id_in_response=True,
        access_log=_access_log(site),
        **_tracing(site),
        local_reply_config=_local_replies(),
        route_config={
            "name": "edge",
            **_direct_limit(site),
            "virtual_hosts": [
                {
                    "name": "lucid",
                    "domains": ["*"],
                    "routes": _docs_routes(site) + _routes(catalog, site.console),
                    "rate_limits": rate_limits("default"),
                }
            ],
        },
        http_filters=_http_filters(site, catalog),
    )
    chain: Json = {
        "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]
    }
    if site.tls:
        chain["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": _any(
                "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                common_tls_context={
                    "tls_params": {"tls_minimum_protocol_version": "TLSv1_3"},
                    "tls_certificates": [_tls_files(site, WEB_CERT)],
                    "alpn_protocols": ["h2", "http/1.1"],
                },
            ),
        }
    return {
        "name": "edge",
        "address": {"socket_address": {"address": site.address, "port_value": site.port}},
        "per_connection_buffer_limit_bytes": 1024 * 1024,
        "filter_chains": [chain],
    }


def edge(catalog: Catalog, site: EdgeSite) -> Json:
    """The Envoy bootstrap of the front door at ``site``."""
    clusters = [_upstream(site, c, *site.upstreams[c]) for c in CLUSTERS]
    clusters.append(_self_cluster(site))
    clusters += _otlp_cluster(site)
    return {
        "node": {"id": "edge", "cluster": "edge"},
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": site.admin_port}}
        },
        "static_resources": {"listeners": [_listener(site, catalog)], "clusters": clusters},
        "layered_runtime": {"layers": [{"name": "static", "static_layer": {}}]},
    }
