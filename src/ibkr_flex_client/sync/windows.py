"""Which dates to ask IB for: pure dates in, windows and requests out. No I/O, no clock.

IB serves a Flex Query for any range of at most 365 days through SendRequest's ``fd``/``td``
("Optional SendRequest parameters" in ``docs/protocol.md``), and answers 1003 ("statement not
available") when an end of the range falls on a weekend, on a date not yet published, or
(reportedly) before the account existed. So a sync splits what it needs into
:class:`Window` s of at most :data:`MAX_DAYS` and, for each, asks for the ends moved onto
weekdays; a 1003 starts a short :class:`Search` for the range that IB does serve, so that no
date with data is skipped and no window is given up silently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta

from ..settings import MAX_RANGE_DAYS

__all__ = [
    "EARLIEST",
    "MAX_DAYS",
    "RECENT_DAYS",
    "Outcome",
    "Search",
    "Window",
    "date_range",
    "gaps",
    "split",
    "union",
    "weekdays",
]

MAX_DAYS = MAX_RANGE_DAYS
# No Flex statement is older (IB's Flex service is from the 2000s): an earlier date is a typo.
EARLIEST = date(1980, 1, 1)
# An end this close to today may be "not yet published": a window whose end had to be moved
# back covers only what IB served, so the next run asks for the rest again.
RECENT_DAYS = 7
# After a 1003, at most this many earlier business days are tried as the window's end (a
# holiday, a day not yet published), and this many later ones as its start (a holiday).
END_STEPS = 3
START_STEPS = 2
_DAY = timedelta(days=1)


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """Dates ``first`` to ``last`` (inclusive) of one query, fetched as one statement."""

    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def __str__(self) -> str:
        return f"{self.first.isoformat()}..{self.last.isoformat()}"


def date_range(
    since: date | str | None, until: date | str | None, today: date
) -> tuple[date | None, date]:
    """``since`` (or None) and ``until`` as dates, checked: ``until`` defaults to the day
    before ``today`` and may not be later (IB has no finalised data for today), ``since``
    not after it. Strings are ``yyyy-MM-dd`` or ``yyyyMMdd``; a ``ValueError`` says what is
    wrong."""
    last = _day("until", until) if until is not None else today - _DAY
    for name, day in (("since", since), ("until", until)):
        if day is not None and _day(name, day) < EARLIEST:
            raise ValueError(
                f"{name} {_day(name, day)} is before {EARLIEST}: IB has no Flex data that old"
            )
    if last >= today:
        raise ValueError(
            f"until {last} is not before today ({today}): IB has no finalised data for today "
            "or later; leave until out for yesterday"
        )
    first = _day("since", since) if since is not None else None
    if first is not None and first > last:
        raise ValueError(f"since {first} is after until {last}")
    return first, last


def _day(name: str, value: date | str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    text = str(value).strip()
    for form in ("%Y-%m-%d", "%Y%m%d"):
        with contextlib.suppress(ValueError):
            return datetime.strptime(text, form).date()
    raise ValueError(f"{name} {value!r} is not a date: write yyyy-MM-dd or yyyyMMdd")


def split(first: date, last: date, *, newest_first: bool = True) -> list[Window]:
    """``first`` to ``last`` in windows of at most :data:`MAX_DAYS` days, ending at ``last``
    (so the newest window is whole), newest first by default."""
    windows = []
    end = last
    while end >= first:
        start = max(first, end - timedelta(days=MAX_DAYS - 1))
        windows.append(Window(start, end))
        end = start - _DAY
    return windows if newest_first else windows[::-1]


def gaps(covered: Iterable[tuple[date, date]], first: date, last: date) -> list[tuple[date, date]]:
    """The runs of days from ``first`` to ``last`` that no range in ``covered`` holds."""
    missing = []
    cursor = first
    for start, end in sorted(covered):
        if end < cursor:
            continue
        if start > last:
            break
        if start > cursor:
            missing.append((cursor, min(start - _DAY, last)))
        cursor = max(cursor, end + _DAY)
    if cursor <= last:
        missing.append((cursor, last))
    return missing


def union(ranges: Iterable[tuple[date, date]]) -> list[tuple[date, date]]:
    """The days of ``ranges`` as few ranges as possible: overlapping and adjacent ones
    joined, in order."""
    joined: list[tuple[date, date]] = []
    for first, last in sorted(ranges):
        if joined and first <= joined[-1][1] + _DAY:
            joined[-1] = (joined[-1][0], max(joined[-1][1], last))
        else:
            joined.append((first, last))
    return joined


def weekdays(first: date, last: date) -> tuple[date, date] | None:
    """``first`` moved forward and ``last`` back onto weekdays (IB answers 1003 for an end on
    a weekend, and a weekend has no statement); None when nothing is left."""
    while first.weekday() >= 5:
        first += _DAY
    while last.weekday() >= 5:
        last -= _DAY
    return (first, last) if first <= last else None


def _business(day: date, steps: int) -> date:
    """``steps`` business days (weekdays) after ``day``; before it when negative."""
    direction = timedelta(days=1 if steps > 0 else -1)
    for _ in range(abs(steps)):
        day += direction
        while day.weekday() >= 5:
            day += direction
    return day


class Outcome(enum.Enum):
    STATEMENT = "statement"  # the last range IB served is the window's statement
    EMPTY = "empty"  # IB has no statement for any date of the window


class _Phase(enum.Enum):
    WHOLE = enum.auto()  # the window's weekdays
    END_PROBE = enum.auto()  # its last day alone: is the end at fault?
    END_STEP = enum.auto()  # an earlier last day alone
    RETRY = enum.auto()  # the window up to an end that works
    START_STEP = enum.auto()  # a later first day (a holiday)
    BISECT = enum.auto()  # the earliest first day that works (the account opened)
    FIRST_PROBE = enum.auto()  # the first day alone, when no end near the last one works
    END_BISECT = enum.auto()  # the latest last day that works (a long closure at the end)


class Search:
    """The ranges to ask IB for one window, one at a time, after each answer.

    First the window's weekdays. After a 1003: its last day alone; if that fails too, up to
    :data:`END_STEPS` earlier business days (a holiday, a day not yet published); if none
    works, its first day alone: if that fails too, the window has no statement at all
    (:attr:`Outcome.EMPTY`, :attr:`nothing` set), else a bisection finds the latest last day
    that works (a closure of days at the end). When the end works: up to
    :data:`START_STEPS` later first days (a holiday), then a bisection for the earliest first
    day that works (the account opened within the window). When done, the last range
    answered with a statement is the window's; :attr:`covers` says which dates it stands for.

    Failures (each a 1003 at IB) are kept few: at most 1 + 1 + 3 + 1 for a window with no
    statement, about 10 for one in which the account opened.
    """

    def __init__(self, window: Window, today: date) -> None:
        self.window = window
        self._today = today
        self._phase = _Phase.WHOLE
        span = weekdays(window.first, window.last)
        self.outcome: Outcome | None = None if span is not None else Outcome.EMPTY
        self._first, self._last = span if span is not None else (window.first, window.last)
        self._step = 0
        self._good: date | None = None  # BISECT: earliest first day known to work
        self._bad = self._first  # BISECT: latest first day known to fail
        self.asked: tuple[date, date] | None = None
        self.served: tuple[date, date] | None = None  # the last range answered with one
        self.failures = 0
        self.nothing = False  # EMPTY because its first and its last days both failed
        self._end_good = self._first  # END_BISECT: latest last day known to work
        self._end_bad = self._last  # END_BISECT: earliest last day known to fail

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def ranges(self) -> Iterator[tuple[date, date]]:
        """Each range to ask for, until :attr:`done`; report each answer with
        :meth:`answered` before taking the next."""
        while not self.done:
            self.asked = self._ask()
            yield self.asked

    @property
    def covers(self) -> Window:
        """The dates the outcome stands for: the whole window, except that a recent end moved
        back covers only up to the end that IB served (the rest may be published later)."""
        last = self.window.last
        served_last = self.served[1] if self.served is not None else last
        if self.outcome is Outcome.STATEMENT and self._recent(last) and served_last < last:
            last = max(served_last, _last_weekend_day(served_last, last))
        return Window(self.window.first, last)

    def _recent(self, day: date) -> bool:
        return (self._today - day).days <= RECENT_DAYS

    def _ask(self) -> tuple[date, date]:
        phase = self._phase
        if phase is _Phase.WHOLE or phase is _Phase.RETRY:
            return self._first, self._last
        if phase is _Phase.END_PROBE or phase is _Phase.END_STEP:
            return self._last, self._last
        if phase is _Phase.START_STEP:
            return _business(self._first, self._step), self._last
        if phase is _Phase.FIRST_PROBE:
            return self._first, self._first
        if phase is _Phase.END_BISECT:
            return self._first, self._end_middle()
        return self._middle(), self._last

    def answered(self, *, served: bool) -> None:
        """IB answered the last range with a statement (``served``) or with 1003."""
        if self.asked is None or self.done:
            raise RuntimeError("answered() without a range asked")
        if served:
            self.served = self.asked
        else:
            self.failures += 1
        handlers = {
            _Phase.WHOLE: self._after_range,
            _Phase.RETRY: self._after_range,
            _Phase.START_STEP: self._after_range,
            _Phase.END_PROBE: self._after_end,
            _Phase.END_STEP: self._after_end,
            _Phase.FIRST_PROBE: self._after_first,
            _Phase.END_BISECT: self._end_bisected,
            _Phase.BISECT: self._bisected,
        }
        handlers[self._phase](served)

    def _after_range(self, served: bool | None) -> None:
        if served:
            self.outcome = Outcome.STATEMENT
        elif self._phase is _Phase.WHOLE:
            self._phase = _Phase.END_PROBE
        else:
            self._next_start()

    def _after_end(self, served: bool | None) -> None:
        if not served:
            self._next_end()
        elif self._first < self._last:
            self._phase = _Phase.RETRY
        else:
            self.outcome = Outcome.STATEMENT

    def _after_first(self, served: bool | None) -> None:
        if served:
            self._phase = _Phase.END_BISECT
            self._end_bisected(None)
        else:
            self.outcome, self.nothing = Outcome.EMPTY, True

    def skip_to(self, first: date) -> None:
        """IB has no statement before ``first`` (an account opened then, as a statement just
        served says): once the window's end is known to be served, ask from it on."""
        resumable = (_Phase.RETRY, _Phase.START_STEP, _Phase.BISECT)
        if self.done or self._phase not in resumable or not self._first < first <= self._last:
            return
        while first.weekday() >= 5:
            first += _DAY
        if first > self._last:
            return
        self._first, self._phase, self._step, self._good = first, _Phase.RETRY, 0, None
        if first == self._last:  # the served [last, last] is the window's statement
            self.outcome = Outcome.STATEMENT

    def _next_end(self) -> None:
        self._step += 1
        earlier = _business(self._last, -1)
        if self._step > END_STEPS or earlier < self._first:
            if self._last > self._first:  # is there a statement before these days?
                self._end_bad, self._phase = self._last, _Phase.FIRST_PROBE
            else:
                self.outcome, self.nothing = Outcome.EMPTY, True
            return
        self._last = earlier
        self._phase = _Phase.END_STEP

    def _next_start(self) -> None:
        if self._phase is _Phase.RETRY:
            self._phase, self._step = _Phase.START_STEP, 0
        self._step += 1
        later = _business(self._first, self._step)
        if self._step > START_STEPS or later >= self._last:
            # The last day alone works: some first day between does.
            self._phase = _Phase.BISECT
            self._bad = _business(self._first, min(self._step - 1, START_STEPS))
            self._good = self._last
            if self._middle() == self._good:
                self.outcome = Outcome.STATEMENT  # the served [last, last] probe is it
                self.served = (self._last, self._last)
            return

    def _middle(self) -> date:
        if self._good is None:  # pragma: no cover - set before any bisection
            raise RuntimeError("no first day known to work")
        middle = self._bad + (self._good - self._bad) // 2
        while middle.weekday() >= 5 and middle < self._good:
            middle += _DAY
        return middle if middle > self._bad else self._good

    def _bisected(self, served: bool | None) -> None:
        first = self.asked[0] if self.asked is not None else self._first
        if served:
            self._good = first
        else:
            self._bad = first
        if self._middle() == self._good:
            self.outcome = Outcome.STATEMENT
            self.served = (self._good, self._last)

    def _end_middle(self) -> date:
        middle = self._end_good + (self._end_bad - self._end_good) // 2
        while middle.weekday() >= 5 and middle < self._end_bad:
            middle += _DAY
        return middle if self._end_good < middle < self._end_bad else self._end_good

    def _end_bisected(self, served: bool | None) -> None:
        if served is not None and self.asked is not None:
            if served:
                self._end_good = self.asked[1]
            else:
                self._end_bad = self.asked[1]
        if self._end_middle() == self._end_good:
            self.outcome = Outcome.STATEMENT
            self.served = (self._first, self._end_good)


def _last_weekend_day(served_last: date, last: date) -> date:
    """The weekend days right after ``served_last`` (a Friday) are covered with it."""
    day = served_last
    while day < last and (day + _DAY).weekday() >= 5:
        day += _DAY
    return day
