"""The front door (Envoy, ``lucid.codegen.edgeconfig``) end to end over HTTPS: security
headers, CORS, rate limits with their headers, the chunk cap (10 MiB + 1 byte refused
with nothing stored), every gRPC status as its HTTP status, NDJSON streams, breakers
seen through the edge, and a real grpc-web client (protobuf-ts stubs in node) calling a
unary and a streaming rpc in both wire formats."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest

from lucid.common.v1 import access_pb2
from lucid.gateway import app as gateway_app
from lucid.lib.clock import FakeClock
from lucid.runtime.config import CLUSTERS, Settings
from lucid.runtime.envelope import STREAM_ERROR_TAG
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.server import ClusterApp, ClusterServer, Runtime
from lucid.sessions.v1 import chunks_pb2, chunks_pb2_grpc
from lucid.supervisor.localservers import free_port
from tests.support import Mesh, https_client, serve_edge, serve_health_only

MIB10 = 10 * 1024 * 1024
FAILING = "00000000-0000-4000-8000-00000000dead"
ORIGIN = "https://app.lucid.test"
EXPECTED_HTTP = {
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


class FakeChunks(chunks_pb2_grpc.ChunkServiceServicer):
    """Stores what reaches it; streams pieces; answers GetChunk with a chosen status."""

    def __init__(self) -> None:
        self.stored: list[tuple[str, int, int]] = []

    async def UploadChunk(self, request, context):  # type: ignore[no-untyped-def]
        self.stored.append((request.session_id, request.sequence_number, len(request.data)))
        return chunks_pb2.UploadChunkResponse(
            chunk=chunks_pb2.Chunk(session_id=request.session_id, size_bytes=len(request.data)),
            last_durable_sequence=request.sequence_number,
        )

    async def DownloadChunk(self, request, context):  # type: ignore[no-untyped-def]
        for i in range(3):
            if request.chunk_id == FAILING and i == 1:
                raise LucidError(ErrorCode.ERROR_CODE_DATA_LOSS, "blob fails its hash")
            yield chunks_pb2.DownloadChunkResponse(data=f"piece-{i}".encode(), offset=7 * i)

    async def GetChunk(self, request, context):  # type: ignore[no-untyped-def]
        wanted = dict(context.invocation_metadata()).get("x-request-id", "")
        code = grpc.StatusCode[wanted.removeprefix("status-")]
        await context.abort(code, f"asked for {code.name}")


@pytest.fixture(scope="module")
async def front(mesh: Mesh) -> AsyncIterator[tuple[str, Settings, FakeChunks]]:
    """An HTTPS edge in front of auth, a fake sessions cluster and a gateway whose clock
    stands still (no bucket refills while a test sends)."""
    settings = mesh.settings.replace(
        ports={
            **mesh.settings.ports,
            "gateway": free_port(),
            "sessions": free_port(),
            "rdp": free_port(),
            "blockchain": free_port(),
        },
        edge_cors_origins=ORIGIN,
    )
    fake = FakeChunks()

    async def build(runtime: Runtime) -> ClusterApp:
        return ClusterApp(
            servicers=[(chunks_pb2_grpc.add_ChunkServiceServicer_to_server, fake)],
            requires_mongo=False,
        )

    own = Mesh(settings)
    await own.start("sessions", build)
    validator = await serve_health_only(settings, "blockchain")  # the one chain validator
    runtime = Runtime(settings, "gateway", clock=FakeClock())
    gateway = ClusterServer(
        runtime, await gateway_app.build(runtime), port=settings.port("gateway")
    )
    await gateway.start()
    try:
        async with serve_edge(settings) as url:
            yield url, settings, fake
    finally:
        await gateway.stop(grace_s=0.2)
        await validator.stop(grace_s=0.1)
        await own.stop_all()


def _client(settings: Settings) -> aiohttp.ClientSession:
    """A client from a loopback address of its own: a fresh bucket for the IP tier."""
    ip = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    return https_client(settings, local_ip=ip)


async def test_security_headers_on_every_response(front: tuple[str, Settings, FakeChunks]) -> None:
    url, settings, _ = front
    async with _client(settings) as http:
        for path in ("/api/v1/meta/version", "/api/v1/nothing", "/health"):
            async with http.get(url + path) as response:
                headers = response.headers
                assert headers["Strict-Transport-Security"].startswith("max-age=")
                assert headers["X-Content-Type-Options"] == "nosniff"
                assert headers["X-Frame-Options"] == "DENY"
                assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
                assert headers["Referrer-Policy"] == "no-referrer"
                assert headers["x-request-id"]


async def test_plain_http_edge_sends_no_hsts(mesh: Mesh) -> None:
    await mesh.start("gateway")
    async with (
        serve_edge(mesh.settings.replace(edge_tls=False)) as url,
        aiohttp.ClientSession() as http,
        http.get(f"{url}/api/v1/meta/version") as response,
    ):
        assert response.status == 200
        assert "Strict-Transport-Security" not in response.headers
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_edge_certificate_names_what_a_browser_needs(
    front: tuple[str, Settings, FakeChunks],
) -> None:
    from cryptography import x509

    _, settings, _ = front
    cert = x509.load_pem_x509_certificate((settings.certs_dir / "edge-web.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "edge.lucid.internal"} <= set(san.get_values_for_type(x509.DNSName))
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 398


async def test_cors_preflight(front: tuple[str, Settings, FakeChunks]) -> None:
    url, settings, _ = front
    path = f"{url}/lucid.gateway.v1.GatewayService/GetVersion"
    ask = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-grpc-web, authorization",
    }
    async with _client(settings) as http:
        async with http.options(path, headers=ask) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
            allowed = response.headers["Access-Control-Allow-Headers"]
            assert {"content-type", "x-grpc-web", "authorization"} <= set(allowed.split(", "))
            assert "POST" in response.headers["Access-Control-Allow-Methods"]
        async with http.options(path, headers={**ask, "Origin": "https://evil.test"}) as response:
            assert response.status == 403
            assert "Access-Control-Allow-Origin" not in response.headers
        async with http.get(f"{url}/api/v1/meta/version", headers={"Origin": ORIGIN}) as response:
            assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
            assert "grpc-status" in response.headers["Access-Control-Expose-Headers"]


async def test_public_rate_limit_with_headers(front: tuple[str, Settings, FakeChunks]) -> None:
    """Spec 01 §7.6: past 100/min plus the burst of 200 from one IP → 429 3001."""
    url, settings, _ = front
    async with _client(settings) as http:
        statuses = []
        for _ in range(300):
            async with http.get(f"{url}/api/v1/meta/version") as response:
                statuses.append(response.status)
                assert response.headers["x-ratelimit-limit"] == "100"
                remaining = int(response.headers["x-ratelimit-remaining"])
        assert statuses == [200] * 300
        assert remaining == 0
        async with http.get(f"{url}/api/v1/meta/version") as response:
            assert response.status == 429
            body = await response.json()
            headers = response.headers
    assert body["error"]["code"] == "LUCID_ERR_3001"
    assert body["error"]["service"] == "gateway"
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["x-ratelimit-limit"] == "100"
    assert headers["x-ratelimit-remaining"] == "0"
    assert int(headers["x-ratelimit-reset"]) > 1_700_000_000


async def _upload(
    http: aiohttp.ClientSession, url: str, token: str, session: str, size: int, seq: int = 1
) -> tuple[int, dict]:
    body = {"sequence_number": seq, "data": base64.b64encode(b"\x01" * size).decode()}
    async with http.post(
        f"{url}/api/v1/sessions/{session}/chunks",
        json=body,
        headers={"authorization": f"Bearer {token}"},
    ) as response:
        headers = {k.lower(): v for k, v in response.headers.items()}
        return response.status, {"body": await response.json(), **headers}


async def test_chunk_over_10_mib_is_refused_with_nothing_stored(
    front: tuple[str, Settings, FakeChunks], mesh: Mesh
) -> None:
    """The cap is exact where the bytes are known: the sessions cluster's validation of
    the decoded message (base64 cannot tell 10 MiB + 1 from 10 MiB by its length)."""
    url, settings, fake = front
    token = await mesh.token(role=access_pb2.ROLE_USER)
    session = str(uuid.uuid4())
    async with _client(settings) as http:
        status, answer = await _upload(http, url, token, session, MIB10 + 1)
        assert status == 400
        error = answer["body"]["error"]
        assert error["code"] == "LUCID_ERR_1001"
        assert [v["field"] for v in error["details"]["field_violations"]] == ["data"]
        assert not [s for s in fake.stored if s[0] == session], "nothing may reach sessions"

        status, answer = await _upload(http, url, token, session, MIB10)
        assert status == 200, answer["body"]
        assert [s for s in fake.stored if s[0] == session] == [(session, 1, MIB10)]


async def test_every_grpc_status_has_its_http_status(
    front: tuple[str, Settings, FakeChunks], mesh: Mesh
) -> None:
    url, settings, _ = front
    token = await mesh.token()
    path = f"/api/v1/sessions/{uuid.uuid4()}/chunks/{uuid.uuid4()}"
    seen = {}
    async with _client(settings) as http:
        for name in EXPECTED_HTTP:
            async with http.get(
                url + path,
                headers={"authorization": f"Bearer {token}", "x-request-id": f"status-{name}"},
            ) as response:
                body = await response.json()
                seen[name] = response.status
                assert body["error"]["code"].startswith("LUCID_ERR_"), name
                assert body["error"]["request_id"] == f"status-{name}"
                assert body["error"]["version"] == "v1"
    assert seen == EXPECTED_HTTP
    assert set(EXPECTED_HTTP) == {c.name for c in grpc.StatusCode} - {"OK"}


async def test_server_stream_is_ndjson(front: tuple[str, Settings, FakeChunks], mesh: Mesh) -> None:
    url, settings, _ = front
    headers = {"authorization": f"Bearer {await mesh.token()}"}
    session = uuid.uuid4()
    async with _client(settings) as http:
        async with http.get(
            f"{url}/api/v1/sessions/{session}/chunks/{uuid.uuid4()}/download", headers=headers
        ) as response:
            assert response.status == 200
            assert response.headers["content-type"].startswith("application/x-ndjson")
            lines = [json.loads(line) for line in (await response.text()).splitlines()]
        assert [base64.b64decode(x["data"]) for x in lines] == [b"piece-0", b"piece-1", b"piece-2"]
        assert lines[1]["offset"] == "7"  # int64 as a string, proto field names kept
        assert "total_size_bytes" in lines[0]
        async with http.get(
            f"{url}/api/v1/sessions/{session}/chunks/{FAILING}/download",
            headers={**headers, "x-request-id": "failing-stream"},
        ) as response:
            assert response.status == 200  # sent with the first line
            lines = [json.loads(line) for line in (await response.text()).splitlines()]
    # the failure after the first piece ends the stream with the error as its last line
    assert len(lines) == 2
    assert base64.b64decode(lines[0]["data"]) == b"piece-0"
    error = _assert_stream_error(lines[1])
    assert error["code"] == "LUCID_ERR_5012"
    assert error["message"] == "blob fails its hash"
    assert error["request_id"] == "failing-stream"
    assert error["service"] == "sessions"


def _assert_stream_error(line: dict) -> dict:
    assert list(line) == ["error"], line
    error = line["error"]
    assert error["code"].startswith("LUCID_ERR_") and error["version"] == "v1"
    return error  # type: ignore[no-any-return]


async def test_stream_errors_reach_grpc_web_callers_as_trailers_not_as_a_message(
    front: tuple[str, Settings, FakeChunks], mesh: Mesh
) -> None:
    """A grpc-web caller reads the failure from the trailer frame: no extra message."""
    url, settings, _ = front
    request = chunks_pb2.DownloadChunkRequest(
        session_id=str(uuid.uuid4()), chunk_id=FAILING
    ).SerializeToString()
    frame = b"\x00" + len(request).to_bytes(4, "big") + request
    async with (
        _client(settings) as http,
        http.post(
            f"{url}/lucid.sessions.v1.ChunkService/DownloadChunk",
            data=frame,
            headers={
                "authorization": f"Bearer {await mesh.token()}",
                "content-type": "application/grpc-web+proto",
                "x-grpc-web": "1",
                # a client cannot ask for the REST form of the error
                "lucid-stream-errors": "ndjson",
            },
        ) as response,
    ):
        body = await response.read()
    frames = []
    while body:
        flag, size = body[0], int.from_bytes(body[1:5], "big")
        frames.append((flag, body[5 : 5 + size]))
        body = body[5 + size :]
    payloads = [p for f, p in frames if f == 0]
    assert [chunks_pb2.DownloadChunkResponse.FromString(p).data for p in payloads] == [b"piece-0"]
    assert not any(STREAM_ERROR_TAG in p for p in payloads)
    trailer = next(p for f, p in frames if f == 0x80).decode()
    assert "grpc-status:15" in trailer.replace(" ", "")


async def test_a_cluster_that_is_down_is_503_5008_at_once(
    front: tuple[str, Settings, FakeChunks], mesh: Mesh
) -> None:
    """rdp is not running: every call answers 503 ``LUCID_ERR_5008`` (the edge tries a
    refused connection twice more, then gives up; it keeps no breaker of its own)."""
    url, settings, _ = front
    headers = {"authorization": f"Bearer {await mesh.token()}"}
    codes = []
    async with _client(settings) as http:
        for _ in range(6):
            async with http.post(
                f"{url}/api/v1/rdp/sessions", json={}, headers=headers
            ) as response:
                codes.append((response.status, (await response.json())["error"]["code"]))
    assert codes == [(503, "LUCID_ERR_5008")] * 6


async def test_health_aggregates_every_cluster(front: tuple[str, Settings, FakeChunks]) -> None:
    """The edge's /health is the gateway's aggregated health: degraded (200) while some
    clusters are down but MongoDB serves and finality is possible."""
    url, settings, _ = front
    async with _client(settings) as http, http.get(f"{url}/health") as response:
        body = await response.json()
        assert response.status == 200, body
    assert body["status"] == "HEALTH_STATUS_DEGRADED"  # not every cluster runs in this test
    deps = {d["name"]: d for d in body["dependencies"]}
    assert {c for c in CLUSTERS if c != "gateway"} <= set(deps)
    healthy = "HEALTH_STATUS_HEALTHY"
    assert deps["auth"]["status"] == deps["sessions"]["status"] == healthy
    assert deps["finality"]["status"] == deps["mongodb"]["status"] == healthy
    assert deps["rdp"]["status"] == "HEALTH_STATUS_DEGRADED"
    assert deps["rdp"]["message"].startswith("unreachable")


@pytest.fixture(scope="module")
async def node_client(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Path:
    """The grpc-web client with stubs generated from our protos (``make web-client``)."""
    cache = Path(os.environ.get("LUCID_CACHE", Path.home() / ".cache" / "lucid"))
    modules = cache / "grpc-web-client" / "node_modules"
    if not (modules / ".bin" / "protoc-gen-ts").exists():
        pytest.fail(f"grpc-web client not installed in {modules}: run `make web-client`")
    work = tmp_path_factory.mktemp("grpcweb")
    (work / "node_modules").symlink_to(modules)
    shutil.copy(repo_root / "tests" / "grpcweb" / "client.cjs", work / "client.cjs")
    (work / "gen").mkdir()
    import grpc_tools

    wkt = Path(grpc_tools.__file__).parent / "_proto"
    process = await asyncio.create_subprocess_exec(
        str(repo_root / ".venv" / "bin" / "python"),
        "-m",
        "grpc_tools.protoc",
        f"-I{repo_root / 'protos'}",
        f"-I{repo_root / 'third_party'}",
        f"-I{wkt}",
        f"--plugin=protoc-gen-ts={modules / '.bin' / 'protoc-gen-ts'}",
        f"--ts_out={work / 'gen'}",
        "--ts_opt=output_javascript,output_legacy_commonjs,client_generic",
        "lucid/gateway/v1/gateway.proto",
        "lucid/common/v1/proofs.proto",
        "lucid/sessions/v1/chunks.proto",
        "lucid/sessions/v1/sessions.proto",
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return work


async def test_grpc_web_client_unary_and_streaming(
    front: tuple[str, Settings, FakeChunks], mesh: Mesh, node_client: Path
) -> None:
    url, settings, _ = front
    token = await mesh.token()
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(settings.certs_dir / "ca.crt")}
    process = await asyncio.create_subprocess_exec(
        "node",
        str(node_client / "client.cjs"),
        url,
        token,
        str(uuid.uuid4()),
        str(uuid.uuid4()),
        FAILING,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    result = json.loads(out)
    for format_ in ("binary", "text"):
        got = result[format_]
        assert got["unary"]["api_version"] == "v1" and got["unary"]["status"] == "OK"
        assert got["unary"]["request_id"]
        assert [p["data"] for p in got["stream"]["pieces"]] == ["piece-0", "piece-1", "piece-2"]
        assert [p["offset"] for p in got["stream"]["pieces"]] == [0, 7, 14]
        assert got["stream"]["status"] == "OK"
        assert got["failing"]["code"] == "DATA_LOSS"
        assert got["failing"]["details"], "the rich status travels in the trailers"
        assert got["unauthenticated"]["code"] == "UNAUTHENTICATED"


async def test_grpc_web_chunk_over_10_mib_is_refused(
    front: tuple[str, Settings, FakeChunks], mesh: Mesh
) -> None:
    url, settings, fake = front
    session = str(uuid.uuid4())
    request = chunks_pb2.UploadChunkRequest(
        session_id=session, sequence_number=1, data=b"\x02" * (MIB10 + 1)
    )
    message = request.SerializeToString()
    body = b"\x00" + len(message).to_bytes(4, "big") + message  # one grpc-web data frame
    async with (
        _client(settings) as http,
        http.post(
            f"{url}/lucid.sessions.v1.ChunkService/UploadChunk",
            data=body,
            headers={
                "content-type": "application/grpc-web+proto",
                "authorization": f"Bearer {await mesh.token()}",
            },
        ) as response,
    ):
        assert response.status == 200
        assert await response.read() == b""  # trailers-only: the status is in the headers
        assert response.headers["grpc-status"] == str(grpc.StatusCode.INVALID_ARGUMENT.value[0])
    assert not [s for s in fake.stored if s[0] == session]


async def test_the_edge_relays_only_rpcs_a_client_may_call(
    front: tuple[str, Settings, FakeChunks], mesh: Mesh
) -> None:
    """Service-only rpcs (and rpcs without a route) have no route at the edge: grpc-web
    cannot reach them, whatever the token."""
    url, settings, _ = front
    token = await mesh.token(role=access_pb2.ROLE_SUPER_ADMIN)
    empty = b"\x00\x00\x00\x00\x00"
    async with _client(settings) as http:
        for path in (
            "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
            "/lucid.auth.v1.AuthService/ValidateToken",
            "/lucid.blockchain.v1.ConsensusService/ProposeBlock",
            "/lucid.sessions.v1.ChunkService/UploadChunks",
            "/lucid.gateway.v1.RateLimitService/CheckRateLimit",
        ):
            async with http.post(
                url + path,
                data=empty,
                headers={
                    "content-type": "application/grpc-web+proto",
                    "authorization": f"Bearer {token}",
                },
            ) as response:
                await response.read()
                refused = response.headers.get("grpc-status") == "7"  # PERMISSION_DENIED
                assert refused, (path, response.status, dict(response.headers))
        async with http.post(
            f"{url}/lucid.gateway.v1.GatewayService/GetVersion",
            data=empty,
            headers={"content-type": "application/grpc-web+proto"},
        ) as response:
            await response.read()
            assert response.status == 200 and response.headers.get("grpc-status", "0") == "0"
