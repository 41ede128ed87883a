"""Who is calling: cluster names, planes and SPIFFE ids.

A service's identity is the SPIFFE URI in its mTLS certificate,
``spiffe://lucid.local/<plane>/<name>`` (DECISIONS "Roles and policy"). The
cluster → plane table is declared once, on the ``Cluster`` enum of
``lucid/common/v1/access.proto``; this module reads it from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from lucid.common.v1 import access_pb2

TRUST_DOMAIN = "lucid.local"
SPIFFE_PREFIX = f"spiffe://{TRUST_DOMAIN}/"

EDGE = "edge"
"""The front door's identity (Envoy at the edge, here and in production)."""
OPERATOR = "operator"
"""The identity of people's tools (grpcurl, the CLI) on the edge plane."""


def _plane_name(value: int) -> str:
    name = access_pb2.Plane.Name(value)  # type: ignore[arg-type]
    return name.removeprefix("PLANE_").lower()


@cache
def cluster_planes() -> dict[str, str]:
    """Every cluster name (and the edge) mapped to its plane, from the proto enum."""
    planes: dict[str, str] = {}
    for value in access_pb2.Cluster.DESCRIPTOR.values:
        if value.number == 0:
            continue
        options = value.GetOptions()
        plane = options.Extensions[access_pb2.plane]
        planes[value.name.removeprefix("CLUSTER_").lower()] = _plane_name(plane)
    return planes


def cluster_enum_name(cluster: str) -> str:
    """``sessions`` → ``CLUSTER_SESSIONS``."""
    return f"CLUSTER_{cluster.upper()}"


def cluster_from_enum(value: int) -> str:
    """``CLUSTER_SESSIONS`` (as a number) → ``sessions``."""
    return access_pb2.Cluster.Name(value).removeprefix("CLUSTER_").lower()  # type: ignore[arg-type]


@dataclass(frozen=True)
class ServiceIdentity:
    """The identity in a peer's certificate."""

    plane: str
    name: str

    @property
    def spiffe_id(self) -> str:
        """``spiffe://lucid.local/<plane>/<name>``."""
        return f"{SPIFFE_PREFIX}{self.plane}/{self.name}"

    @property
    def is_known(self) -> bool:
        """Whether the identity is one of the ten clusters or the edge, with its right plane."""
        return cluster_planes().get(self.name) == self.plane

    @property
    def is_cluster(self) -> bool:
        """Whether the identity is one of the ten clusters (with its right plane)."""
        return self.name != EDGE and cluster_planes().get(self.name) == self.plane

    def __str__(self) -> str:
        return self.spiffe_id


def identity_for(name: str) -> ServiceIdentity:
    """The identity a cluster, the edge or the operator carries."""
    if name == OPERATOR:
        return ServiceIdentity(plane=EDGE, name=OPERATOR)
    try:
        return ServiceIdentity(plane=cluster_planes()[name], name=name)
    except KeyError:
        raise ValueError(f"unknown identity {name!r}") from None


def parse_spiffe_id(uri: str) -> ServiceIdentity | None:
    """Reads ``spiffe://lucid.local/<plane>/<name>``; ``None`` for anything else."""
    if not uri.startswith(SPIFFE_PREFIX):
        return None
    parts = uri[len(SPIFFE_PREFIX) :].split("/")
    if len(parts) != 2 or not all(parts):
        return None
    return ServiceIdentity(plane=parts[0], name=parts[1])
