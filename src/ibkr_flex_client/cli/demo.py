"""``ibkr-flex demo``: a fetch from the built-in simulator of IB's service, over loopback.

Imported only when it runs: it loads the network client and the simulator (aiohttp).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TextIO

from ..client import FlexClient
from ..dates import parse_ib_date
from ..statement import FlexStatement
from ..sync import SyncEvent, SyncEventKind, sync_history
from ..sync.status import read_status
from ..testing.clock import FakeClock
from ..testing.content import build_statement, to_csv
from ..testing.history import AccountHistory, Correction
from ..testing.simulator import FlexSimulator
from .exits import EXIT_OK, EXIT_USAGE, Exit
from .fetch import make_directories
from .output import Sink
from .progress import Progress
from .sync import show_status, summary, window_line

__all__ = ["main", "summarize"]


def _day(text: str | None) -> str:
    try:
        return parse_ib_date(text or "").isoformat()
    except ValueError:
        return text or "?"


def summarize(statement: FlexStatement) -> Iterator[str]:
    """Lines describing a statement: type, query, accounts and periods, sections and rows."""
    root = next(statement.iter("FlexQueryResponse"))
    yield f"Report {root.get('queryName', '?')!r} (type {root.get('type', '?')})"
    sections: dict[str, int] = {}
    yield "Accounts:"
    for one in statement.iter("FlexStatement"):
        yield (
            f"  {one.get('accountId', '?'):<12} {_day(one.get('fromDate'))} to "
            f"{_day(one.get('toDate'))}"
        )
        for section in one:
            sections[section.tag] = sections.get(section.tag, 0) + len(section)
    width = max((len(name) for name in sections), default=7)
    yield f"{'Section':<{width}}  rows"
    for name, rows in sections.items():
        yield f"{name:<{width}}  {rows:>4}"


async def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    accounts = ["U1234567", "U7654321"]
    document = build_statement(accounts=accounts, query_name="Demo activity")
    if args.format != "xml":  # what a query set to CSV (or text: pipes) delivers
        document = to_csv(document, delimiter="|" if args.format == "text" else ",")
    simulator = FlexSimulator(
        generation_seconds=args.generation_seconds, latency=args.latency, statement=document
    )
    async with simulator:
        print(
            f"Simulated IB Flex Web Service on {simulator.base_url} "
            "(no IB account, no network needed)",
            file=err,
        )
        client = FlexClient(token="demo-token", query_id="123456", base_url=simulator.base_url)  # noqa: S106
        progress = Progress(err)
        print("Fetching query 123456 ...", file=err, flush=True)
        async with progress.ticking():
            if args.output:
                saved = await client.download(args.output, on_event=progress)
                statement = FlexStatement.from_file(saved)
            else:
                statement = await client.fetch(on_event=progress)
        requests = len(simulator.requests)
        print(
            f"Statement received: {len(statement.xml):,} bytes after {requests} requests "
            f"({', '.join(simulator.answers())})",
            file=err,
        )
        if args.output:
            print(f"ibkr-flex: wrote {args.output} ({len(statement.xml):,} bytes)", file=err)
    sink = Sink(out)
    for line in summarize(statement):
        sink.write(line + "\n")
    sink.flush()
    return EXIT_OK


# The demo's account: opened in 2024, so that a sync since 2023 meets IB's 1003 for the dates
# before; one trade corrected later, one cancelled.
_DEMO_ACCOUNT = "U1234567"
_DEMO_OPENED = date(2024, 3, 14)
# A backfill up to before the corrections; an overlapping sync that meets them (and
# duplicates); an incremental one with nothing new.
_DEMO_RUNS = (
    ("backfill since 2023-06-01, until 2025-03-07", date(2023, 6, 1), date(2025, 3, 7)),
    ("since 2025-01-01, overlapping", date(2025, 1, 1), None),
    ("incremental, no --since", None, None),
)


def _demo_history(today: date) -> AccountHistory:
    return AccountHistory(
        accounts=(_DEMO_ACCOUNT,),
        opened={_DEMO_ACCOUNT: _DEMO_OPENED},
        trades_per_year=500,
        seed="demo",
        today=today,
        query_name="Demo activity",
        corrections=(
            Correction(
                account=_DEMO_ACCOUNT,
                trade_date=date(2025, 3, 3),
                reported=date(2025, 3, 10),
                trade_price="101.25",
            ),
            Correction(
                account=_DEMO_ACCOUNT,
                trade_date=date(2025, 3, 4),
                reported=date(2025, 3, 11),
                cancel=True,
            ),
        ),
    )


async def run_sync(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Sync a simulated account's history since 2023 into a database: a backfill, an
    overlapping sync that brings duplicates and a correction, and an incremental one."""
    today = date(2026, 11, 27)
    clock = FakeClock()
    simulator = FlexSimulator(clock=clock, generation_seconds=args.generation_seconds)
    simulator.add_query("123456", history=_demo_history(today))
    with contextlib.ExitStack() as stack:
        if args.db:
            db = Path(args.db)
            make_directories(db.parent)
        else:
            db = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "demo.db"
        async with simulator:
            print(
                f"Simulated IB Flex Web Service on {simulator.base_url}, on virtual time (IB's "
                f"limits hold, nothing waits); account {_DEMO_ACCOUNT} opened {_DEMO_OPENED}",
                file=err,
            )
            for label, since, until in _DEMO_RUNS:
                print(f"Sync ({label}) of query 123456 into {db} ...", file=err)
                report = await sync_history(
                    db,
                    token="demo-token",  # noqa: S106 - the simulator's
                    query_ids=["123456"],
                    since=since,
                    until=until,
                    today=today,
                    base_url=simulator.base_url,
                    clock=clock,
                    on_event=functools.partial(_show_window, err),
                )
                summary(report, out)
        for status in read_status(db):
            show_status(status, out)
        if args.db:
            print(f"ibkr-flex: kept {db}: try sync --status, export --db", file=err)
        else:
            print(f"({db} was temporary: --db PATH keeps the database)", file=err)
    return EXIT_OK


def _show_window(err: TextIO, event: SyncEvent) -> None:
    if event.kind in (SyncEventKind.RETRY, SyncEventKind.STORED):
        print(f"  {window_line(event)}", file=err)


def main(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """:func:`run` (or :func:`run_sync`) in its own event loop."""
    if args.db and not args.sync:
        raise Exit(EXIT_USAGE, "--db goes with --sync (the database the demo syncs into)")
    if args.sync and args.format != "xml":
        raise Exit(EXIT_USAGE, "--format goes with the fetch demo, not --sync")
    if args.sync and args.output:
        raise Exit(EXIT_USAGE, "-o saves the fetched statement: not with --sync (use --db)")
    return asyncio.run(run_sync(args, out, err) if args.sync else run(args, out, err))
