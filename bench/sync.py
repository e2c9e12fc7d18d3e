"""A five-year backfill into the sync store, on the virtual clock.

An account with 1,000 trades a year, served by the simulator over loopback; the client on a
``FakeClock`` (IB's limits hold, nothing waits for real). Prints:

1. The backfill: windows, requests against the floor IB's limits allow (a SendRequest and a
   GetStatement per window), virtual time against its floor, 1003/1018 answers, the rows
   stored and the database's size, and how many rows a re-run added.
2. Storing rows: the store (``Store.store_statement``: keys, digests, versions, the raw
   statement compressed) against a baseline of the same rows inserted with ``executemany``
   into one bare table per tag, alternated (ABAB) over several rounds: rows per second each,
   and the median of the paired ratios.

    python bench/sync.py
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from ibkr_flex_client import FlexStatement
from ibkr_flex_client.sync import sync_history
from ibkr_flex_client.sync.engine import _fetched
from ibkr_flex_client.sync.store import Store
from ibkr_flex_client.sync.windows import Window
from ibkr_flex_client.testing import AccountHistory, FakeClock, FlexSimulator

TODAY = date(2026, 11, 27)
SINCE = date(2021, 11, 27)
TOKEN = "bench-sync-token"  # noqa: S105 - a fake token for the simulator
HISTORY = AccountHistory(accounts=("U1234567",), trades_per_year=1000, seed="bench")


def ib_floor(requests: int) -> float:
    """The least time IB's limits (1 per second, 10 per minute) allow for ``requests``."""
    last = requests - 1
    return max(last * 1.0, (last // 10) * 60.0)


async def backfill(folder: Path) -> None:
    clock = FakeClock()
    async with FlexSimulator(clock=clock) as sim:
        sim.add_query("1", history=HISTORY)
        db = folder / "history.db"
        sync = functools.partial(
            sync_history,
            db,
            token=TOKEN,
            query_ids=["1"],
            since=SINCE,
            today=TODAY,
            base_url=sim.base_url,
            clock=clock,
        )
        started, began = clock.now(), time.perf_counter()
        report = await sync()
        real = time.perf_counter() - began
        virtual = clock.now() - started
        again = await sync()
        answers = sim.answers()
    windows = len(report.windows)
    floor_requests = 2 * sum(1 for w in report.windows if w.asked is not None)
    rows = sum(c.added for c in report.tags.values())
    size = sum(p.stat().st_size for p in sorted(folder.glob("history.db*")))  # noqa: ASYNC240
    print("1. five-year backfill, 1,000 trades a year, virtual clock")
    print(
        "| windows | requests | floor | virtual s | floor s | 1003 | 1018 | rows stored "
        "| database MB | real s | re-run added |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {windows} | {report.requests} | {floor_requests} | {virtual:.0f} | "
        f"{ib_floor(floor_requests):.0f} | {answers.count('1003')} | {answers.count('1018')} | "
        f"{rows:,} | {size / 2**20:.2f} | {real:.2f} | "
        f"{sum(c.added for c in again.tags.values())} |"
    )
    print()


def statements() -> list[tuple[Window, tuple[date, date], bytes]]:
    out = []
    end = TODAY - timedelta(days=1)
    while end > SINCE:
        start = max(SINCE, end - timedelta(days=364))
        first, last = start, end
        while first.weekday() >= 5:
            first += timedelta(days=1)
        while last.weekday() >= 5:
            last -= timedelta(days=1)
        out.append((Window(start, end), (first, last), HISTORY.statement(first, last)))
        end = start - timedelta(days=1)
    return out


def ours(folder: Path, work: list[tuple[Window, tuple[date, date], bytes]]) -> tuple[float, int]:
    path = folder / f"ours-{time.monotonic_ns()}.db"
    parsed = [(w, asked, _fetched(FlexStatement(xml), asked)) for w, asked, xml in work]
    began = time.perf_counter()
    with Store(path) as store:
        run = store.start_run("1", SINCE, TODAY)
        for window, asked, fetched in parsed:
            store.store_statement("1", run, window, asked, fetched)
    rows = sum(len(f.rows) for _, _, f in parsed)
    return time.perf_counter() - began, rows


def bare(folder: Path, work: list[tuple[Window, tuple[date, date], bytes]]) -> tuple[float, int]:
    """The baseline: each tag's rows into one table with a column per attribute, one
    executemany per window, in WAL mode: what a hand-written loader does, without keys."""
    path = folder / f"bare-{time.monotonic_ns()}.db"
    parsed = [(asked, _fetched(FlexStatement(xml), asked)) for _, asked, xml in work]
    began = time.perf_counter()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    made: dict[str, list[str]] = {}
    rows = 0
    for _, fetched in parsed:
        db.execute("BEGIN")
        by_tag: dict[str, list[dict[str, str]]] = {}
        for tag, _, attributes in fetched.rows:
            by_tag.setdefault(tag, []).append(dict(attributes))
        for tag, found in by_tag.items():
            names = made.setdefault(tag, [])
            if not names:
                names += sorted({n for row in found for n in row})
                columns = ", ".join(f'"{n}" TEXT' for n in names)
                db.execute(f'CREATE TABLE "{tag}" ({columns})')
            for n in sorted({n for row in found for n in row} - set(names)):
                db.execute(f'ALTER TABLE "{tag}" ADD COLUMN "{n}" TEXT')
                names.append(n)
            marks = ", ".join("?" * len(names))
            db.executemany(
                f'INSERT INTO "{tag}" VALUES ({marks})',  # noqa: S608 - the bench's own names
                [[row.get(n) for n in names] for row in found],
            )
            rows += len(found)
        db.execute("COMMIT")
    db.close()
    return time.perf_counter() - began, rows


def table_store(rounds: int = 7) -> None:
    work = statements()
    with tempfile.TemporaryDirectory() as folder:
        ratios, ours_rates, bare_rates = [], [], []
        for _ in range(rounds):  # ABAB
            ours_s, rows = ours(Path(folder), work)
            bare_s, bare_rows = bare(Path(folder), work)
            assert rows == bare_rows
            ratios.append(ours_s / bare_s)
            ours_rates.append(rows / ours_s)
            bare_rates.append(rows / bare_s)
    print(f"2. storing {rows:,} rows of {len(work)} windows, {rounds} ABAB rounds")
    print("| loader | rows per second (median) | time ratio to the baseline (median of pairs) |")
    print("|---|---:|---:|")
    print(f"| bare executemany (baseline) | {statistics.median(bare_rates):,.0f} | 1 |")
    print(
        f"| the sync store | {statistics.median(ours_rates):,.0f} | "
        f"{statistics.median(ratios):.2f} |"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(backfill(Path(folder)))
    table_store()


if __name__ == "__main__":
    main()
