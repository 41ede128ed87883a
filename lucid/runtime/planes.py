"""The plane policy of DECISIONS ("Roles and policy"): which service may call which rpc.

This table is the one source of truth for service-to-service access. Every
server applies it in its call pipeline (``PlanePolicy.check``); ``lucid config
generate`` turns the same table into Consul intentions and Envoy RBAC filters.
A rule names its sources and destinations by cluster or plane and selects the
destination's rpcs by what the contract declares on them (the ``kind`` of
``(lucid.common.v1.access)``, whether the rpc is service-only, method
patterns), so a new rpc falls under the right rule without touching this file.

Evaluation, in order:

1. an identity that is not one of ours (a cluster in the wrong plane, an unknown
   name) is refused;
2. explicit denials win over everything (blockchain ↔ payments);
3. calls within one plane are allowed (ops ↔ ops, shared ↔ shared, chain ↔ chain);
4. an explicit allow across planes lets the call through;
5. everything else is denied (default deny across planes).

The rpc's own access rule (permission, ``service_callers``) is applied after
this, by :mod:`lucid.runtime.authz`.

Calls relayed by the edge act for the end user, never as the edge. The edge
(Envoy, here and in production: ``request_headers_to_add`` with
``OVERWRITE_IF_EXISTS_OR_ADD`` on every route) sets ``RELAYED_HEADER`` on every
request it relays, overwriting whatever the client sent, so a client can neither
remove nor forge it away; a call carrying it never uses its peer's service
identity, only its bearer token. The edge relays only ``MethodInfo.client_callable``
rpcs. Even unmarked, the edge's own identity counts only on the service-only rpcs
that name it (``edge_acts_as_itself``: the rate-limit checks and traffic reports it
makes itself), never on a client-facing rpc.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache

from lucid.common.v1 import access_pb2
from lucid.runtime.contracts import Catalog, MethodInfo
from lucid.runtime.identity import EDGE, OPERATOR, ServiceIdentity, cluster_planes

audit_log = logging.getLogger("lucid.audit")

Kind = int  # an access_pb2.OperationKind value

READ = access_pb2.OPERATION_KIND_READ
WRITE = access_pb2.OPERATION_KIND_WRITE
ANCHORING = access_pb2.OPERATION_KIND_ANCHORING
TASK_PROOF = access_pb2.OPERATION_KIND_TASK_PROOF
PAYOUT = access_pb2.OPERATION_KIND_PAYOUT
EMERGENCY = access_pb2.OPERATION_KIND_EMERGENCY


@dataclass(frozen=True)
class Selector:
    """Services by cluster name or plane; empty fields match any."""

    clusters: tuple[str, ...] = ()
    planes: tuple[str, ...] = ()

    def matches(self, name: str, plane: str) -> bool:
        """Whether a service of that name and plane is selected."""
        if self.clusters and name not in self.clusters:
            return False
        return not self.planes or plane in self.planes

    def describe(self) -> str:
        """``sessions``, ``plane:ops``, ``*``."""
        parts = [*self.clusters, *(f"plane:{p}" for p in self.planes)]
        return ",".join(parts) or "*"


ANY = Selector()


def names(info: MethodInfo, source: ServiceIdentity) -> bool:
    """Whether an rpc's ``service_callers`` name the caller's cluster."""
    wanted = f"CLUSTER_{source.name.upper()}"
    return any(access_pb2.Cluster.Name(c) == wanted for c in info.access.service_callers)


RELAYED_HEADER = "x-lucid-relayed"
"""The mark the edge puts (overwriting) on every request it relays for a client."""
RELAYED_VALUE = "client"


def edge_acts_as_itself(rule: access_pb2.AccessRule) -> bool:
    """Whether the edge's service identity alone may call an rpc with this access rule:
    only service-only rpcs naming the edge (which the edge never relays)."""
    return rule.service_only and access_pb2.CLUSTER_EDGE in rule.service_callers


@dataclass(frozen=True)
class Rule:
    """One allow or deny of the table."""

    name: str
    source: Selector
    destination: Selector
    kinds: tuple[Kind, ...] = ()
    """Operation kinds it covers; empty for any (an undeclared kind counts as a write)."""
    client_facing: bool = False
    """Only rpcs clients may call: every rpc not marked ``service_only`` (its REST routes and
    gRPC-only client streams such as ``UploadChunks``)."""
    methods: tuple[str, ...] = ()
    """Full method patterns (``/lucid.storage.v1.SchemaService/*``); empty for any."""
    naming_caller: bool = False
    """Only rpcs whose ``service_callers`` name the calling cluster."""
    description: str = ""

    def covers(self, info: MethodInfo) -> bool:
        """Whether the rule applies to an rpc (its source aside)."""
        kind = info.access.kind or WRITE
        if self.kinds and kind not in self.kinds:
            return False
        if self.client_facing and info.access.service_only:
            return False
        return not self.methods or any(fnmatch.fnmatchcase(info.path, m) for m in self.methods)

    def applies(self, source: ServiceIdentity, info: MethodInfo) -> bool:
        """Whether the rule applies to a call from ``source`` to ``info``."""
        planes = cluster_planes()
        return (
            self.source.matches(source.name, source.plane)
            and self.destination.matches(info.cluster, planes.get(info.cluster, ""))
            and self.covers(info)
            and (not self.naming_caller or names(info, source))
        )


DENIALS: tuple[Rule, ...] = (
    Rule(
        "chain-never-calls-wallet",
        Selector(clusters=("blockchain",)),
        Selector(clusters=("payments",)),
        description="blockchain → payments is denied: the chain never touches TRON",
    ),
    Rule(
        "wallet-never-calls-chain",
        Selector(clusters=("payments",)),
        Selector(clusters=("blockchain",)),
        description="payments → blockchain is denied: the payment rail stays apart from the chain",
    ),
)
"""Denials that win over any allow."""

ALLOWS: tuple[Rule, ...] = (
    Rule(
        "sessions-anchor-on-chain",
        Selector(clusters=("sessions",)),
        Selector(clusters=("blockchain",)),
        kinds=(ANCHORING,),
        description="sessions → blockchain anchoring rpcs",
    ),
    Rule(
        "sessions-follow-chain-height",
        Selector(clusters=("sessions",)),
        Selector(clusters=("blockchain",)),
        methods=("/lucid.blockchain.v1.BlockchainService/GetChainHeight",),
        description="sessions → the chain's height (finalizers wait for a new final block)",
    ),
    Rule(
        "nodes-prove-tasks-and-read-chain",
        Selector(clusters=("nodes",)),
        Selector(clusters=("blockchain",)),
        kinds=(TASK_PROOF, READ),
        description="nodes → blockchain task-proof and read rpcs",
    ),
    Rule(
        "rdp-reads-the-trust-anchor",
        Selector(clusters=("rdp",)),
        Selector(clusters=("blockchain",)),
        methods=("/lucid.blockchain.v1.BlockchainService/GetTrustAnchor",),
        description="rdp → the chain's trust anchor (replayed segments are checked against it)",
    ),
    Rule(
        "payouts-from-nodes-and-admin",
        Selector(clusters=("nodes", "admin")),
        Selector(clusters=("payments",)),
        kinds=(PAYOUT,),
        description="nodes and admin → payments payout rpcs",
    ),
    Rule(
        "nodes-verify-stakes",
        Selector(clusters=("nodes",)),
        Selector(clusters=("payments",)),
        methods=("/lucid.payments.v1.UsdtService/VerifyStake",),
        description="nodes → payments' VerifyStake (a registering node's stake, spec 05 §4)",
    ),
    Rule(
        "admin-reads-and-emergencies",
        Selector(clusters=("admin",)),
        ANY,
        kinds=(READ, EMERGENCY),
        description="admin → read and emergency rpcs everywhere",
    ),
    Rule(
        "the-wallet-asks-the-system-mode",
        Selector(clusters=("payments",)),
        Selector(clusters=("admin",)),
        methods=("/lucid.admin.v1.EmergencyService/GetSystemMode",),
        description="payments → admin's system mode (a lockdown freezes payouts)",
    ),
    Rule(
        "admin-anchors-its-audit-chain",
        Selector(clusters=("admin",)),
        Selector(clusters=("blockchain",)),
        methods=("/lucid.blockchain.v1.AnchoringService/AnchorSession",),
        description="admin → the chain's AnchorSession (its audit chain's head, periodically)",
    ),
    Rule(
        "admin-resyncs-the-chain",
        Selector(clusters=("admin",)),
        Selector(clusters=("blockchain",)),
        methods=("/lucid.blockchain.v1.BlockchainService/ResyncChain",),
        description="admin → the chain's resync (the console's ResyncBlockchain)",
    ),
    Rule(
        "everyone-to-auth-and-mesh",
        ANY,
        Selector(clusters=("auth", "mesh")),
        description="everyone → auth and mesh",
    ),
    Rule(
        "everyone-declares-schema",
        ANY,
        Selector(clusters=("storage",)),
        methods=("/lucid.storage.v1.SchemaService/DeclareSchema",),
        description="every cluster declares its collections with storage (shared plane)",
    ),
    Rule(
        "edge-to-client-rpcs",
        Selector(planes=(EDGE,)),
        ANY,
        client_facing=True,
        description="the edge (and people's tools on the edge plane) → every rpc not service-only",
    ),
    Rule(
        "edge-to-rpcs-naming-it",
        Selector(clusters=(EDGE,)),
        ANY,
        naming_caller=True,
        description="the edge → the front-door rpcs that name it (the gateway's rate limiter)",
    ),
)
"""Explicit allows across planes; everything else across planes is denied."""

SAME_PLANE = "same-plane"
DEFAULT_DENY = "default-deny-across-planes"
UNKNOWN_IDENTITY = "unknown-identity"


@dataclass(frozen=True)
class Decision:
    """The answer for one call."""

    allowed: bool
    rule: str
    reason: str


@dataclass
class PlanePolicy:
    """The table, evaluated."""

    denials: Sequence[Rule] = DENIALS
    allows: Sequence[Rule] = ALLOWS
    version: int = 1
    _cache: dict[tuple[str, str, str], Decision] = field(default_factory=dict, repr=False)

    def decide(self, source: ServiceIdentity, info: MethodInfo) -> Decision:
        """Whether ``source`` may call the rpc ``info`` (cached per identity and method)."""
        key = (source.plane, source.name, info.path)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._evaluate(source, info)
        return found

    def _evaluate(self, source: ServiceIdentity, info: MethodInfo) -> Decision:
        if not known_identity(source):
            return Decision(
                False,
                UNKNOWN_IDENTITY,
                f"{source.spiffe_id} is not a Lucid identity (wrong plane or unknown name)",
            )
        for rule in self.denials:
            if rule.applies(source, info):
                return Decision(False, rule.name, rule.description)
        destination_plane = cluster_planes().get(info.cluster, "")
        if source.plane == destination_plane:
            return Decision(True, SAME_PLANE, f"{source.plane} → {destination_plane}")
        for rule in self.allows:
            if rule.applies(source, info):
                return Decision(True, rule.name, rule.description)
        return Decision(
            False,
            DEFAULT_DENY,
            f"{source.plane} → {destination_plane} is not allowed for {info.path}",
        )

    def allowed_methods(
        self, source: ServiceIdentity, methods: Iterable[MethodInfo]
    ) -> list[MethodInfo]:
        """The rpcs among ``methods`` that ``source`` may call."""
        return [m for m in methods if self.decide(source, m).allowed]


def known_identity(identity: ServiceIdentity) -> bool:
    """A cluster in its own plane, the edge, or the operator on the edge plane."""
    if identity.name == OPERATOR:
        return identity.plane == EDGE
    return cluster_planes().get(identity.name) == identity.plane


def callers() -> list[ServiceIdentity]:
    """Every identity that calls services: the clusters, the edge and the operator."""
    planes = cluster_planes()
    found = [ServiceIdentity(plane=plane, name=name) for name, plane in planes.items()]
    return [*found, ServiceIdentity(plane=EDGE, name=OPERATOR)]


@dataclass(frozen=True)
class Grant:
    """What one identity may call on one cluster: everything, nothing, or some rpcs."""

    source: ServiceIdentity
    destination: str
    methods: tuple[str, ...]
    """The allowed full method paths, sorted."""
    total: int
    """How many rpcs the destination has."""

    @property
    def all(self) -> bool:
        """Every rpc of the destination."""
        return len(self.methods) == self.total

    @property
    def none(self) -> bool:
        """No rpc of the destination."""
        return not self.methods


def grants(policy: PlanePolicy, catalog: Catalog, destination: str) -> list[Grant]:
    """For each caller, which rpcs of ``destination`` it may call (for generated configs)."""
    methods = sorted(
        (m for m in catalog.methods.values() if m.cluster == destination), key=lambda m: m.path
    )
    return [
        Grant(
            source,
            destination,
            tuple(m.path for m in policy.allowed_methods(source, methods)),
            len(methods),
        )
        for source in callers()
    ]


@cache
def default_policy() -> PlanePolicy:
    """The policy of DECISIONS (shared by the servers of one process)."""
    return PlanePolicy()


def audit(
    decision: Decision, source: ServiceIdentity, info: MethodInfo, request_id: str = ""
) -> None:
    """Writes the audit record of one decision: allows at INFO, denials at CRITICAL."""
    level = logging.INFO if decision.allowed else logging.CRITICAL
    if not audit_log.isEnabledFor(level):
        return
    audit_log.log(
        level,
        "plane policy",
        extra={
            "audit": "plane_policy",
            "decision": "allow" if decision.allowed else "deny",
            "rule": decision.rule,
            "source": source.spiffe_id,
            "source_plane": source.plane,
            "destination": info.cluster,
            "destination_plane": cluster_planes().get(info.cluster, ""),
            "method": info.path,
            "kind": access_pb2.OperationKind.Name(info.access.kind or WRITE),
            "request_id": request_id,
        },
    )
