"""The contracts as data: every service and rpc of ``gen/lucid.protoset``.

One reader of the descriptor set serves the server factory (access rules,
idempotency, streaming shape), the edge (REST routes, message classes) and the
API document generator. Nothing here is declared twice: a route, a permission or
a retry policy is whatever the ``.proto`` says.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory

import lucid.common.v1
from lucid.common.v1 import access_pb2

_SERVICE_FIELD = 6  # FileDescriptorProto.service
_METHOD_FIELD = 2  # ServiceDescriptorProto.method


def protoset_path() -> Path:
    """``gen/lucid.protoset`` (or ``$LUCID_PROTOSET``)."""
    if env := os.environ.get("LUCID_PROTOSET"):
        return Path(env)
    for entry in lucid.common.v1.__path__:
        candidate = Path(entry).parents[2] / "lucid.protoset"
        if candidate.exists():
            return candidate
    raise FileNotFoundError("gen/lucid.protoset not found: run `make gen`")


@dataclass(frozen=True)
class HttpRoute:
    """One ``google.api.http`` binding of an rpc."""

    verb: str
    template: str
    body: str
    response_body: str = ""


@dataclass(frozen=True)
class MethodInfo:
    """One rpc as the contract declares it."""

    service: str
    name: str
    cluster: str
    file: str
    input_type: str
    output_type: str
    client_streaming: bool
    server_streaming: bool
    access: access_pb2.AccessRule
    idempotent: bool
    routes: tuple[HttpRoute, ...]
    comment: str

    @property
    def path(self) -> str:
        """The gRPC method path, ``/lucid.auth.v1.AuthService/GetJwks``."""
        return f"/{self.service}/{self.name}"

    @property
    def client_callable(self) -> bool:
        """Whether a client may call the rpc through the edge: it has a REST route and is
        not service-only. The edge relays nothing else (REST or grpc-web)."""
        return bool(self.routes) and not self.access.service_only

    @property
    def grpc_module(self) -> str:
        """The generated module of the service: ``lucid.auth.v1.auth_pb2_grpc``."""
        return self.file.removesuffix(".proto").replace("/", ".") + "_pb2_grpc"

    @property
    def spec_refs(self) -> str:
        """The ``Spec:`` line of the doc comment (spec operations this rpc implements)."""
        for line in self.comment.splitlines():
            if line.strip().startswith("Spec:"):
                return line.strip().removeprefix("Spec:").strip()
        return ""


def _routes(rule: http_pb2.HttpRule) -> Iterator[HttpRoute]:
    pattern = rule.WhichOneof("pattern")
    if pattern == "custom":
        yield HttpRoute(rule.custom.kind.upper(), rule.custom.path, rule.body, rule.response_body)
    elif pattern:
        yield HttpRoute(pattern.upper(), getattr(rule, pattern), rule.body, rule.response_body)
    for extra in rule.additional_bindings:
        yield from _routes(extra)


class Catalog:
    """Every Lucid rpc, and message classes built from the descriptor set."""

    def __init__(self, files: descriptor_pb2.FileDescriptorSet) -> None:
        self.pool = descriptor_pool.DescriptorPool()
        for file in files.file:
            self.pool.Add(file)
        self.methods: dict[str, MethodInfo] = {}
        for file in files.file:
            if not file.package.startswith("lucid."):
                continue
            comments = {
                tuple(loc.path): loc.leading_comments for loc in file.source_code_info.location
            }
            cluster = file.package.split(".")[1]
            for s_index, service in enumerate(file.service):
                full_service = f"{file.package}.{service.name}"
                for m_index, method in enumerate(service.method):
                    options = method.options
                    info = MethodInfo(
                        service=full_service,
                        name=method.name,
                        cluster=cluster,
                        file=file.name,
                        input_type=method.input_type.lstrip("."),
                        output_type=method.output_type.lstrip("."),
                        client_streaming=method.client_streaming,
                        server_streaming=method.server_streaming,
                        access=options.Extensions[access_pb2.access],
                        idempotent=options.idempotency_level
                        != descriptor_pb2.MethodOptions.IDEMPOTENCY_UNKNOWN,
                        routes=tuple(_routes(options.Extensions[annotations_pb2.http])),
                        comment=comments.get(
                            (_SERVICE_FIELD, s_index, _METHOD_FIELD, m_index), ""
                        ).strip(),
                    )
                    self.methods[info.path] = info

    @classmethod
    def from_file(cls, path: Path) -> Catalog:
        """Reads a binary ``FileDescriptorSet``."""
        files = descriptor_pb2.FileDescriptorSet()
        files.ParseFromString(path.read_bytes())
        return cls(files)

    def services_of(self, cluster: str) -> list[str]:
        """Full names of the services a cluster serves (every service of its package)."""
        return sorted({m.service for m in self.methods.values() if m.cluster == cluster})

    def clusters(self) -> list[str]:
        """Clusters that have a contract."""
        return sorted({m.cluster for m in self.methods.values()})

    def message_class(self, full_name: str) -> type[message.Message]:
        """A message class for a type of the descriptor set."""
        return message_factory.GetMessageClass(self.pool.FindMessageTypeByName(full_name))


@cache
def catalog() -> Catalog:
    """The catalog of this process, read once from ``gen/lucid.protoset``."""
    return Catalog.from_file(protoset_path())
