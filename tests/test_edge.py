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


async def test_a_session_uploads_10_mib_per_second_through_the_edge(
    mesh: Mesh, edge_url: str
) -> None:
    """Spec 01 §9: clients' chunk uploads count against 10 MiB/s per session, in bytes,
    exactly (sessions counts them before storing); the next bytes in the same second get
    429 3004 with retry-after, and nothing is stored. (A sessions server whose clock
    stands still: no refill while the test sends.)"""
    import base64

    from lucid.lib.clock import FakeClock
    from lucid.runtime.server import ClusterServer, Runtime
    from lucid.supervisor.localservers import free_port
    from tests.support import builder_of

    own = mesh.settings.replace(ports={**mesh.settings.ports, "sessions": free_port()})
    runtime = Runtime(own, "sessions", clock=FakeClock())
    server = ClusterServer(
        runtime, await builder_of("sessions")(runtime), port=own.port("sessions")
    )
    await server.start()
    headers = {"authorization": f"Bearer {await mesh.token()}"}
    mib10 = 10 * 1024 * 1024
    try:
        async with serve_edge(own) as url, https_client(own) as http:
            async with http.post(
                f"{url}/api/v1/sessions", json={"name": "bw"}, headers=headers
            ) as r:
                session_id = (await r.json())["session"]["session_id"]
            async with http.post(
                f"{url}/api/v1/sessions/{session_id}:start", json={}, headers=headers
            ) as r:
                assert r.status == 200, await r.text()
            chunks = f"{url}/api/v1/sessions/{session_id}/chunks"
            full = {"sequence_number": 1, "data": base64.b64encode(b"\x03" * mib10).decode()}
            async with http.post(chunks, json=full, headers=headers) as r:
                assert r.status == 200, await r.text()
            more = {"sequence_number": 2, "data": base64.b64encode(b"\x04" * 65536).decode()}
            async with http.post(chunks, json=more, headers=headers) as r:
                assert r.status == 429, await r.text()
                error = (await r.json())["error"]
                assert error["code"] == "LUCID_ERR_3004" and error["service"] == "sessions"
                assert int(r.headers["retry-after"]) == 1
            runtime.clock.advance(1.0)  # type: ignore[attr-defined]
            async with http.post(chunks, json=more, headers=headers) as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["last_durable_sequence"] == "2"
    finally:
        await server.stop(grace_s=0.2)


async def test_bad_tokens_are_refused_at_the_edge(
    edge_url: str, http: aiohttp.ClientSession, mesh: Mesh
) -> None:
    """jwt_authn: a token signed by another key, an expired one and ``alg: none`` never
    reach the cluster (the envelope names the edge; the cluster checks again anyway)."""
    import time

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tests.support import sign_token, unsigned_token

    runtime = mesh.servers["auth"].runtime
    from lucid.auth import app as auth_app

    key = await auth_app.key_store(runtime).current()
    forged = sign_token(Ed25519PrivateKey.generate(), key.kid)
    expired = sign_token(key.private_key, key.kid, issued_at=time.time() - 3600, ttl_s=60)
    none = unsigned_token({"iss": "lucid-auth", "aud": "lucid", "sub": "x", "exp": 2**31})
    for token in (forged, expired, none):
        async with http.get(
            f"{edge_url}/api/v1/auth/profile", headers={"authorization": f"Bearer {token}"}
        ) as response:
            assert response.status == 401
            error = _assert_envelope(await response.json(), "LUCID_ERR_2001", "edge")
            assert error["details"]["reason"].startswith("jwt_authn_access_denied")
    valid = {"authorization": f"Bearer {await mesh.token()}"}
    async with http.get(f"{edge_url}/api/v1/auth/profile", headers=valid) as response:
        # past the edge: auth answers (the token's user does not exist)
        _assert_envelope(await response.json(), "LUCID_ERR_4001", "auth")


async def test_a_cached_token_still_expires_at_the_edge(
    edge_url: str, http: aiohttp.ClientSession, mesh: Mesh
) -> None:
    """jwt_authn caches verified tokens: a repeat skips the signature check, never the
    expiry (the edge refuses it once exp, plus 5 s of leeway, has passed)."""
    import time

    from lucid.auth import app as auth_app
    from tests.support import sign_token
    from tests.waiting import eventually

    key = await auth_app.key_store(mesh.servers["auth"].runtime).current()
    token = sign_token(key.private_key, key.kid, issued_at=time.time(), ttl_s=1)
    headers = {"authorization": f"Bearer {token}"}

    async def status() -> tuple[int, dict]:
        async with http.get(f"{edge_url}/api/v1/auth/profile", headers=headers) as response:
            return response.status, await response.json()

    for _ in range(2):  # verified, then served from the cache: past the edge both times
        _, body = await status()
        assert body["error"]["service"] == "auth", body

    async def refused() -> dict | None:
        code, body = await status()
        return body if code == 401 and body["error"]["service"] == "edge" else None

    body = await eventually(refused, timeout_s=20, interval_s=0.5, what="the edge refusing it")
    assert body["error"]["details"]["reason"].startswith("jwt_authn_access_denied")


async def test_the_access_log_is_json_with_the_request_id(
    edge_url: str, http: aiohttp.ClientSession, mesh: Mesh
) -> None:
    from tests.waiting import eventually

    async with http.get(
        f"{edge_url}/api/v1/meta/version", headers={"x-request-id": "access-log-probe"}
    ) as response:
        assert response.status == 200
    log = mesh.settings.var_dir / "envoy" / "access.log"

    def logged() -> dict | None:  # Envoy flushes its access log about once a second
        lines = log.read_text().splitlines() if log.exists() else []
        found = [json.loads(line) for line in lines if "access-log-probe" in line]
        return found[0] if found else None

    entry = await eventually(logged, timeout_s=15, what="the access log line")
    assert entry["request_id"] == "access-log-probe"
    assert entry["path"] == "/api/v1/meta/version" and entry["status"] == 200
    assert entry["upstream"] == "gateway" and entry["http_method"] == "GET"


async def test_over_long_urls_and_headers_get_the_envelope(
    edge_url: str, http: aiohttp.ClientSession
) -> None:
    cases = (
        ("/api/v1/chain/blocks/" + "a" * 9000, {}, 414, "url"),
        ("/api/v1/meta/version", {"x-big": "b" * 9000}, 431, "headers"),
        ("/api/v1/meta/version", {f"x-h{i}": "v" for i in range(200)}, 431, "headers"),
    )
    for path, headers, status, field in cases:
        async with http.get(edge_url + path, headers=headers) as response:
            assert response.status == status, field
            error = _assert_envelope(await response.json(), "LUCID_ERR_1001", "edge")
        assert error["details"]["field_violations"][0]["field"] == field
        assert "b" * 100 not in error["message"]  # the request is not echoed
