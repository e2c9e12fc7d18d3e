"""Checking :class:`FlexClient`'s arguments: every value to a documented, sane range.

Each check raises ``ValueError`` naming the argument (never showing the token). Ranges are
chosen so that :attr:`FlexClient.worst_case_seconds` is always a finite, meaningful bound.
"""

from __future__ import annotations

import dataclasses
import math
import re
from datetime import date, datetime
from urllib.parse import urlsplit, urlunsplit

from .dates import parse_ib_date
from .flow import FetchSettings
from .pacing import check_pacing
from .pacing.slots import MAX_LOCKOUT
from .retry import MAX_BACKOFF

__all__ = [
    "DEFAULT_LOCKOUT",
    "MAX_ATTEMPTS",
    "MAX_RANGE_DAYS",
    "MAX_TIMEOUT",
    "MIN_STATEMENT_CAP",
    "ClientSettings",
    "check_settings",
]

# "fd/td ... at most 365 days"; "p=N ... 1 <= N <= 365" (docs/protocol.md).
MAX_RANGE_DAYS = 365
# Bounds that keep worst_case_seconds finite and meaningful: 100 requests a step is already
# ten minutes of IB's whole per-token budget; a 10-minute stall is no longer a slow server.
MAX_ATTEMPTS = 100
MAX_TIMEOUT = 600.0
# Below this an attempt cannot even connect, and every request would be spent for nothing.
MIN_TIMEOUT = 0.1
# IB's query ids are short digit strings; this leaves room for anything a proxy may use.
MAX_QUERY_ID = 64
# After a 1025, how long the token stays stopped everywhere its budget is shared. IB does not
# say how long its lock-out lasts (docs/protocol.md); an hour is long enough that no
# scheduler's retries prolong it, short enough that a fixed cause is not punished for a day.
DEFAULT_LOCKOUT = 3600.0
# A cap on the statement held in memory below this would refuse ordinary statements.
MIN_STATEMENT_CAP = 1024 * 1024

_COMPACT_DATE = re.compile(r"\d{8}")
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclasses.dataclass(frozen=True, slots=True)
class ClientSettings:
    """Everything a :class:`FlexClient` was given, checked. The token never shows in repr."""

    fetch: FetchSettings
    timeout: float
    user_agent: str | None
    max_statement_bytes: int | None
    pacing: str = "machine"
    lockout_seconds: float = DEFAULT_LOCKOUT


def _as_date(name: str, value: object) -> date | None:
    if isinstance(value, datetime):
        # A datetime is a date to isinstance, but compares with neither a date nor IB's days.
        raise ValueError(f"{name} must be a datetime.date, not a datetime, got {value!r}")
    if value is None or isinstance(value, date):
        return value
    if isinstance(value, str) and _COMPACT_DATE.fullmatch(value):
        try:
            return parse_ib_date(value)
        except ValueError:
            pass
    raise ValueError(f"{name} must be a datetime.date or a 'yyyyMMdd' string, got {value!r}")


def check_dates(from_date: object, to_date: object) -> tuple[date | None, date | None]:
    """``from_date`` and ``to_date`` as dates: both or neither, in order, at most 365 days."""
    start, end = _as_date("from_date", from_date), _as_date("to_date", to_date)
    if (start is None) != (end is None):
        missing = "to_date" if end is None else "from_date"
        raise ValueError(f"{missing} is required too: IB takes from_date and to_date together")
    if start is not None and end is not None:
        if start > end:
            raise ValueError(f"from_date {start} is after to_date {end}")
        days = (end - start).days + 1
        if days > MAX_RANGE_DAYS:
            raise ValueError(
                f"from_date {start} to to_date {end} spans {days} days; "
                f"IB allows at most {MAX_RANGE_DAYS}"
            )
    return start, end


def _check_period(period: object, *, has_dates: bool) -> None:
    if isinstance(period, bool) or not isinstance(period, int):
        raise ValueError(f"period must be a whole number of days, got {period!r}")
    if not 1 <= period <= MAX_RANGE_DAYS:
        raise ValueError(f"period must be 1 to {MAX_RANGE_DAYS} days, got {period}")
    if has_dates:
        raise ValueError("give period or from_date/to_date, not both")


def _check_seconds(name: str, value: object, maximum: float, minimum: float = 0.0) -> float:
    """A finite number of seconds, above 0 (or at least ``minimum``), at most ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    low = f"at least {minimum:g}" if minimum else "more than 0"
    if not math.isfinite(value) or value <= 0 or value < minimum or value > maximum:
        raise ValueError(f"{name} must be {low} and at most {maximum:g} seconds, got {value!r}")
    return float(value)


def _check_whole(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return value


def check_base_url(base_url: object) -> str:
    """``base_url`` without a trailing slash: http(s), a host, no query, fragment, user or
    odd characters; plain http only on loopback (the token travels in the query string)."""
    if not isinstance(base_url, str):
        raise ValueError(f"base_url must be a URL string, got {base_url!r}")
    try:
        parts = urlsplit(base_url)
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        parts = None
    clean = (
        base_url.isascii()
        and base_url.isprintable()
        and not any(ch.isspace() or ch in "?#\\" for ch in base_url)
    )
    if (
        not clean
        or parts is None
        or parts.scheme not in ("https", "http")
        or not parts.hostname
        or parts.username is not None
        or urlunsplit(parts) != base_url  # nothing urlsplit dropped ("/?" or "/#")
    ):
        raise ValueError(
            f"base_url must be an http(s) URL with a host and no query, got {base_url!r}"
        )
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
        raise ValueError(f"base_url must use https unless it is on loopback, got {base_url!r}")
    return base_url.rstrip("/")


def check_settings(
    *,
    token: object,
    query_id: object,
    max_retries: object,
    backoff_base: object,
    from_date: object,
    to_date: object,
    period: object,
    timeout: object,
    user_agent: object,
    base_url: object,
    day_first: object,
    max_statement_bytes: object,
    pacing: object = None,
    lockout_seconds: object = DEFAULT_LOCKOUT,
) -> ClientSettings:
    """Check every argument of :class:`FlexClient`; ``ValueError`` names the first bad one."""
    if not isinstance(token, str) or not token:
        raise ValueError("token must be a non-empty string")
    if any(ch.isspace() or not ch.isprintable() for ch in token):
        raise ValueError("token must not contain white space or control characters")
    if isinstance(query_id, bool) or not isinstance(query_id, (str, int)):
        raise ValueError(f"query_id must be a string, got {type(query_id).__name__}")
    query = str(query_id).strip()
    if not query:
        raise ValueError("query_id must be a non-empty string")
    if len(query) > MAX_QUERY_ID or any(ch.isspace() or not ch.isprintable() for ch in query):
        raise ValueError(
            f"query_id must be at most {MAX_QUERY_ID} printable characters without spaces, "
            f"got {query[:80]!r}"
        )
    start, end = check_dates(from_date, to_date)
    if period is not None:
        _check_period(period, has_dates=start is not None)
    if day_first is not None and not isinstance(day_first, bool):
        raise ValueError(f"day_first must be True, False or None, got {day_first!r}")
    if user_agent is not None and (not isinstance(user_agent, str) or not user_agent.isprintable()):
        raise ValueError(f"user_agent must be printable text, got {user_agent!r}")
    if max_statement_bytes is not None:
        _check_whole("max_statement_bytes", max_statement_bytes, MIN_STATEMENT_CAP, 2**62)
    return ClientSettings(
        fetch=FetchSettings(
            token=token,
            query_id=query,
            base_url=check_base_url(base_url),
            max_retries=_check_whole("max_retries", max_retries, 1, MAX_ATTEMPTS),
            backoff_base=_check_seconds("backoff_base", backoff_base, MAX_BACKOFF),
            from_date=start,
            to_date=end,
            period=period if isinstance(period, int) else None,
            day_first=day_first,
        ),
        timeout=_check_seconds("timeout", timeout, MAX_TIMEOUT, MIN_TIMEOUT),
        user_agent=user_agent or None,
        max_statement_bytes=max_statement_bytes if isinstance(max_statement_bytes, int) else None,
        pacing=check_pacing(pacing),
        lockout_seconds=_check_seconds("lockout_seconds", lockout_seconds, MAX_LOCKOUT),
    )
