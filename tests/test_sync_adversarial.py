"""Adversarial tests of ``ibkr-flex sync``: what a user, IB or an attacker can do to a sync
database, and what the feature promises (README "History in a local database",
``docs/sync.md``).

The first part holds broken promises: each test fails today and passes once its bug is
fixed; its comment says what a user (or an attacker) meets. The second part holds promises
kept that no other test covers.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import pytest

from ibkr_flex_client import StatementError, StoreBusyError, StoreError, TokenError
from ibkr_flex_client import cli as cli_module
from ibkr_flex_client.cli.sync import show_status
from ibkr_flex_client.sync import SyncEvent, SyncEventKind
from ibkr_flex_client.sync.status import read_status
from ibkr_flex_client.sync.store import _MIGRATIONS, SCHEMA_VERSION, Store
from ibkr_flex_client.sync.windows import Window
from ibkr_flex_client.testing import AccountHistory, Correction, FakeClock, FlexSimulator
from ibkr_flex_client.testing.history import Window as AskedRange

from .conftest import TOKEN
from .conftest import sql as run_sql
from .test_sync import TODAY, YESTERDAY, expected_ids, run, stored_ids

D = date.fromisoformat
WORKER = Path(__file__).with_name("sync_adversarial_worker.py")

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("IBKR_FLEX_TOKEN", TOKEN)

    def call(*argv: str) -> tuple[int, str, str]:
        try:
            status = cli_module.main(list(argv))
        except SystemExit as exit_:
            status = int(exit_.code or 0)
        out, err = capsys.readouterr()
        assert TOKEN not in out + err
        return status, out, err

    return call


def _hold_lock(path: Path) -> int:
    """Take the lock a running sync of ``path`` holds (as another process would)."""
    fd = os.open(str(path) + ".sync-lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _lock_is_free(path: Path) -> bool:
    fd = os.open(str(path) + ".sync-lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


class _KilledError(Exception):
    """The sync stops here, as a killed one would."""


def _stop_after_first_window(event: SyncEvent) -> None:
    """An on_event that stops the sync right after its first window is committed."""
    if event.kind is SyncEventKind.STORED:
        raise _KilledError


class _Closure(AccountHistory):
    """IB closed from 2001-09-11 to 2001-09-14 (four business days): no statement may end or
    start on those days (1003), as docs/sync.md says IB does for a holiday."""

    CLOSED = frozenset(D("2001-09-11") + timedelta(days=n) for n in range(4))

    def unavailable(self, window: AskedRange) -> str | None:
        if window.explicit and {window.from_date, window.to_date} & self.CLOSED:
            return "market closed"
        return AccountHistory.unavailable(self, window)


class _NothingServed(AccountHistory):
    """IB answers 1003 to every range (a query IB will not serve for any dates)."""

    def unavailable(self, window: AskedRange) -> str | None:
        return "statement not available"


class _OwnRange(AccountHistory):
    """A query that ignores fd/td: always its own range (IB has been seen to do so)."""

    def statement(self, from_date: date, to_date: date, *, period: str = "") -> bytes:
        return AccountHistory.statement(self, D("2026-11-20"), D("2026-11-20"))


class _ExtraRow(AccountHistory):
    """Every account's statement carries one extra row, as given."""

    EXTRA: tuple[str, dict[str, str]] = ("X", {})

    def statement(self, from_date: date, to_date: date, *, period: str = "") -> bytes:
        xml = AccountHistory.statement(self, from_date, to_date, period=period).decode()
        tag, attributes = self.EXTRA
        row = f"<{tag} " + " ".join(f"{n}={quoteattr(v)}" for n, v in attributes.items()) + " />"
        return xml.replace("</FlexStatement>", f"  {row}\n    </FlexStatement>").encode()


# ============================================================================================
# Broken promises found by an adversarial pass: each failed before its fix.
# ============================================================================================


async def test_status_of_a_database_whose_name_holds_a_hash_reads_that_database(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    # A user keeps "history#2.db" (or "q?x.db", "100%.db"): `ibkr-flex sync --status` fails
    # with "no such table: @windows" (exit 8), and, though it promises to only read, creates
    # an empty SQLite file "history" beside it. read_status builds the URI by hand
    # (f"file:{path}?mode=ro"): "#" starts a fragment, so SQLite opens "history" read-write.
    sim.add_query("1", history=AccountHistory(seed=30))
    db = tmp_path / "history#2.db"
    await run(sim, clock, db, since="2026-10-01")

    def names() -> set[str]:  # SQLite's own -wal and -shm come and go with connections
        return {p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))}

    before = names()
    statuses = read_status(db)
    assert [(s.query_id, s.first, s.last) for s in statuses] == [("1", D("2026-10-01"), YESTERDAY)]
    assert names() == before  # no stray "history" file


async def test_a_sync_through_a_symlink_to_the_database_is_told_busy(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    # The cron job syncs /data/history.db, the user (or a second job) syncs ~/history.db, a
    # symlink to it: both run at once, both write the same file, neither is told "busy". The
    # lock file is named after the path given (engine.py _exclusive: path.with_name), not
    # after the file it names.
    sim.add_query("1", history=AccountHistory(seed=31))
    real = tmp_path / "data" / "history.db"
    real.parent.mkdir()
    link = tmp_path / "history.db"
    link.symlink_to(real)
    holder = _hold_lock(real)  # a sync of the real path is running
    try:
        with pytest.raises(StoreBusyError):
            await run(sim, clock, link, since="2026-10-01")
    finally:
        os.close(holder)
    assert sim.requests == []


async def test_a_planted_symlink_as_the_lock_file_clobbers_nothing(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    # An attacker who can write the database's folder (a shared /tmp, a group folder) plants
    # "history.db.sync-lock" -> the victim's file: the sync follows it, truncates the victim's
    # file and writes "pid N" into it. engine.py _exclusive opens the lock with
    # O_RDWR | O_CREAT (no O_NOFOLLOW) and ftruncates it.
    sim.add_query("1", history=AccountHistory(seed=32))
    victim = tmp_path / "authorized_keys"
    victim.write_text("ssh-ed25519 AAAA... user@host\n")
    db = tmp_path / "history.db"
    Path(str(db) + ".sync-lock").symlink_to(victim)
    with contextlib.suppress(StoreError):  # refusing is fine; clobbering is not
        await run(sim, clock, db, since="2026-10-01")
    assert victim.read_text() == "ssh-ed25519 AAAA... user@host\n"


async def test_an_interrupted_incremental_sync_leaves_no_gap_for_ever(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    # A daily cron job (no --since) after a long pause has two windows to fetch, newest
    # first; it is killed (or IB fails) after the newest is committed. The next run starts
    # from the day after the last stored window (engine.py _Runner.query: last_covered), so it
    # says "up to date" and the older window is never fetched: a year of trades is missing
    # for good, and the resume of the unfinished run never happens (its range no longer
    # matches). --status shows the gap.
    history = AccountHistory(seed=33)
    sim.add_query("1", history=history)
    db = tmp_path / "h.db"
    await run(sim, clock, db, since="2024-01-01", until="2024-12-31")
    with pytest.raises(_KilledError):
        await run(sim, clock, db, on_event=_stop_after_first_window)
    await run(sim, clock, db)
    (status,) = read_status(db)
    assert status.gaps == ()
    assert set(stored_ids(db)) == expected_ids(history, D("2024-01-01"), YESTERDAY)


async def test_a_backfill_resumed_the_next_day_fetches_no_committed_window_again(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    # `ibkr-flex sync --since 2023-01-02` is killed at night after its newest window; the
    # next day the same command (until defaults to yesterday, now one day later) is not
    # "the same range", so it starts a new run and fetches every window again, the committed
    # one included (store.py unfinished_run matches first and last exactly). A kill during a
    # long backfill costs the whole backfill's requests again.
    history = AccountHistory(seed=34)
    sim.add_query("1", history=history)
    db = tmp_path / "h.db"
    with pytest.raises(_KilledError):
        await run(sim, clock, db, since="2023-01-02", on_event=_stop_after_first_window)
    resumed = await run(sim, clock, db, since="2023-01-02", today=TODAY + timedelta(days=1))
    assert resumed.tags["Trade"].duplicates == 0  # the committed window was not fetched again
    assert set(stored_ids(db)) == expected_ids(history, D("2023-01-02"), YESTERDAY)


async def test_since_the_year_one_is_refused_as_a_bad_date_not_an_overflow(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    # A typo, `--since 0001-01-01` (or 0019-01-01): the sync opens the database, starts a run,
    # then dies with OverflowError ("date value out of range", exit 1 and a traceback with -v)
    # while splitting the range (windows.py split: end - timedelta / start - 1 day).
    # date_range should refuse dates IB cannot have (or split should stop at date.min).
    sim.add_query("1", history=AccountHistory(seed=35))
    db = tmp_path / "h.db"
    with pytest.raises(ValueError, match="since"):
        await run(sim, clock, db, since="0001-01-01", until="0001-12-31")
    assert not db.exists()


async def test_a_day_of_a_dd_mm_query_whose_dates_are_all_ambiguous_is_stored(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    # A European user's query writes dates dd/MM/yyyy. The daily sync of 4 March asks IB for
    # 2026-03-04..2026-03-04; every date in the answer ("04/03/2026", "05/03/2026") reads both
    # ways, so engine.py _fetched (part.from_date) raises StatementError "ambiguous IB date"
    # and the sync stops: on most of the first twelve days of every month. The sync knows the
    # range it asked for: it should read the header with the day order that matches it.
    today = D("2026-03-05")
    sim.add_query("1", history=AccountHistory(seed=36, date_format="dd/MM/yyyy", today=today))
    db = tmp_path / "h.db"
    report = await run(sim, clock, db, since="2026-03-04", until="2026-03-04", today=today)
    assert [w.outcome for w in report.windows] == ["statement"]


async def test_an_older_statement_does_not_make_a_corrected_trade_current_again(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    # IB corrected a trade's price on 2026-06-01. The first sync (through 2026-06-30) stores
    # the corrected trade. A later sync of an older range (through 2026-03-31, whose statement
    # still shows the original) stores the original as version 2, "@current" = 1: the query
    # the README gives for "the trades as IB shows them now" returns the superseded price.
    # store.py _upsert takes any unseen digest as the newest version; it should compare the
    # statements' dates (statement_to / whenGenerated), as docs/sync.md promises "an older
    # statement showing the old values" changes nothing.
    amended = Correction(
        account="U1234567", trade_date=D("2026-03-02"), reported=D("2026-06-01"),
        trade_price="99.5",
    )  # fmt: skip
    sim.add_query("1", history=AccountHistory(seed=37, trades_per_year=600, corrections=(amended,)))
    db = tmp_path / "h.db"
    await run(sim, clock, db, since="2026-02-02", until="2026-06-30")
    await run(sim, clock, db, since="2026-02-02", until="2026-03-31")
    current = run_sql(
        db,
        'SELECT tradePrice FROM Trade WHERE "@current" = 1 AND transactionID IN '
        "(SELECT transactionID FROM Trade WHERE tradePrice = ?)",
        "99.5",
    )
    assert current == [("99.5",)]


async def test_four_closed_business_days_at_a_window_end_do_not_empty_the_older_history(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    # A backfill whose window happens to end in a stretch of four business days IB does not
    # serve (NYSE was shut from 11 to 14 September 2001; docs/sync.md: IB answers 1003 for a
    # holiday). The search gives up on that window after three earlier ends (END_STEPS), records
    # it empty, and engine.py _Runner.query then records every OLDER window empty too, without
    # asking IB ("before the earliest date IB has a statement for"): two years of trades are
    # silently missing, and --status shows no gap. A failing END proves nothing about the
    # start; only a start that fails (or dateOpened) does.
    today = D("2002-09-20")
    history = _Closure(seed=38, today=today)
    sim.add_query("1", history=history)
    db = tmp_path / "h.db"
    await run(sim, clock, db, since="1999-01-04", until="2002-09-16", today=today)
    stored = set(stored_ids(db))
    assert stored >= expected_ids(history, D("1999-01-04"), D("2001-09-10"))


async def test_status_during_a_running_sync_does_not_say_it_was_interrupted(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    # The user runs `ibkr-flex sync --status` while the nightly sync is still at work: it
    # says "a sync of it was interrupted: the next one resumes it". read_status takes every
    # run without finished_at for an interrupted one; the lock file says whether a sync is
    # running (a non-blocking lock attempt, read-only).
    sim.add_query("1", history=AccountHistory(seed=39))
    db = tmp_path / "h.db"
    shown = io.StringIO()

    def on_event(event: SyncEvent) -> None:
        if event.kind is SyncEventKind.STORED and not shown.getvalue():
            for status in read_status(db):
                show_status(status, shown)

    await run(sim, clock, db, since="2025-01-01", on_event=on_event)
    assert "query 1:" in shown.getvalue()
    assert "interrupted" not in shown.getvalue()


async def test_a_sqlite_database_of_another_program_is_refused_untouched(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    # `--db ~/.local/share/portfolio/app.sqlite` by mistake: another program's database, with
    # its own "Trade" table. The sync (schema version 0 = "new") adds "@windows", "@columns"
    # and "@runs" to it, switches it to WAL for good and sets user_version 2, then fails on
    # the foreign "Trade" table. docs/sync.md refuses a newer database untouched and
    # test_sync_store refuses a non-database untouched; a version-0 database that already
    # holds tables is not a new sync database either (store.py Store._prepare).
    app = tmp_path / "app.sqlite"
    db = sqlite3.connect(app)
    db.execute("CREATE TABLE Trade (id INTEGER PRIMARY KEY, symbol TEXT)")
    db.execute("INSERT INTO Trade (symbol) VALUES ('AAPL')")
    db.commit()
    db.close()
    sim.add_query("1", history=AccountHistory(seed=40))
    with pytest.raises(StoreError):
        await run(sim, clock, app, since="2026-10-01")
    tables = {name for (name,) in run_sql(app, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"Trade"}
    assert run_sql(app, "PRAGMA journal_mode")[0][0] == "delete"
    assert run_sql(app, "PRAGMA user_version")[0][0] == 0


async def test_a_change_of_the_query_date_format_duplicates_no_position(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    # The user switches the Flex Query's date format (yyyyMMdd to yyyy-MM-dd) and syncs an
    # overlapping range: the same position on the same day now has two current rows (keys
    # use reportDate as written: keys.py row_key; every trade also becomes a "correction").
    # README: "No duplicates ... reportDate and conid for positions". Dates in keys should be
    # normalised (parse_ib_date -> ISO).
    sim.add_query("1", history=AccountHistory(seed=41))
    db = tmp_path / "h.db"
    await run(sim, clock, db, since="2026-06-01", until="2026-06-30")
    sim.add_query("1", history=AccountHistory(seed=41, date_format="yyyy-MM-dd"))
    await run(sim, clock, db, since="2026-06-01", until="2026-06-30")
    positions = run_sql(
        db, 'SELECT conid, count(*) FROM OpenPosition WHERE "@current" = 1 GROUP BY conid'
    )
    assert positions
    assert all(count == 1 for _, count in positions), positions


# ============================================================================================
# Promises kept, not covered elsewhere.
# ============================================================================================


def _committed_windows(db: Path) -> int:
    uri = db.absolute().as_uri() + "?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        return int(conn.execute('SELECT count(*) FROM "@windows"').fetchone()[0])


def _orphans(conn: sqlite3.Connection) -> int:
    """Rows pointing at a window that was never committed."""
    tags = [t for (t,) in conn.execute('SELECT DISTINCT tag FROM "@columns"')]
    total = 0
    for tag in tags:
        sql = (
            f'SELECT count(*) FROM "{tag}" WHERE "@window" NOT IN '  # noqa: S608 - our tags
            '(SELECT "@id" FROM "@windows")'
        )
        total += int(conn.execute(sql).fetchone()[0])
    return total


def _worker(db: Path, since: str, mode: str) -> subprocess.Popen[str]:
    env = {**os.environ, "IBKR_FLEX_TOKEN": TOKEN}
    return subprocess.Popen(  # noqa: S603 - our interpreter, our script
        [sys.executable, str(WORKER), str(db), since, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.fixture
def worker_since() -> str:
    return (date.today() - timedelta(days=800)).isoformat()  # three windows


@pytest.mark.realtime
@pytest.mark.parametrize(
    ("stop", "status"),
    [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 143), (signal.SIGINT, 130)],
)
def test_a_cli_sync_stopped_inside_a_commit_loses_nothing_and_resumes(
    cli: Cli, tmp_path: Path, worker_since: str, stop: signal.Signals, status: int
) -> None:
    """The CLI sync paused inside the transaction of its second window (rows of it already
    inserted): meanwhile a second sync is told busy (75), --status and export --db see the
    committed window only; then kill -9, SIGTERM or Ctrl-C: the database is whole, no row of
    the half window is left, the lock is free, and the next run fetches only the windows not
    committed and stores every trade once."""
    db = tmp_path / "h.db"
    worker = _worker(db, worker_since, "pause")
    assert worker.stdout is not None
    try:
        line = worker.stdout.readline()
        assert line == "paused\n", (line, worker.stderr.read() if worker.stderr else "")
        assert _committed_windows(db) == 1
        busy, _, err = cli("sync", "-q", "1", "--db", str(db), "--base-url", "http://127.0.0.1:9")
        assert busy == 75, err
        assert "busy" in err
        shown, out, _ = cli("sync", "--status", "--db", str(db))
        assert shown == 0
        assert "in 1 windows" in out
        exported, out, _ = cli("export", "--db", str(db), "--tag", "Trade", "--format", "jsonl")
        assert exported == 0
        with contextlib.closing(
            sqlite3.connect(db.absolute().as_uri() + "?mode=ro", uri=True)
        ) as c:
            assert len(out.splitlines()) == c.execute("SELECT count(*) FROM Trade").fetchone()[0]
            assert _orphans(c) == 0
        worker.send_signal(stop)
        time.sleep(0.2)
        Path(str(db) + ".release").touch()  # Ctrl-C lets the commit under way finish
        assert worker.wait(timeout=60) == status
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        worker.stdout.close()
        if worker.stderr is not None:
            worker.stderr.close()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert _orphans(conn) == 0
    assert _lock_is_free(db)
    committed = _committed_windows(db)
    assert committed in (1, 2)
    again = _worker(db, worker_since, "run")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    served = int(out.split("served ")[1])
    assert served == 3 - committed  # three windows in all: none fetched twice
    with contextlib.closing(sqlite3.connect(db)) as conn:
        trades = conn.execute('SELECT "@account", transactionID FROM Trade').fetchall()
    assert trades
    assert len(trades) == len(set(trades))
    (state,) = read_status(db)
    assert (str(state.first), state.gaps, state.unfinished) == (worker_since, (), False)


async def test_a_cancelled_sync_keeps_committed_windows_frees_the_lock_and_resumes(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    # An application cancels its sync task (a shutdown, a timeout) while the second window is
    # being fetched.
    history = AccountHistory(seed=42)
    sim.add_query("1", history=history)
    db = tmp_path / "h.db"
    stored: list[SyncEvent] = []
    tasks: list[asyncio.Future[Any]] = []

    def on_event(event: SyncEvent) -> None:
        if event.kind is SyncEventKind.STORED:
            stored.append(event)
        elif event.kind is SyncEventKind.FETCH and len(stored) == 1:
            tasks[0].cancel()

    tasks.append(asyncio.ensure_future(run(sim, clock, db, since="2024-01-01", on_event=on_event)))
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    assert _committed_windows(db) == 1
    assert _lock_is_free(db)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert _orphans(conn) == 0
    sent = sim.answers().count("reference")
    report = await run(sim, clock, db, since="2024-01-01")
    assert report.tags["Trade"].duplicates == 0
    assert sim.answers().count("reference") - sent == len(report.windows)
    assert set(stored_ids(db)) == expected_ids(history, D("2024-01-01"), YESTERDAY)
    assert len(stored_ids(db)) == len(set(stored_ids(db)))


async def test_ib_answering_1003_to_everything_ends_soon_and_records_empty_windows(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    sim.add_query("1", history=_NothingServed(seed=43))
    db = tmp_path / "h.db"
    report = await run(sim, clock, db, since="2019-01-01")
    answers = sim.answers()
    assert answers.count("1003") <= 12, answers  # six for the recent window, six for one
    assert set(answers) == {"1003"}
    assert report.windows
    assert {w.outcome for w in report.windows} == {"empty"}
    assert [w for _, w in report.unpublished] == [Window(YESTERDAY - timedelta(364), YESTERDAY)]
    (status,) = read_status(db)
    assert (status.first, status.gaps) == (D("2019-01-01"), ())


async def test_a_query_that_ignores_the_dates_asked_is_never_recorded_as_covering_them(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    sim.add_query("1", history=_OwnRange(seed=44))
    db = tmp_path / "h.db"
    with pytest.raises(StatementError, match="ignore date overrides"):
        await run(sim, clock, db, since="2026-01-05", until="2026-03-31")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute('SELECT count(*) FROM "@windows"').fetchone() == (0,)
        assert "Trade" not in {n for (n,) in conn.execute("SELECT name FROM sqlite_master")}
    (status,) = read_status(db, ["1"])
    assert status.windows == 0


def test_status_gaps_with_overlapping_and_out_of_order_windows(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    with Store(db) as store:
        run_id = store.start_run("Q", D("2020-01-01"), D("2020-12-31"))
        for first, last in [
            ("2020-08-01", "2020-12-31"),
            ("2020-03-01", "2020-03-31"),  # inside the next one
            ("2020-01-01", "2020-06-30"),
            ("2020-05-01", "2020-07-15"),  # overlaps it
            ("2020-10-01", "2020-10-31"),  # inside the first
        ]:
            store.store_empty("Q", run_id, Window(D(first), D(last)), "test")
        other = store.start_run("R", D("2020-07-16"), D("2020-07-31"))
        store.store_empty("R", other, Window(D("2020-07-16"), D("2020-07-31")), "other query")
        store.finish_run(run_id)
        store.finish_run(other)
    status = {s.query_id: s for s in read_status(db)}
    assert status["Q"].gaps == ((D("2020-07-16"), D("2020-07-31")),)
    assert (status["Q"].first, status["Q"].last, status["Q"].windows) == (
        D("2020-01-01"), D("2020-12-31"), 5,
    )  # fmt: skip
    assert status["R"].gaps == ()


async def test_a_version_1_database_with_rows_is_migrated_and_its_rows_stay_known(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    # A database of schema 1 (no "@runs", no run_id) holding a synced window: after the
    # migration, the same range brings duplicates, not rows.
    sim.add_query("1", history=AccountHistory(seed=45))
    modern = tmp_path / "v2.db"
    first = await run(sim, clock, modern, since="2026-06-01", until="2026-06-30")
    old = tmp_path / "v1.db"
    with contextlib.closing(sqlite3.connect(old)) as conn:
        conn.executescript(_MIGRATIONS[0])
        conn.execute("ATTACH DATABASE ? AS v2", (str(modern),))
        v1_columns = [r[1] for r in conn.execute('PRAGMA main.table_info("@windows")')]
        names = ", ".join(f'"{c}"' for c in v1_columns)
        conn.execute(f'INSERT INTO main."@windows" ({names}) SELECT {names} FROM v2."@windows"')  # noqa: S608
        conn.execute('INSERT INTO main."@columns" SELECT * FROM v2."@columns"')
        for (sql,) in conn.execute(
            "SELECT sql FROM v2.sqlite_master WHERE type = 'table' AND name NOT LIKE '@%'"
        ).fetchall():
            conn.execute(sql)
        for (tag,) in conn.execute('SELECT DISTINCT tag FROM "@columns"').fetchall():
            conn.execute(f'INSERT INTO main."{tag}" SELECT * FROM v2."{tag}"')  # noqa: S608
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
        conn.execute("DETACH DATABASE v2")
    again = await run(sim, clock, old, since="2026-06-01", until="2026-06-30")
    assert again.tags["Trade"].added == 0
    assert again.tags["Trade"].duplicates == first.tags["Trade"].added
    with contextlib.closing(sqlite3.connect(old)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    (status,) = read_status(old)
    assert (status.windows, status.gaps, status.unfinished) == (2, (), False)


async def test_since_long_before_the_account_opened_costs_few_requests(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    # --since 1980-01-01 (the earliest date taken) for an account opened in 2021: 47
    # windows, nearly all before the opening, recorded empty without asking IB.
    history = AccountHistory(seed=46, opened={"U1234567": D("2021-06-15")})
    sim.add_query("1", history=history)
    db = tmp_path / "h.db"
    report = await run(sim, clock, db, since="1980-01-01")
    assert len(report.windows) > 45
    assert report.requests <= 40, sim.answers()
    assert set(stored_ids(db)) == expected_ids(history, D("2021-06-15"), YESTERDAY)
    (status,) = read_status(db)
    assert (status.first, status.last, status.gaps) == (D("1980-01-01"), YESTERDAY, ())


async def test_a_one_day_weekend_window_asks_nothing(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    sim.add_query("1", history=AccountHistory(seed=47))
    db = tmp_path / "h.db"
    old = await run(sim, clock, db, since="2024-06-01", until="2024-06-01")  # a Saturday
    assert [(w.outcome, str(w.covers)) for w in old.windows] == [
        ("empty", "2024-06-01..2024-06-01")
    ]
    recent = await run(sim, clock, db, since="2026-11-22", until="2026-11-22")  # Sunday, recent
    assert recent.windows == []
    assert [str(w) for _, w in recent.unpublished] == ["2026-11-22..2026-11-22"]
    assert sim.requests == []


async def test_the_token_is_in_no_event_no_exception_and_no_file_of_a_failed_sync(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    sim.add_query("1", history=AccountHistory(seed=48))
    db = tmp_path / "h.db"
    events: list[SyncEvent] = []
    await run(sim, clock, db, since="2026-10-01", on_event=events.append)
    sim.token_codes[TOKEN] = 1012  # the token expires
    with pytest.raises(TokenError) as raised:
        await run(sim, clock, db, since="2024-01-01", on_event=events.append)
    assert TOKEN not in f"{raised.value!s} {raised.value!r} {raised.value.__cause__!r}"
    assert TOKEN not in "".join(repr(e) for e in events)
    for file in tmp_path.iterdir():
        assert TOKEN.encode() not in file.read_bytes(), file


@pytest.mark.parametrize(
    ("tag", "attributes"),
    [
        ("sqlite_master", {"type": "table", "name": "Trade", "sql": "DROP TABLE Trade"}),
        ("SQLITE_sequence", {"name": "x", "seq": "1"}),
        ("trade", {"transactionID": "1"}),  # differs from "Trade" only in case
    ],
)
async def test_a_tag_sqlite_cannot_hold_stops_the_sync_and_stores_nothing_of_its_window(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path, tag: str, attributes: dict[str, str]
) -> None:
    history = type("Hostile", (_ExtraRow,), {"EXTRA": (tag, attributes)})(seed=49)
    sim.add_query("1", history=history)
    db = tmp_path / "h.db"
    with pytest.raises(StoreError):
        await run(sim, clock, db, since="2026-10-01")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute('SELECT count(*) FROM "@windows"').fetchone() == (0,)
        names = {n for (n,) in conn.execute("SELECT name FROM sqlite_master")}
    assert "Trade" not in names  # the window's transaction was rolled back whole


async def test_attribute_names_like_sql_and_hostile_values_round_trip(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path, cli: Cli
) -> None:
    attributes = {
        "rowid": "r", "oid": "o", "_rowid_": "_r", "ORDER": "upper", "order": "lower",
        "select": "'; DROP TABLE \"@windows\"; --", "key": "k", "KEY": "K", "Key": "kK",
        "big": "x" * 1_000_000, "quote": '"\'<&>', "unicode": "é\u212a\U0001f600",
    }  # fmt: skip
    history = type("Odd", (_ExtraRow,), {"EXTRA": ("Weird", attributes)})(seed=50)
    sim.add_query("1", history=history)
    db = tmp_path / "h.db"
    await run(sim, clock, db, since="2026-10-01")
    again = await run(sim, clock, db, since="2026-10-01")
    assert again.tags["Weird"].duplicates == 1
    assert again.tags["Weird"].added == 0
    status, out, err = cli("export", "--db", str(db), "--tag", "Weird", "--format", "jsonl")
    assert status == 0, err
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row == {"@account": "U1234567", **attributes}
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute('SELECT count(*) FROM "@windows"').fetchone() == (2,)


@pytest.mark.parametrize("kind", ["directory", "zero bytes"])
def test_a_directory_or_an_empty_file_as_the_database(cli: Cli, tmp_path: Path, kind: str) -> None:
    db = tmp_path / "h.db"
    if kind == "directory":
        db.mkdir()
    else:
        db.touch()
    expected = {"directory": (66, 66, 8), "zero bytes": (8, 8, None)}[kind]
    status, _, err = cli("sync", "--status", "--db", str(db))
    assert status == expected[0], err
    status, _, err = cli("export", "--db", str(db), "--tag", "Trade")
    assert status == expected[1], err
    if expected[2] is not None:
        status, _, err = cli("sync", "-q", "1", "--db", str(db), "--base-url", "http://127.0.0.1:9")
        assert status == expected[2], err
        assert "cannot" in err
    if kind == "directory":
        assert db.is_dir()
        assert list(db.iterdir()) == []
    else:
        assert db.read_bytes() == b""
