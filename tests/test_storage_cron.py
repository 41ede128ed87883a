"""The 5-field cron parser and next-run computation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lucid.storage.cron import CronError, parse

T0 = datetime(2026, 1, 30, 23, 59, 30, tzinfo=UTC)  # a Friday


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("* * * * *", datetime(2026, 1, 31, 0, 0, tzinfo=UTC)),
        ("0 2 * * *", datetime(2026, 1, 31, 2, 0, tzinfo=UTC)),
        ("*/15 * * * *", datetime(2026, 1, 31, 0, 0, tzinfo=UTC)),
        ("5-10/5 3 * * *", datetime(2026, 1, 31, 3, 5, tzinfo=UTC)),
        ("0 0 29 2 *", datetime(2028, 2, 29, 0, 0, tzinfo=UTC)),
        ("0 12 * * 1", datetime(2026, 2, 2, 12, 0, tzinfo=UTC)),  # next Monday
        ("0 12 * * 7", datetime(2026, 2, 1, 12, 0, tzinfo=UTC)),  # 7 is Sunday too
        ("0 12 1 * 1", datetime(2026, 2, 1, 12, 0, tzinfo=UTC)),  # day OR weekday
        ("30 8 1,15 3-4 *", datetime(2026, 3, 1, 8, 30, tzinfo=UTC)),
    ],
)
def test_next_run(expression: str, expected: datetime) -> None:
    assert parse(expression).next_after(T0) == expected


def test_next_run_is_strictly_after() -> None:
    at = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    assert parse("0 2 * * *").next_after(at) == datetime(2026, 1, 2, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "expression",
    [
        "61 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 8",
        "* * * *",
        "* * * * * *",
        "*/0 * * * *",
        "5-1 * * * *",
        "a * * * *",
        "1,,2 * * * *",
        "0 0 31 2 *",
        "0 0 30 2 *",
    ],
)
def test_invalid_expressions(expression: str) -> None:
    with pytest.raises(CronError):
        parse(expression)
