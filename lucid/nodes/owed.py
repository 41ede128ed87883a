"""What each node is owed for an epoch (spec 05 §4 "Proposal"), and pool splits.

amount = epoch budget x the node's credits / Σ credits, where only nodes whose
latest PoOT is valid count (in the share and in Σ); what was carried over from
earlier epochs is added, and an amount under the minimum (10 USDT) is carried to
the next epoch instead of paid. Amounts are integer micro-USDT, rounded down to
whole cents (what cluster 07 pays); the remainder stays with the budget.

A pool's amount is split among its members: equally, weighted by contribution,
or by work credits (each member gets own / Σ).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lucid.nodes.v1 import pool_pb2 as ppb

MINIMUM_MICROS = 10_000_000
CENT = 10_000


def _cents(micros: float) -> int:
    return int(micros // CENT) * CENT


@dataclass(frozen=True)
class Owed:
    """An epoch's outcome: what to pay now, and what carries over."""

    pay: dict[str, int]
    carry: dict[str, int]


def owed(
    budget_micros: int,
    credits: Mapping[str, float],
    valid: set[str],
    carried: Mapping[str, int],
    minimum_micros: int = MINIMUM_MICROS,
) -> Owed:
    """Each eligible node's share of the budget plus its carry, paid or carried on."""
    eligible = {n: c for n, c in credits.items() if n in valid and c > 0}
    total = sum(eligible.values())
    pay: dict[str, int] = {}
    carry: dict[str, int] = {}
    for node in sorted(set(eligible) | set(carried)):
        share = _cents(budget_micros * eligible[node] / total) if node in eligible else 0
        amount = share + carried.get(node, 0)
        if amount >= minimum_micros:
            pay[node] = amount
        elif amount:
            carry[node] = amount
    return Owed(pay, carry)


def split(amount_micros: int, weights: Mapping[str, float], mode: int) -> dict[str, int]:
    """A pool's amount among its members (``weights``: contribution or credits)."""
    if not weights:
        return {}
    if mode == ppb.REWARD_SPLIT_EQUAL or not any(weights.values()):
        each = _cents(amount_micros / len(weights))
        return dict.fromkeys(sorted(weights), each)
    total = sum(max(0.0, w) for w in weights.values())
    return {m: _cents(amount_micros * max(0.0, w) / total) for m, w in sorted(weights.items())}
