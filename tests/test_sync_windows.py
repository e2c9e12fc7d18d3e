"""Which dates a sync asks for: windows, gaps, and the search after a 1003 (pure)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import date, timedelta

import pytest

from ibkr_flex_client.sync.windows import (
    MAX_DAYS,
    Outcome,
    Search,
    Window,
    gaps,
    split,
    weekdays,
)

D = date.fromisoformat
TODAY = D("2026-11-27")  # a Friday


def test_split_makes_windows_of_at_most_365_days_newest_first() -> None:
    windows = split(D("2021-11-27"), D("2026-11-26"))
    assert windows[0] == Window(D("2025-11-27"), D("2026-11-26"))
    assert all(w.days <= MAX_DAYS for w in windows)
    assert windows[-1].first == D("2021-11-27")
    for newer, older in itertools.pairwise(windows):
        assert older.last + timedelta(days=1) == newer.first  # no gap, no overlap
    assert sum(w.days for w in windows) == (D("2026-11-26") - D("2021-11-27")).days + 1
    assert split(D("2026-01-02"), D("2026-01-01")) == []


@pytest.mark.parametrize(
    ("covered", "expected"),
    [
        ([], [("2026-01-01", "2026-01-31")]),
        ([("2026-01-01", "2026-01-31")], []),
        ([("2025-12-01", "2026-01-10")], [("2026-01-11", "2026-01-31")]),
        (
            [("2026-01-05", "2026-01-09"), ("2026-01-20", "2026-02-20")],
            [("2026-01-01", "2026-01-04"), ("2026-01-10", "2026-01-19")],
        ),
        (
            [("2026-01-05", "2026-01-09"), ("2026-01-06", "2026-01-07")],
            [("2026-01-01", "2026-01-04"), ("2026-01-10", "2026-01-31")],
        ),
    ],
)
def test_gaps(covered: list[tuple[str, str]], expected: list[tuple[str, str]]) -> None:
    ranges = [(D(a), D(b)) for a, b in covered]
    assert gaps(ranges, D("2026-01-01"), D("2026-01-31")) == [(D(a), D(b)) for a, b in expected]


def test_weekdays_moves_the_ends_off_the_weekend() -> None:
    assert weekdays(D("2026-11-21"), D("2026-11-29")) == (D("2026-11-23"), D("2026-11-27"))
    assert weekdays(D("2026-11-21"), D("2026-11-22")) is None


def ib(
    *,
    opened: date = date(2000, 1, 1),
    published: date = TODAY - timedelta(days=1),
    holidays: frozenset[date] = frozenset(),
) -> Callable[[date, date], bool]:
    """IB's 1003 rules as observed: an end on a weekend or holiday, an end not yet
    published, a start before the account opened."""

    def serves(first: date, last: date) -> bool:
        bad = {d for d in (first, last) if d.weekday() >= 5 or d in holidays}
        return not bad and last <= published and first >= opened

    return serves


def search(
    window: Window, serves: Callable[[date, date], bool]
) -> tuple[Search, list[tuple[date, date]]]:
    found = Search(window, TODAY)
    asked = []
    for first, last in found.ranges():
        asked.append((first, last))
        assert first <= last
        assert first >= window.first
        assert last <= window.last
        found.answered(served=serves(first, last))
        assert len(asked) < 30
    return found, asked


def test_a_plain_window_is_one_request_with_its_ends_on_weekdays() -> None:
    found, asked = search(Window(D("2025-11-22"), D("2026-11-22")), ib())
    assert asked == [(D("2025-11-24"), D("2026-11-20"))]
    assert found.outcome is Outcome.STATEMENT
    assert found.covers == Window(D("2025-11-22"), D("2026-11-22"))


def test_a_holiday_at_the_end_of_an_old_window_costs_two_failures() -> None:
    christmas = D("2025-12-25")
    found, _asked = search(Window(D("2025-06-01"), christmas), ib(holidays=frozenset({christmas})))
    assert found.outcome is Outcome.STATEMENT
    assert found.served == (D("2025-06-02"), D("2025-12-24"))
    assert found.failures == 2
    assert found.covers == Window(D("2025-06-01"), christmas)  # the holiday has no statement


def test_a_holiday_at_the_start_moves_the_start() -> None:
    found, _ = search(
        Window(D("2026-01-01"), D("2026-06-30")), ib(holidays=frozenset({D("2026-01-01")}))
    )
    assert found.served == (D("2026-01-02"), D("2026-06-30"))
    assert found.covers.first == D("2026-01-01")


def test_yesterday_not_yet_published_is_left_for_the_next_run() -> None:
    found, _ = search(Window(D("2026-11-01"), D("2026-11-26")), ib(published=D("2026-11-25")))
    assert found.served == (D("2026-11-02"), D("2026-11-25"))
    assert found.covers == Window(D("2026-11-01"), D("2026-11-25"))


@pytest.mark.parametrize(
    "opened", ["2026-03-02", "2026-03-13", "2026-06-17", "2026-11-02", "2026-11-20"]
)
def test_the_account_opened_within_the_window_is_found_by_bisection(opened: str) -> None:
    found, asked = search(Window(D("2025-11-21"), D("2026-11-20")), ib(opened=D(opened)))
    assert found.outcome is Outcome.STATEMENT
    assert found.served == (D(opened), D("2026-11-20"))
    assert found.failures <= 12, asked
    assert len(asked) <= 16


def test_a_window_before_the_account_opened_is_empty_after_six_failures() -> None:
    found, asked = search(Window(D("2020-01-01"), D("2020-12-31")), ib(opened=D("2022-01-03")))
    assert found.outcome is Outcome.EMPTY
    assert found.nothing
    assert found.failures == len(asked) == 6


@pytest.mark.parametrize("closed", [4, 5, 30])
def test_a_closure_of_days_at_the_end_is_bisected_not_taken_for_no_statement(closed: int) -> None:
    end = D("2001-09-14")
    days = frozenset(end - timedelta(days=n) for n in range(closed + 2 * (closed // 5) + 1))
    found, _ = search(Window(D("2000-09-15"), end), ib(holidays=days))
    assert found.outcome is Outcome.STATEMENT
    assert not found.nothing
    assert found.served is not None
    assert found.served[1] == max(d for d in _weekdays_before(end, 60) if d not in days)
    assert found.covers.last == end  # an old closure: no statement there, nothing to refetch


def _weekdays_before(end: date, count: int) -> list[date]:
    return [
        end - timedelta(days=n) for n in range(count) if (end - timedelta(days=n)).weekday() < 5
    ]


def test_a_weekend_only_window_asks_nothing() -> None:
    found, asked = search(Window(D("2026-11-21"), D("2026-11-22")), ib())
    assert asked == []
    assert found.outcome is Outcome.EMPTY


def test_a_statement_saying_when_the_account_opened_ends_the_search_at_once() -> None:
    opened = D("2026-06-17")
    serves = ib(opened=opened)
    found = Search(Window(D("2025-11-21"), D("2026-11-20")), TODAY)
    asked = []
    for first, last in found.ranges():
        asked.append((first, last))
        served = serves(first, last)
        found.answered(served=served)
        if served:
            found.skip_to(opened)  # the [last, last] statement's AccountInformation dateOpened
    assert asked == [
        (D("2025-11-21"), D("2026-11-20")),
        (D("2026-11-20"), D("2026-11-20")),
        (opened, D("2026-11-20")),
    ]
    assert found.served == (opened, D("2026-11-20"))
