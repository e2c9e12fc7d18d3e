"""``ibkr-flex sync``: queries' whole history into a local SQLite database, and its status.

On a terminal, stderr shows one line per window committed (rows added, duplicates skipped,
corrections, time waited for IB) and a live line while a window is fetched; stdout gets the
summary per tag at the end. ``--status`` reads the database only: what each query covers,
and any gaps.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..errors import StoreError
from ..events import EventKind
from ..sync.status import QueryStatus, read_status
from ..sync.windows import date_range
from .exits import EXIT_NO_INPUT, EXIT_OK, EXIT_USAGE, Exit
from .progress import Progress

if TYPE_CHECKING:
    from ..sync.engine import SyncEvent, SyncReport

__all__ = ["main", "show_status", "summary", "window_line"]


def main(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.status:  # reads the database only: the network client stays unloaded
        return _status(args, out)
    from .fetch import as_options, make_directories, read_token  # noqa: PLC0415 - aiohttp

    if not args.query:
        raise Exit(EXIT_USAGE, "sync needs at least one -q QUERY (or --status)")
    try:  # the arguments first: a mistake in them is said before a missing token
        date_range(args.since, args.until, date.today())
    except ValueError as exc:
        raise Exit(
            EXIT_USAGE, str(exc).replace("since", "--since").replace("until", "--until")
        ) from None
    make_directories(Path(args.db).parent)
    token = read_token(args)
    shown = _Shown(err, live=err.isatty())
    try:
        report = asyncio.run(_sync(args, token, shown))
    except ValueError as exc:
        raise Exit(EXIT_USAGE, as_options(exc).replace("query_ids", "--query")) from None
    finally:
        shown.done()
    summary(report, out)
    return EXIT_OK


async def _sync(args: argparse.Namespace, token: str, shown: _Shown) -> SyncReport:
    from ..sync.engine import sync_history  # noqa: PLC0415 - loads aiohttp

    ticking = shown.progress.ticking() if shown.live else contextlib.nullcontext()
    async with ticking:
        return await sync_history(
            args.db,
            token=token,
            query_ids=list(dict.fromkeys(args.query)),
            since=args.since,
            until=args.until,
            on_event=shown,
            base_url=args.base_url or None,
            pacing=args.pacing,
            max_retries=args.max_retries,
            backoff_base=args.backoff_base,
            timeout=args.timeout,
            lockout_seconds=args.lockout_seconds,
        )


class _Shown:
    """A sync's events on stderr: a line per window on a terminal (and with -v elsewhere)."""

    def __init__(self, err: TextIO, *, live: bool) -> None:
        self.err = err
        self.live = live
        self.progress = Progress(err, live=live)
        self._waited: dict[str, float] = {}

    def __call__(self, event: SyncEvent) -> None:
        from ..sync.engine import SyncEventKind  # noqa: PLC0415 - loaded by the sync already

        query = event.query_id
        if event.kind is SyncEventKind.FETCH and event.fetch is not None:
            if event.fetch.kind is EventKind.WAIT:
                self._waited[query] = self._waited.get(query, 0.0) + (event.fetch.wait or 0.0)
            if self.live:
                self.progress(event.fetch)
            return
        if not self.live:
            return
        if event.kind is SyncEventKind.STORED and event.stored is not None:
            waited = self._waited.pop(query, 0.0)
            self._line(f"query {query} {window_line(event)}; waited {waited:.0f} s for IB")
        elif event.kind is SyncEventKind.RETRY:
            self._line(f"query {query} {window_line(event)}")
        elif event.kind is SyncEventKind.UNPUBLISHED:
            self._line(f"query {query} {event.window}: not published yet, left for later")
        elif event.kind is SyncEventKind.UP_TO_DATE:
            self._line(f"query {query}: up to date (through {event.detail})")

    def _line(self, text: str) -> None:
        self.progress.finish()
        print(f"ibkr-flex: {text}", file=self.err)

    def done(self) -> None:
        if self.live:
            self.progress.finish()


def window_line(event: SyncEvent) -> str:
    """A window committed (rows added, duplicates, corrections; or why it has no statement),
    or a 1003 and the range tried next."""
    stored = event.stored
    if stored is None:
        first, last = event.asked or ("?", "?")
        return f"{event.window}: IB 1003 (not available), trying {first}..{last}"
    if stored.outcome == "empty":
        return f"{stored.covers}: no statement: {stored.note}"
    return (
        f"{stored.covers}: {_count(stored.rows_added, 'row')} added, "
        f"{_count(stored.duplicates, 'duplicate')} skipped, "
        f"{_count(stored.corrections, 'correction')}"
    )


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def summary(report: SyncReport, out: TextIO) -> None:
    """The windows committed and, per tag, rows added, duplicates and corrections."""
    committed = len(report.windows)
    print(
        f"{report.database}: {_count(committed, 'window')} committed, "
        f"{_count(report.requests, 'request')} to IB",
        file=out,
    )
    if report.tags:
        width = max(len(tag) for tag in report.tags)
        print(f"{'tag':<{width}}  {'added':>9}  {'duplicates':>10}  {'corrections':>11}", file=out)
        for tag, counts in sorted(report.tags.items()):
            print(
                f"{tag:<{width}}  {counts.added:>9,}  {counts.duplicates:>10,}  "
                f"{counts.corrections:>11,}",
                file=out,
            )
    for query, window in report.unpublished:
        print(
            f"query {query} {window}: not published by IB yet; the next sync asks again", file=out
        )


def _status(args: argparse.Namespace, out: TextIO) -> int:
    path = Path(args.db)
    if not path.is_file():
        raise Exit(EXIT_NO_INPUT, f"no sync database at {str(path)!r}")
    try:
        statuses = read_status(path, queries=args.query)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read {path} as a sync database: {exc}") from None
    if not statuses:
        print(f"{path}: no query synced yet", file=out)
    for status in statuses:
        show_status(status, out)
    return EXIT_OK


def show_status(status: QueryStatus, out: TextIO) -> None:
    """What one query covers in the database, and its gaps."""
    if status.first is None or status.last is None:
        print(f"query {status.query_id}: nothing stored", file=out)
        return
    print(
        f"query {status.query_id}: {status.first} to {status.last} in "
        f"{status.windows} windows ({status.empty} without a statement), accounts "
        f"{', '.join(status.accounts) or '-'}, last synced {status.synced_at}",
        file=out,
    )
    for first, last in status.gaps:
        print(f"  gap: {first} to {last} (run sync with --since {first})", file=out)
    if status.running:
        print("  a sync of the database is running now", file=out)
    elif status.unfinished:
        print("  a sync of it was interrupted: the next one resumes it", file=out)
