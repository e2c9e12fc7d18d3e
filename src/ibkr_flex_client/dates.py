"""IB's date formats ("Formats a query may be configured to emit" in ``docs/protocol.md``).

A Flex query emits dates as one of ``yyyyMMdd`` (the default), ``yyyy-MM-dd``, ``MM/dd/yyyy``,
``MM/dd/yy``, ``dd/MM/yyyy``, ``dd/MM/yy`` or ``dd-MMM-yy``. Slashed dates are ambiguous when
both numbers are 12 or less: the caller says which order applies (``day_first``), or a whole
document decides it (:func:`infer_day_first`). A single value is never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date

__all__ = ["AmbiguousDateError", "infer_day_first", "parse_ib_date"]

_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})")
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_SLASHED = re.compile(r"(\d{2})/(\d{2})/(\d{4}|\d{2})")
_MONTH_NAME = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{2})")
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}


class AmbiguousDateError(ValueError):
    """A slashed date that reads both as ``MM/dd`` and as ``dd/MM``, with no setting given."""


def _year(text: str) -> int:
    # Two-digit years follow strptime's %y pivot: 69-99 are 19xx, 00-68 are 20xx.
    year = int(text)
    if len(text) == 2:
        year += 1900 if year >= 69 else 2000
    return year


def _build(value: str, year: int, month: int, day: int) -> date:
    try:
        return date(year, month, day)
    except ValueError:
        pass
    raise ValueError(f"not a valid IB date: {value!r} (no such day)")


def parse_ib_date(value: str, *, day_first: bool | None = None) -> date:
    """Parse a date in any format a Flex query can emit.

    >>> parse_ib_date("20260315")
    datetime.date(2026, 3, 15)
    >>> parse_ib_date("15/03/2026")  # only one reading is a real date
    datetime.date(2026, 3, 15)
    >>> parse_ib_date("03/04/2026", day_first=True)
    datetime.date(2026, 4, 3)

    Args:
        value: the text, surrounding white space allowed.
        day_first: for slashed dates, ``True`` reads ``dd/MM``, ``False`` reads ``MM/dd``;
            ``None`` accepts only a value with one valid reading (use :func:`infer_day_first`
            to decide for a whole document).

    Raises:
        ValueError: naming the value, if it is not a date in one of IB's formats or names a
            day that does not exist; :class:`AmbiguousDateError` (a ``ValueError``) if it is
            ambiguous without ``day_first``.
    """
    if not isinstance(value, str):
        raise ValueError(f"not a valid IB date: {value!r} (expected a string)")
    text = value.strip()
    if match := _COMPACT.fullmatch(text) or _ISO.fullmatch(text):
        return _build(value, int(match[1]), int(match[2]), int(match[3]))
    if match := _MONTH_NAME.fullmatch(text):
        month = _MONTHS.get(match[2].lower())
        if month is None:
            raise ValueError(f"not a valid IB date: {value!r} (unknown month {match[2]!r})")
        return _build(value, _year(match[3]), month, int(match[1]))
    if match := _SLASHED.fullmatch(text):
        first, second, year = int(match[1]), int(match[2]), _year(match[3])
        if day_first is None:
            readings = {r for r in ((first, second), (second, first)) if _valid(year, *r)}
            if len(readings) > 1:
                raise AmbiguousDateError(
                    f"ambiguous IB date: {value!r} reads as MM/dd and as dd/MM; "
                    "pass day_first=True or False"
                )
            if not readings:
                raise ValueError(f"not a valid IB date: {value!r} (no such day)")
            month, day = readings.pop()
            return date(year, month, day)
        month, day = (second, first) if day_first else (first, second)
        return _build(value, year, month, day)
    raise ValueError(
        f"not a valid IB date: {value!r} (expected yyyyMMdd, yyyy-MM-dd, MM/dd/yyyy, "
        "MM/dd/yy, dd/MM/yyyy, dd/MM/yy or dd-MMM-yy)"
    )


def _valid(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def infer_day_first(values: Iterable[str]) -> bool | None:
    """Decide ``dd/MM`` versus ``MM/dd`` from every slashed date of a document.

    Returns ``True`` (day first) or ``False`` (month first) when some value has a first
    number over 12 or a second over 12, and ``None`` when no value decides it (no slashed
    dates, or every one is ambiguous; then all of them read the same either way only if day
    equals month). Raises ``ValueError`` when the values contradict each other, since one
    query emits one format.
    """
    day_first: bool | None = None
    for value in values:
        match = _SLASHED.match(value.strip()) if isinstance(value, str) else None
        if match is None:
            continue
        first, second = int(match[1]), int(match[2])
        if first > 12 >= second:
            verdict = True
        elif second > 12 >= first:
            verdict = False
        else:
            continue
        if day_first is not None and verdict != day_first:
            raise ValueError(f"dates disagree on dd/MM versus MM/dd (seen at {value!r})")
        day_first = verdict
    return day_first
