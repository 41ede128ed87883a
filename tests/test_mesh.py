"""The mesh cluster's rpcs over real mTLS, MongoDB and Redis (spec 10 §7 checks 1 to 4, 6,
9 to 12, adjusted to DECISIONS)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import Counter
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from google.protobuf import struct_pb2

from lucid.common.v1 import access_pb2
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
from lucid.runtime import tls
from lucid.runtime.identity import ServiceIdentity
from tests.support import Mesh, bearer, details
from tests.waiting import eventually


@pytest.fixture(scope="module")
async def mesh10(mesh: Mesh) -> Mesh:
    await mesh.start("mesh")
    return mesh


def register_request(
    name: str,
    port: int,
    *,
    cluster: int = access_pb2.CLUSTER_GATEWAY,
    plane: int = access_pb2.PLANE_OPS,
) -> discovery_pb2.RegisterServiceRequest:
    return discovery_pb2.RegisterServiceRequest(
        service_id=str(uuid.uuid4()),
        service_name=name,
        cluster=cluster,
        plane=plane,
        endpoint=discovery_pb2.Endpoint(
            host="127.0.0.1", port=port, protocol=discovery_pb2.ENDPOINT_PROTOCOL_GRPCS
        ),
        version="1.2.3",
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- discovery ----------------------------------------------------------------------------


async def test_register_resolve_deregister(mesh10: Mesh) -> None:
    name = unique("api")
    async with mesh10.channel("mesh", "gateway") as channel:
        stub = discovery_pb2_grpc.ServiceDiscoveryServiceStub(channel)
        request = register_request(name, 6001)
        registered = await stub.RegisterService(request)
        assert registered.instance.instance_id == f"{name}-{request.service_id[:8]}"
        assert registered.instance.health.status == discovery_pb2.INSTANCE_STATUS_UNKNOWN
        resolved = await stub.ResolveService(discovery_pb2.ResolveServiceRequest(service_name=name))
        assert (resolved.instance.endpoint.host, resolved.instance.endpoint.port) == (
            "127.0.0.1",
            6001,
        )
        await stub.DeregisterService(
            discovery_pb2.DeregisterServiceRequest(service_id=request.service_id)
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ResolveService(discovery_pb2.ResolveServiceRequest(service_name=name))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert details(caught.value).reason == "LUCID_ERR_4001"


async def test_bad_registrations_are_refused_and_store_nothing(mesh10: Mesh) -> None:
    name = unique("api")
    async with mesh10.channel("mesh", "gateway") as channel:
        stub = discovery_pb2_grpc.ServiceDiscoveryServiceStub(channel)
        first = register_request(name, 6002)
        await stub.RegisterService(first)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.RegisterService(first)
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS

        bad = []
        wrong_plane = register_request(name, 6003, plane=access_pb2.PLANE_CHAIN)
        bad.append(wrong_plane)
        bad_name = register_request("Not_A_Name", 6004)
        bad.append(bad_name)
        bad_port = register_request(name, 70000)
        bad.append(bad_port)
        bad_version = register_request(name, 6005)
        bad_version.version = "v1"
        bad.append(bad_version)
        for request in bad:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.RegisterService(request)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
        listed = await stub.ListServices(discovery_pb2.ListServicesRequest(service_name=name))
        assert [s.service_id for s in listed.services] == [first.service_id]

        other = register_request(
            unique("pay"), 6006, cluster=access_pb2.CLUSTER_PAYMENTS, plane=access_pb2.PLANE_WALLET
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.RegisterService(other)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def _resolve_counts(stub: Any, name: str, calls: int) -> Counter[int]:
    counts: Counter[int] = Counter()
    for _ in range(calls):
        resolved = await stub.ResolveService(discovery_pb2.ResolveServiceRequest(service_name=name))
        counts[resolved.instance.endpoint.port] += 1
    return counts


async def test_health_reports_round_robin_and_drop_out(mesh10: Mesh) -> None:
    name = unique("api")
    async with mesh10.channel("mesh", "gateway") as channel:
        stub = discovery_pb2_grpc.ServiceDiscoveryServiceStub(channel)
        requests = [register_request(name, 7000 + n) for n in range(3)]
        for request in requests:
            await stub.RegisterService(request)
        assert await _resolve_counts(stub, name, 300) == {7000: 100, 7001: 100, 7002: 100}

        sick = requests[1].service_id

        async def report(status: int) -> discovery_pb2.InstanceHealth:
            reply = await stub.UpdateServiceHealth(
                discovery_pb2.UpdateServiceHealthRequest(service_id=sick, status=status)
            )
            return reply.health

        for n in range(2):
            health = await report(discovery_pb2.CHECK_STATUS_CRITICAL)
            assert health.consecutive_failures == n + 1
            assert health.status != discovery_pb2.INSTANCE_STATUS_UNHEALTHY
        health = await report(discovery_pb2.CHECK_STATUS_CRITICAL)
        assert health.status == discovery_pb2.INSTANCE_STATUS_UNHEALTHY
        counts = await _resolve_counts(stub, name, 200)
        assert counts == {7000: 100, 7002: 100}
        resolved = await stub.ResolveService(discovery_pb2.ResolveServiceRequest(service_name=name))
        assert resolved.healthy_count == 2

        health = await report(discovery_pb2.CHECK_STATUS_PASSING)
        assert health.status == discovery_pb2.INSTANCE_STATUS_HEALTHY
        assert set(await _resolve_counts(stub, name, 30)) == {7000, 7001, 7002}

        health = await report(discovery_pb2.CHECK_STATUS_WARNING)
        assert health.status == discovery_pb2.INSTANCE_STATUS_DEGRADED
        assert 7001 in await _resolve_counts(stub, name, 30)

        listed = await stub.ListServices(
            discovery_pb2.ListServicesRequest(
                status=discovery_pb2.INSTANCE_STATUS_DEGRADED, service_name=name
            )
        )
        assert [s.service_id for s in listed.services] == [sick]


async def test_no_healthy_instance_is_unavailable(mesh10: Mesh) -> None:
    name = unique("api")
    async with mesh10.channel("mesh", "gateway") as channel:
        stub = discovery_pb2_grpc.ServiceDiscoveryServiceStub(channel)
        request = register_request(name, 7100)
        await stub.RegisterService(request)
        for _ in range(3):
            await stub.UpdateServiceHealth(
                discovery_pb2.UpdateServiceHealthRequest(
                    service_id=request.service_id, status=discovery_pb2.CHECK_STATUS_CRITICAL
                )
            )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ResolveService(discovery_pb2.ResolveServiceRequest(service_name=name))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert details(caught.value).reason == "LUCID_ERR_4951"


async def test_only_its_own_cluster_changes_an_instance(mesh10: Mesh) -> None:
    request = register_request(unique("api"), 7200)
    async with mesh10.channel("mesh", "gateway") as channel:
        await discovery_pb2_grpc.ServiceDiscoveryServiceStub(channel).RegisterService(request)
    async with mesh10.channel("mesh", "sessions") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await discovery_pb2_grpc.ServiceDiscoveryServiceStub(channel).DeregisterService(
                discovery_pb2.DeregisterServiceRequest(service_id=request.service_id)
            )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


# -- the CA -------------------------------------------------------------------------------


def csr_for(name: str, key: object | None = None) -> tuple[str, object]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key


async def test_issued_certificate_has_plane_ou_spiffe_san_and_90_days(mesh10: Mesh) -> None:
    pem, key = csr_for("sessions")
    async with mesh10.channel("mesh", "sessions") as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        issued = (
            await stub.IssueCertificate(
                identity_pb2.IssueCertificateRequest(
                    cluster=access_pb2.CLUSTER_SESSIONS, csr_pem=pem
                )
            )
        ).certificate
        cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
        assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[attr-defined]
        ou = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
        assert [a.value for a in ou] == ["plane-ops"]
        assert issued.spiffe_id == "spiffe://lucid.local/ops/sessions"
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "spiffe://lucid.local/ops/sessions" in san.get_values_for_type(
            x509.UniformResourceIdentifier
        )
        assert {"sessions.lucid.internal", "sessions.sessions.lucid.internal"} <= set(
            issued.dns_names
        )
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert lifetime == dt.timedelta(days=90)
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert {u.dotted_string for u in usage} == {"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"}

        verified = await stub.VerifyCertificate(
            identity_pb2.VerifyCertificateRequest(
                certificate_pem=issued.certificate_pem, expected_cluster=access_pb2.CLUSTER_SESSIONS
            )
        )
        assert verified.valid and verified.cluster == access_pb2.CLUSTER_SESSIONS
        wrong = await stub.VerifyCertificate(
            identity_pb2.VerifyCertificateRequest(
                certificate_pem=issued.certificate_pem, expected_cluster=access_pb2.CLUSTER_PAYMENTS
            )
        )
        assert not wrong.valid and wrong.failure == identity_pb2.VERIFY_FAILURE_WRONG_IDENTITY


async def test_certificates_only_for_the_callers_cluster_and_sound_requests(mesh10: Mesh) -> None:
    async with mesh10.channel("mesh", "gateway") as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        pem, _ = csr_for("payments")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.IssueCertificate(
                identity_pb2.IssueCertificateRequest(
                    cluster=access_pb2.CLUSTER_PAYMENTS, csr_pem=pem
                )
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        weak, _ = csr_for("gateway", rsa.generate_private_key(public_exponent=65537, key_size=1024))
        tampered = pem.replace(pem.splitlines()[3], pem.splitlines()[3][::-1])
        for bad in (weak, tampered):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.IssueCertificate(
                    identity_pb2.IssueCertificateRequest(
                        cluster=access_pb2.CLUSTER_GATEWAY, csr_pem=bad
                    )
                )
            assert details(caught.value).reason == "LUCID_ERR_4952"


async def test_foreign_wrong_plane_and_expired_certificates_do_not_verify(mesh10: Mesh) -> None:
    foreign = tls.CertificateAuthority.create("someone else").issue(
        ServiceIdentity("ops", "gateway")
    )
    own = tls.CertificateAuthority.load(mesh10.settings.certs_dir, _sealer(mesh10))
    wrong_plane = own.issue(ServiceIdentity("ops", "payments"))
    expired = own.issue(
        ServiceIdentity("ops", "gateway"),
        days=1,
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=3),
    )
    expectations = [
        (foreign, identity_pb2.VERIFY_FAILURE_UNTRUSTED),
        (wrong_plane, identity_pb2.VERIFY_FAILURE_WRONG_IDENTITY),
        (expired, identity_pb2.VERIFY_FAILURE_EXPIRED),
    ]
    async with mesh10.channel("mesh", "gateway") as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        for issued, failure in expectations:
            reply = await stub.VerifyCertificate(
                identity_pb2.VerifyCertificateRequest(certificate_pem=issued.cert_pem.decode())
            )
            assert (reply.valid, reply.failure) == (False, failure)


def _sealer(mesh: Mesh) -> object:
    from lucid.lib.sealing import Sealer

    return Sealer(mesh.settings.key_passphrase)


async def test_authorize_answers_from_the_plane_table(mesh10: Mesh) -> None:
    async with mesh10.channel("mesh", "admin") as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        denied = await stub.Authorize(
            identity_pb2.AuthorizeRequest(
                source_spiffe_id="spiffe://lucid.local/chain/blockchain",
                destination_cluster=access_pb2.CLUSTER_PAYMENTS,
                full_method="/lucid.payments.v1.PayoutService/CreatePayout",
            )
        )
        assert not denied.allowed and denied.matched_rule == "chain-never-calls-wallet"
        allowed = await stub.Authorize(
            identity_pb2.AuthorizeRequest(
                source_spiffe_id="spiffe://lucid.local/ops/sessions",
                destination_cluster=access_pb2.CLUSTER_BLOCKCHAIN,
                full_method="/lucid.blockchain.v1.AnchoringService/AnchorSession",
            )
        )
        assert allowed.allowed and allowed.matched_rule == "sessions-anchor-on-chain"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Authorize(
                identity_pb2.AuthorizeRequest(
                    source_spiffe_id="spiffe://lucid.local/ops/sessions",
                    destination_cluster=access_pb2.CLUSTER_PAYMENTS,
                    full_method="/lucid.blockchain.v1.AnchoringService/AnchorSession",
                )
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- policies -----------------------------------------------------------------------------


async def test_policies_are_stored_listed_and_deleted_by_admins(mesh10: Mesh) -> None:
    token = await mesh10.token(role=access_pb2.ROLE_SUPER_ADMIN)
    name = unique("pol")
    async with mesh10.channel("mesh") as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        request = policy_pb2.CreateSecurityPolicyRequest(
            name=name,
            source=policy_pb2.ServiceSelector(cluster=access_pb2.CLUSTER_GATEWAY),
            destination=policy_pb2.ServiceSelector(plane=access_pb2.PLANE_WALLET),
            rules=[policy_pb2.SecurityRule(action=policy_pb2.SECURITY_ACTION_DENY)],
            priority=500,
            enabled=True,
        )
        created = (await stub.CreateSecurityPolicy(request, metadata=bearer(token))).policy
        assert created.namespace == "default" and created.priority == 500
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateSecurityPolicy(request, metadata=bearer(token))
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
        listed = await stub.ListSecurityPolicies(
            policy_pb2.ListSecurityPoliciesRequest(enabled_only=True), metadata=bearer(token)
        )
        assert name in [p.name for p in listed.policies]
        await stub.DeleteSecurityPolicy(
            policy_pb2.DeleteSecurityPolicyRequest(policy_id=created.policy_id),
            metadata=bearer(token),
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.DeleteSecurityPolicy(
                policy_pb2.DeleteSecurityPolicyRequest(policy_id=created.policy_id),
                metadata=bearer(token),
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND

        traffic = await stub.CreateTrafficPolicy(
            policy_pb2.CreateTrafficPolicyRequest(
                name=unique("tr"),
                source=policy_pb2.ServiceSelector(service_name="*"),
                destination=policy_pb2.ServiceSelector(cluster=access_pb2.CLUSTER_SESSIONS),
                rules=[policy_pb2.TrafficRule(action=policy_pb2.TRAFFIC_ACTION_ALLOW)],
            ),
            metadata=bearer(token),
        )
        assert traffic.policy.priority == 100

        user = await mesh10.token(role=access_pb2.ROLE_ADMIN)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateTrafficPolicy(
                policy_pb2.CreateTrafficPolicyRequest(
                    name=unique("tr"),
                    source=policy_pb2.ServiceSelector(),
                    destination=policy_pb2.ServiceSelector(),
                    rules=[policy_pb2.TrafficRule(action=policy_pb2.TRAFFIC_ACTION_DENY)],
                ),
                metadata=bearer(user),
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_plane_table_breakers_and_mtls_are_served(mesh10: Mesh) -> None:
    token = await mesh10.token(role=access_pb2.ROLE_SUPER_ADMIN)
    async with mesh10.channel("mesh") as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        before = await stub.GetPlanePolicy(
            policy_pb2.GetPlanePolicyRequest(), metadata=bearer(token)
        )
        assert before.allow_same_plane
        assert {(d.source_cluster, d.destination_cluster) for d in before.denials} == {
            (access_pb2.CLUSTER_BLOCKCHAIN, access_pb2.CLUSTER_PAYMENTS),
            (access_pb2.CLUSTER_PAYMENTS, access_pb2.CLUSTER_BLOCKCHAIN),
        }
        await stub.UpdateCircuitBreaker(
            policy_pb2.UpdateCircuitBreakerRequest(
                service_name="blockchain",
                config=policy_pb2.CircuitBreakerConfig(
                    failure_threshold=3, recovery_timeout_seconds=60, timeout_ms=10000
                ),
            ),
            metadata=bearer(token),
        )
        after = await stub.GetPlanePolicy(
            policy_pb2.GetPlanePolicyRequest(), metadata=bearer(token)
        )
        assert after.version > before.version
        breaker = next(b for b in after.circuit_breakers if b.service_name == "blockchain")
        assert breaker.config.failure_threshold == 3


# -- events and messages --------------------------------------------------------------------


def messaging(channel: grpc.aio.Channel) -> messaging_pb2_grpc.MessagingServiceStub:
    return messaging_pb2_grpc.MessagingServiceStub(channel)


async def _publish(stub: Any, event_type: str, **data: str) -> str:
    event_id = str(uuid.uuid4())
    payload = struct_pb2.Struct()
    payload.update(data)
    await stub.PublishEvent(
        messaging_pb2.PublishEventRequest(event_id=event_id, event_type=event_type, data=payload)
    )
    return event_id


async def _next_batch(stream: Any) -> list[messaging_pb2.Event]:
    reply = await asyncio.wait_for(stream.read(), timeout=20)
    assert reply is not grpc.aio.EOF
    return list(reply.events)


async def test_wildcard_subscription_gets_matching_events_only(mesh10: Mesh) -> None:
    group = unique("grp")
    async with mesh10.channel("mesh", "admin") as channel:
        stub = messaging(channel)
        prefix = uuid.uuid4().hex[:6]
        created = await _publish(stub, f"session{prefix}.created", session="s1")  # makes the stream
        stream = stub.SubscribeEvents(
            messaging_pb2.SubscribeEventsRequest(
                subscriber_id="sub-1",
                consumer_group=group,
                event_types=[f"session{prefix}.*"],
                start_position=messaging_pb2.START_POSITION_EARLIEST,
            )
        )
        first = await _next_batch(stream)
        assert [e.event_id for e in first] == [created]
        assert first[0].source == "admin" and first[0].data["session"] == "s1"
        await _publish(stub, f"block{prefix}.anchored")
        later = await _publish(stub, f"session{prefix}.ended")
        second = await _next_batch(stream)
        assert [e.event_type for e in second] == [f"session{prefix}.ended"]
        assert second[0].event_id == later
        stream.cancel()


async def test_an_unacked_event_is_redelivered_after_a_consumer_crash(mesh10: Mesh) -> None:
    group = unique("grp")
    event_type = f"payment{uuid.uuid4().hex[:6]}.completed"
    request = messaging_pb2.SubscribeEventsRequest(
        subscriber_id="crashy",
        consumer_group=group,
        event_types=[event_type],
        retry_delay_ms=1000,
        start_position=messaging_pb2.START_POSITION_EARLIEST,
    )
    async with mesh10.channel("mesh", "nodes") as channel:
        stub = messaging(channel)
        event_id = await _publish(stub, event_type, amount="5")
        crashing = stub.SubscribeEvents(request)
        seen = await _next_batch(crashing)
        assert [(e.event_id, e.delivery_count) for e in seen] == [(event_id, 1)]
        crashing.cancel()  # the consumer dies without acking

        request.subscriber_id = "survivor"
        survivor = stub.SubscribeEvents(request)
        again = await _next_batch(survivor)
        assert [e.event_id for e in again] == [event_id]
        assert again[0].delivery_count >= 2  # the dead stream may have claimed it once more
        acked = await stub.AckEvent(
            messaging_pb2.AckEventRequest(
                subscriber_id="survivor", consumer_group=group, event_ids=[event_id]
            )
        )
        assert acked.acked_count == 1
        control = await _publish(stub, event_type, amount="6")
        assert [e.event_id for e in await _next_batch(survivor)] == [control]
        survivor.cancel()  # the control event stays unacked

        request.subscriber_id = "late"
        request.delivery_mode = messaging_pb2.DELIVERY_MODE_PULL
        delivered: list[str] = []

        async def control_claimed() -> bool:
            async for reply in stub.SubscribeEvents(request):
                delivered.extend(e.event_id for e in reply.events)
            return control in delivered

        # Past the retry delay the unacked control event is claimed; the acked one never is.
        await eventually(control_claimed, timeout_s=30, what="the unacked event being claimed")
        assert event_id not in delivered


async def test_a_repeated_event_id_is_published_once(mesh10: Mesh) -> None:
    event_type = f"node{uuid.uuid4().hex[:6]}.joined"
    event_id = str(uuid.uuid4())
    async with mesh10.channel("mesh", "nodes") as channel:
        stub = messaging(channel)
        for _ in range(2):
            await stub.PublishEvent(
                messaging_pb2.PublishEventRequest(event_id=event_id, event_type=event_type)
            )
        backlog = [
            e
            async for reply in stub.SubscribeEvents(
                messaging_pb2.SubscribeEventsRequest(
                    subscriber_id="reader",
                    event_types=[event_type],
                    delivery_mode=messaging_pb2.DELIVERY_MODE_PULL,
                    start_position=messaging_pb2.START_POSITION_EARLIEST,
                    batch_size=10,
                )
            )
            for e in reply.events
        ]
        assert [e.event_id for e in backlog] == [event_id]


def _message(destination: str, ttl: int = 60) -> messaging_pb2.SendMessageRequest:
    payload = struct_pb2.Struct()
    payload.update({"hello": "world"})
    return messaging_pb2.SendMessageRequest(
        message_id=str(uuid.uuid4()), destination=destination, payload=payload, ttl_seconds=ttl
    )


async def test_a_message_past_its_ttl_unconsumed_expires(mesh10: Mesh) -> None:
    async with mesh10.channel("mesh", "sessions") as channel:
        stub = messaging(channel)
        request = _message(unique("dst"), ttl=1)
        sent = await stub.SendMessage(request)
        assert sent.status == messaging_pb2.MESSAGE_STATUS_QUEUED

        async def expired() -> messaging_pb2.GetMessageStatusResponse | None:
            reply = await stub.GetMessageStatus(
                messaging_pb2.GetMessageStatusRequest(message_id=request.message_id)
            )
            return reply if reply.message.status == messaging_pb2.MESSAGE_STATUS_EXPIRED else None

        status = await eventually(expired, timeout_s=30, what="the message expiring")
        assert status.message.expire_time.ToDatetime() <= dt.datetime.now(dt.UTC).replace(
            tzinfo=None
        )
        assert not status.message.HasField("payload")


async def test_a_message_is_redelivered_after_a_crash_and_delivered_after_ack(mesh10: Mesh) -> None:
    destination = unique("dst")
    async with mesh10.channel("mesh", "sessions") as channel:
        stub = messaging(channel)
        request = _message(destination)
        await stub.SendMessage(request)
        again = await stub.SendMessage(request)  # a repeat returns the first
        assert again.message_id == request.message_id

        crashing = stub.ReceiveMessages(
            messaging_pb2.ReceiveMessagesRequest(destination=destination, consumer_id="c-one")
        )
        got = (await asyncio.wait_for(crashing.read(), timeout=20)).messages
        assert [(m.message_id, m.attempts) for m in got] == [(request.message_id, 1)]
        assert got[0].payload["hello"] == "world"
        crashing.cancel()
        status = await stub.GetMessageStatus(
            messaging_pb2.GetMessageStatusRequest(message_id=request.message_id)
        )
        assert status.message.status == messaging_pb2.MESSAGE_STATUS_PROCESSING

        survivor = stub.ReceiveMessages(
            messaging_pb2.ReceiveMessagesRequest(destination=destination, consumer_id="c-two")
        )
        got = (await asyncio.wait_for(survivor.read(), timeout=20)).messages
        # A server learns of a cancelled stream only when it next writes to it, so the
        # dead consumer's loop may have taken the message once more before it stopped.
        assert [m.message_id for m in got] == [request.message_id]
        assert got[0].attempts >= 2
        survivor.cancel()
        acked = await stub.AckMessage(
            messaging_pb2.AckMessageRequest(
                message_id=request.message_id, consumer_id="c-two", success=True
            )
        )
        assert acked.status == messaging_pb2.MESSAGE_STATUS_DELIVERED
        status = await stub.GetMessageStatus(
            messaging_pb2.GetMessageStatusRequest(message_id=request.message_id)
        )
        assert status.message.status == messaging_pb2.MESSAGE_STATUS_DELIVERED
