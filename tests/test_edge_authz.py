"""Every rpc of the catalog through the front door (REST where routed, grpc-web for all)
with no token, a user token and an admin token: the outcome is the one the access rule
predicts, a call relayed by the edge never runs as the edge, and nothing that is not
public succeeds anonymously (issue 8 item 1).

The probes need only a base URL and a CA (``tests/edge_probe.py``): ``front_door`` is the
Python edge today and can be Envoy tomorrow.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from lucid.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from lucid.mesh.v1 import policy_pb2, policy_pb2_grpc
from lucid.runtime.config import Settings
from lucid.runtime.contracts import MethodInfo, catalog
from lucid.runtime.planes import RELAYED_HEADER
from tests.edge_probe import Caller, Outcome, Probe, expected, gather_limited
from tests.front_door_support import FrontDoor, full_front_door
from tests.support import details

RPCS_PER_CLIENT = 40
"""Rpcs probed from one client address: well inside the public tier's burst of 200."""


@pytest.fixture(scope="module")
async def front_door(settings: Settings) -> AsyncIterator[FrontDoor]:
    """All ten clusters (their own database) behind the Python edge."""
    async with full_front_door(settings, "authz") as door:
        yield door


def _methods() -> list[MethodInfo]:
    return sorted(catalog().methods.values(), key=lambda m: m.path)


async def _probe_all(door: FrontDoor, name: str) -> list[tuple[Probe, Outcome]]:
    """Every rpc (every route, and grpc-web) as one kind of caller."""
    results: list[tuple[Probe, Outcome]] = []
    methods = _methods()
    for start in range(0, len(methods), RPCS_PER_CLIENT):
        client = door.client()
        try:
            calls = []
            wanted = []
            for info in methods[start : start + RPCS_PER_CLIENT]:
                # a token per call: a call to Logout revokes the token it carries
                for route in info.routes:
                    caller = door.caller(name)
                    calls.append(client.rest(info, route, caller))
                    wanted.append(expected(info, caller, grpc_web=False))
                if not info.client_streaming:
                    caller = door.caller(name)
                    calls.append(client.grpc_web(info, caller))
                    wanted.append(expected(info, caller, grpc_web=True))
            probes = await gather_limited(calls)
        finally:
            await client.close()
        results += zip(probes, wanted, strict=True)
    return results


def _report(results: list[tuple[Probe, Outcome]]) -> str:
    """The probes whose outcome is not the predicted one, one per line ("" if none)."""
    return "\n".join(
        f"{p.method} {p.transport}: expected {want.value}, got {p.outcome.value} ({p.status})"
        for p, want in results
        if p.outcome != want
    )


async def test_anonymous_calls_through_the_edge_reach_only_public_rpcs(
    front_door: FrontDoor,
) -> None:
    results = await _probe_all(front_door, "anonymous")
    assert not [p for p, _ in results if p.outcome == Outcome.RATE_LIMITED]
    successes = [
        f"{p.method} {p.transport} ({p.status})"
        for p, _ in results
        if p.outcome == Outcome.PASSED and not catalog().methods[p.method].access.public
    ]
    assert successes == [], "anonymous calls passed authorization on non-public rpcs"
    assert _report(results) == ""
    assert sum(1 for p, _ in results if p.outcome == Outcome.PASSED) >= 10  # public ones do


@pytest.mark.parametrize("who", ["user", "admin"])
async def test_signed_in_calls_through_the_edge_get_what_the_rule_grants(
    front_door: FrontDoor, who: str
) -> None:
    results = await _probe_all(front_door, who)
    assert _report(results) == ""
    assert {p.outcome for p, _ in results} >= {Outcome.PASSED, Outcome.DENIED}


async def test_the_rpcs_of_the_issue_refuse_anonymous_and_users(front_door: FrontDoor) -> None:
    """The calls the issue found open: no token → 401 2001; a user → 403; internal rpcs
    over grpc-web → refused at the edge."""
    client = front_door.client()
    try:
        http = client.http
        url = front_door.url
        for verb, path, body in (
            ("GET", "/api/v1/service-mesh/plane-policy", None),
            ("POST", "/api/v1/inter-service/messages", {}),
            ("POST", "/api/v1/inter-service/events", {}),
            ("GET", "/api/v1/service-discovery/services", None),
            ("POST", "/api/v1/mesh/certificates:verify", {}),
        ):
            async with http.request(verb, url + path, json=body) as response:
                error = (await response.json())["error"]
                assert (response.status, error["code"]) == (401, "LUCID_ERR_2001"), path
        user = front_door.caller("user")
        async with http.get(
            url + "/api/v1/service-mesh/plane-policy",
            headers={"authorization": f"Bearer {user.token}"},
        ) as response:
            assert response.status == 403
        info = catalog().methods
        for path in (
            "/lucid.gateway.v1.RateLimitService/CheckRateLimit",
            "/lucid.gateway.v1.GatewayService/ReportTraffic",
            "/lucid.auth.v1.AuthService/ValidateToken",
        ):
            probe = await client.grpc_web(info[path], Caller("anonymous"))
            assert (probe.outcome, probe.status) == (Outcome.DENIED, "grpc-status 7"), path
    finally:
        await client.close()


async def test_a_relayed_call_never_uses_the_edge_identity(front_door: FrontDoor) -> None:
    """In the cluster, straight over mTLS as the edge: the mark takes away every service
    power; unmarked, the edge identity still counts only on its own service-only rpcs."""
    mesh = front_door.mesh
    marked = ((RELAYED_HEADER, "client"),)
    async with mesh.channel("gateway", "edge") as channel:
        limiter = gateway_pb2_grpc.RateLimitServiceStub(channel)
        request = gateway_pb2.CheckRateLimitRequest(
            tier=gateway_pb2.RATE_LIMIT_TIER_PUBLIC, identifier="127.9.9.9", cost=1, route="x"
        )
        assert (await limiter.CheckRateLimit(request)).allowed  # the edge's own check
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await limiter.CheckRateLimit(request, metadata=marked)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert details(caught.value).reason == "LUCID_ERR_2013"
    async with mesh.channel("mesh", "edge") as channel:
        policies = policy_pb2_grpc.PolicyServiceStub(channel)
        for metadata in ((), marked):  # names the edge, but is a client-facing rpc
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await policies.GetPlanePolicy(policy_pb2.GetPlanePolicyRequest(), metadata=metadata)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert details(caught.value).reason == "LUCID_ERR_2001"
    async with mesh.channel("mesh", "gateway") as channel:  # a cluster keeps its powers
        reply = await policy_pb2_grpc.PolicyServiceStub(channel).GetPlanePolicy(
            policy_pb2.GetPlanePolicyRequest()
        )
        assert reply.ListFields()
