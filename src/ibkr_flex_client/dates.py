"""IB's date and time formats ("Formats a query may be configured to emit", docs/protocol.md).

A Flex query emits dates as one of ``yyyyMMdd`` (the default), ``yyyy-MM-dd``, ``MM/dd/yyyy``,
``MM/dd/yy``, ``dd/MM/yyyy``, ``dd/MM/yy`` or ``dd-MMM-yy``; times as ``HHmmss`` (the
default), ``HH:mm:ss``, or ``HH:mm:ss`` with a zone name (``10:19:55 EDT``); and joins the two
with ``;`` (the default), ``,``, a space, or nothing. Slashed dates are ambiguous when both
numbers are 12 or less: the caller says which order applies (``day_first``), or a whole
document decides it (:func:`infer_day_first`). A single value is never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "ZONE_NAMES",
    "AmbiguousDateError",
    "document_day_first",
    "infer_day_first",
    "parse_ib_date",
    "parse_ib_datetime",
]

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


# A slashed date at the start of an attribute value ("…" or '…') that only one order reads:
# dd/MM when the first number is a day past 12 and the second a month (group "dd"), MM/dd the
# other way round. It starts at the first slash, a literal, so the regex engine skips to each
# slash at C speed (a full scan of a 50 MB document takes about 0.07 s); the fixed-width
# look-behinds check the quote and the number before it.
_DAY, _MONTH = r"(?:1[3-9]|2\d|3[01])", r"(?:0[1-9]|1[0-2])"
_DECIDING = rf"""/(?:(?P<dd>{_MONTH})(?<=["']{_DAY}/\d\d)|{_DAY}(?<=["']{_MONTH}/\d\d))/\d\d"""
_DECIDING_TEXT = re.compile(_DECIDING)
_DECIDING_BYTES = re.compile(_DECIDING.encode())


def document_day_first(document: str | bytes) -> bool | None:
    """``dd/MM`` (``True``) or ``MM/dd`` (``False``) from the first attribute value of an XML
    document that starts with a slashed date only one order reads; ``None`` if none does.

    One query emits one format, so the first such date decides and the rest of the document
    is not read. ``bytes`` must be in an ASCII-compatible encoding (UTF-8, ISO-8859-1: what
    IB sends); decode others first.
    """
    if isinstance(document, bytes):
        found = _DECIDING_BYTES.search(document)
        return None if found is None else found["dd"] is not None
    match = _DECIDING_TEXT.search(document)
    return None if match is None else match["dd"] is not None


# Zone names IB writes after times, as (IANA zone, UTC offset in hours). The abbreviation
# fixes the offset; the IANA zone makes the result a real time zone (DST-aware arithmetic).
# CST is US Central (IB's home time zone family), not China Standard Time.
ZONE_NAMES: Mapping[str, tuple[str, float]] = {
    "UTC": ("UTC", 0),
    "GMT": ("Europe/London", 0),
    "BST": ("Europe/London", 1),
    "WET": ("Europe/Lisbon", 0),
    "WEST": ("Europe/Lisbon", 1),
    "CET": ("Europe/Zurich", 1),
    "CEST": ("Europe/Zurich", 2),
    "MET": ("Europe/Zurich", 1),
    "MEST": ("Europe/Zurich", 2),
    "EET": ("Europe/Helsinki", 2),
    "EEST": ("Europe/Helsinki", 3),
    "MSK": ("Europe/Moscow", 3),
    "EST": ("America/New_York", -5),
    "EDT": ("America/New_York", -4),
    "CST": ("America/Chicago", -6),
    "CDT": ("America/Chicago", -5),
    "MST": ("America/Denver", -7),
    "MDT": ("America/Denver", -6),
    "PST": ("America/Los_Angeles", -8),
    "PDT": ("America/Los_Angeles", -7),
    "AKST": ("America/Anchorage", -9),
    "AKDT": ("America/Anchorage", -8),
    "HST": ("Pacific/Honolulu", -10),
    "IST": ("Asia/Kolkata", 5.5),
    "SGT": ("Asia/Singapore", 8),
    "HKT": ("Asia/Hong_Kong", 8),
    "JST": ("Asia/Tokyo", 9),
    "KST": ("Asia/Seoul", 9),
    "AWST": ("Australia/Perth", 8),
    "ACST": ("Australia/Adelaide", 9.5),
    "ACDT": ("Australia/Adelaide", 10.5),
    "AEST": ("Australia/Sydney", 10),
    "AEDT": ("Australia/Sydney", 11),
    "NZST": ("Pacific/Auckland", 12),
    "NZDT": ("Pacific/Auckland", 13),
}

# A date (any format), an optional separator, a time, an optional zone name. The time has a
# fixed length at the end, so the date is whatever stands before it.
_DATETIME = re.compile(
    r"(?P<date>.+?)[;, ]?(?P<time>\d{2}:\d{2}:\d{2}|\d{6})(?:\s+(?P<zone>[A-Za-z]{2,5}))?"
)


def _zone(name: str, moment: datetime, value: str) -> tzinfo:
    try:
        iana, hours = ZONE_NAMES[name.upper()]
    except KeyError:
        raise ValueError(f"not a valid IB date-time: {value!r} (unknown zone {name!r})") from None
    offset = timedelta(hours=hours)
    try:
        zone = ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError):  # no time zone database on this machine
        return timezone(offset, name.upper())
    # Trust the abbreviation over the calendar: "EST" in July still means UTC-5.
    if moment.replace(tzinfo=zone).utcoffset() == offset:
        return zone
    return timezone(offset, name.upper())


def parse_ib_datetime(
    value: str, *, day_first: bool | None = None, tz: tzinfo | None = None
) -> datetime:
    """Parse a date-time in any form a Flex query can emit.

    >>> parse_ib_datetime("20260327;101500")
    datetime.datetime(2026, 3, 27, 10, 15)
    >>> parse_ib_datetime("2025-04-26;13:34:28 EDT").isoformat()
    '2025-04-26T13:34:28-04:00'

    Any of IB's date formats (see :func:`parse_ib_date`), then ``;``, ``,``, a space or
    nothing, then ``HHmmss`` or ``HH:mm:ss``, optionally followed by a zone name from
    :data:`ZONE_NAMES`, which makes the result aware (in the real IANA zone when its offset
    agrees with the name, else at the name's fixed offset).

    Args:
        day_first: as for :func:`parse_ib_date`.
        tz: attached to a value that names no zone (IB writes such times in the account's
            time zone); without it those results are naive.

    Raises:
        ValueError: naming the value, if it is not one of IB's date-time forms.
    """
    if not isinstance(value, str):
        raise ValueError(f"not a valid IB date-time: {value!r} (expected a string)")
    match = _DATETIME.fullmatch(value.strip())
    if match is None:
        raise ValueError(
            f"not a valid IB date-time: {value!r} (expected a date, then ';', ',', ' ' or "
            "nothing, then HHmmss or HH:mm:ss, optionally a zone name)"
        )
    try:
        day = parse_ib_date(match["date"], day_first=day_first)
    except AmbiguousDateError:
        problem = "ambiguous: its date reads as MM/dd and as dd/MM; pass day_first"
    except ValueError as exc:
        problem = str(exc).partition(": ")[2]
    else:
        problem = ""
    if problem:
        kind = AmbiguousDateError if problem.startswith("ambiguous") else ValueError
        raise kind(f"not a valid IB date-time: {value!r} ({problem})")
    digits = match["time"].replace(":", "")
    hour, minute, second = int(digits[:2]), int(digits[2:4]), int(digits[4:])
    try:
        moment = datetime(day.year, day.month, day.day, hour, minute, second)
    except ValueError:
        raise ValueError(f"not a valid IB date-time: {value!r} (no such time)") from None
    if match["zone"]:
        return moment.replace(tzinfo=_zone(match["zone"], moment, value))
    return moment.replace(tzinfo=tz) if tz is not None else moment
