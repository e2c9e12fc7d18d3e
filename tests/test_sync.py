"""ibkr-flex sync against the simulator: backfills, re-runs, 1003, corrections, resumes."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from ibkr_flex_client import FlexStatement, QueryError, Step, StoreBusyError, StoreError
from ibkr_flex_client.sync import SyncEvent, SyncEventKind, sync_history, sync_history_blocking
from ibkr_flex_client.sync.status import read_status
from ibkr_flex_client.testing import AccountHistory, Correction, FakeClock, Fault, FlexSimulator

from .conftest import TOKEN
from .conftest import sql as run_sql

D = date.fromisoformat
TODAY = D("2026-11-27")
YESTERDAY = TODAY - timedelta(days=1)


def expected_ids(
    history: AccountHistory, first: date, last: date, tag: str = "Trade", account: str = ""
) -> set[str]:
    """Every transactionID the history holds from first to last, read from statements of
    IB's shape (ends on weekdays), independently of the sync."""
    ids = set()
    end = last
    while end >= first:
        start = max(first, end - timedelta(days=300))
        a, b = start, end
        while a.weekday() >= 5:
            a += timedelta(days=1)
        while b.weekday() >= 5:
            b -= timedelta(days=1)
        if a <= b:
            xml = history.statement(a, b)
            for part in FlexStatement(xml).statements:
                if account in ("", part.account_id):
                    ids |= {e.get("transactionID", "") for e in part.iter(tag)}
        end = start - timedelta(days=1)
    return ids


def stored_ids(db: Path, tag: str = "Trade", where: str = "") -> list[str]:
    sql = f'SELECT transactionID FROM "{tag}" {where}'  # noqa: S608 - the tests' own SQL
    return [r[0] for r in run_sql(db, sql)]


async def run(sim: FlexSimulator, clock: FakeClock, db: Path, **options: Any) -> Any:
    settings: dict[str, Any] = {
        "token": TOKEN,
        "query_ids": ["1"],
        "today": TODAY,
        "base_url": sim.base_url,
        "clock": clock,
    }
    settings.update(options)
    return await sync_history(db, **settings)


async def test_a_multi_year_backfill_of_two_queries_stores_every_row_once(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    one = AccountHistory(accounts=("U1111111",), opened={"U1111111": D("2022-03-15")}, seed=1)
    two = AccountHistory(accounts=("U2222222", "U3333333"), seed=2, trades_per_year=120)
    sim.add_query("1", history=one)
    sim.add_query("2", history=two)
    db = tmp_path / "history.db"
    events: list[SyncEvent] = []
    report = await run(
        sim, clock, db, query_ids=["1", "2"], since="2020-06-01", on_event=events.append
    )
    assert "1018" not in sim.answers()
    for account, history in (("U1111111", one), ("U2222222", two), ("U3333333", two)):
        ids = stored_ids(db, where=f"WHERE \"@account\" = '{account}'")
        assert len(ids) == len(set(ids))  # no duplicates
        assert set(ids) == expected_ids(history, D("2020-06-01"), YESTERDAY, account=account)
    statuses = {s.query_id: s for s in read_status(db)}
    for status in statuses.values():
        assert (status.first, status.last, status.gaps) == (D("2020-06-01"), YESTERDAY, ())
    assert statuses["2"].accounts == ("U2222222", "U3333333")
    assert statuses["2"].empty == 0
    assert statuses["1"].empty >= 1  # the windows before the account opened
    assert sim.answers().count("1003") <= 12, sim.answers()
    assert report.tags["Trade"].added == len(stored_ids(db))
    assert report.requests < 1.2 * sim.answers().count("reference") * 2 + 10
    assert {e.kind for e in events} >= {SyncEventKind.WINDOW, SyncEventKind.STORED}


async def test_a_re_run_adds_nothing_and_the_incremental_run_continues(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    history = AccountHistory(seed=3)
    sim.add_query("1", history=history)
    db = tmp_path / "h.db"
    first = await run(sim, clock, db, since="2025-01-01", until="2026-06-30")
    again = await run(sim, clock, db, since="2025-01-01", until="2026-06-30")
    assert first.tags["Trade"].added > 100
    assert again.tags["Trade"].added == 0
    assert again.tags["Trade"].duplicates == first.tags["Trade"].added
    before = len(stored_ids(db))
    sent = sim.answers().count("reference")
    later = await run(sim, clock, db)  # no --since: from 2026-07-01 to yesterday
    assert [w.covers.first for w in later.windows] == [D("2026-07-01")]
    assert len(stored_ids(db)) == before + later.tags["Trade"].added
    assert set(stored_ids(db)) == expected_ids(history, D("2025-01-01"), YESTERDAY)
    assert sim.answers().count("reference") == sent + 1
    up_to_date = await run(sim, clock, db)
    assert up_to_date.windows == []
    assert up_to_date.requests == 0


async def test_the_first_sync_without_since_takes_the_last_365_days(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    sim.add_query("1", history=AccountHistory(seed=4))
    report = await run(sim, clock, tmp_path / "h.db")
    (window,) = report.windows
    assert (window.covers.first, window.covers.last) == (YESTERDAY - timedelta(364), YESTERDAY)


async def test_an_overlapping_range_brings_duplicates_not_rows(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    history = AccountHistory(seed=5)
    sim.add_query("1", history=history)
    db = tmp_path / "h.db"
    await run(sim, clock, db, since="2025-01-01", until="2025-12-31")
    overlap = await run(sim, clock, db, since="2025-07-01", until="2026-03-31")
    assert overlap.tags["Trade"].duplicates > 0
    assert len(stored_ids(db)) == len(set(stored_ids(db)))
    assert set(stored_ids(db)) == expected_ids(history, D("2025-01-01"), D("2026-03-31"))


async def test_corrections_and_cancellations_are_recorded_never_lost(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    amended = Correction(
        account="U1234567", trade_date=D("2026-03-02"), reported=D("2026-06-01"),
        trade_price="99.5",
    )  # fmt: skip
    cancelled = Correction(
        account="U1234567", trade_date=D("2026-03-03"), reported=D("2026-06-02"), cancel=True
    )
    history = AccountHistory(seed=6, trades_per_year=600, corrections=(amended, cancelled))
    sim.add_query("1", history=history)
    db = tmp_path / "h.db"
    await run(sim, clock, db, since="2026-02-02", until="2026-03-31")  # before the news
    later = await run(sim, clock, db, since="2026-02-02", until="2026-06-30")
    assert later.tags["Trade"].corrections == 1
    rows = run_sql(
        db,
        'SELECT transactionID, tradePrice, "@version", "@current" FROM Trade '
        'WHERE "@key" IN (SELECT "@key" FROM Trade WHERE "@version" > 1) ORDER BY "@version"',
    )
    assert [(v, c) for _, _, v, c in rows] == [(1, 0), (2, 1)]
    assert rows[0][0] == rows[1][0]
    assert rows[1][1] == "99.5"
    cancels = stored_ids(db, where="WHERE notes = 'Ca'")
    assert len(cancels) == 1


async def test_a_thousand_and_three_for_a_recent_end_leaves_it_for_the_next_run(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    # Our "today" runs a day ahead of IB's (a user east of New York): yesterday here is
    # not yet published there.
    sim.add_query("1", history=AccountHistory(seed=7, today=YESTERDAY))
    db = tmp_path / "h.db"
    report = await run(sim, clock, db, since="2026-11-02")
    (window,) = report.windows
    assert window.covers == type(window.covers)(D("2026-11-02"), D("2026-11-25"))
    assert sim.answers().count("1003") == 2  # the window, then its last day alone


async def test_terminal_errors_other_than_1003_stop_the_sync_keeping_what_is_stored(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    sim.add_query("1", history=AccountHistory(seed=8))
    db = tmp_path / "h.db"
    sim.fail("1", Fault.ib_code(1014), step=Step.SEND_REQUEST)
    with pytest.raises(QueryError) as raised:
        await run(sim, clock, db, since="2024-01-01")
    assert raised.value.code == 1014
    # The windows fetched before stay; the next run resumes and fetches only the rest.
    sim_refs = sim.answers().count("reference")
    report = await run(sim, clock, db, since="2024-01-01")
    assert [s.gaps for s in read_status(db)] == [()]
    assert sim.answers().count("reference") - sim_refs == len(report.windows)


async def test_two_syncs_of_one_database_at_once_the_second_is_told_busy(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    sim.add_query("1", history=AccountHistory(seed=9))
    db = tmp_path / "h.db"
    first = asyncio.ensure_future(run(sim, clock, db, since="2024-01-01"))
    await asyncio.sleep(0.05)
    with pytest.raises(StoreBusyError, match="busy"):
        await run(sim, clock, db, since="2024-01-01")
    await first
    assert [s.gaps for s in read_status(db)] == [()]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"until": TODAY}, "not before today"),
        ({"since": "2026-02-30"}, "not a date"),
        ({"since": "2026-05-01", "until": "2026-04-01"}, "after until"),
        ({"query_ids": []}, "at least one"),
        ({"query_ids": ["1", "1"]}, "twice"),
    ],
)
async def test_bad_input_is_refused_before_anything_is_fetched(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await run(sim, clock, tmp_path / "h.db", **options)
    assert sim.requests == []
    assert not (tmp_path / "h.db").exists()


async def test_the_token_is_nowhere_in_the_database_or_its_files(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    sim.add_query("1", history=AccountHistory(seed=10))
    db = tmp_path / "h.db"
    await run(sim, clock, db, since="2026-01-01")
    files = sorted(tmp_path.iterdir())
    assert {f.name for f in files} >= {"h.db", "h.db.sync-lock"}
    for file in files:
        assert TOKEN.encode() not in file.read_bytes(), file


def test_the_blocking_call_refuses_a_running_loop_and_takes_no_session(tmp_path: Path) -> None:
    async def inside() -> None:
        with pytest.raises(RuntimeError, match="sync_history"):
            sync_history_blocking(tmp_path / "h.db", token=TOKEN, query_ids=["1"])

    asyncio.run(inside())
    with pytest.raises(TypeError, match="session"):
        sync_history_blocking(tmp_path / "h.db", token=TOKEN, query_ids=["1"], session=object())
    assert not (tmp_path / "h.db").exists()


def test_the_blocking_call_syncs(tmp_path: Path) -> None:
    with FlexSimulator(generation_seconds=0.0).serve_in_thread() as simulator:
        simulator.add_query("1", history=AccountHistory(seed=11, today=date.today()))
        since = date.today() - timedelta(days=10)
        report = sync_history_blocking(
            tmp_path / "h.db", token=TOKEN, query_ids=["1"], since=since,
            base_url=simulator.base_url,
        )  # fmt: skip
    assert len(report.windows) == 1
    assert report.requests >= 2


@pytest.mark.parametrize("cut", [0.5, 0.9])
async def test_a_damaged_database_is_a_store_error_never_a_crash(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path, cut: float
) -> None:
    sim.add_query("1", history=AccountHistory(seed=12))
    db = tmp_path / "h.db"
    await run(sim, clock, db, since="2025-06-01")
    run_sql(db, "PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL folded in: the file holds all
    data = db.read_bytes()
    db.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(StoreError):
        await run(sim, clock, db, since="2025-06-01")
