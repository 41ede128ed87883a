"""The ``lucid-client`` distribution as a user gets it: the wheel ``make clients`` builds,
installed into a clean virtual environment (no server code, no server dependency), typed
(mypy reads its stubs), signing in with a fresh TRON key and calling through the edge over
TLS with its tokens kept fresh and a request id on every call, and retrying only the rpcs
the contract marks idempotent."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support import Mesh, serve_edge

# Building the stubs (protobuf-ts over every proto), a venv and an npm install take minutes
# on a loaded machine; the default 300 s per test counts fixture setup too.
pytestmark = pytest.mark.timeout(900)

SERVER_ONLY = ("lucid.runtime", "lucid.auth.app", "pymongo", "redis", "tronpy", "aiohttp")

TALK = r"""
import json, sys
from urllib.parse import urlparse

import grpc
from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid_client import LucidClient, TronKey, error_code

url, ca = sys.argv[1], sys.argv[2]
out = {}
with LucidClient.connect(urlparse(url).netloc, ca_file=ca) as client:
    key = TronKey.generate()
    reply = client.sign_in(key)
    out["address"], out["user_address"] = key.address, reply.user.tron_address
    auth = auth_pb2_grpc.AuthServiceStub(client.channel)
    profile, call = auth.GetProfile.with_call(auth_pb2.GetProfileRequest())
    out["profile_address"] = profile.user.tron_address
    out["request_id"] = client.last_request_id
    out["echoed_request_id"] = dict(call.trailing_metadata()).get("x-request-id")
    first = client.tokens.access_token
    client.refresh_margin_s = 10**9  # every token now counts as about to expire
    status = auth.GetAuthStatus(auth_pb2.GetAuthStatusRequest())
    client.refresh_margin_s = 60
    out["authenticated_after_refresh"] = status.authenticated
    out["refreshes"] = client.refreshes
    out["rotated"] = client.tokens.access_token != first
    try:
        auth.Login(auth_pb2.LoginRequest(
            tron_address=key.address, message="not a challenge", signature="00" * 65))
    except grpc.RpcError as error:
        out["refused"] = [error.code().name, error_code(error)]
print(json.dumps(out))
"""

RETRY = r"""
import json
from concurrent import futures

import grpc
from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid_client import LucidClient

seen = {"GetProfile": [], "Logout": []}

class Flaky(auth_pb2_grpc.AuthServiceServicer):
    def GetProfile(self, request, context):
        seen["GetProfile"].append(dict(context.invocation_metadata()).get("x-request-id"))
        if len(seen["GetProfile"]) < 3:
            context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        return auth_pb2.GetProfileResponse(user=auth_pb2.User(tron_address="T" + "1" * 33))

    def Logout(self, request, context):
        seen["Logout"].append(dict(context.invocation_metadata()).get("x-request-id"))
        context.abort(grpc.StatusCode.UNAVAILABLE, "down")

server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
auth_pb2_grpc.add_AuthServiceServicer_to_server(Flaky(), server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
out = {}
with LucidClient.insecure(f"127.0.0.1:{port}", backoff_s=0.01) as client:
    auth = auth_pb2_grpc.AuthServiceStub(client.channel)
    out["profile"] = auth.GetProfile(auth_pb2.GetProfileRequest()).user.tron_address
    try:
        auth.Logout(auth_pb2.LogoutRequest())
    except grpc.RpcError as error:
        out["logout"] = error.code().name
server.stop(0)
out["seen"] = seen
print(json.dumps(out))
"""

TYPED = """
from lucid.auth.v1 import auth_pb2
from lucid_client import LucidClient, TronKey

request = auth_pb2.LoginRequest(tron_address=TronKey.generate().address)
count: int = request.message
client: LucidClient = LucidClient.insecure("127.0.0.1:1")
"""


def _run(
    args: list[str],
    timeout: float = 600,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, check=False, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


async def _arun(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """A process run without blocking the event loop (the mesh it calls runs on it); killed
    after 90 s, with what it printed."""
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 90)
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
        return -1, out.decode(), "timed out: " + err.decode()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture(scope="module")
def client_venv(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean venv with only the built wheel and its own dependencies installed."""
    build = _run(
        [str(repo_root / "scripts/build-clients.sh"), "python"],
        env={**os.environ, "PY": sys.executable},
        cwd=repo_root,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = sorted((repo_root / "dist/clients").glob("lucid_client-*.whl"))
    venv = tmp_path_factory.mktemp("client") / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    made = _run([base, "-m", "venv", str(venv)])
    assert made.returncode == 0, made.stderr
    installed = _run([str(venv / "bin/python"), "-m", "pip", "install", "-q", str(wheel)])
    assert installed.returncode == 0, installed.stderr
    return venv


def test_the_wheel_carries_no_server_code_or_dependency(client_venv: Path) -> None:
    python = str(client_venv / "bin/python")
    for module in SERVER_ONLY:
        probe = _run([python, "-c", f"import {module}"], timeout=60, cwd=client_venv.parent)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, module
    stubs = _run(
        [python, "-c", "import lucid.sessions.v1.sessions_pb2_grpc, lucid_client; print('ok')"],
        timeout=60,
        cwd=client_venv.parent,
    )
    assert stubs.stdout.strip() == "ok", stubs.stderr


def test_mypy_reads_the_typing_stubs(client_venv: Path, tmp_path: Path) -> None:
    script = tmp_path / "typed.py"
    script.write_text(TYPED)
    checked = _run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--python-executable",
            str(client_venv / "bin/python"),
            str(script),
        ],
        cwd=tmp_path,
    )
    # exactly the one deliberate error: a str field read as an int
    assert checked.returncode == 1, checked.stdout
    assert 'typed.py:6: error: Incompatible types in assignment (expression has type "str"' in (
        checked.stdout
    ), checked.stdout
    assert "Found 1 error" in checked.stdout, checked.stdout


def test_idempotent_rpcs_are_retried_and_others_are_not(client_venv: Path, tmp_path: Path) -> None:
    script = tmp_path / "retry.py"
    script.write_text(RETRY)
    ran = _run([str(client_venv / "bin/python"), str(script)], timeout=120, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    out = json.loads(ran.stdout)
    assert out["profile"] == "T" + "1" * 33
    assert len(out["seen"]["GetProfile"]) == 3  # NO_SIDE_EFFECTS: two retries, then OK
    assert len(set(out["seen"]["GetProfile"])) == 1  # one request id for every attempt
    assert out["logout"] == "UNAVAILABLE"
    assert len(out["seen"]["Logout"]) == 1  # not idempotent: sent once


@pytest.fixture(scope="module")
async def edge_url(mesh: Mesh) -> AsyncIterator[str]:
    await mesh.start("gateway")
    async with serve_edge(mesh.settings) as url:
        yield url


async def test_the_installed_client_signs_in_and_calls_through_the_edge(
    client_venv: Path, edge_url: str, mesh: Mesh, tmp_path: Path
) -> None:
    script = tmp_path / "talk.py"
    script.write_text(TALK)
    ca = mesh.settings.certs_dir / "ca.crt"
    code, stdout, stderr = await _arun(
        [str(client_venv / "bin/python"), str(script), edge_url, str(ca)], cwd=tmp_path
    )
    assert code == 0, stderr
    out = json.loads(stdout)
    assert out["user_address"] == out["address"] == out["profile_address"]
    assert out["request_id"] and out["echoed_request_id"] == out["request_id"]
    assert out["refreshes"] == 1 and out["rotated"] and out["authenticated_after_refresh"]
    code, reason = out["refused"]
    assert code in {"INVALID_ARGUMENT", "UNAUTHENTICATED"}
    assert reason.startswith("LUCID_ERR_")
    users = mesh.servers["auth"].runtime.datastores.db.users
    assert await users.count_documents({"tron_address": out["address"]}) == 1


# -- TypeScript ------------------------------------------------------------------------------

TS_TYPED = """
import { GrpcWebFetchTransport } from "@protobuf-ts/grpcweb-transport";
import { AuthServiceClient } from "@lucid/client/lucid/auth/v1/auth.client";
import type { IssueChallengeRequest } from "@lucid/client/lucid/auth/v1/auth";

const auth = new AuthServiceClient(new GrpcWebFetchTransport({ baseUrl: "https://x" }));
const ok: IssueChallengeRequest = { tronAddress: "T" };
const bad: IssueChallengeRequest = { tronAddress: 7 };
void auth.issueChallenge(ok);
void bad;
"""

TS_TALK = r"""
"use strict";
const { GrpcWebFetchTransport } = require("@protobuf-ts/grpcweb-transport");
const { RpcError } = require("@protobuf-ts/runtime-rpc");
const { AuthServiceClient } = require("@lucid/client/lucid/auth/v1/auth.client");

async function main() {
  const [baseUrl, token, address] = process.argv.slice(2);
  const auth = new AuthServiceClient(new GrpcWebFetchTransport({ baseUrl }));
  const out = {};
  const challenge = await auth.issueChallenge({ tronAddress: address });
  out.challenge = challenge.response.message;
  out.request_id = challenge.trailers["x-request-id"] || "";
  const status = await auth.getAuthStatus({}, { meta: { authorization: `Bearer ${token}` } });
  out.authenticated = status.response.authenticated;
  try {
    await auth.issueChallenge({ tronAddress: "not an address" });
  } catch (e) {
    if (!(e instanceof RpcError)) throw e;
    out.refused = { code: e.code, details: Boolean(e.meta["grpc-status-details-bin"]) };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}
main().catch((e) => { console.error(e); process.exit(1); });
"""


def _web_client_modules() -> Path:
    cache = Path(os.environ.get("LUCID_CACHE", Path.home() / ".cache" / "lucid"))
    modules = cache / "grpc-web-client" / "node_modules"
    assert (modules / ".bin" / "protoc-gen-ts").exists(), f"run `make web-client` ({modules})"
    return modules


@pytest.fixture(scope="module")
def ts_project(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh npm project with only the built package (and its runtime) installed."""
    _web_client_modules()
    build = _run(
        [str(repo_root / "scripts/build-clients.sh"), "typescript"],
        env={**os.environ, "PY": sys.executable},
        cwd=repo_root,
    )
    assert build.returncode == 0, build.stderr
    (package,) = sorted((repo_root / "dist/clients").glob("lucid-client-*.tgz"))
    project = tmp_path_factory.mktemp("ts-client")
    (project / "package.json").write_text('{"name": "probe", "private": true}\n')
    installed = _run(
        ["npm", "install", "--prefer-offline", "--no-audit", "--no-fund", str(package)],
        cwd=project,
    )
    assert installed.returncode == 0, installed.stderr
    return project


def test_the_typescript_typings_check_calls(ts_project: Path) -> None:
    (ts_project / "typed.ts").write_text(TS_TYPED)
    tsc = _web_client_modules() / "typescript" / "bin" / "tsc"
    options = "--noEmit --strict --moduleResolution node --module commonjs --target es2020"
    checked = _run(
        ["node", str(tsc), *options.split(), "--lib", "es2020,dom", "typed.ts"], cwd=ts_project
    )
    errors = [line for line in checked.stdout.splitlines() if "error TS" in line]
    assert errors == [
        "typed.ts(8,38): error TS2322: Type 'number' is not assignable to type 'string'."
    ], checked.stdout


async def test_the_typescript_package_calls_through_the_edge(
    ts_project: Path, edge_url: str, mesh: Mesh
) -> None:
    from tronpy.keys import PrivateKey

    from tests.auth_support import auth_client

    (ts_project / "talk.cjs").write_text(TS_TALK)
    address = PrivateKey.random().public_key.to_base58check_address()
    signed_in = await auth_client(mesh.settings).login(PrivateKey.random())  # a real user
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(mesh.settings.certs_dir / "ca.crt")}
    code, stdout, stderr = await _arun(
        ["node", "talk.cjs", edge_url, signed_in.tokens.access_token, address],
        cwd=ts_project,
        env=env,
    )
    assert code == 0, stderr
    out = json.loads(stdout)
    assert out["challenge"].startswith("Sign this message") and "Nonce: " in out["challenge"]
    assert out["request_id"]
    assert out["authenticated"] is True
    assert out["refused"] == {"code": "INVALID_ARGUMENT", "details": True}
