"""THE recording test: a real xrdp desktop, a real RDP client typing into it, the
recording anchored and replayed with every segment verified; a tampered chunk is
refused; a wrong password records nothing (issue 10)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import grpc
import numpy as np
import pytest

from lucid.lib.trustanchor import TrustAnchor
from lucid.rdp import replay
from lucid.rdp.backend import Display
from lucid.rdp.capture import parse_size
from lucid.rdp.replaycli import replay_to_file
from lucid.rdp.v1 import session_pb2
from lucid.runtime.config import Settings
from lucid.runtime.errors import LucidError
from lucid.sessions.blobstore import BlobStore
from lucid.sessions.v1 import chunks_pb2, sessions_pb2
from tests.chainfake import FakeAnchoring
from tests.rdpkit import RdpEnv, rdp_client, run_lucid, snapshot, start_rdp, stop_rdp
from tests.support import Mesh
from tests.waiting import eventually

TYPED = "lucid records what you see 0123456789"
MAX_MEAN_ERROR = 1.0
"""Mean absolute error (0 to 255 per channel) allowed between the replay's last frame and
a screenshot of the session display taken just before termination (H.264 is lossy)."""
MIN_CHANGED_PIXELS = 300
"""Pixels the typed text must change between the first and the last frame."""
RESOLUTION = "800x600"
"""The recording's resolution, not the desktop's (1024x768): frames are scaled."""


@pytest.fixture(scope="module")
async def env(
    mesh: Mesh, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RdpEnv]:
    rdp = await start_rdp(
        mesh, settings, tmp_path_factory.mktemp("rdp-recording"), resolution=RESOLUTION
    )
    try:
        yield rdp
    finally:
        await stop_rdp(rdp)


def frames_of(data: bytes) -> list[np.ndarray[Any, Any]]:
    """Every decoded frame of an MPEG-TS file, as RGB arrays."""
    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def scaled(image: np.ndarray[Any, Any], size: str) -> np.ndarray[Any, Any]:
    """An RGB array scaled to ``WIDTHxHEIGHT`` the way the recorder scales frames."""
    width, height = parse_size(size)
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    small = frame.reformat(width=width, height=height, format="yuv420p")
    return small.to_ndarray(format="rgb24")  # type: ignore[no-any-return]


def test_a_recording_size_is_an_even_width_by_height() -> None:
    assert parse_size("1024x768") == (1024, 768)
    assert parse_size("801x601") == (800, 600)  # YUV 4:2:0 needs even sides
    for bad in ("", "1024", "x768", "1024x", "-2x4", "1x1", "axb"):
        with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
            parse_size(bad)


def changed_pixels(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> int:
    """Pixels whose colour differs by more than 64 in some channel."""
    return int((np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 64).sum())


async def wait_display(env: RdpEnv, username: str) -> Display:
    async def find() -> Display | None:
        return await asyncio.to_thread(env.backend.display, username)

    display = await eventually(find, timeout_s=60.0, what="the desktop's X display")
    assert display is not None
    return display


async def test_a_real_desktop_is_recorded_anchored_and_replayed(
    env: RdpEnv, tmp_path: Path
) -> None:
    user_id, md = await env.user()
    server = await env.create_server(md)
    await env.start_server(md, server.server_id)
    session = await env.create_session(md, server.server_id)
    assert session.state == session_pb2.RDP_SESSION_STATE_ACTIVE
    recording = await env.sessions_env.get(md, session.session_id)
    assert recording.state == sessions_pb2.SESSION_STATE_RECORDING
    assert recording.recording_config.resolution == RESOLUTION
    assert recording.recording_config.frame_rate == env.config.frame_rate
    connected = await env.sessions.ConnectRdpSession(
        session_pb2.ConnectRdpSessionRequest(session_id=session.session_id), metadata=md
    )
    assert connected.username and connected.password and connected.access_token
    info = connected.connection_info
    assert (info.server_ip, info.server_port) == ("127.0.0.1", server.port)

    async with rdp_client(
        info.server_ip, info.server_port, connected.username, connected.password, tmp_path / "c.log"
    ) as client:
        display = await wait_display(env, connected.username)
        shot = tmp_path / "shot.npy"

        async def first_segment() -> int:
            stats = env.domain_sessions.recorder.stats(session.session_id)
            return stats.segments if stats else 0

        await eventually(first_segment, timeout_s=60.0, what="a first recorded segment")
        before = await asyncio.to_thread(snapshot, display.name, display.xauthority, shot)
        await asyncio.to_thread(client.xdotool, "mousemove", "200", "200")
        await asyncio.to_thread(client.xdotool, "type", "--delay", "40", TYPED)

        async def screen() -> np.ndarray[Any, Any]:
            return await asyncio.to_thread(snapshot, display.name, display.xauthority, shot)

        async def typed() -> bool:
            return changed_pixels(before, await screen()) >= MIN_CHANGED_PIXELS

        await eventually(typed, timeout_s=60.0, what="the typed text on the remote screen")
        # the text is on the remote screen, which stays still from here on
        final = await screen()
        assert final.shape[:2] == (768, 1024)  # the desktop's own size
        await env.sessions.TerminateRdpSession(
            session_pb2.TerminateRdpSessionRequest(session_id=session.session_id), metadata=md
        )

    ended = await env.sessions.GetRdpSession(
        session_pb2.GetRdpSessionRequest(session_id=session.session_id), metadata=md
    )
    assert ended.session.state == session_pb2.RDP_SESSION_STATE_TERMINATED
    completed = await env.sessions_env.wait_state(
        md, session.session_id, {sessions_pb2.SESSION_STATE_COMPLETED}, 60.0
    )
    assert completed.statistics.chunk_count >= 2

    token = await env.sessions_env.main.token(user_id=user_id)
    anchor = await env.sessions_env.trust_anchor()
    settings = env.sessions_env.settings
    out = tmp_path / "replay.ts"
    log = io.StringIO()
    assert await replay_to_file(settings, session.session_id, out, log, token=token, anchor=anchor)
    assert "verified segments written" in log.getvalue()
    frames = frames_of(out.read_bytes())
    assert len(frames) >= env.config.frame_rate  # at least a second of desktop
    assert {f.shape for f in frames} == {(600, 800, 3)}  # the recording's resolution
    last = frames[-1]
    final = scaled(final, RESOLUTION)
    error = float(np.abs(last.astype(int) - final.astype(int)).mean())
    print(
        f"replay: {len(frames)} frames, last vs screenshot mean error {error:.2f},"
        f" typed pixels {changed_pixels(frames[0], last)}"
    )
    assert error < MAX_MEAN_ERROR, error
    assert changed_pixels(frames[0], last) >= MIN_CHANGED_PIXELS

    # the command: refuses without a trust anchor, writes the same file with one
    trust = tmp_path / "anchor.json"
    trust.write_text(anchor.to_json())
    command = ["replay", session.session_id, "-o", str(tmp_path / "cli.ts"), "--token", token]
    assert (await run_lucid(settings, *command)).returncode == 1
    done = await run_lucid(settings, *command, "--trust", str(trust))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "cli.ts").read_bytes() == out.read_bytes()

    # every segment decodes on its own and starts with a key frame
    async def channel() -> grpc.aio.Channel:
        return env.sessions_env.channel

    trusted = replay.Replay(channel, env.sessions_env.trust_anchor)
    segments = [s async for s in trusted.segments(session.session_id, token)]
    chunks = (
        await env.sessions_env.chunks.ListChunks(
            chunks_pb2.ListChunksRequest(session_id=session.session_id), metadata=md
        )
    ).chunks
    assert [s.sequence_number for s in segments] == [c.sequence_number for c in chunks]
    assert len(chunks) >= 2
    streamed = [
        s
        async for s in env.sessions.StreamRecording(
            session_pb2.StreamRecordingRequest(session_id=session.session_id), metadata=md
        )
    ]
    assert [s.data for s in streamed] == [s.data for s in segments]
    assert {s.merkle_root for s in streamed} == {segments[0].merkle_root}
    for segment in segments:
        with av.open(io.BytesIO(segment.data)) as container:
            first = next(container.decode(video=0))
            assert first.key_frame

    # another chain's trust anchor: nothing verifies
    async def foreign() -> TrustAnchor:
        return FakeAnchoring().trust_anchor()

    with pytest.raises(LucidError) as caught:
        [s async for s in replay.Replay(channel, foreign).segments(session.session_id, token)]
    assert caught.value.reason == "LUCID_ERR_4307"

    # another user may not replay it
    _, other = await env.user()
    stranger = other[0][1].removeprefix("Bearer ")
    refused = io.StringIO()
    assert not await replay_to_file(
        settings, session.session_id, tmp_path / "x.ts", refused, token=stranger, anchor=anchor
    )
    assert not (tmp_path / "x.ts").exists()

    # one altered stored chunk: replay refuses that segment
    victim = chunks[len(chunks) // 2]
    blob = BlobStore(env.sessions_env.config.blob_root).path_of(victim.merkle_hash)
    data = bytearray(blob.read_bytes())
    data[-10] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(LucidError) as caught:
        [s async for s in trusted.segments(session.session_id, token)]
    assert caught.value.reason == "LUCID_ERR_4307"
    assert caught.value.metadata["sequence_number"] == str(victim.sequence_number)
    broken = io.StringIO()
    assert not await replay_to_file(
        settings, session.session_id, tmp_path / "y.ts", broken, token=token, anchor=anchor
    )
    assert f"segment {victim.sequence_number} is refused" in broken.getvalue()
    with pytest.raises(grpc.aio.AioRpcError) as refused_stream:
        [
            s
            async for s in env.sessions.StreamRecording(
                session_pb2.StreamRecordingRequest(session_id=session.session_id), metadata=md
            )
        ]
    assert refused_stream.value.code() == grpc.StatusCode.DATA_LOSS
    await env.delete_server(md, server.server_id)


async def test_a_wrong_or_used_password_records_nothing(env: RdpEnv, tmp_path: Path) -> None:
    _, md = await env.user()
    server = await env.create_server(md)
    await env.start_server(md, server.server_id)
    session = await env.create_session(md, server.server_id)
    connect = session_pb2.ConnectRdpSessionRequest(session_id=session.session_id)
    used = await env.sessions.ConnectRdpSession(connect, metadata=md)
    await env.sessions.DisconnectRdpSession(
        session_pb2.DisconnectRdpSessionRequest(session_id=session.session_id), metadata=md
    )
    connected = await env.sessions.ConnectRdpSession(connect, metadata=md)
    log = env.backend.files(server.server_id).log_dir / "xrdp.log"
    for password in ("not-" + connected.password, used.password):
        await _refused(env, server.port, connected.username, password, log, tmp_path)
    stats = await env.domain_sessions.recorder.stop(session.session_id)
    assert stats.segments == 0
    await env.sessions.TerminateRdpSession(
        session_pb2.TerminateRdpSessionRequest(session_id=session.session_id, force=True),
        metadata=md,
    )
    await env.delete_server(md, server.server_id)


def _login_failures(log: Path) -> int:
    return log.read_text().lower().count("login failed") if log.exists() else 0


async def _refused(
    env: RdpEnv, port: int, username: str, password: str, log: Path, tmp_path: Path
) -> None:
    """A real client with a bad password reaches xrdp's login failure, and no desktop."""

    async def failures() -> int:
        return await asyncio.to_thread(_login_failures, log)

    before = await failures()
    async with rdp_client("127.0.0.1", port, username, password, tmp_path / "c.log"):

        async def refused() -> bool:
            return await failures() > before

        await eventually(refused, timeout_s=60.0, what="xrdp's login failure")
        assert env.backend.display(username) is None
