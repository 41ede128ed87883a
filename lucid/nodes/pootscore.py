"""The PoOT validation score of spec 05 §4, as pure arithmetic.

score = min(100, complexity + freshness + reliability + nonce), 2 decimals:

- complexity = min(30, len(output_data) / 1000) (the base64 text's length);
- freshness = max(0, 25 - age_minutes / 10);
- reliability = 25·r, r = 0.7·valid_rate + 0.3·mean_score/100 over the node's
  last 100 validations (0.5 for a node without history);
- nonce = 0 under 16 characters, else min(20, 5·H) with H the Shannon entropy in
  bits per character.

Valid only at score ≥ 70 with a nonce the node has not used within 24 h.
Confidence: 0.5 without history, else max(0.1, 1 - |z|/3) over the last 7 days
(≤ 100 scores; with zero spread 1 when equal to the mean, else 0). Suspicious when
|s - avg₂₄ₕ| > 2·avg₂₄ₕ or s = 100 with more than 5 recent scores; an alert at |z| > 3.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

VALID_SCORE = 70.0
MIN_NONCE = 8
SCORED_NONCE = 16
MAX_OUTPUT_BYTES = 1024 * 1024
MAX_AGE_S = 24 * 3600


def entropy_bits(text: str) -> float:
    """Shannon entropy in bits per character."""
    if not text:
        return 0.0
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


@dataclass(frozen=True)
class History:
    """What a node's past validations say."""

    count: int
    valid_rate: float
    mean_score: float


@dataclass(frozen=True)
class Breakdown:
    """The four parts of a score."""

    complexity: float
    freshness: float
    reliability: float
    nonce: float

    @property
    def total(self) -> float:
        """min(100, the sum), 2 decimals."""
        return round(
            min(100.0, self.complexity + self.freshness + self.reliability + self.nonce), 2
        )


def reliability_factor(history: History) -> float:
    """r = 0.7·valid_rate + 0.3·mean/100, or 0.5 for a new node."""
    if history.count == 0:
        return 0.5
    return 0.7 * history.valid_rate + 0.3 * history.mean_score / 100


def score(output_length: int, age_s: float, nonce: str, history: History) -> Breakdown:
    """The four parts for an output of ``output_length`` characters, ``age_s`` old."""
    return Breakdown(
        complexity=round(min(30.0, output_length / 1000), 2),
        freshness=round(max(0.0, 25 - age_s / 60 / 10), 2),
        reliability=round(25 * reliability_factor(history), 2),
        nonce=0.0 if len(nonce) < SCORED_NONCE else round(min(20.0, 5 * entropy_bits(nonce)), 2),
    )


def z_score(value: float, recent: Sequence[float]) -> float | None:
    """The z of ``value`` among ``recent`` (None without history; ±inf at zero spread)."""
    if not recent:
        return None
    mean = statistics.fmean(recent)
    spread = statistics.pstdev(recent)
    if spread == 0:
        return 0.0 if value == mean else math.inf
    return (value - mean) / spread


def confidence(value: float, recent_week: Sequence[float]) -> float:
    """0.5 without history, else max(0.1, 1 - |z|/3); 1 or 0 at zero spread."""
    z = z_score(value, recent_week)
    if z is None:
        return 0.5
    if math.isinf(z):
        return 0.0
    if statistics.pstdev(recent_week) == 0:
        return 1.0
    return round(max(0.1, 1 - abs(z) / 3), 4)


def suspicious(value: float, recent_day: Sequence[float]) -> bool:
    """|s - avg₂₄ₕ| > 2·avg₂₄ₕ, or a perfect 100 after more than 5 recent scores."""
    if value == 100 and len(recent_day) > 5:
        return True
    if not recent_day:
        return False
    average = statistics.fmean(recent_day)
    return abs(value - average) > 2 * average


def alert(value: float, recent_week: Sequence[float]) -> bool:
    """|z| > 3."""
    z = z_score(value, recent_week)
    return z is not None and abs(z) > 3
