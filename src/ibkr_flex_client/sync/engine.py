"""The sync: plan each query's windows, fetch them through the client, commit each to the store.

One sync of a database at a time (a lock file beside it); queries run side by side, each
through its windows newest first, all sharing the token's pacer. Each window is committed in
one transaction once its statement is fetched and checked, so a sync killed at any moment
loses nothing committed, and the next sync of the same range resumes at the first window
not committed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import os
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from .._clock import Clock
from ..client import FlexClient, _refuse_running_loop
from ..dates import parse_ib_date
from ..errors import QueryError, StatementError, StoreError
from ..events import FetchEvent
from ..protocol import DEFAULT_BASE_URL
from ..settings import DEFAULT_LOCKOUT
from ..statement import AccountStatement, FlexStatement, is_row
from .lock import exclusive
from .store import Fetched, Store, StoredWindow, TagCounts
from .windows import END_STEPS, Outcome, Search, Window, date_range, gaps, split, union

__all__ = ["SyncEvent", "SyncEventKind", "SyncReport", "sync_history", "sync_history_blocking"]

# IB's code for "statement not available": an end on a weekend, a date not yet published, or
# before the account existed ("Optional SendRequest parameters" in docs/protocol.md).
NOT_AVAILABLE = 1003


class SyncEventKind(str, enum.Enum):
    WINDOW = "window"  # a window starts: its first range is about to be asked
    RETRY = "retry"  # IB answered 1003: another range of the window is asked
    FETCH = "fetch"  # an event of the fetch under way (a wait for IB or for the budget)
    STORED = "stored"  # a window was committed (with its statement, or as empty)
    UNPUBLISHED = "unpublished"  # a recent window without a statement yet: left for later
    UP_TO_DATE = "up to date"  # the query has nothing new to fetch


@dataclasses.dataclass(frozen=True, slots=True)
class SyncEvent:
    """Something a sync did, for progress displays."""

    kind: SyncEventKind
    query_id: str
    window: Window | None = None
    asked: tuple[date, date] | None = None
    stored: StoredWindow | None = None
    fetch: FetchEvent | None = None
    detail: str = ""


SyncCallback = Callable[[SyncEvent], None]


@dataclasses.dataclass(slots=True)
class SyncReport:
    """What a sync did: the windows it committed, and per tag the rows added, skipped as
    duplicates and stored as corrections."""

    database: Path
    windows: list[StoredWindow] = dataclasses.field(default_factory=list)
    tags: dict[str, TagCounts] = dataclasses.field(default_factory=dict)
    requests: int = 0
    unpublished: list[tuple[str, Window]] = dataclasses.field(default_factory=list)

    def _add(self, counts: dict[str, TagCounts]) -> None:
        for tag, tally in counts.items():
            total = self.tags.setdefault(tag, TagCounts())
            total.added += tally.added
            total.duplicates += tally.duplicates
            total.corrections += tally.corrections


async def sync_history(
    database: str | os.PathLike[str],
    *,
    token: str,
    query_ids: Sequence[str | int],
    since: date | str | None = None,
    until: date | str | None = None,
    today: date | None = None,
    session: aiohttp.ClientSession | None = None,
    on_event: SyncCallback | None = None,
    base_url: str | None = None,
    pacing: str | None = None,
    clock: Clock | None = None,
    max_retries: int = 10,
    backoff_base: float = 10.0,
    timeout: float = 30.0,
    user_agent: str | None = None,
    lockout_seconds: float = DEFAULT_LOCKOUT,
) -> SyncReport:
    """Fetch each query's statements for ``[since, until]`` into the SQLite ``database``.

    Args:
        database: the file (created, or migrated, on first use).
        query_ids: the Flex Queries to sync; they run side by side on the token's budget.
        since, until: the dates (``date``, ``"yyyy-MM-dd"`` or ``"yyyyMMdd"``). ``until``
            defaults to yesterday (today has no finalised data) and may not be later.
            Without ``since``, a query continues from the day after its last stored window;
            its first sync takes the 365 days up to ``until``.
        today: the current date, by default the local one.
        session: an aiohttp session to use (else one of its own).
        on_event: called with each :class:`SyncEvent`.
        base_url, pacing, clock, max_retries, backoff_base, timeout, user_agent,
            lockout_seconds: as for :class:`FlexClient`.

    Raises:
        ValueError: bad dates or queries (nothing is fetched).
        StoreError: the database cannot be used, or another sync of it is running.
        FlexError: a terminal error of IB's other than 1003 for a window; every window
            committed before it stays stored.
    """
    names = _query_names(query_ids)
    today = today if today is not None else date.today()
    first_day, last_day = date_range(since, until, today)
    client = functools.partial(
        FlexClient,
        token=token,
        max_retries=max_retries,
        backoff_base=backoff_base,
        timeout=timeout,
        user_agent=user_agent,
        pacing=pacing,
        lockout_seconds=lockout_seconds,
        clock=clock,
        base_url=base_url if base_url is not None else DEFAULT_BASE_URL,
    )
    client(query_id=names[0])  # checks the options now, before anything is opened
    path = Path(database)
    report = SyncReport(path)
    with exclusive(path), Store(path) as store:
        own = session is None
        http = aiohttp.ClientSession() if session is None else session
        try:
            runner = _Runner(store, report, client, http, today, on_event or _ignore)
            tasks = [asyncio.ensure_future(runner.query(q, first_day, last_day)) for q in names]
            try:
                await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        except sqlite3.Error as exc:  # the one place SQLite's errors become ours
            raise StoreError(f"{path}: {exc} (every window committed before is kept)") from None
        finally:
            if own:
                await http.close()
    return report


def sync_history_blocking(
    database: str | os.PathLike[str],
    **options: Any,  # noqa: ANN401 - sync_history's, checked there
) -> SyncReport:
    """:func:`sync_history`, blocking until it ends: for scripts that are not async. Takes
    the same arguments (but no ``session``).

    Raises:
        RuntimeError: inside a running event loop: there, ``await sync_history(...)``.
    """
    _refuse_running_loop("sync_history_blocking()", "sync_history()")
    if "session" in options:
        raise TypeError("sync_history_blocking() takes no session: it makes its own")
    return asyncio.run(sync_history(database, **options))


class _Runner:
    def __init__(
        self,
        store: Store,
        report: SyncReport,
        client: Callable[..., FlexClient],
        session: aiohttp.ClientSession,
        today: date,
        tell: SyncCallback,
    ) -> None:
        self.store = store
        self.report = report
        self.client = client
        self.session = session
        self.today = today
        self.tell = tell

    async def query(self, query_id: str, since: date | None, until: date) -> None:
        """Sync one query: ``since`` (else the day after its last stored window) to
        ``until``, and whatever an interrupted sync of it left undone, whatever its range:
        the windows an interrupted sync committed are not fetched again."""
        first = since
        if first is None:
            last = self.store.last_covered(query_id)
            first = last + timedelta(days=1) if last is not None else until - timedelta(364)
        interrupted = self.store.unfinished_runs(query_id)
        done = [
            (w.covers.first, w.covers.last)
            for run_id, _, _ in interrupted
            for w in self.store.windows(query_id, run_id)
        ]
        spans = [(first, until)] if first <= until else []
        spans += [(a, b) for _, a, b in interrupted]
        todo = sorted(
            (w for a, b in union(spans) for gap in gaps(done, a, b) for w in split(*gap)),
            key=lambda w: w.last,
            reverse=True,
        )
        if not todo:
            for run_id, _, _ in interrupted:
                self.store.finish_run(run_id)
            self.tell(SyncEvent(SyncEventKind.UP_TO_DATE, query_id, detail=str(until)))
            return
        run = self.store.start_run(query_id, min(a for a, _ in spans), max(b for _, b in spans))
        before_first = False
        opened = self.store.opened(query_id)
        for window in todo:
            if before_first:
                note = "before the earliest date IB has a statement for (found in a later window)"
                self._stored(self.store.store_empty(query_id, run, window, note))
                continue
            if opened is not None and window.last < opened:
                note = f"before {opened}, when the account opened (dateOpened); nothing asked"
                self._stored(self.store.store_empty(query_id, run, window, note))
                continue
            before_first = await self._window(query_id, run, window, opened)
            opened = self.store.opened(query_id)
        for run_id in (run, *(run_id for run_id, _, _ in interrupted)):
            self.store.finish_run(run_id)

    async def _window(self, query_id: str, run: int, window: Window, opened: date | None) -> bool:
        """Fetch and commit one window (from ``opened`` on, the accounts' latest opening
        date, where known: IB has nothing before it); True when IB had no statement for any
        of its dates (so none for older ones either)."""
        asked_window = window
        if opened is not None and window.first < opened:
            asked_window = Window(opened, window.last)
        search = Search(asked_window, self.today)
        statement: FlexStatement | None = None
        refused: list[str] = []
        for asked in search.ranges():
            kind = SyncEventKind.WINDOW if not refused else SyncEventKind.RETRY
            self.tell(SyncEvent(kind, query_id, window, asked, detail="; ".join(refused)))
            try:
                statement = await self._fetch(query_id, asked)
            except QueryError as error:
                if error.code != NOT_AVAILABLE:
                    raise
                refused.append(f"{asked[0]}..{asked[1]}: IB {NOT_AVAILABLE}")
                search.answered(served=False)
            else:
                search.answered(served=True)
                opened = _opened(statement)
                if opened is not None:
                    search.skip_to(opened)
        if search.outcome is Outcome.STATEMENT and statement is not None and search.served:
            fetched = _fetched(statement, search.served)
            covers = Window(window.first, search.covers.last)
            stored, counts = self.store.store_statement(
                query_id, run, covers, search.served, fetched
            )
            self.report._add(counts)
            self._stored(stored)
            return False
        if (self.today - window.last).days <= END_STEPS + 4:
            # Not published yet, most likely: nothing is recorded, the next sync asks again.
            self.report.unpublished.append((query_id, window))
            detail = "; ".join(refused) or "weekend"
            self.tell(SyncEvent(SyncEventKind.UNPUBLISHED, query_id, window, detail=detail))
            return False
        note = "IB has no statement for these dates" + (
            f" ({'; '.join(refused)})" if refused else ""
        )
        self._stored(self.store.store_empty(query_id, run, window, note))
        return search.nothing

    async def _fetch(self, query_id: str, asked: tuple[date, date]) -> FlexStatement:
        client = self.client(query_id=query_id, from_date=asked[0], to_date=asked[1])

        def forward(event: FetchEvent) -> None:
            if event.kind.value == "request":
                self.report.requests += 1
            self.tell(SyncEvent(SyncEventKind.FETCH, query_id, fetch=event, asked=asked))

        return await client.fetch(self.session, on_event=forward)

    def _stored(self, stored: StoredWindow) -> None:
        self.report.windows.append(stored)
        self.tell(SyncEvent(SyncEventKind.STORED, stored.query_id, stored.covers, stored=stored))


def _fetched(statement: FlexStatement, asked: tuple[date, date]) -> Fetched:
    """The statement's rows and header data, checked against the range asked for."""
    parts = statement.statements
    day_first = statement.day_first
    for part in parts:
        found, day_first = _header_dates(part, asked, day_first)
        if found != asked:
            raise StatementError(
                f"asked IB for {asked[0]}..{asked[1]}, but the statement of account "
                f"{part.account_id} covers {found[0]}..{found[1]}; nothing of this window was "
                "stored (does the query ignore date overrides?)"
            )
    rows = [
        (element.tag, part.account_id, dict(element.attrib))
        for part in parts
        for element in _rows(part.element)
    ]
    xml = statement.xml if isinstance(statement.xml, bytes) else statement.xml.encode()
    generated = parts[0].element.get("whenGenerated", "") if parts else ""
    return Fetched(
        xml=xml,
        accounts=tuple(dict.fromkeys(p.account_id for p in parts)),
        from_date=asked[0],
        to_date=asked[1],
        when_generated=generated,
        rows=rows,
        day_first=day_first,
    )


def _header_dates(
    part: AccountStatement, asked: tuple[date, date], day_first: bool | None
) -> tuple[tuple[date, date] | tuple[str, str], bool | None]:
    """The part's ``fromDate`` and ``toDate``, and the day order they show. Slashed dates
    that no day of the document decides (``04/03/2026`` in a query of early-month dates) are
    read in the order that gives the range asked, if one does."""
    texts = (part.element.get("fromDate", ""), part.element.get("toDate", ""))
    if not any(texts):
        raise StatementError(
            "the statement carries no dates (a query in CSV form without header and trailer "
            "records), so no window can be checked or stored: set the Flex Query's 'Include "
            "header and trailer records?' to Yes, or its format to XML"
        )
    orders = [day_first] if day_first is not None else [None, False, True]
    first_read: tuple[tuple[date, date], bool | None] | None = None
    for order in orders:
        try:
            found = tuple(parse_ib_date(text, day_first=order) for text in texts)
        except ValueError:
            continue
        if found == asked:
            return asked, order
        first_read = first_read or ((found[0], found[1]), order)
    return first_read if first_read is not None else (texts, day_first)


def _opened(statement: FlexStatement) -> date | None:
    """The latest ``dateOpened`` of the statement's accounts, if every one says."""
    days = []
    for part in statement.statements:
        found = [e.get("dateOpened", "") for e in part.iter("AccountInformation")]
        try:
            days.append(parse_ib_date(found[0]) if found else None)
        except ValueError:
            days.append(None)
    if not days or None in days:
        return None
    return max(d for d in days if d is not None)


def _rows(element: ET.Element) -> Iterator[ET.Element]:
    for child in element.iter():
        if child is not element and is_row(child):
            yield child


def _query_names(query_ids: Sequence[str | int]) -> list[str]:
    if isinstance(query_ids, (str, int)):
        query_ids = [query_ids]
    names = [str(q).strip() for q in query_ids]
    if not names or not all(names):
        raise ValueError("query_ids: give at least one query id, none empty")
    if len(set(names)) != len(names):
        raise ValueError("query_ids: a query is named twice")
    return names


def _ignore(event: SyncEvent) -> None:
    pass
