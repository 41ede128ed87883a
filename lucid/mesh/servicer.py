"""The gRPC adapters of the mesh: proto ↔ domain, raising ``LucidError``.

Built: discovery (register, deregister, health reports, list, resolve), the CA
(IssueCertificate, VerifyCertificate) and Authorize, policy management (traffic
and security policies, breaker overrides, mTLS settings, the plane table), and
messaging (messages with TTL, events on Redis Streams). Sidecar configuration,
service tokens and certificate rotation answer UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.protobuf import json_format, struct_pb2

from lucid.common.v1 import access_pb2
from lucid.lib.clock import Clock
from lucid.mesh import ca, discovery
from lucid.mesh.events import EventBus, StoredEvent, Subscription
from lucid.mesh.messages import EXPIRED, MessageQueue
from lucid.mesh.repository import (
    CertificateStore,
    DuplicateError,
    PolicyStore,
    RegistryStore,
    SettingsStore,
    from_doc,
    to_doc,
)
from lucid.mesh.v1 import (
    discovery_pb2,
    discovery_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
    messaging_pb2,
    messaging_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
)
from lucid.runtime import paging
from lucid.runtime.context import current_principal
from lucid.runtime.contracts import Catalog
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError
from lucid.runtime.identity import (
    cluster_enum_name,
    cluster_from_enum,
    identity_for,
    parse_spiffe_id,
)
from lucid.runtime.planes import PlanePolicy, Rule, audit
from lucid.runtime.tls import CERT_DAYS, CertificateAuthority
from lucid.runtime.wire import timestamp

DEFAULT_PAGE = 100


def _enum(enum: Any, value: int) -> str:
    return str(enum.Name(value)).lower()


def _not_found(what: str) -> LucidError:
    return LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, f"{what} not found")


def _caller_name() -> str:
    principal = current_principal()
    if principal.peer.is_cluster:
        return principal.peer.name
    return principal.user.user_id if principal.user else principal.peer.name


# -- discovery --------------------------------------------------------------------------


class DiscoveryService(discovery_pb2_grpc.ServiceDiscoveryServiceServicer):
    """The in-repo registry for setups without Consul."""

    def __init__(self, store: RegistryStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def RegisterService(
        self, request: discovery_pb2.RegisterServiceRequest, context: grpc.aio.ServicerContext
    ) -> discovery_pb2.RegisterServiceResponse:
        discovery.check_registration(request, current_principal())
        now = self.clock.timestamp()
        ttl = request.ttl_seconds or discovery.DEFAULT_TTL_S
        instance = discovery_pb2.ServiceInstance(
            service_id=request.service_id,
            instance_id=f"{request.service_name}-{request.service_id[:8]}",
            service_name=request.service_name,
            cluster=request.cluster,
            plane=request.plane,
            endpoint=request.endpoint,
            version=request.version,
            health_check=request.health_check,
            metadata=request.metadata,
            ttl_seconds=ttl,
            weight=request.weight or discovery.DEFAULT_WEIGHT,
            health=discovery_pb2.InstanceHealth(status=discovery_pb2.INSTANCE_STATUS_UNKNOWN),
            register_time=timestamp(now),
            expire_time=timestamp(now + ttl),
        )
        try:
            await self.store.insert(self._fields(instance, now=now, revision=0, expire=now + ttl))
        except DuplicateError:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS,
                f"service {request.service_id} is already registered",
            ) from None
        return discovery_pb2.RegisterServiceResponse(instance=instance)

    @staticmethod
    def _fields(
        instance: discovery_pb2.ServiceInstance, *, now: float, revision: int, expire: float
    ) -> dict[str, Any]:
        critical = instance.health.critical_since_time
        return {
            "service_id": instance.service_id,
            "service_name": instance.service_name,
            "cluster": instance.cluster,
            "plane": instance.plane,
            "version": instance.version,
            "status": instance.health.status,
            "register_at": instance.register_time.ToNanoseconds() / 1e9,
            "expire_at": expire,
            "critical_since": critical.ToNanoseconds() / 1e9
            if instance.health.HasField("critical_since_time")
            else None,
            "revision": revision,
            "updated_at": now,
            "doc": to_doc(instance),
        }

    async def _owned(self, service_id: str) -> dict[str, Any]:
        doc = await self.store.get(service_id)
        if doc is None:
            raise _not_found(f"service {service_id}")
        if not discovery.may_act_for(current_principal(), doc["cluster"]):
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED,
                f"service {service_id} belongs to {cluster_from_enum(doc['cluster'])}",
            )
        return doc

    async def DeregisterService(
        self, request: discovery_pb2.DeregisterServiceRequest, context: grpc.aio.ServicerContext
    ) -> discovery_pb2.DeregisterServiceResponse:
        await self._owned(request.service_id)
        await self.store.delete(request.service_id)
        return discovery_pb2.DeregisterServiceResponse()

    async def UpdateServiceHealth(
        self, request: discovery_pb2.UpdateServiceHealthRequest, context: grpc.aio.ServicerContext
    ) -> discovery_pb2.UpdateServiceHealthResponse:
        for _ in range(5):  # optimistic concurrency: retry when a report raced ours
            doc = await self._owned(request.service_id)
            instance = from_doc(doc["doc"], discovery_pb2.ServiceInstance)
            now = self.clock.timestamp()
            discovery.apply_report(
                instance.health,
                discovery.Thresholds.of(instance.health_check),
                request.status,
                now_s=now,
            )
            instance.health.output = request.output
            instance.health.response_time_ms = request.response_time_ms
            expire = now + instance.ttl_seconds
            instance.expire_time.CopyFrom(timestamp(expire))
            fields = self._fields(instance, now=now, revision=doc["revision"], expire=expire)
            fields.pop("revision")
            if await self.store.replace_if_version(request.service_id, doc["revision"], fields):
                return discovery_pb2.UpdateServiceHealthResponse(
                    health=instance.health, expire_time=instance.expire_time
                )
        raise LucidError(ErrorCode.ERROR_CODE_TRANSACTION_FAILED, "concurrent health reports")

    def _live(self) -> dict[str, Any]:
        return {"expire_at": {"$gt": self.clock.timestamp()}}

    async def ListServices(
        self, request: discovery_pb2.ListServicesRequest, context: grpc.aio.ServicerContext
    ) -> discovery_pb2.ListServicesResponse:
        query = self._live()
        if request.cluster:
            query["cluster"] = request.cluster
        if request.plane:
            query["plane"] = request.plane
        if request.status:
            query["status"] = request.status
        if request.service_name:
            query["service_name"] = request.service_name
        docs = await self.store.find(query)
        page = paging.page(request, default=DEFAULT_PAGE)
        shown = page.window(docs)
        return discovery_pb2.ListServicesResponse(
            services=[from_doc(d["doc"], discovery_pb2.ServiceInstance) for d in shown],
            next_page_token=page.next_token(len(shown), len(docs)),
            total_size=len(docs),
        )

    async def ResolveService(
        self, request: discovery_pb2.ResolveServiceRequest, context: grpc.aio.ServicerContext
    ) -> discovery_pb2.ResolveServiceResponse:
        query = {**self._live(), "service_name": request.service_name}
        if request.version:
            query["version"] = request.version
        docs = await self.store.find(query)
        if not docs:
            raise _not_found(f"service {request.service_name}")
        healthy = [
            from_doc(d["doc"], discovery_pb2.ServiceInstance)
            for d in docs
            if d["status"] in discovery.RESOLVABLE
        ]
        if not healthy:
            raise LucidError(
                ErrorCode.ERROR_CODE_MESH_NO_HEALTHY_INSTANCE,
                f"no healthy instance of {request.service_name}",
            )
        turn = await self.store.next_turn(request.service_name)
        chosen = discovery.pick(healthy, request.load_balance, turn=turn, hash_key=request.hash_key)
        return discovery_pb2.ResolveServiceResponse(instance=chosen, healthy_count=len(healthy))

    async def sweep(self) -> int:
        """Deregisters instances critical for longer than 90 s."""
        return await self.store.delete_critical_since(
            self.clock.timestamp() - discovery.CRITICAL_DEREGISTER_S
        )


# -- identity ---------------------------------------------------------------------------


class IdentityService(identity_pb2_grpc.IdentityServiceServicer):
    """The mesh CA and the plane-policy question."""

    def __init__(
        self,
        authority: Callable[[], CertificateAuthority],
        certificates: CertificateStore,
        policy: PlanePolicy,
        catalog: Catalog,
        clock: Clock,
    ) -> None:
        self.authority = authority
        self.certificates = certificates
        self.policy = policy
        self.catalog = catalog
        self.clock = clock

    async def IssueCertificate(
        self, request: identity_pb2.IssueCertificateRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.IssueCertificateResponse:
        if not discovery.may_act_for(current_principal(), request.cluster):
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED,
                "a service may obtain certificates only for its own cluster",
            )
        csr = ca.load_csr(request.csr_pem)
        name = cluster_from_enum(request.cluster)
        identity = identity_for(name)
        authority = self.authority()
        cert = ca.sign_request(
            authority,
            identity,
            csr,
            service_name=request.service_name or name,
            days=request.validity_days or CERT_DAYS,
            now=self.clock.now(),
        )
        issued = self._describe(cert, authority)
        await self.certificates.record(
            {
                "serial_number": issued.serial_number,
                "spiffe_id": issued.spiffe_id,
                "service_name": issued.service_name,
                "not_after": cert.not_valid_after_utc.timestamp(),
                "issued_at": self.clock.timestamp(),
                "issued_to": _caller_name(),
            }
        )
        return identity_pb2.IssueCertificateResponse(certificate=issued)

    @staticmethod
    def _describe(
        cert: x509.Certificate, authority: CertificateAuthority
    ) -> identity_pb2.IssuedCertificate:
        identity = ca.spiffe_of(cert)
        assert identity is not None
        common = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
        return identity_pb2.IssuedCertificate(
            serial_number=f"{cert.serial_number:x}",
            certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            chain_pem=authority.cert_pem.decode(),
            spiffe_id=identity.spiffe_id,
            cluster=access_pb2.Cluster.Value(cluster_enum_name(identity.name)),
            plane=access_pb2.Plane.Value(f"PLANE_{identity.plane.upper()}"),
            service_name=str(common[0].value) if common else identity.name,
            dns_names=ca.dns_names(cert),
            not_before=timestamp(cert.not_valid_before_utc.timestamp()),
            not_after=timestamp(cert.not_valid_after_utc.timestamp()),
        )

    async def VerifyCertificate(
        self, request: identity_pb2.VerifyCertificateRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.VerifyCertificateResponse:
        try:
            cert = x509.load_pem_x509_certificate(request.certificate_pem.encode())
        except ValueError:
            return identity_pb2.VerifyCertificateResponse(
                valid=False,
                failure=identity_pb2.VERIFY_FAILURE_MALFORMED,
                reason="unreadable certificate",
            )
        serial = f"{cert.serial_number:x}"
        record = await self.certificates.get(serial)
        now = self.clock.now()
        revoked = bool(
            record and record.get("revoke_at") and record["revoke_at"] <= now.timestamp()
        )
        verdict = ca.verify(
            self.authority(),
            cert,
            now=now,
            expected_cluster=cluster_from_enum(request.expected_cluster)
            if request.expected_cluster
            else "",
            expected_plane=_enum(access_pb2.Plane, request.expected_plane).removeprefix("plane_")
            if request.expected_plane
            else "",
            revoked=revoked,
        )
        response = identity_pb2.VerifyCertificateResponse(
            valid=verdict.valid,
            failure=verdict.failure,  # type: ignore[arg-type]
            reason=verdict.reason,
            serial_number=serial,
            not_after=timestamp(cert.not_valid_after_utc.timestamp()),
        )
        if verdict.identity is not None:
            response.spiffe_id = verdict.identity.spiffe_id
            if verdict.valid:
                response.cluster = access_pb2.Cluster.Value(
                    cluster_enum_name(verdict.identity.name)
                )
                response.plane = access_pb2.Plane.Value(f"PLANE_{verdict.identity.plane.upper()}")
        return response

    async def Authorize(
        self, request: identity_pb2.AuthorizeRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.AuthorizeResponse:
        source = parse_spiffe_id(request.source_spiffe_id)
        info = self.catalog.methods.get(request.full_method)
        if source is None or info is None:
            raise _not_found(f"method {request.full_method}")
        if info.cluster != cluster_from_enum(request.destination_cluster):
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                f"{request.full_method} is served by {info.cluster}",
                field_violations=[FieldViolation("destination_cluster", f"must be {info.cluster}")],
            )
        decision = self.policy.decide(source, info)
        audit(decision, source, info)
        return identity_pb2.AuthorizeResponse(
            allowed=decision.allowed,
            reason=decision.reason,
            matched_rule=decision.rule,
            policy_version=self.policy.version,
        )


# -- policy -----------------------------------------------------------------------------

TRAFFIC = "traffic"
SECURITY = "security"
BREAKER_KEY = "breaker:"
MTLS_KEY = "mtls"


class PolicyService(policy_pb2_grpc.PolicyServiceServicer):
    """Traffic and security policies (MongoDB), breaker overrides, mTLS, the plane table."""

    def __init__(
        self, policies: PolicyStore, settings: SettingsStore, plane: PlanePolicy, clock: Clock
    ) -> None:
        self.policies = policies
        self.settings = settings
        self.plane = plane
        self.clock = clock

    async def _create(self, kind: str, request: Any, message: Any) -> Any:
        now = self.clock.timestamp()
        policy = message(
            policy_id=str(uuid.uuid4()),
            name=request.name,
            description=request.description,
            source=request.source,
            destination=request.destination,
            rules=request.rules,
            priority=request.priority or 100,
            enabled=request.enabled,
            namespace=request.namespace or "default",
            create_time=timestamp(now),
            created_by=_caller_name(),
        )
        try:
            await self.policies.insert(
                {
                    "type": kind,
                    "policy_id": policy.policy_id,
                    "name": policy.name,
                    "priority": policy.priority,
                    "enabled": policy.enabled,
                    "doc": to_doc(policy),
                }
            )
        except DuplicateError:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS, f"a policy named {request.name} exists"
            ) from None
        return policy

    async def _list(self, kind: str, request: Any, message: Any) -> tuple[list[Any], str, int]:
        page = paging.page(request)
        docs = await self.policies.list(
            kind, enabled_only=request.enabled_only, skip=page.offset, limit=page.size
        )
        total = await self.policies.count(kind, enabled_only=request.enabled_only)
        token = page.next_token(len(docs), total)
        return [from_doc(d["doc"], message) for d in docs], token, total

    async def _delete(self, kind: str, policy_id: str) -> None:
        if not await self.policies.delete(kind, policy_id):
            raise _not_found(f"{kind} policy {policy_id}")

    async def CreateTrafficPolicy(
        self, request: policy_pb2.CreateTrafficPolicyRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.CreateTrafficPolicyResponse:
        policy = await self._create(TRAFFIC, request, policy_pb2.TrafficPolicy)
        return policy_pb2.CreateTrafficPolicyResponse(policy=policy)

    async def ListTrafficPolicies(
        self, request: policy_pb2.ListTrafficPoliciesRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.ListTrafficPoliciesResponse:
        found, token, total = await self._list(TRAFFIC, request, policy_pb2.TrafficPolicy)
        return policy_pb2.ListTrafficPoliciesResponse(
            policies=found, next_page_token=token, total_size=total
        )

    async def DeleteTrafficPolicy(
        self, request: policy_pb2.DeleteTrafficPolicyRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.DeleteTrafficPolicyResponse:
        await self._delete(TRAFFIC, request.policy_id)
        return policy_pb2.DeleteTrafficPolicyResponse()

    async def CreateSecurityPolicy(
        self, request: policy_pb2.CreateSecurityPolicyRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.CreateSecurityPolicyResponse:
        policy = await self._create(SECURITY, request, policy_pb2.SecurityPolicy)
        return policy_pb2.CreateSecurityPolicyResponse(policy=policy)

    async def ListSecurityPolicies(
        self, request: policy_pb2.ListSecurityPoliciesRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.ListSecurityPoliciesResponse:
        found, token, total = await self._list(SECURITY, request, policy_pb2.SecurityPolicy)
        return policy_pb2.ListSecurityPoliciesResponse(
            policies=found, next_page_token=token, total_size=total
        )

    async def DeleteSecurityPolicy(
        self, request: policy_pb2.DeleteSecurityPolicyRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.DeleteSecurityPolicyResponse:
        await self._delete(SECURITY, request.policy_id)
        return policy_pb2.DeleteSecurityPolicyResponse()

    async def UpdateCircuitBreaker(
        self, request: policy_pb2.UpdateCircuitBreakerRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.UpdateCircuitBreakerResponse:
        now = self.clock.timestamp()
        breaker = policy_pb2.CircuitBreaker(
            service_name=request.service_name,
            config=request.config,
            update_time=timestamp(now),
            updated_by=_caller_name(),
        )
        await self.settings.put(BREAKER_KEY + request.service_name, to_doc(breaker), now)
        return policy_pb2.UpdateCircuitBreakerResponse(circuit_breaker=breaker)

    async def UpdateMtlsConfig(
        self, request: policy_pb2.UpdateMtlsConfigRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.UpdateMtlsConfigResponse:
        now = self.clock.timestamp()
        await self.settings.put(MTLS_KEY, to_doc(request.config), now)
        return policy_pb2.UpdateMtlsConfigResponse(
            config=request.config, update_time=timestamp(now)
        )

    async def GetPlanePolicy(
        self, request: policy_pb2.GetPlanePolicyRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.GetPlanePolicyResponse:
        response = policy_pb2.GetPlanePolicyResponse(
            version=self.plane.version + await self.settings.version(),
            allow_same_plane=True,
            rules=[plane_rule(r) for r in self.plane.allows],
            denials=[plane_rule(r) for r in self.plane.denials],
        )
        for doc in await self.settings.prefixed(BREAKER_KEY):
            response.circuit_breakers.append(from_doc(doc["value"], policy_pb2.CircuitBreaker))
        mtls = await self.settings.get(MTLS_KEY)
        if mtls:
            response.mtls.CopyFrom(from_doc(mtls["value"], policy_pb2.MtlsConfig))
            response.update_time.CopyFrom(timestamp(mtls["updated_at"]))
        return response


def plane_rule(rule: Rule) -> policy_pb2.PlaneRule:
    """A rule of the table as the contract describes it (one cluster or plane each side)."""
    message = policy_pb2.PlaneRule(
        kinds=[access_pb2.OperationKind.ValueType(k) for k in rule.kinds],
        methods=list(rule.methods),
        description=rule.description,
    )
    if len(rule.source.clusters) == 1:
        message.source_cluster = access_pb2.Cluster.Value(
            cluster_enum_name(rule.source.clusters[0])
        )
    if len(rule.source.planes) == 1:
        message.source_plane = access_pb2.Plane.Value(f"PLANE_{rule.source.planes[0].upper()}")
    if len(rule.destination.clusters) == 1:
        message.destination_cluster = access_pb2.Cluster.Value(
            cluster_enum_name(rule.destination.clusters[0])
        )
    if rule.client_facing:
        message.methods.append("client-facing:*")
    if len(rule.source.clusters) > 1 or len(rule.destination.clusters) > 1:
        message.description += f" [{rule.source.describe()} → {rule.destination.describe()}]"
    return message


# -- messaging --------------------------------------------------------------------------

PRIORITY_NAMES = {
    messaging_pb2.MESSAGE_PRIORITY_UNSPECIFIED: "normal",
    messaging_pb2.MESSAGE_PRIORITY_LOW: "low",
    messaging_pb2.MESSAGE_PRIORITY_NORMAL: "normal",
    messaging_pb2.MESSAGE_PRIORITY_HIGH: "high",
    messaging_pb2.MESSAGE_PRIORITY_CRITICAL: "critical",
}
STATUS_VALUES = {
    "queued": messaging_pb2.MESSAGE_STATUS_QUEUED,
    "processing": messaging_pb2.MESSAGE_STATUS_PROCESSING,
    "delivered": messaging_pb2.MESSAGE_STATUS_DELIVERED,
    "failed": messaging_pb2.MESSAGE_STATUS_FAILED,
    "expired": messaging_pb2.MESSAGE_STATUS_EXPIRED,
}
DEFAULT_MESSAGE_TTL_S = 3600
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_RETRY_DELAY_MS = 1000
POLL_S = 0.2


class MessagingService(messaging_pb2_grpc.MessagingServiceServicer):
    """Messages (MongoDB + Redis Streams) and events (Redis Streams)."""

    def __init__(self, messages: MessageQueue, events: EventBus, clock: Clock) -> None:
        self.messages = messages
        self.events = events
        self.clock = clock

    # messages

    def _message(self, doc: dict[str, Any], *, payload: bool) -> messaging_pb2.Message:
        message = from_doc(doc["doc"], messaging_pb2.Message)
        if not payload:
            message.ClearField("payload")
        message.status = STATUS_VALUES[doc["status"]]
        message.attempts = doc["attempts"]
        message.error_message = doc.get("error_message", "")
        if doc.get("deliver_at"):
            message.deliver_time.CopyFrom(timestamp(doc["deliver_at"]))
        return message

    async def SendMessage(
        self, request: messaging_pb2.SendMessageRequest, context: grpc.aio.ServicerContext
    ) -> messaging_pb2.SendMessageResponse:
        now = self.clock.timestamp()
        ttl = request.ttl_seconds or DEFAULT_MESSAGE_TTL_S
        message = messaging_pb2.Message(
            message_id=request.message_id,
            source=_caller_name(),
            destination=request.destination,
            payload=request.payload,
            headers=request.headers,
            priority=request.priority or messaging_pb2.MESSAGE_PRIORITY_NORMAL,
            ttl_seconds=ttl,
            retry_policy=request.retry_policy,
            correlation_id=request.correlation_id,
            create_time=timestamp(now),
            expire_time=timestamp(now + ttl),
        )
        doc, _ = await self.messages.send(
            {
                "message_id": request.message_id,
                "destination": request.destination,
                "priority": PRIORITY_NAMES[request.priority],
                "expire_at": now + ttl,
                "max_attempts": request.retry_policy.max_attempts or DEFAULT_MAX_ATTEMPTS,
                "retry_delay_ms": request.retry_policy.initial_delay_ms or DEFAULT_RETRY_DELAY_MS,
                "created_at": now,
                "doc": to_doc(message),
            }
        )
        doc = await self.messages.expire_if_due(doc, now)
        return messaging_pb2.SendMessageResponse(
            message_id=doc["message_id"],
            status=STATUS_VALUES[doc["status"]],
            expire_time=timestamp(doc["expire_at"]),
        )

    async def GetMessageStatus(
        self, request: messaging_pb2.GetMessageStatusRequest, context: grpc.aio.ServicerContext
    ) -> messaging_pb2.GetMessageStatusResponse:
        doc = await self.messages.get(request.message_id)
        if doc is None:
            raise _not_found(f"message {request.message_id}")
        doc = await self.messages.expire_if_due(doc, self.clock.timestamp())
        return messaging_pb2.GetMessageStatusResponse(message=self._message(doc, payload=False))

    async def ReceiveMessages(
        self, request: messaging_pb2.ReceiveMessagesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[messaging_pb2.ReceiveMessagesResponse]:
        size = request.batch_size or 1
        while not context.cancelled():  # a cancelled client must not take more messages
            taken = await self.messages.receive(
                request.destination,
                request.consumer_id,
                size,
                now_s=self.clock.timestamp(),
                reclaim_ms=DEFAULT_RETRY_DELAY_MS,
            )
            if taken:
                yield messaging_pb2.ReceiveMessagesResponse(
                    messages=[self._message(d, payload=True) for d in taken]
                )
            else:
                await asyncio.sleep(POLL_S)

    async def AckMessage(
        self, request: messaging_pb2.AckMessageRequest, context: grpc.aio.ServicerContext
    ) -> messaging_pb2.AckMessageResponse:
        doc = await self.messages.get(request.message_id)
        if doc is None:
            raise _not_found(f"message {request.message_id}")
        changed = await self.messages.ack(
            request.message_id,
            success=request.success,
            error=request.error_message,
            max_attempts=doc["max_attempts"],
            now_s=self.clock.timestamp(),
        )
        if changed is None:
            current = await self.messages.get(request.message_id) or doc
            if current["status"] == EXPIRED:
                raise LucidError(
                    ErrorCode.ERROR_CODE_MESH_MESSAGE_EXPIRED,
                    f"message {request.message_id} expired",
                )
            if current["status"] in ("delivered", "failed"):  # a repeated ack
                return messaging_pb2.AckMessageResponse(status=STATUS_VALUES[current["status"]])
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"message {request.message_id} is {current['status']}, not processing",
            )
        return messaging_pb2.AckMessageResponse(status=STATUS_VALUES[changed["status"]])

    # events

    async def PublishEvent(
        self, request: messaging_pb2.PublishEventRequest, context: grpc.aio.ServicerContext
    ) -> messaging_pb2.PublishEventResponse:
        event, _ = await self.events.publish(
            StoredEvent(
                event_id=request.event_id,
                event_type=request.event_type,
                source=_caller_name(),
                time_s=self.clock.timestamp(),
                data=json_format.MessageToDict(request.data),
                version=request.version or "1.0",
                tags=tuple(request.tags),
            )
        )
        return messaging_pb2.PublishEventResponse(
            event_id=event.event_id, publish_time=timestamp(event.time_s)
        )

    @staticmethod
    def _event(event: StoredEvent) -> messaging_pb2.Event:
        data = struct_pb2.Struct()
        data.update(event.data)
        return messaging_pb2.Event(
            event_id=event.event_id,
            event_type=event.event_type,
            source=event.source,
            event_time=timestamp(event.time_s),
            data=data,
            version=event.version,
            tags=list(event.tags),
            delivery_count=event.delivery_count,
        )

    async def SubscribeEvents(
        self, request: messaging_pb2.SubscribeEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[messaging_pb2.SubscribeEventsResponse]:
        sub = Subscription(
            group=request.consumer_group or _caller_name(),
            consumer=request.subscriber_id,
            patterns=tuple(request.event_types),
            sources=tuple(request.sources),
            tags=tuple(request.tags),
            batch_size=request.batch_size or 1,
            max_retries=request.max_retries if request.HasField("max_retries") else 3,
            retry_delay_ms=request.retry_delay_ms or 5000,
            from_start=request.start_position == messaging_pb2.START_POSITION_EARLIEST,
        )
        pull = request.delivery_mode == messaging_pb2.DELIVERY_MODE_PULL
        while not context.cancelled():  # a cancelled client must not claim more events
            streams = await self.events.streams(sub)
            batch = await self.events.claim_stale(sub, streams)
            if len(batch) < sub.batch_size:
                fresh = await self.events.read_new(
                    sub, streams, block_ms=None if pull or batch or not streams else 500
                )
                for stream, event in fresh:
                    if sub.wants(event):
                        batch.append(event)
                    else:  # filtered out: the group is done with it
                        await self.events.ack_entry(stream, sub.group, event.entry_id)
            if batch:
                yield messaging_pb2.SubscribeEventsResponse(events=[self._event(e) for e in batch])
            elif pull:
                return
            elif not streams:
                await asyncio.sleep(POLL_S)

    async def AckEvent(
        self, request: messaging_pb2.AckEventRequest, context: grpc.aio.ServicerContext
    ) -> messaging_pb2.AckEventResponse:
        group = request.consumer_group or _caller_name()
        acked = await self.events.ack(group, list(request.event_ids))
        return messaging_pb2.AckEventResponse(acked_count=acked)
