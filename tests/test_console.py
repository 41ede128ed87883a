"""The admin console in a real browser (Debian's Chromium driven by Playwright): served by
the Envoy edge at ``/admin/``, signed in with a wallet the test injects (TronLink's
``signMessageV2``, signing with a test key) or a signature from ``lucid sign``; the
dashboard following a new session live, a session terminated, a recording played from
the rdp cluster's verified replay stream, a lockdown triggered and
lifted with a TOTP step-up, the audit chain verified and exported; a session's chunks
with their Merkle proofs checked in the browser and their anchor; pools with their work
credits; the configuration edited within the spec's ranges, backed up and restored;
console roles made, assigned and deleted; each page's accessibility tree and keyboard
navigation checked. Screenshots go to ``var/console/``.

The browser runs the built console (``make console``); the admin, sessions (scripted
chain), rdp and auth clusters run in this process, the edge as an Envoy child process.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyotp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.async_api import Browser, Page, Route, async_playwright, expect
from pymongo import AsyncMongoClient
from tronpy.keys import PrivateKey

from lucid.admin.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    config_pb2,
    dashboard_pb2,
    dashboard_pb2_grpc,
    emergency_pb2,
)
from lucid.auth.v1 import auth_pb2
from lucid.common.v1 import access_pb2
from lucid.lib import tip191
from lucid.nodes.v1 import pool_pb2, pool_pb2_grpc, poot_pb2, poot_pb2_grpc
from lucid.rdp import schema as rdp_schema
from lucid.rdp.capture import SegmentWriter
from lucid.rdp.records import SessionRecord
from lucid.runtime.config import Settings
from lucid.sessions.v1 import chunks_pb2, sessions_pb2
from lucid.supervisor.envoy import console_dir, running_edge
from lucid.supervisor.localservers import free_port
from lucid.supervisor.supervisor import banner
from tests.admin_support import AdminEnv, start_admin
from tests.auth_support import address_of, auth_client
from tests.support import Mesh, bearer, https_client

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 30_000
E = emergency_pb2


@dataclass
class Console:
    """The console's URL, the signed-in browser page and who it is."""

    url: str
    admin: AdminEnv
    browser: Browser
    page: Page
    key: PrivateKey
    totp_secret: str
    shots: Path

    @property
    def address(self) -> str:
        return address_of(self.key)

    async def shot(self, name: str) -> None:
        await self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    async def go(self, fragment: str, heading: str) -> None:
        """Opens a page, signing in with the wallet first if this page is not signed in
        yet (so a test does not depend on another having signed in)."""
        await self.page.goto(f"{self.url}/admin/#/{fragment}")
        title = self.page.get_by_role("heading", level=1)
        await expect(title).to_have_text(
            re.compile(f"^(?:{re.escape(heading)}|Sign in)$"), timeout=WAIT_MS
        )
        if heading != "Sign in" and await title.inner_text() == "Sign in":
            await self.page.get_by_role("button", name="Sign in with TronLink").click()
            await expect(self.page.get_by_test_id("signed-in-as")).to_contain_text(
                self.address, timeout=WAIT_MS
            )
            await self.page.goto(f"{self.url}/admin/#/{fragment}")
        await expect(title).to_have_text(heading, timeout=WAIT_MS)


def raw(key: PrivateKey) -> bytes:
    """A key's 32 bytes."""
    return bytes.fromhex(key.hex())


def spki_hash(certificate: Path) -> str:
    """The base64 SHA-256 of a certificate's public key: Chromium trusts exactly this one
    (``--ignore-certificate-errors-spki-list``), not every certificate."""
    cert = x509.load_pem_x509_certificate(certificate.read_bytes())
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


async def make_super_admin(mesh: Mesh, key: PrivateKey) -> str:
    """Signs ``key`` in once (the account exists then), enrolls TOTP and makes it a super
    admin (as a super admin would); returns the TOTP secret."""
    return (await make_user(mesh, key, access_pb2.ROLE_SUPER_ADMIN))[1]


async def make_user(mesh: Mesh, key: PrivateKey, role: int) -> tuple[str, str]:
    """Signs ``key`` in once, enrolls TOTP and gives it ``role``: its user id and TOTP
    secret."""
    client = auth_client(mesh.settings)
    try:
        login = await client.login(key)
        enrolled = await client.stub.EnrollTotp(
            auth_pb2.EnrollTotpRequest(email=f"{uuid.uuid4().hex[:12]}@example.com"),
            metadata=client.md(login.tokens.access_token),
        )
        root = await mesh.token(role=access_pb2.ROLE_SUPER_ADMIN)
        await client.stub.AssignRole(
            auth_pb2.AssignRoleRequest(user_id=login.user.user_id, role=role),
            metadata=client.md(root),
        )
    finally:
        await client.channel.close()
    return str(login.user.user_id), str(enrolled.secret)


async def new_page(browser: Browser, key: PrivateKey | None) -> Page:
    """A page in a fresh context; with ``key``, a TronLink-like wallet holding it."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    if key is not None:
        await page.expose_function("lucidTestSign", lambda message: tip191.sign(raw(key), message))
        address = json.dumps(address_of(key))
        await page.add_init_script(
            "window.tronWeb = { defaultAddress: { base58: " + address + " }, trx: {"
            " signMessageV2: (message) => window.lucidTestSign(message) } };"
        )
    return page


@pytest.fixture(scope="module")
async def console(mesh: Mesh, settings: Settings, repo_root: Path) -> AsyncIterator[Console]:
    expect.set_options(timeout=15_000)  # a loaded shared machine answers slowly
    built = console_dir()
    if built is None:
        pytest.fail("the console is not built: run `make console`")
    shots = repo_root / "var" / "console"
    shots.mkdir(parents=True, exist_ok=True)
    # nodes and payments on ports of their own: the session's mesh may run its own
    own = settings.replace(ports={**settings.ports, "nodes": free_port(), "payments": free_port()})
    admin = await start_admin(mesh, own)
    for cluster in ("nodes", "payments"):  # the nodes and payouts pages list theirs
        await admin.sessions.mesh.start(cluster)
    key = PrivateKey.random()
    secret = await make_super_admin(mesh, key)
    try:
        async with running_edge(admin.sessions.settings) as edge, async_playwright() as pw:
            trusted = spki_hash(settings.certs_dir / "edge-web.crt")  # made for the edge
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", f"--ignore-certificate-errors-spki-list={trusted}"],
            )
            page = await new_page(browser, key)
            yield Console(edge.url, admin, browser, page, key, secret, shots)
            await browser.close()
    finally:
        await admin.close()


async def test_the_edge_serves_the_console_with_its_own_policy(
    console: Console, settings: Settings
) -> None:
    async with https_client(settings) as http:
        async with http.get(f"{console.url}/admin/app.js") as response:
            assert response.status == 200
            assert response.headers["content-type"].startswith("text/javascript")
            built = (console_dir() or Path()).joinpath("app.js").read_bytes()
            assert await response.read() == built
            policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "connect-src 'self'" in policy
        assert "'unsafe-inline'" not in policy
        async with http.get(f"{console.url}/admin", allow_redirects=False) as redirect:
            assert redirect.status == 301
            assert redirect.headers["location"].endswith("/admin/")
        async with http.get(f"{console.url}/admin/nothing.js") as missing:
            assert missing.status == 404
            assert (await missing.json())["error"]["code"] == "LUCID_ERR_4001"
        # the rest of the edge keeps its strict policy
        async with http.get(f"{console.url}/.well-known/jwks.json") as jwks:
            assert jwks.headers["content-security-policy"].startswith("default-src 'none'")


async def test_sign_in_with_the_wallet(console: Console) -> None:
    page = console.page
    await page.goto(f"{console.url}/admin/")
    await expect(page.get_by_text(f"Wallet found: {console.address}")).to_be_visible()
    await page.get_by_role("button", name="Sign in with TronLink").click()
    who = page.get_by_test_id("signed-in-as")
    await expect(who).to_have_text(f"{console.address} (super admin)", timeout=WAIT_MS)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    await console.shot("dashboard")


async def test_sign_in_with_lucid_sign_and_a_bad_signature(
    console: Console, tmp_path: Path
) -> None:
    """No wallet: the challenge signed by ``lucid sign`` signs in; another key's
    signature is refused with its code and leaves the page signed out."""
    page = await new_page(console.browser, None)
    try:
        await page.goto(f"{console.url}/admin/")
        await expect(page.get_by_role("button", name="Sign in with TronLink")).to_be_disabled()
        await page.get_by_label("TRON address").fill(console.address)
        await page.get_by_role("button", name="Get a challenge").click()
        challenge = page.get_by_label("Challenge to sign")
        await expect(challenge).not_to_have_value("", timeout=WAIT_MS)
        message = await challenge.input_value()

        other = PrivateKey.random()
        await page.get_by_label("Signature (hex)").fill(tip191.sign(raw(other), message))
        await page.get_by_role("button", name="Sign in with the signature").click()
        status = page.get_by_role("status")
        await expect(status).to_contain_text("Sign-in failed: UNAUTHENTICATED", timeout=WAIT_MS)
        await expect(status).to_contain_text("LUCID_ERR_")
        assert await page.get_by_test_id("signed-in-as").count() == 0
        await expect(challenge).to_have_value("")  # used up: a new one is needed

        await page.get_by_role("button", name="Get a challenge").click()
        await expect(challenge).not_to_have_value("", timeout=WAIT_MS)
        message = await challenge.input_value()
        key_file = tmp_path / "key.txt"
        key_file.write_text(console.key.hex())
        (tmp_path / "challenge.txt").write_text(message)
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "lucid"),
            "sign",
            "--key-file",
            str(key_file),
            "--message-file",
            str(tmp_path / "challenge.txt"),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0
        await page.get_by_label("Signature (hex)").fill(out.decode().strip())
        await page.get_by_role("button", name="Sign in with the signature").click()
        await expect(page.get_by_test_id("signed-in-as")).to_contain_text(
            console.address, timeout=WAIT_MS
        )
    finally:
        await page.context.close()


async def test_dashboard_follows_a_new_session(console: Console) -> None:
    await console.go("dashboard", "Dashboard")
    page = console.page
    await expect(page.get_by_test_id("stream-state")).to_have_text("live", timeout=WAIT_MS)
    total = page.get_by_test_id("sessions-total")
    await expect(total).not_to_have_text("\u2013", timeout=WAIT_MS)
    before = int(await total.inner_text())
    owner = await console.admin.sessions.token()
    started = time.monotonic()
    await console.admin.sessions.create(owner)
    await expect(total).to_have_text(str(before + 1), timeout=WAIT_MS)
    seen = time.monotonic() - started
    md = await console.admin.md(access_pb2.ROLE_ADMIN)
    asked = time.monotonic()
    await dashboard_pb2_grpc.DashboardServiceStub(console.admin.channel).GetOverview(
        dashboard_pb2.GetOverviewRequest(), metadata=md
    )
    overview = time.monotonic() - asked
    print(
        f"\nthe dashboard showed the new session {seen * 1000:.0f} ms after it was created"
        f" (one GetOverview here: {overview * 1000:.0f} ms; the stream ticks every 2 s)"
    )
    await expect(page.get_by_role("list", name="Latest events")).to_contain_text("created")
    await console.shot("dashboard-live")


async def test_terminate_a_session(console: Console) -> None:
    owner_id = str(uuid.uuid4())
    owner = await console.admin.sessions.token(user_id=owner_id)
    session_id = await console.admin.sessions.recording(owner, name="to be ended")
    await console.admin.sessions.upload(owner, session_id, 1, b"a frame")
    await console.go("sessions", "Sessions")
    page = console.page
    await page.get_by_label("User id").fill(owner_id)
    await page.get_by_role("button", name="Apply filters").click()
    terminate = page.get_by_role("button", name=f"Terminate session {session_id}")

    await terminate.click()  # cancelled: nothing changes
    dialog = page.get_by_role("dialog", name="Terminate session")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_have_count(0)
    recording = sessions_pb2.SESSION_STATE_RECORDING
    assert (await console.admin.sessions.get(owner, session_id)).state == recording

    await terminate.click()
    await dialog.get_by_label("Reason").fill("abuse report")
    await dialog.get_by_role("button", name="Terminate").click()
    await expect(page.get_by_role("status")).to_have_text(
        f"Session {session_id} terminated.", timeout=WAIT_MS
    )
    row = page.get_by_role("row").filter(has_text=session_id)
    await expect(row).to_contain_text("terminated")
    ended = await console.admin.sessions.wait_state(
        owner, session_id, {sessions_pb2.SESSION_STATE_COMPLETED}
    )
    assert ended.state == sessions_pb2.SESSION_STATE_COMPLETED
    await page.get_by_role("link", name=session_id).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Session {session_id}")
    await expect(page.locator("dl.details")).to_contain_text("terminated")
    await console.shot("session")


async def system_mode(console: Console) -> int:
    admin = console.admin
    reply = await admin.emergency.GetSystemMode(
        E.GetSystemModeRequest(), metadata=await admin.md(access_pb2.ROLE_ADMIN)
    )
    return int(reply.status.mode)


async def emergency_control(console: Console, button: str, reason: str, code: str) -> None:
    page = console.page
    await page.get_by_role("button", name=button).click()
    dialog = page.get_by_role("dialog")
    await dialog.get_by_label("Reason").fill(reason)
    await dialog.get_by_label("TOTP code (step-up)").fill(code)
    await dialog.get_by_role("button", name=button).click()


async def test_lockdown_and_lift_with_a_totp_step_up(console: Console) -> None:
    await console.go("emergency", "Emergency controls")
    page = console.page
    mode = page.get_by_test_id("system-mode")
    status = page.get_by_role("status")
    await expect(mode).to_have_text("Normal", timeout=WAIT_MS)
    try:
        await emergency_control(console, "Lock down the system", "drill", "000000")
        await expect(status).to_contain_text("System lockdown failed:", timeout=WAIT_MS)
        await expect(status).to_contain_text("LUCID_ERR_")
        await expect(mode).to_have_text("Normal")
        assert await system_mode(console) == E.SYSTEM_MODE_NORMAL

        code = pyotp.TOTP(console.totp_secret).now()
        await emergency_control(console, "Lock down the system", "browser drill", code)
        await expect(status).to_have_text("System lockdown: done.", timeout=WAIT_MS)
        await expect(mode).to_have_text("Lockdown (only admins may call anything)")
        assert await system_mode(console) == E.SYSTEM_MODE_LOCKDOWN
        await console.shot("emergency-lockdown")

        # the step-up lasts 15 minutes: lifting needs no second code
        await emergency_control(console, "Lift the lockdown", "drill over", "")
        await expect(status).to_have_text("Lift the lockdown: done.", timeout=WAIT_MS)
        await expect(mode).to_have_text("Normal")
        assert await system_mode(console) == E.SYSTEM_MODE_NORMAL
    finally:
        if await system_mode(console) == E.SYSTEM_MODE_LOCKDOWN:
            await console.admin.emergency.LiftLockdown(
                E.LiftLockdownRequest(reason="test cleanup", confirm=True),
                metadata=await console.admin.super_admin(),
            )


async def test_audit_chain_verified_and_exported(console: Console) -> None:
    await console.go("audit", "Audit log")
    page = console.page
    # The other clusters' events enter the log too: the lockdown is found by its action.
    await page.get_by_label("Action").select_option(label="emergency")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(page.get_by_role("table")).to_contain_text("emergency", timeout=WAIT_MS)
    await page.get_by_role("button", name="Verify the chain").click()
    await expect(page.get_by_test_id("chain-verdict")).to_have_text(
        re.compile(r"Chain intact: [1-9]\d* entries checked\."), timeout=WAIT_MS
    )
    for button, suffix in (("Export CSV", ".csv"), ("Export JSON", ".jsonl")):
        async with page.expect_download() as downloading:
            await page.get_by_role("button", name=button).click()
        download = await downloading.value
        assert download.suggested_filename.endswith(suffix)
        saved = console.shots / f"audit{suffix}"
        await download.save_as(saved)
        text = saved.read_text()
        assert "browser drill" in text, f"the lockdown's reason is in the {suffix} export"
    await expect(page.get_by_role("status")).to_contain_text("Exported")
    await console.shot("audit")


async def completed_session(console: Console, parts: list[bytes]) -> tuple[str, list[str]]:
    """A session recorded with ``parts`` as its chunks, stopped and completed (anchored
    in a final block by the scripted chain): its id and its chunk ids."""
    env = console.admin.sessions
    owner = await env.token()
    session_id = await env.recording(owner, name="played back")
    chunks = [await env.upload(owner, session_id, i, data) for i, data in enumerate(parts, 1)]
    await env.sessions.StopRecording(
        sessions_pb2.StopRecordingRequest(session_id=session_id), metadata=owner
    )
    await env.wait_state(owner, session_id, {sessions_pb2.SESSION_STATE_COMPLETED})
    return session_id, [c.chunk_id for c in chunks]


async def chunk_proofs(
    console: Console, session_id: str, chunk_ids: list[str]
) -> list[chunks_pb2.ChunkProof]:
    md = await console.admin.md(access_pb2.ROLE_ADMIN)
    return [
        (
            await console.admin.sessions.chunks.GetChunkProof(
                chunks_pb2.GetChunkProofRequest(session_id=session_id, chunk_id=chunk_id),
                metadata=md,
            )
        ).proof
        for chunk_id in chunk_ids
    ]


async def test_a_session_page_checks_each_chunk_proof_and_shows_the_anchor(
    console: Console,
) -> None:
    """Five chunks (the last one's proof climbs the tree's right border): the browser
    folds each audit path to the session root and shows the anchoring block and
    transaction; a forged audit path (changed on its way to the page) is not verified;
    a session still recording has no root to check against."""
    session_id, chunk_ids = await completed_session(
        console, [os.urandom(200 + i) for i in range(5)]
    )
    proofs = await chunk_proofs(console, session_id, chunk_ids)
    root = proofs[0].merkle_root
    anchor = proofs[0].anchor
    assert anchor.tx_hash and anchor.block_header.height and anchor.final
    page = console.page
    await console.go(f"sessions/{session_id}", f"Session {session_id}")
    verdict = page.get_by_test_id("chunks-verdict")
    await expect(verdict).to_have_text(
        f"5 of 5 chunks verified against the root {root}.", timeout=WAIT_MS
    )
    table = page.get_by_role("table", name="Chunks and their Merkle proofs")
    for sequence, proof in enumerate(proofs, 1):
        await expect(page.get_by_test_id(f"proof-{sequence}")).to_have_text("verified")
        row = table.get_by_role("row").filter(has_text=proof.merkle_hash)
        await expect(row).to_contain_text(
            f"block {anchor.block_header.height}, tx {anchor.tx_hash} (final)"
        )
    await expect(page.locator("dl.details")).to_contain_text(root)
    await console.shot("session-chunks")

    # the same page with one hash of each audit path changed on its way: the test
    # answers GetChunkProof itself (grpc-web framing: a message frame, a trailer frame)
    by_chunk = {p.chunk_id: p for p in proofs}

    async def forge(route: Route) -> None:
        asked = chunks_pb2.GetChunkProofRequest.FromString(route.request.post_data_buffer[5:])
        proof = chunks_pb2.ChunkProof()
        proof.CopyFrom(by_chunk[asked.chunk_id])
        sibling = proof.chunk_proof.audit_path[0]
        proof.chunk_proof.audit_path[0] = ("0" if sibling[0] != "0" else "1") + sibling[1:]
        message = chunks_pb2.GetChunkProofResponse(proof=proof).SerializeToString()
        trailer = b"grpc-status:0\r\ngrpc-message:\r\n"
        body = b"".join(
            flag + len(part).to_bytes(4, "big") + part
            for flag, part in ((b"\x00", message), (b"\x80", trailer))
        )
        await route.fulfill(
            status=200, headers={"content-type": "application/grpc-web+proto"}, body=body
        )

    await page.route("**/lucid.sessions.v1.ChunkService/GetChunkProof", forge)
    try:
        await page.reload()
        await expect(verdict).to_have_text(
            f"0 of 5 chunks verified against the root {root}.", timeout=WAIT_MS
        )
        await expect(page.get_by_test_id("proof-1")).to_have_text(
            "not verified: the path does not lead to the session root"
        )
    finally:
        await page.unroute("**/lucid.sessions.v1.ChunkService/GetChunkProof")

    env = console.admin.sessions
    owner = await env.token()
    recording = await env.recording(owner, name="still recording")
    await env.upload(owner, recording, 1, b"a frame")
    await console.go(f"sessions/{recording}", f"Session {recording}")
    await expect(verdict).to_have_text(
        "1 chunks; no Merkle root yet, nothing to verify.", timeout=WAIT_MS
    )
    await expect(page.get_by_test_id("proof-1")).to_have_text("not verified: no root yet")


def video_segments(colors: list[tuple[int, int, int]], frames: int = 10) -> list[bytes]:
    """One MPEG-TS H.264 segment per colour, made by the rdp recorder's own encoder
    (``SegmentWriter``) from frames of that colour, 64x48 at 10 frames per second."""
    out: list[bytes] = []
    pts = 0
    for color in colors:
        writer = SegmentWriter(64, 48, 10, pts)
        image = np.zeros((48, 64, 3), dtype=np.uint8)
        image[:, :] = color
        for _ in range(frames):
            writer.add(av.VideoFrame.from_ndarray(image, format="rgb24"))
        pts = writer.pts
        out.append(writer.finish())
    return out


async def test_a_recording_plays_from_the_verified_replay_stream(console: Console) -> None:
    """The session's segments come from the rdp cluster's StreamRecording (checked there
    against the anchored root), are marked verified against the chunks this page proved,
    and the video element decodes them: 3 segments of 1 s each, 64x48. The recording is
    made by the rdp recorder's encoder and its RDP session record stored as the rdp
    cluster stores one (recording a real desktop is tests/test_rdp_recording.py's part).
    A session the rdp cluster does not know plays nothing and says why."""
    owner_id = str(uuid.uuid4())
    env = console.admin.sessions
    owner = await env.token(user_id=owner_id)
    session_id = await env.recording(owner, name="recorded desktop")
    segments = video_segments([(200, 30, 30), (30, 200, 30), (30, 30, 200)])
    for sequence, data in enumerate(segments, 1):
        await env.upload(owner, session_id, sequence, data)
    await env.sessions.StopRecording(
        sessions_pb2.StopRecordingRequest(session_id=session_id), metadata=owner
    )
    await env.wait_state(owner, session_id, {sessions_pb2.SESSION_STATE_COMPLETED})
    now = datetime.now(UTC)
    record = SessionRecord(
        session_id, str(uuid.uuid4()), owner_id, "terminated", now, now, terminated_at=now
    )
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(env.settings.mongodb_uri)
    try:
        await client[env.settings.mongodb_db][rdp_schema.SESSIONS].insert_one(record.doc())
    finally:
        await client.close()

    page = console.page
    await console.go(f"sessions/{session_id}", f"Session {session_id}")
    await expect(page.get_by_test_id("chunks-verdict")).to_contain_text(
        "3 of 3 chunks verified", timeout=WAIT_MS
    )
    await page.get_by_role("button", name="Play the recording").click()
    state = page.get_by_test_id("playback-state")
    await expect(state).to_have_text(
        "Played 3 segments, 3 verified against the anchored root.", timeout=WAIT_MS
    )
    listed = page.get_by_role("list", name="Recording segments").get_by_role("listitem")
    await expect(listed).to_have_count(3)
    for sequence, data in enumerate(segments, 1):
        await expect(page.get_by_test_id(f"segment-{sequence}")).to_have_text(
            f"Segment {sequence} of 3: {len(data)} bytes, verified against the anchored root"
        )
    video = page.get_by_role("region", name="Recording").locator("video")
    decoded = await video.evaluate(
        """v => ({width: v.videoWidth, height: v.videoHeight,
                  end: v.buffered.length ? v.buffered.end(v.buffered.length - 1) : 0})"""
    )
    assert decoded["width"] == 64 and decoded["height"] == 48, decoded
    assert 2.5 <= decoded["end"] <= 3.5, decoded  # 30 frames at 10 per second
    await console.shot("session-playback")

    other, _ = await completed_session(console, [b"not a desktop"])
    await console.go(f"sessions/{other}", f"Session {other}")
    await expect(page.get_by_test_id("chunks-verdict")).to_contain_text(
        "1 of 1 chunks verified", timeout=WAIT_MS
    )
    await page.get_by_role("button", name="Play the recording").click()
    await expect(state).to_contain_text(
        "Playback stopped after 0 segments: NOT_FOUND", timeout=WAIT_MS
    )
    await expect(state).to_contain_text("LUCID_ERR_")


async def test_the_nodes_page_shows_pools_with_their_work_credits(console: Console) -> None:
    md = await console.admin.md(access_pb2.ROLE_ADMIN)
    name = f"console-pool-{uuid.uuid4().hex[:8]}"
    async with console.admin.sessions.mesh.channel("nodes") as channel:
        pool = (
            await pool_pb2_grpc.PoolServiceStub(channel).CreatePool(
                pool_pb2.CreatePoolRequest(name=name, max_nodes=7), metadata=md
            )
        ).pool
        credits = await poot_pb2_grpc.WorkCreditServiceStub(channel).GetWorkCredits(
            poot_pb2.GetWorkCreditsRequest(pool_id=pool.pool_id), metadata=md
        )
    await console.go("nodes", "Nodes and pools")
    page = console.page
    pools = page.get_by_role("table", name=re.compile(r"^Pools \(\d+\)$"))
    row = pools.get_by_role("row").filter(has_text=name)
    await expect(row).to_have_count(1, timeout=WAIT_MS)
    cells = [c.strip() for c in await row.get_by_role("cell").all_inner_texts()]
    rank = f"#{credits.rank}" if credits.rank else "unranked"
    assert cells == [pool.pool_id, name, "forming", "0", "0", "7", f"{credits.credits:.2f}", rank]
    await expect(page.get_by_role("table", name=re.compile(r"^Nodes \(\d+\)$"))).to_be_visible()
    await console.shot("nodes-pools")


async def current_config(console: Console) -> config_pb2.SystemConfig:
    reply = await console.admin.config.GetConfig(
        config_pb2.GetConfigRequest(), metadata=await console.admin.md(access_pb2.ROLE_ADMIN)
    )
    return reply.config


async def test_configuration_edited_in_range_versioned_backed_up_and_restored(
    console: Console, tmp_path: Path
) -> None:
    await console.go("config", "Configuration")
    page = console.page
    status = page.get_by_role("status")
    before = await current_config(console)
    limit = page.get_by_label("Sessions per user (1 to 100)")
    await expect(limit).to_have_value(str(before.max_sessions_per_user), timeout=WAIT_MS)
    await expect(page.get_by_label("Audit log retention in days (30 to 3650)")).to_have_value(
        str(before.audit_log_retention_days)
    )

    # out of the spec's range: refused on the page, nothing sent
    await limit.fill("101")
    await page.get_by_role("button", name="Save the configuration").click()
    await expect(status).to_have_text(
        "Not saved: Sessions per user must be a whole number from 1 to 100."
    )
    assert await current_config(console) == before

    async with page.expect_download() as downloading:
        await page.get_by_role("button", name="Download a backup").click()
    backup = tmp_path / "backup.json"
    await (await downloading.value).save_as(backup)
    saved = json.loads(backup.read_text())
    assert saved["config"]["maxSessionsPerUser"] == before.max_sessions_per_user
    await expect(status).to_contain_text("Backup ")

    changed = before.max_sessions_per_user % 100 + 1
    await limit.fill(str(changed))
    await page.get_by_role("button", name="Save the configuration").click()
    await expect(status).to_have_text(
        f"Saved: max_sessions_per_user {before.max_sessions_per_user} → {changed}.",
        timeout=WAIT_MS,
    )
    after = await current_config(console)
    assert after.max_sessions_per_user == changed
    versions = page.get_by_role("table", name="Configuration versions (newest first)")
    first = versions.get_by_role("row").nth(1)
    await expect(first).to_contain_text(
        f"max_sessions_per_user {before.max_sessions_per_user} → {changed}"
    )
    await expect(page.get_by_test_id("config-version")).to_contain_text("Last changed")

    # a file that is not a backup, and a backup whose checksum does not match: refused
    restore = page.get_by_role("button", name="Restore from the file")
    junk = tmp_path / "junk.json"
    junk.write_text("not json")
    await page.get_by_label("Backup file to restore").set_input_files(junk)
    await restore.click()
    await expect(status).to_contain_text("Not restored: the file is not a configuration backup")
    tampered = tmp_path / "tampered.json"
    tampered.write_text(
        json.dumps({**saved, "config": {**saved["config"], "maxSessionsPerUser": 42}})
    )
    await page.get_by_label("Backup file to restore").set_input_files(tampered)
    await restore.click()
    dialog = page.get_by_role("dialog", name="Restore the configuration")
    await dialog.get_by_label("Reason").fill("drill")
    await dialog.get_by_role("button", name="Restore").click()
    await expect(status).to_contain_text("Not restored: INVALID_ARGUMENT", timeout=WAIT_MS)
    await expect(status).to_contain_text("LUCID_ERR_")
    assert (await current_config(console)).max_sessions_per_user == changed

    await page.get_by_label("Backup file to restore").set_input_files(backup)
    await restore.click()
    await dialog.get_by_label("Reason").fill("back to the saved values")
    await dialog.get_by_role("button", name="Restore").click()
    await expect(status).to_have_text(
        f"Restored: max_sessions_per_user {changed} → {before.max_sessions_per_user}.",
        timeout=WAIT_MS,
    )
    assert (await current_config(console)).max_sessions_per_user == before.max_sessions_per_user
    await expect(limit).to_have_value(str(before.max_sessions_per_user))
    await expect(first).to_contain_text("restore")
    await console.shot("config")


async def test_console_roles_made_assigned_and_deleted(console: Console) -> None:
    rbac = admin_pb2_grpc.AdminRbacServiceStub(console.admin.channel)
    md = bearer(await console.admin.sessions.main.token(role=access_pb2.ROLE_SUPER_ADMIN))

    async def role_named(name: str) -> admin_pb2.ConsoleRole | None:
        reply = await rbac.ListRoles(admin_pb2.ListRolesRequest(page_size=100), metadata=md)
        return next((r for r in reply.roles if r.name == name), None)

    known = await rbac.ListConsolePermissions(
        admin_pb2.ListConsolePermissionsRequest(), metadata=md
    )
    nodes_read = next(
        p.name for p in known.permissions if p.permission == admin_pb2.CONSOLE_PERMISSION_NODES_READ
    )
    member_id, _ = await make_user(
        console.admin.sessions.main, PrivateKey.random(), access_pb2.ROLE_ADMIN
    )
    name = f"watcher_{uuid.uuid4().hex[:8]}"
    await console.go("roles", "Console roles")
    page = console.page
    status = page.get_by_role("status")
    roles = page.get_by_role("table", name="Console roles")
    await expect(roles).to_contain_text("super_admin", timeout=WAIT_MS)

    await page.get_by_label("Role name").fill("Bad Name")
    await page.get_by_role("button", name="Create the role").click()
    await expect(status).to_contain_text("Not created: a role name is")
    await page.get_by_label("Role name").fill(name)
    await page.get_by_role("button", name="Create the role").click()
    await expect(status).to_have_text("Not created: choose at least one permission.")
    assert await role_named(name) is None

    await page.get_by_label("Description").fill("sees the nodes")
    await page.get_by_label(nodes_read, exact=True).check()
    await page.get_by_role("button", name="Create the role").click()
    await expect(status).to_have_text(f"Role {name} created.", timeout=WAIT_MS)
    row = roles.get_by_role("row").filter(has_text=name)
    await expect(row).to_contain_text(nodes_read)
    made = await role_named(name)
    assert made is not None and list(made.permissions) == [admin_pb2.CONSOLE_PERMISSION_NODES_READ]

    await page.get_by_label("User id").fill("not-a-user-id")
    await page.get_by_label("Console role", exact=True).select_option(label=name)
    await page.get_by_role("button", name="Assign").click()
    await expect(status).to_contain_text("Not assigned: INVALID_ARGUMENT", timeout=WAIT_MS)
    await page.get_by_label("User id").fill(member_id)
    await page.get_by_label("Console role", exact=True).select_option(label=name)
    await page.get_by_role("button", name="Assign").click()
    await expect(status).to_have_text(f"User {member_id} now has the role {name}.", timeout=WAIT_MS)
    assert (await role_named(name) or admin_pb2.ConsoleRole()).user_count == 1

    await page.get_by_label("Console role", exact=True).select_option(label="No console role")
    await page.get_by_role("button", name="Assign").click()
    await expect(status).to_have_text(f"User {member_id} has no console role.", timeout=WAIT_MS)
    assert (await role_named(name) or admin_pb2.ConsoleRole()).user_count == 0

    # built-in roles cannot be deleted; a cancelled delete keeps the role
    assert await page.get_by_role("button", name="Delete role super_admin").count() == 0
    delete = page.get_by_role("button", name=f"Delete role {name}")
    dialog = page.get_by_role("dialog", name="Delete role")
    await delete.click()
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_have_count(0)
    assert await role_named(name) is not None
    await delete.click()
    await dialog.get_by_label("Reason").fill("not needed")
    await dialog.get_by_role("button", name="Delete").click()
    await expect(status).to_have_text(f"Role {name} deleted.", timeout=WAIT_MS)
    await expect(row).to_have_count(0)
    assert await role_named(name) is None
    await console.shot("roles")


PAGES = [  # fragment, link in the navigation, heading
    ("dashboard", "Dashboard", "Dashboard"),
    ("sessions", "Sessions", "Sessions"),
    ("nodes", "Nodes and pools", "Nodes and pools"),
    ("payouts", "Payouts", "Payouts"),
    ("audit", "Audit log", "Audit log"),
    ("emergency", "Emergency", "Emergency controls"),
    ("users", "Users and roles", "Users and roles"),
    ("roles", "Console roles", "Console roles"),
    ("config", "Configuration", "Configuration"),
]


@pytest.mark.parametrize(("fragment", "link", "heading"), PAGES)
async def test_each_page_is_accessible(
    console: Console, fragment: str, link: str, heading: str
) -> None:
    """The accessibility tree names the landmarks and the current page, every control
    has a name, results are announced (a status region), and the page works from the
    keyboard; no page shows an error after loading."""
    await console.go(fragment, heading)
    page = console.page
    if fragment == "dashboard":  # its event stream stays open: the network is never idle
        await expect(page.get_by_test_id("stream-state")).to_have_text("live")
    else:
        await page.wait_for_load_state("networkidle")
    tree = await page.locator("body").aria_snapshot()
    (console.shots / f"{fragment}.aria.yaml").write_text(tree)
    assert '- navigation "Console pages"' in tree
    assert f'- link "{link}"' in tree
    assert "- main" in tree and f'- heading "{heading}" [level=1]' in tree
    assert "- status" in tree
    unnamed = await page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button, a[href]')]
             .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                          && !e.textContent.trim())
             .map(e => e.outerHTML)"""
    )
    assert unnamed == [], unnamed
    current = page.get_by_role("navigation").locator('[aria-current="page"]')
    await expect(current).to_have_text(link)
    assert await page.locator(".status.error").count() == 0, await page.content()
    await console.shot(f"page-{fragment}")

    # keyboard: on a fresh load the first Tab reaches the skip link, Enter moves the
    # focus into main
    await page.reload()
    await expect(page.get_by_role("heading", level=1)).to_have_text(heading, timeout=WAIT_MS)
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.className") == "skip"
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"
    assert page.url.endswith(f"#/{fragment}")  # still on the same page


async def test_keyboard_navigation_between_pages(console: Console) -> None:
    await console.go("dashboard", "Dashboard")
    page = console.page
    link = page.get_by_role("link", name="Audit log")
    await link.focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Audit log")
    assert page.url.endswith("#/audit")
    # Tab order from the top: the skip link, then the page links in order
    await page.reload()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Audit log", timeout=WAIT_MS)
    names = []
    for _ in range(4):
        await page.keyboard.press("Tab")
        names.append(await page.evaluate("document.activeElement.textContent"))
    assert names == ["Skip to content", "Dashboard", "Sessions", "Nodes and pools"]


def test_lucid_sign_makes_a_tip191_signature(tmp_path: Path) -> None:
    key_file = tmp_path / "key.txt"
    lucid = str(Path(sys.executable).parent / "lucid")
    made = subprocess.run(
        [lucid, "sign", "--key-file", str(key_file), "--new-key"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    address = made.stdout.strip()
    assert oct(os.stat(key_file).st_mode & 0o777) == "0o600"
    message = "Sign in to Lucid\nnonce: 1234"
    signed = subprocess.run(
        [lucid, "sign", "--key-file", str(key_file), message],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert tip191.signed_by(address, message, signed.stdout.strip())
    again = subprocess.run(
        [lucid, "sign", "--key-file", str(key_file), "--new-key"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert again.returncode != 0 and "exists" in again.stderr
    key_file.write_text("not hex")
    bad = subprocess.run(
        [lucid, "sign", "--key-file", str(key_file), "x"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert bad.returncode != 0 and "not a private key" in bad.stderr


async def test_users_are_told_they_are_not_admins(console: Console) -> None:
    """A signed-in user without an admin role sees why, and how an operator fixes it."""
    key = PrivateKey.random()
    page = await new_page(console.browser, key)
    try:
        await page.goto(f"{console.url}/admin/")
        await page.get_by_role("button", name="Sign in with TronLink").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text(
            "Not an admin", timeout=WAIT_MS
        )
        alert = page.get_by_role("alert")
        await expect(alert).to_contain_text("PERMISSION_DENIED")
        await expect(alert).to_contain_text("lucid admin grant")
        assert await page.get_by_role("navigation").count() == 0
    finally:
        await page.context.close()


def test_the_banner_names_the_console_and_the_first_admin(settings: Settings) -> None:
    """What `make run` prints: the console's URL and how to become its first admin."""
    text = banner(settings)
    assert f"Admin console: https://localhost:{settings.edge_port}/admin/" in text
    assert "lucid admin grant <YOUR_TRON_ADDRESS> super_admin" in text
    assert "lucid sign --key-file KEY --message-file CHALLENGE" in text
