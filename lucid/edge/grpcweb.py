"""The grpc-web wire format (what Envoy's ``grpc_web`` filter speaks).

A body is a sequence of frames: one flag byte (``0x00`` message, ``0x80`` trailers),
a 4-byte big-endian length, the payload. Trailers travel in the last frame as
``name:value\\r\\n`` lines, since browsers cannot read HTTP trailers. In the text
variant (``application/grpc-web-text``) the frames are base64; a client may send
several padded base64 pieces back to back, and the edge answers each frame as its
own padded piece.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Iterable
from urllib.parse import quote

import grpc

from lucid.runtime.errors import STATUS_DETAILS_KEY

DATA = 0x00
TRAILERS = 0x80
HEADER = struct.Struct(">BI")
CONTENT_TYPES = (
    "application/grpc-web",
    "application/grpc-web+proto",
    "application/grpc-web-text",
    "application/grpc-web-text+proto",
)


class FrameError(ValueError):
    """A body that is not a well-formed sequence of grpc-web frames."""


def is_text(content_type: str) -> bool:
    """Whether a content type is the base64 variant."""
    return content_type.startswith("application/grpc-web-text")


def response_type(content_type: str) -> str:
    """The content type of the answer to a request of ``content_type``."""
    return (
        "application/grpc-web-text+proto" if is_text(content_type) else "application/grpc-web+proto"
    )


def decode_text(body: bytes) -> bytes:
    """Base64 that may be several padded pieces one after another."""
    out = bytearray()
    compact = b"".join(body.split())
    start = 0
    try:
        while start < len(compact):
            end = compact.find(b"=", start)
            if end == -1:
                out += base64.b64decode(compact[start:], validate=True)
                break
            while end < len(compact) and compact[end : end + 1] == b"=":
                end += 1
            out += base64.b64decode(compact[start:end], validate=True)
            start = end
    except binascii.Error as exc:
        raise FrameError(f"body is not base64: {exc}") from None
    return bytes(out)


def frame(flag: int, payload: bytes) -> bytes:
    """One frame."""
    return HEADER.pack(flag, len(payload)) + payload


def parse_frames(body: bytes) -> list[tuple[int, bytes]]:
    """Every frame of a body."""
    frames = []
    offset = 0
    while offset < len(body):
        if len(body) - offset < HEADER.size:
            raise FrameError("truncated frame header")
        flag, length = HEADER.unpack_from(body, offset)
        offset += HEADER.size
        if len(body) - offset < length:
            raise FrameError("truncated frame")
        frames.append((flag, body[offset : offset + length]))
        offset += length
    return frames


def first_frame_length(body: bytes) -> int | None:
    """The declared length of the first frame (to refuse oversize messages early)."""
    if len(body) < HEADER.size:
        return None
    return int(HEADER.unpack_from(body, 0)[1])


def trailers(
    code: grpc.StatusCode,
    message: str = "",
    metadata: Iterable[tuple[str, str | bytes]] = (),
) -> bytes:
    """The trailer frame's payload: status, message and further trailing metadata."""
    lines = [f"grpc-status:{code.value[0]}"]
    if message:
        lines.append(f"grpc-message:{quote(message, safe=' !#$&()*+,/:;=?@[]~')}")
    for key, value in metadata:
        if key in {"grpc-status", "grpc-message"}:
            continue
        if isinstance(value, bytes) or key.endswith("-bin"):
            raw = value if isinstance(value, bytes) else value.encode()
            text = base64.b64encode(raw).decode()
        else:
            text = value
        lines.append(f"{key}:{text}")
    return ("\r\n".join(lines) + "\r\n").encode()


def encode(piece: bytes, text: bool) -> bytes:
    """A frame as sent: raw, or as one padded base64 piece."""
    return base64.b64encode(piece) if text else piece


__all__ = [
    "CONTENT_TYPES",
    "DATA",
    "STATUS_DETAILS_KEY",
    "TRAILERS",
    "FrameError",
    "decode_text",
    "encode",
    "first_frame_length",
    "frame",
    "is_text",
    "parse_frames",
    "response_type",
    "trailers",
]
