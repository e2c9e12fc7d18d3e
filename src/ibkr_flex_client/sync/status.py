"""What a sync database holds, per query: read only, never changes the file."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from .lock import sync_running
from .store import read_only_uri
from .windows import gaps

__all__ = ["QueryStatus", "read_status"]


@dataclasses.dataclass(frozen=True, slots=True)
class QueryStatus:
    """One query's coverage in a sync database."""

    query_id: str
    first: date | None  # the first day covered
    last: date | None  # the last day covered
    windows: int
    empty: int  # windows for which IB had no statement
    accounts: tuple[str, ...]
    synced_at: str  # when its last window was committed (UTC)
    gaps: tuple[tuple[date, date], ...]  # days between first and last that no window covers
    unfinished: bool  # a sync of it was interrupted (the next one resumes it)
    running: bool  # a sync of the database is running now


def read_status(path: Path, queries: Sequence[str] | None = None) -> list[QueryStatus]:
    """Each query's coverage (those named, else every query), read-only."""
    db = sqlite3.connect(read_only_uri(path), uri=True)
    try:
        rows = db.execute(
            'SELECT query_id, covers_from, covers_to, outcome, accounts, stored_at FROM "@windows" '
            "ORDER BY query_id, covers_from"
        ).fetchall()
        unfinished = {
            q for (q,) in db.execute('SELECT query_id FROM "@runs" WHERE finished_at IS NULL')
        }
    finally:
        db.close()
    by_query: dict[str, list[tuple[str, str, str, str, str]]] = {}
    for query_id, *rest in rows:
        by_query.setdefault(query_id, []).append(tuple(rest))
    names = list(dict.fromkeys(queries)) if queries else sorted(by_query)
    running = sync_running(path)
    statuses = []
    for query_id in names:
        windows = by_query.get(query_id, [])
        covered = [(date.fromisoformat(a), date.fromisoformat(b)) for a, b, *_ in windows]
        first = min((a for a, _ in covered), default=None)
        last = max((b for _, b in covered), default=None)
        accounts = {a for *_, found, _ in windows for a in found.split(",") if a}
        statuses.append(
            QueryStatus(
                query_id=query_id,
                first=first,
                last=last,
                windows=len(windows),
                empty=sum(1 for w in windows if w[2] == "empty"),
                accounts=tuple(sorted(accounts)),
                synced_at=max((w[4] for w in windows), default=""),
                gaps=tuple(gaps(covered, first, last)) if first and last else (),
                unfinished=query_id in unfinished and not running,
                running=running,
            )
        )
    return statuses
