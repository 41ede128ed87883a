"""The edge: REST routes from the http annotations, over mTLS to the clusters, with the
JSON error envelope."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from lucid.runtime.config import Settings
from tests.support import Mesh, https_client, serve_edge

BODY_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
async def edge_url(mesh: Mesh) -> AsyncIterator[str]:
    """An edge in this process over HTTPS, with a small body limit so the 413 path is
    cheap to test."""
    await mesh.start("sessions")
    await mesh.start("gateway")
    settings: Settings = mesh.settings.replace(max_request_bytes=BODY_LIMIT)
    async with serve_edge(settings) as url:
        yield url


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[aiohttp.ClientSession]:
    async with https_client(settings) as session:
        yield session


def _assert_envelope(body: dict, code: str, service: str) -> dict:
    error = body["error"]
    assert error["code"] == code
    assert error["service"] == service
    assert error["version"] == "v1"
    assert error["request_id"]
    assert error["timestamp"].endswith("Z")
    assert error["message"]
    return error


async def test_unauthenticated_is_401_with_envelope(
    edge_url: str, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{edge_url}/api/v1/auth/profile") as response:
        assert response.status == 401
        error = _assert_envelope(await response.json(), "LUCID_ERR_2001", "auth")
        assert error["details"]["domain"] == "lucid.auth"
        assert response.headers["x-request-id"] == error["request_id"]


async def test_field_violation_is_400_with_the_field(
    edge_url: str, http: aiohttp.ClientSession, mesh: Mesh
) -> None:
    token = await mesh.token()
    async with http.get(
        f"{edge_url}/api/v1/auth/active-sessions",
        params={"page_size": "5000"},
        headers={"authorization": f"Bearer {token}"},
    ) as response:
        assert response.status == 400
        error = _assert_envelope(await response.json(), "LUCID_ERR_1001", "auth")
        assert error["details"]["field_violations"][0]["field"] == "page_size"


async def test_jwks_is_published_with_jwk_field_names(
    edge_url: str, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{edge_url}/.well-known/jwks.json") as response:
        assert response.status == 200
        keys = (await response.json())["keys"]
    assert keys and set(keys[0]) == {"kty", "crv", "x", "kid", "use", "alg"}
    assert keys[0]["alg"] == "EdDSA"


async def test_path_variables_bind_request_fields(
    edge_url: str, http: aiohttp.ClientSession, mesh: Mesh
) -> None:
    headers = {"authorization": f"Bearer {await mesh.token()}"}
    async with http.post(
        f"{edge_url}/api/v1/auth/sessions/not-a-uuid:revoke", json={}, headers=headers
    ) as r:
        assert r.status == 400
        error = _assert_envelope(await r.json(), "LUCID_ERR_1001", "auth")
        assert error["details"]["field_violations"][0]["field"] == "session_id"
    async with http.post(
        f"{edge_url}/api/v1/auth/sessions/{uuid.uuid4()}:revoke", json={}, headers=headers
    ) as r:
        assert r.status == 404  # bound correctly, reached the servicer: no such session
        _assert_envelope(await r.json(), "LUCID_ERR_4001", "auth")


async def test_routes_reach_the_owning_cluster(
    edge_url: str, http: aiohttp.ClientSession, mesh: Mesh
) -> None:
    headers = {"authorization": f"Bearer {await mesh.token()}"}
    async with http.get(f"{edge_url}/api/v1/sessions/{uuid.uuid4()}", headers=headers) as r:
        assert r.status == 404
        error = (await r.json())["error"]
    assert error["service"] == "sessions"


async def test_chunk_upload_through_the_edge(
    edge_url: str, http: aiohttp.ClientSession, mesh: Mesh
) -> None:
    """POST /api/v1/sessions/{session_id}/chunks: the unary upload, JSON with base64 data."""
    import base64
    import hashlib

    headers = {"authorization": f"Bearer {await mesh.token()}"}
    async with http.post(
        f"{edge_url}/api/v1/sessions", json={"name": "rest"}, headers=headers
    ) as r:
        assert r.status == 200, await r.text()
        session_id = (await r.json())["session"]["session_id"]
    async with http.post(
        f"{edge_url}/api/v1/sessions/{session_id}:start", json={}, headers=headers
    ) as r:
        assert r.status == 200, await r.text()
    data = b"chunk bytes over REST" * 100
    body = {"sequence_number": 1, "data": base64.b64encode(data).decode(), "frame_count": 3}
    url = f"{edge_url}/api/v1/sessions/{session_id}/chunks"
    async with http.post(url, json=body, headers=headers) as r:
        assert r.status == 200, await r.text()
        chunk = (await r.json())["chunk"]
    assert chunk["checksum"] == hashlib.sha256(data).hexdigest()
    assert chunk["state"] == "CHUNK_STATE_STORED"
    async with http.post(url, json={**body, "sequence_number": 3}, headers=headers) as r:
        assert r.status == 400
        _assert_envelope(await r.json(), "LUCID_ERR_4202", "sessions")


async def test_query_parameters_are_typed(
    edge_url: str, http: aiohttp.ClientSession, mesh: Mesh
) -> None:
    headers = {"authorization": f"Bearer {await mesh.token()}"}
    for query, status, code, service in (
        ({"page_size": "abc"}, 400, "LUCID_ERR_1001", "edge"),
        ({"no_such_field": "1"}, 400, "LUCID_ERR_1001", "edge"),
    ):
        async with http.get(
            f"{edge_url}/api/v1/auth/active-sessions", params=query, headers=headers
        ) as response:
            assert response.status == status, query
            _assert_envelope(await response.json(), code, service)
    async with http.get(
        f"{edge_url}/api/v1/auth/active-sessions", params={"page_size": "10"}, headers=headers
    ) as response:
        assert response.status == 200
        assert (await response.json())["sessions"] == []


async def test_unknown_route_is_404(edge_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{edge_url}/api/v1/nothing/here") as response:
        assert response.status == 404
        _assert_envelope(await response.json(), "LUCID_ERR_4001", "edge")


async def test_body_over_the_limit_is_413(edge_url: str, http: aiohttp.ClientSession) -> None:
    body = json.dumps({"tron_address": "T" + "1" * (BODY_LIMIT + 10)})
    async with http.post(
        f"{edge_url}/api/v1/auth/challenge", data=body, headers={"content-type": "application/json"}
    ) as response:
        assert response.status == 413
        _assert_envelope(await response.json(), "LUCID_ERR_1010", "edge")


async def test_non_json_body_is_415(edge_url: str, http: aiohttp.ClientSession) -> None:
    async with http.post(
        f"{edge_url}/api/v1/auth/challenge",
        data="tron_address=T1",
        headers={"content-type": "text/plain"},
    ) as response:
        assert response.status == 415
        _assert_envelope(await response.json(), "LUCID_ERR_1008", "edge")


async def test_malformed_json_is_400(edge_url: str, http: aiohttp.ClientSession) -> None:
    async with http.post(
        f"{edge_url}/api/v1/auth/challenge",
        data="{not json",
        headers={"content-type": "application/json"},
    ) as response:
        assert response.status == 400
        _assert_envelope(await response.json(), "LUCID_ERR_1009", "edge")


async def test_json_nested_deeper_than_ten_is_400(
    edge_url: str, http: aiohttp.ClientSession
) -> None:
    deep: dict = {}
    node = deep
    for _ in range(11):
        node["a"] = {}
        node = node["a"]
    async with http.post(f"{edge_url}/api/v1/auth/challenge", json=deep) as response:
        assert response.status == 400
        _assert_envelope(await response.json(), "LUCID_ERR_1001", "edge")


async def test_wrong_field_type_in_body_is_400(edge_url: str, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{edge_url}/api/v1/auth/challenge", json={"tron_address": 5}) as response:
        assert response.status == 400
        _assert_envelope(await response.json(), "LUCID_ERR_1009", "edge")


async def test_request_id_is_forwarded_and_echoed(
    edge_url: str, http: aiohttp.ClientSession
) -> None:
    async with http.get(
        f"{edge_url}/api/v1/auth/profile", headers={"x-request-id": "edge-req-1"}
    ) as response:
        body = await response.json()
    assert body["error"]["request_id"] == "edge-req-1"
    assert response.headers["x-request-id"] == "edge-req-1"
