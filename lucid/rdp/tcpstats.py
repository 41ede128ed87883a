"""Byte counters of the TCP connections on a local port, from the kernel's socket
statistics (``ss -tin``, iproute2): what an RDP listener and the connections it
forked sent and received, per connection. psutil has no per-process network
counters; an instance's traffic is exactly the traffic of its port."""

from __future__ import annotations

import re
import subprocess

SS_TIMEOUT_S = 5.0
_COUNTER = re.compile(r"\b(bytes_acked|bytes_received):(\d+)")

Counters = dict[tuple[str, str], tuple[int, int]]
"""(local address, peer address) → (bytes sent and acknowledged, bytes received)."""


def parse(output: str) -> Counters:
    """The counters in ``ss -Htin`` output: a line per connection (Recv-Q, Send-Q,
    local, peer), then an indented line of its TCP info."""
    counters: Counters = {}
    key: tuple[str, str] | None = None
    for line in output.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            fields = line.split()
            key = (fields[2], fields[3]) if len(fields) >= 4 else None
            continue
        if key is None:
            continue
        found = dict(_COUNTER.findall(line))
        counters[key] = (int(found.get("bytes_acked", 0)), int(found.get("bytes_received", 0)))
        key = None
    return counters


def of_port(port: int) -> Counters:
    """The established connections whose local port is ``port``."""
    result = subprocess.run(
        ["ss", "-Htin", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        timeout=SS_TIMEOUT_S,
        check=True,
    )
    return parse(result.stdout)


def delta(before: Counters, after: Counters) -> tuple[int, int]:
    """Bytes (sent, received) between two readings; a connection new since ``before``
    counts from zero, one that closed in between is lost."""
    sent = received = 0
    for key, (out, into) in after.items():
        was_out, was_in = before.get(key, (0, 0))
        sent += max(out - was_out, 0)
        received += max(into - was_in, 0)
    return sent, received
