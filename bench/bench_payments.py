"""Payouts end to end on the local TRON network, and the idempotency path's cost.

The production payments server (real FerretDB, mTLS) pays on a ``lucid devnet tron``
process making a block every 0.2 s: throughput is payouts created, broadcast and
confirmed (19 blocks deep) per second for a burst, and the latencies to broadcast and
to confirmation. The idempotency figure is 100 concurrent CreatePayout calls with one
key: the wall time of the burst and the p50/p99 of one call.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import BenchContext, Figure
from lucid.payments.v1 import payouts_pb2
from tests.payments_support import new_address, payments_bed

BURST = 50
AMOUNT = 10_000  # 0.01 USDT: the hourly cap is 1,000 USDT


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def run(ctx: BenchContext) -> list[Figure]:
    logging.getLogger("lucid.rpc").setLevel(logging.WARNING)
    figures: list[Figure] = []
    root = Path(tempfile.mkdtemp(prefix="lucid-bench-pay-"))
    async with payments_bed(ctx.settings, ctx.mesh, root, block_interval_s=0.2) as bed:
        stub = bed.stub()

        async def one() -> tuple[float, float]:
            started = time.perf_counter()
            created = await bed.create(amount_micros=AMOUNT, recipient_address=new_address())
            sent = await bed.until_status(
                created.payout_id, payouts_pb2.PAYOUT_STATUS_BROADCAST, timeout_s=120
            )
            broadcast_s = time.perf_counter() - started
            await bed.until_status(
                sent.payout_id, payouts_pb2.PAYOUT_STATUS_CONFIRMED, timeout_s=300
            )
            return broadcast_s, time.perf_counter() - started

        await one()  # warm up
        started = time.perf_counter()
        results = await asyncio.gather(*(one() for _ in range(BURST)))
        wall = time.perf_counter() - started
        to_broadcast = [r[0] * 1000 for r in results]
        to_confirm = [r[1] for r in results]
        figures += [
            Figure(f"{BURST} payouts created→confirmed: throughput", BURST / wall, "payouts/s"),
            Figure("created→broadcast p50", _pct(to_broadcast, 0.5), "ms"),
            Figure("created→broadcast p95", _pct(to_broadcast, 0.95), "ms"),
            Figure("created→confirmed (19 blocks of 0.2 s) p50", _pct(to_confirm, 0.5), "s"),
            Figure("created→confirmed p95", _pct(to_confirm, 0.95), "s"),
        ]

        request = payouts_pb2.CreatePayoutRequest(
            idempotency_key="bench-" + uuid.uuid4().hex,
            recipient_address=new_address(),
            amount_micros=AMOUNT,
            reason="idempotency bench",
        )

        async def timed() -> tuple[float, bool]:
            t0 = time.perf_counter()
            answer = await stub.CreatePayout(request)
            return (time.perf_counter() - t0) * 1000, answer.replayed

        t0 = time.perf_counter()
        burst = await asyncio.gather(*(timed() for _ in range(100)))
        burst_ms = (time.perf_counter() - t0) * 1000
        latencies = [b[0] for b in burst]
        replays = [b[0] for b in burst if b[1]]
        later = await asyncio.gather(*(timed() for _ in range(100)))
        figures += [
            Figure("100 concurrent CreatePayout, one key: wall time", burst_ms, "ms"),
            Figure("  one call p50", _pct(latencies, 0.5), "ms"),
            Figure("  one call p99", _pct(latencies, 0.99), "ms"),
            Figure("  payouts created by the burst", 100 - len(replays), "payouts"),
            Figure(
                "100 concurrent repeats of a known key: p50", _pct([b[0] for b in later], 0.5), "ms"
            ),
        ]
    return figures
