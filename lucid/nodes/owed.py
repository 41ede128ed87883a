"""What each node is owed for an epoch (spec 05 §4 "Proposal"), and pool splits.

amount = epoch budget x the node's credits / Σ credits, where only nodes whose
latest PoOT is valid count (in the share and in Σ); what was carried over from
earlier epochs is added, and an amount under the minimum (10 USDT) is carried to
the next epoch instead of paid. Amounts are integer micro-USDT, rounded down to
whole cents (what cluster 07 pays); the remainder stays with the budget.

A pool's amount is split among its members: equally, weighted by contribution,
or by work credits (each member gets own / Σ). In an epoch (``pooled``) the split is
made on the credits before ``owed``: the pool's eligible members' credits are
summed and handed out again by the pool's mode, so Σ credits, and with it every
other node's share and the pool's amount, stay the same. A pool whose amount is
under 1 USDT is not split (each member keeps its own share).

Contribution (spec 05 §4 "0.7·uptime + 0.3·min(sessions/100, 1)"): uptime is the
share of the window's slots with a beacon, sessions the validation signatures the
node checked (the work it did for others' sessions that the proofs record).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lucid.nodes.v1 import pool_pb2 as ppb

MINIMUM_MICROS = 10_000_000
POOL_MINIMUM_MICROS = 1_000_000
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


@dataclass(frozen=True)
class PoolSplit:
    """A pool in an epoch: its members and how it splits."""

    pool_id: str
    members: Sequence[str]
    mode: int


def contribution(uptime: float, sessions: float) -> float:
    """0.7·uptime + 0.3·min(sessions/100, 1), uptime in [0, 1]."""
    return 0.7 * min(max(uptime, 0.0), 1.0) + 0.3 * min(max(sessions, 0.0) / 100, 1.0)


def pooled(
    budget_micros: int,
    credits: Mapping[str, float],
    valid: set[str],
    pools: Sequence[PoolSplit],
    contributions: Mapping[str, float],
) -> dict[str, float]:
    """Node credits with each pool's share re-split among its eligible members."""
    total = sum(c for n, c in credits.items() if n in valid and c > 0)
    found = dict(credits)
    if total <= 0:
        return found
    for pool in pools:
        members = sorted(m for m in set(pool.members) if m in valid)
        pool_credits = sum(max(0.0, credits.get(m, 0.0)) for m in members)
        if not members or budget_micros * pool_credits / total < POOL_MINIMUM_MICROS:
            continue
        if pool.mode == ppb.REWARD_SPLIT_CONTRIBUTION_WEIGHTED:
            weights = {m: max(0.0, contributions.get(m, 0.0)) for m in members}
        elif pool.mode == ppb.REWARD_SPLIT_EQUAL:
            weights = dict.fromkeys(members, 1.0)
        else:  # work credits (the default): each keeps own / Σ
            continue
        weight_sum = sum(weights.values())
        if weight_sum <= 0:
            continue
        for member in members:
            found[member] = pool_credits * weights[member] / weight_sum
    return found
