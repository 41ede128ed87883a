"""``lucid replay SESSION_ID -o out.ts --trust ANCHOR | --chain ADDR``: a recording,
verified segment by segment against its anchored Merkle root and the chain's trust
anchor, written as one playable MPEG-TS file.

It talks to cluster 03 directly (the operator's certificate, the user's token), so
the checks run on the machine that replays, not on a server. A refused segment
stops the replay: the file is not written, and the command says which segment
failed and why.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

import grpc

from lucid.lib.trustanchor import TrustAnchor
from lucid.rdp import replay
from lucid.runtime import tls
from lucid.runtime.config import Settings
from lucid.runtime.errors import LucidError


async def replay_to_file(
    settings: Settings,
    session_id: str,
    out: Path,
    log: TextIO,
    *,
    token: str,
    anchor: TrustAnchor,
) -> bool:
    """The command; whether the file was written."""
    credentials = tls.channel_credentials(tls.CertPaths.of(settings.certs_dir, "operator"))
    channel = grpc.aio.secure_channel(
        f"{settings.host}:{settings.port('sessions')}",
        credentials,
        options=[("grpc.ssl_target_name_override", tls.dns_name("sessions"))],
    )

    async def connect() -> grpc.aio.Channel:
        return channel

    async def trusted() -> TrustAnchor:
        return anchor

    try:
        count = await replay.write(replay.Replay(connect, trusted).segments(session_id, token), out)
    except LucidError as exc:
        log.write(f"FAIL {exc.reason}: {exc.message}\n")
        return False
    except grpc.aio.AioRpcError as exc:
        log.write(f"FAIL {exc.code().name}: {exc.details()}\n")
        return False
    finally:
        await channel.close()
    log.write(f"ok {count} verified segments written to {out}\n")
    return True
