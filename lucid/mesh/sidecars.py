"""Sidecar configuration, health and metrics (spec 10 §2 SidecarService), over the Envoy
sidecars of ``lucid up --sidecars``.

A configuration is stored per registered service (``sidecar_configs``, its version
growing with each change) and applied by rendering it onto the listeners the plane
table gives the sidecar (``render``): the plane table's RBAC stays and is only widened
by ``security.allowed_spiffe_ids``; enabled AUTH policies add Envoy RBAC rules (DENY
rules in a deny filter before the table's, ALLOW rules for any mesh identity); the
highest-priority enabled TIMEOUT and RETRY policies (else ``routing``) set the inbound
route's timeout and retry policy; an enabled RATE_LIMIT policy becomes Envoy's local rate
limit; ``monitoring`` (or an enabled LOGGING policy) turns the JSON access log on. The
result is moved into the sidecar's watched listener file and the change is kept only
once Envoy reports the new version in force (else nothing is stored and the sidecar
keeps the previous listeners). Circuit-breaker policies, load balancing and
redirect/mirror rules are stored and shown but not rendered: the sidecar's upstream
clusters are static in its bootstrap.

Health and metrics come from the sidecar's admin endpoint (``/ready``, ``/stats``) and
its access log. On one machine a cluster has one sidecar, so its registrations share it:
the configuration applied last is the one in force (``GetSidecarHealth`` says which
version). Changes of one sidecar are serialized in the mesh process; the listener file's
version (``LdsVersion``) tells Envoy's acceptance of each file apart.
"""

from __future__ import annotations

import asyncio
import copy
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import grpc

from lucid.common.v1 import access_pb2
from lucid.lib.clock import Clock
from lucid.mesh.store.proxies import ProxySite, ProxyStore, ProxyUnreachableError
from lucid.mesh.store.registry import RegistryStore, ServiceQuery
from lucid.mesh.store.sidecars import SidecarConfigStore, VersionConflictError
from lucid.mesh.v1 import discovery_pb2, policy_pb2, sidecar_pb2
from lucid.runtime.context import Principal
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError, not_found
from lucid.runtime.identity import cluster_enum_name, cluster_from_enum
from lucid.runtime.wire import duration, timestamp

Json = dict[str, Any]
TYPES = "type.googleapis.com/envoy.extensions"
DEFAULT_PRIORITY = 100
DEFAULT_RANGE_S = 900
APPLY_TIMEOUT_S = 10.0
APPLY_POLL_S = 0.05
ANY_MESH_IDENTITY = {"authenticated": {"principal_name": {"prefix": "spiffe://"}}}
DENY_FILTER = "envoy.filters.http.rbac.sidecar_deny"
RATE_LIMIT_FILTER = "envoy.filters.http.local_ratelimit"
RETRY_ON = {
    policy_pb2.RETRY_ON_SERVER_ERROR: "5xx,unavailable,internal",
    policy_pb2.RETRY_ON_TIMEOUT: "deadline-exceeded",
    policy_pb2.RETRY_ON_CONNECT_FAILURE: "connect-failure",
    policy_pb2.RETRY_ON_RESET: "reset",
}
DEFAULT_RETRY_ON = "connect-failure,reset,unavailable"
ACCESS_LOG_FORMAT = {
    "start": "%START_TIME(%s.%3f)%",
    "duration_ms": "%DURATION%",
    "grpc_status": "%GRPC_STATUS(NUMBER)%",
    "response_code": "%RESPONSE_CODE%",
    "path": "%REQ(:PATH)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
}
REQUIRED_SETTINGS = {
    sidecar_pb2.SIDECAR_POLICY_TYPE_RATE_LIMIT: "rate_limit",
    sidecar_pb2.SIDECAR_POLICY_TYPE_CIRCUIT_BREAKER: "circuit_breaker",
    sidecar_pb2.SIDECAR_POLICY_TYPE_RETRY: "retry",
    sidecar_pb2.SIDECAR_POLICY_TYPE_TIMEOUT: "timeouts",
}
"""The settings message a policy of each type must carry."""
LDS_VERSION = "listener_manager.lds.version_text"
STATUS_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def _invalid(message: str, field: str) -> LucidError:
    return LucidError(
        ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
        message,
        field_violations=[FieldViolation(field, message)],
    )


def check_policies(policies: list[sidecar_pb2.SidecarPolicy], field: str) -> None:
    """What the field rules cannot say: unique ids, a type's settings present, a target
    for redirects and mirrors."""
    seen: set[str] = set()
    for index, policy in enumerate(policies):
        where = f"{field}[{index}]" if field == "policies" else field
        if policy.policy_id in seen:
            raise _invalid(f"policy {policy.policy_id} appears twice", f"{where}.policy_id")
        seen.add(policy.policy_id)
        needed = REQUIRED_SETTINGS.get(policy.type)
        if needed and not policy.HasField(needed):  # type: ignore[arg-type]
            raise _invalid(
                f"a {sidecar_pb2.SidecarPolicyType.Name(policy.type)} policy needs {needed}",
                f"{where}.{needed}",
            )
        for number, rule in enumerate(policy.rules):
            redirects = (sidecar_pb2.SIDECAR_ACTION_REDIRECT, sidecar_pb2.SIDECAR_ACTION_MIRROR)
            if rule.action in redirects and not rule.target_service:
                raise _invalid(
                    "a redirect or mirror rule needs target_service",
                    f"{where}.rules[{number}].target_service",
                )


# -- rendering ------------------------------------------------------------------------------


def _ms(value: int) -> str:
    return f"{value / 1000:g}s"


def _path_matcher(path: str) -> Json:
    if path.endswith("*") and "*" not in path[:-1]:
        return {"path": {"prefix": path[:-1]}}
    if "*" in path:
        regex = "".join(".*" if c == "*" else ("\\" + c if c in ".{}" else c) for c in path)
        return {"path": {"safe_regex": {"regex": regex}}}
    return {"path": {"exact": path}}


def _permission(match: policy_pb2.RequestMatch) -> Json:
    """An Envoy RBAC permission for a request match (every part must hold)."""
    parts: list[Json] = []
    if match.path:
        parts.append({"url_path": _path_matcher(match.path)})
    if match.http_method:
        parts.append({"header": {"name": ":method", "string_match": {"exact": match.http_method}}})
    for name, value in sorted(match.headers.items()):
        parts.append({"header": {"name": name, "string_match": {"exact": value}}})
    if not parts:
        return {"any": True}
    return parts[0] if len(parts) == 1 else {"and_rules": {"rules": parts}}


def _enabled(config: sidecar_pb2.SidecarConfig, kind: int) -> list[sidecar_pb2.SidecarPolicy]:
    """The enabled policies of one type, highest priority first."""
    found = [p for p in config.policies if p.enabled and p.type == kind]
    return sorted(found, key=lambda p: -(p.priority or DEFAULT_PRIORITY))


def _retry_policy(retry: policy_pb2.RetryPolicy) -> Json:
    attempts = retry.max_attempts or 3
    base = retry.initial_delay_ms or 1000
    return {
        "retry_on": ",".join(RETRY_ON[r] for r in retry.retry_on) or DEFAULT_RETRY_ON,
        "num_retries": attempts - 1,
        "retry_back_off": {
            "base_interval": _ms(base),
            "max_interval": _ms(max(base, retry.max_delay_ms or 10000)),
        },
    }


def _local_rate_limit(policy: sidecar_pb2.SidecarPolicy, cluster: str) -> Json:
    limit = policy.rate_limit
    tokens = limit.requests_per_minute
    return {
        "name": RATE_LIMIT_FILTER,
        "typed_config": {
            "@type": f"{TYPES}.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": f"sidecar_{cluster}_{policy.policy_id}",
            "token_bucket": {
                "max_tokens": tokens + limit.burst,
                "tokens_per_fill": tokens,
                "fill_interval": "60s",
            },
            "filter_enabled": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
            "filter_enforced": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
            "rate_limited_as_resource_exhausted": True,
        },
    }


def render(
    plane_listeners: list[Json], config: sidecar_pb2.SidecarConfig, cluster: str, access_log: str
) -> list[Json]:
    """The sidecar's listeners with ``config`` applied to its inbound listener."""
    listeners = copy.deepcopy(plane_listeners)
    inbound = next(listener for listener in listeners if listener["name"] == "inbound")
    hcm = inbound["filter_chains"][0]["filters"][0]["typed_config"]
    filters: list[Json] = hcm["http_filters"]
    allow = next(f for f in filters if f["name"] == "envoy.filters.http.rbac")
    policies: Json = allow["typed_config"]["rules"]["policies"]
    if config.security.allowed_spiffe_ids:
        policies["sidecar-allowed-identities"] = {
            "permissions": [{"any": True}],
            "principals": [
                {"authenticated": {"principal_name": {"exact": spiffe_id}}}
                for spiffe_id in config.security.allowed_spiffe_ids
            ],
        }
    denials: Json = {}
    for policy in _enabled(config, sidecar_pb2.SIDECAR_POLICY_TYPE_AUTH):
        for number, rule in enumerate(policy.rules):
            name = f"policy-{policy.policy_id}-{number}"
            if rule.action == sidecar_pb2.SIDECAR_ACTION_DENY:
                denials[name] = {
                    "permissions": [_permission(rule.match)],
                    "principals": [{"any": True}],
                }
            elif rule.action == sidecar_pb2.SIDECAR_ACTION_ALLOW:
                policies[name] = {
                    "permissions": [_permission(rule.match)],
                    "principals": [ANY_MESH_IDENTITY],
                }
    extra: list[Json] = []
    if denials:
        extra.append(
            {
                "name": DENY_FILTER,
                "typed_config": {
                    "@type": f"{TYPES}.filters.http.rbac.v3.RBAC",
                    "rules": {"action": "DENY", "policies": denials},
                },
            }
        )
    limits = _enabled(config, sidecar_pb2.SIDECAR_POLICY_TYPE_RATE_LIMIT)
    if limits:
        extra.append(_local_rate_limit(limits[0], cluster))
    hcm["http_filters"] = [*extra, *filters]

    route = hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    timeouts = _enabled(config, sidecar_pb2.SIDECAR_POLICY_TYPE_TIMEOUT)
    timeout = timeouts[0].timeouts if timeouts else config.routing.timeouts
    if timeout.request_timeout_ms:
        route["timeout"] = _ms(timeout.request_timeout_ms)
    if timeout.idle_timeout_ms:
        route["idle_timeout"] = _ms(timeout.idle_timeout_ms)
    retries = _enabled(config, sidecar_pb2.SIDECAR_POLICY_TYPE_RETRY)
    if retries:
        route["retry_policy"] = _retry_policy(retries[0].retry)
    elif config.routing.HasField("retry"):
        route["retry_policy"] = _retry_policy(config.routing.retry)

    monitoring = config.monitoring
    logging = _enabled(config, sidecar_pb2.SIDECAR_POLICY_TYPE_LOGGING)
    if monitoring.access_log_enabled or monitoring.metrics_enabled or logging:
        hcm["access_log"] = [
            {
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": f"{TYPES}.access_loggers.file.v3.FileAccessLog",
                    "path": access_log,
                    "log_format": {"json_format": ACCESS_LOG_FORMAT},
                },
            }
        ]
    return listeners


# -- metrics --------------------------------------------------------------------------------


def _percentile(ordered: list[float], share: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def _status_name(entry: Json) -> str:
    grpc_status = str(entry.get("grpc_status") or "").strip()
    if grpc_status.isdigit():
        return str(STATUS_NAMES.get(int(grpc_status), grpc_status))
    code = str(entry.get("response_code") or "0")
    return "OK" if code.startswith("2") else f"HTTP_{code}"


def _stats(reply: Any) -> dict[str, float]:
    """``/stats?format=json`` as name → value (counters and gauges)."""
    found: dict[str, float] = {}
    for stat in reply.get("stats", []):
        if isinstance(stat, dict) and isinstance(stat.get("value"), int | float):
            found[stat["name"]] = float(stat["value"])
    return found


@dataclass(frozen=True)
class LdsVersion:
    """The version text of a sidecar's listener file, ``<sequence>.<config version>``:
    the sequence grows with every file written (so Envoy's accepting this very file can
    be told apart), the configuration version is the one rendered in it."""

    sequence: int
    config_version: int

    @classmethod
    def of(cls, text: str) -> LdsVersion:
        """``"3.2"`` → (3, 2); the plane table's first file is ``"0"``; unreadable → 0."""
        sequence, _, config = text.partition(".")
        if not sequence.isdigit() or not (config.isdigit() or config == ""):
            return cls(0, 0)
        return cls(int(sequence), int(config or 0))

    @property
    def text(self) -> str:
        """As written in the file."""
        return f"{self.sequence}.{self.config_version}"


@dataclass(frozen=True)
class Target:
    """The sidecar a request is about."""

    service_id: str
    cluster: str
    site: ProxySite


class Sidecars:
    """Configures the sidecars of registered services and reports on them."""

    def __init__(
        self,
        registry: RegistryStore,
        configs: SidecarConfigStore,
        proxies: ProxyStore,
        clock: Clock,
    ) -> None:
        self.registry = registry
        self.configs = configs
        self.proxies = proxies
        self.clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        """One change at a time per sidecar in this process (render, apply, store); the
        stored version's compare-and-set refuses a change another mesh made meanwhile."""

    def _site(self, cluster: str) -> ProxySite:
        site = self.proxies.site(cluster)
        if site is None:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"{cluster} runs without an Envoy sidecar (lucid up --sidecars runs them)",
            )
        return site

    async def _target(self, service_id: str) -> Target:
        found = await self.registry.get(service_id)
        if found is None:
            raise not_found(f"service {service_id}")
        cluster = cluster_from_enum(found.cluster)
        return Target(service_id, cluster, self._site(cluster))

    async def _owned(self, service_id: str, caller: Principal) -> Target:
        """A service configures only its own sidecar; a user needs the permission the
        pipeline already checked."""
        target = await self._target(service_id)
        peer = caller.peer
        if caller.user is None and not (peer.is_cluster and peer.name == target.cluster):
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED,
                f"{peer.name} may configure only its own sidecar, not {target.cluster}'s",
            )
        return target

    async def _apply(
        self, target: Target, config: sidecar_pb2.SidecarConfig, previous_version: int
    ) -> None:
        """Renders and moves the listeners into place, waits until Envoy has them, then
        stores the configuration; on any failure the previous listeners go back."""
        site = target.site
        before, before_text = self.proxies.current_listeners(site)
        written = LdsVersion.of(before_text)
        listeners = render(
            self.proxies.plane_listeners(site), config, target.cluster, str(site.access_log)
        )
        applying = LdsVersion(written.sequence + 1, config.config_version)
        self.proxies.write_listeners(site, listeners, applying.text)
        try:
            await self._until_applied(site, applying)
            await self.configs.save(config, previous_version)
        except BaseException:
            back = LdsVersion(applying.sequence + 1, written.config_version)
            self.proxies.write_listeners(site, before, back.text)
            raise

    async def _applied_version(self, site: ProxySite) -> LdsVersion:
        """The version of the listeners Envoy last accepted (its LDS version text)."""
        reply = await self.proxies.admin(site, f"/stats?format=json&filter=^{LDS_VERSION}$")
        if reply.status != 200:
            raise ProxyUnreachableError(f"/stats answered {reply.status}")
        found = [
            s.get("value") for s in reply.json().get("stats", []) if s.get("name") == LDS_VERSION
        ]
        return LdsVersion.of(str(found[0]) if found else "")

    async def _until_applied(self, site: ProxySite, version: LdsVersion) -> None:
        polls = int(APPLY_TIMEOUT_S / APPLY_POLL_S)
        try:
            while await self._applied_version(site) != version:
                polls -= 1
                if polls < 0:
                    raise LucidError(
                        ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                        f"the {site.cluster} sidecar refused the configuration (version "
                        f"{version.config_version} not in force)",
                    )
                await asyncio.sleep(APPLY_POLL_S)
        except ProxyUnreachableError as error:
            raise LucidError(
                ErrorCode.ERROR_CODE_UPSTREAM_UNAVAILABLE, f"the sidecar is unreachable: {error}"
            ) from None

    async def configure(
        self, request: sidecar_pb2.ConfigureSidecarRequest, caller: Principal
    ) -> sidecar_pb2.SidecarConfig:
        """Replaces a service's whole sidecar configuration and applies it."""
        check_policies(list(request.policies), "policies")
        target = await self._owned(request.service_id, caller)
        async with self._locks.setdefault(target.cluster, asyncio.Lock()):
            return await self._configure(target, request)

    async def _configure(
        self, target: Target, request: sidecar_pb2.ConfigureSidecarRequest
    ) -> sidecar_pb2.SidecarConfig:
        stored = await self.configs.get(request.service_id)
        previous = stored.config_version if stored else 0
        config = sidecar_pb2.SidecarConfig(
            service_id=request.service_id,
            policies=request.policies,
            routing=request.routing,
            security=request.security,
            monitoring=request.monitoring,
            config_version=previous + 1,
            update_time=timestamp(self.clock.timestamp()),
        )
        await self._commit(target, config, previous)
        return config

    async def update_policy(
        self, service_id: str, policy: sidecar_pb2.SidecarPolicy, caller: Principal
    ) -> sidecar_pb2.SidecarConfig:
        """Creates or replaces one policy of a service's sidecar and applies it."""
        check_policies([policy], "policy")
        target = await self._owned(service_id, caller)
        async with self._locks.setdefault(target.cluster, asyncio.Lock()):
            return await self._update_policy(target, service_id, policy)

    async def _update_policy(
        self, target: Target, service_id: str, policy: sidecar_pb2.SidecarPolicy
    ) -> sidecar_pb2.SidecarConfig:
        stored = await self.configs.get(service_id)
        previous = stored.config_version if stored else 0
        config = sidecar_pb2.SidecarConfig()
        if stored is not None:
            config.CopyFrom(stored)
        config.service_id = service_id
        kept = [p for p in config.policies if p.policy_id != policy.policy_id]
        del config.policies[:]
        config.policies.extend([*kept, policy])
        config.config_version = previous + 1
        config.update_time.CopyFrom(timestamp(self.clock.timestamp()))
        await self._commit(target, config, previous)
        return config

    async def _commit(
        self, target: Target, config: sidecar_pb2.SidecarConfig, previous: int
    ) -> None:
        try:
            await self._apply(target, config, previous)
        except VersionConflictError:
            raise LucidError(
                ErrorCode.ERROR_CODE_TRANSACTION_FAILED,
                f"the sidecar configuration of {target.service_id} changed meanwhile",
            ) from None

    async def _own_target(self, caller: Principal) -> Target:
        peer = caller.peer
        if caller.user is not None or not peer.is_cluster:
            raise _invalid("service_id is required unless a service asks for its own", "service_id")
        cluster = access_pb2.Cluster.Value(cluster_enum_name(peer.name))
        live = await self.registry.live(ServiceQuery(cluster=cluster), self.clock.timestamp())
        service_id = live[0].instance.service_id if live else ""
        return Target(service_id, peer.name, self._site(peer.name))

    async def health(
        self, service_id: str, caller: Principal
    ) -> sidecar_pb2.GetSidecarHealthResponse:
        """The sidecar's state from its admin endpoint; UNAVAILABLE when it is not ready."""
        target = await (self._target(service_id) if service_id else self._own_target(caller))
        site = target.site
        try:
            ready = await self.proxies.admin(site, "/ready")
            if ready.status != 200:
                raise ProxyUnreachableError(f"/ready answered {ready.status}")
            stats = _stats((await self.proxies.admin(site, "/stats?format=json")).json())
            version = (await self._applied_version(site)).config_version
        except ProxyUnreachableError as error:
            raise LucidError(
                ErrorCode.ERROR_CODE_UPSTREAM_UNAVAILABLE,
                f"the {target.cluster} sidecar is not healthy: {error}",
            ) from None
        return sidecar_pb2.GetSidecarHealthResponse(
            service_id=target.service_id,
            status=discovery_pb2.INSTANCE_STATUS_HEALTHY,
            config_version=version,
            upstreams=_breakers(stats, target.cluster),
            uptime=duration(stats.get("server.uptime", 0.0)),
            check_time=timestamp(self.clock.timestamp()),
        )

    async def metrics(self, service_id: str, range_s: int) -> sidecar_pb2.GetSidecarMetricsResponse:
        """Traffic of one sidecar (or all together) over the last ``range_s`` seconds: the
        requests from its access log, connections from its counters."""
        range_s = range_s or DEFAULT_RANGE_S
        sites = [(await self._target(service_id)).site] if service_id else self.proxies.sites()
        since = self.clock.timestamp() - range_s
        durations: list[float] = []
        statuses: Counter[str] = Counter()
        active = total_connections = 0.0
        for site in sites:
            for entry in await self.proxies.access_log(site):
                try:
                    start = float(entry.get("start", 0))
                    took = float(entry.get("duration_ms") or 0)
                except (TypeError, ValueError):
                    continue
                if start >= since:
                    durations.append(took)
                    statuses[_status_name(entry)] += 1
            try:
                stats = _stats((await self.proxies.admin(site, "/stats?format=json")).json())
            except ProxyUnreachableError:
                if service_id:
                    raise LucidError(
                        ErrorCode.ERROR_CODE_UPSTREAM_UNAVAILABLE,
                        f"the {site.cluster} sidecar is unreachable",
                    ) from None
                continue
            prefix = f"http.inbound_{site.cluster}."
            active += stats.get(prefix + "downstream_cx_active", 0.0)
            total_connections += stats.get(prefix + "downstream_cx_total", 0.0)
        durations.sort()
        total = len(durations)
        errors = total - statuses.get("OK", 0)
        return sidecar_pb2.GetSidecarMetricsResponse(
            time_range=duration(float(range_s)),
            total_requests=total,
            request_rate=total / range_s,
            requests_by_status=dict(statuses),
            latency_p50_ms=_percentile(durations, 0.50),
            latency_p95_ms=_percentile(durations, 0.95),
            latency_p99_ms=_percentile(durations, 0.99),
            error_count=errors,
            error_rate=errors / total if total else 0.0,
            active_connections=int(active),
            total_connections=int(total_connections),
        )


def _breakers(stats: dict[str, float], cluster: str) -> list[sidecar_pb2.UpstreamBreaker]:
    """Each upstream of the sidecar with Envoy's breaker gauges (open when any is)."""
    names = sorted(
        {
            name.split(".")[1]
            for name in stats
            if name.startswith("cluster.") and name.count(".") >= 2
        }
        - {"edge_self"}
    )
    found = []
    for name in names:
        prefix = f"cluster.{name}."
        opened = any(
            stats.get(f"{prefix}circuit_breakers.default.{gauge}", 0.0) > 0
            for gauge in ("cx_open", "rq_open", "rq_pending_open", "rq_retry_open")
        )
        failures = stats.get(prefix + "upstream_rq_5xx", 0.0) + stats.get(
            prefix + "upstream_cx_connect_fail", 0.0
        )
        found.append(
            sidecar_pb2.UpstreamBreaker(
                service_name=cluster if name == "local_app" else name.removeprefix("peer_"),
                state=policy_pb2.BREAKER_STATE_OPEN if opened else policy_pb2.BREAKER_STATE_CLOSED,
                failure_count=int(failures),
            )
        )
    return found
