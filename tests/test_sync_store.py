"""The sync's SQLite store: schema, migrations, duplicates, corrections, damage."""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path

import pytest

from ibkr_flex_client import StoreError
from ibkr_flex_client.sync.store import _MIGRATIONS, SCHEMA_VERSION, Fetched, Store
from ibkr_flex_client.sync.windows import Window

from .conftest import sql

D = date.fromisoformat
WINDOW = Window(D("2026-01-01"), D("2026-01-31"))
ASKED = (D("2026-01-02"), D("2026-01-30"))


def fetched(*rows: tuple[str, dict[str, str]], account: str = "U1") -> Fetched:
    return Fetched(
        xml=b"<FlexQueryResponse/>",
        accounts=(account,),
        from_date=ASKED[0],
        to_date=ASKED[1],
        when_generated="20260131;101500",
        rows=[(tag, account, attributes) for tag, attributes in rows],
    )


def trade(tid: str, price: str = "10", **more: str) -> tuple[str, dict[str, str]]:
    return "Trade", {"transactionID": tid, "tradePrice": price, "symbol": "AAPL", **more}


def test_rows_are_stored_as_ib_wrote_them_in_a_table_per_tag(tmp_path: Path) -> None:
    with Store(tmp_path / "h.db") as store:
        run = store.start_run("Q", WINDOW.first, WINDOW.last)
        stored, counts = store.store_statement(
            "Q", run, WINDOW, ASKED,
            fetched(trade("1", "227.480", dateTime="20260102;103100"),
                    ("OpenPosition", {"symbol": "AAPL", "position": "10"})),
        )  # fmt: skip
        assert stored.rows_added == 2
        assert counts["Trade"].added == 1
        assert list(store.rows("Trade")) == [
            {"@account": "U1", "transactionID": "1", "tradePrice": "227.480",
             "symbol": "AAPL", "dateTime": "20260102;103100"}
        ]  # fmt: skip
        assert store.statement("Q", WINDOW.first) == b"<FlexQueryResponse/>"
    db = tmp_path / "h.db"
    assert sql(db, 'SELECT "tradePrice", "@version", "@current" FROM Trade') == [("227.480", 1, 1)]
    assert sql(db, "PRAGMA journal_mode") == [("wal",)]
    assert sql(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_a_row_stored_twice_is_one_row_and_a_changed_one_is_a_correction(tmp_path: Path) -> None:
    with Store(tmp_path / "h.db") as store:
        run = store.start_run("Q", WINDOW.first, WINDOW.last)
        store.store_statement("Q", run, WINDOW, ASKED, fetched(trade("1"), trade("2")))
        again, _ = store.store_statement("Q", run, WINDOW, ASKED, fetched(trade("1"), trade("2")))
        assert (again.rows_added, again.duplicates, again.corrections) == (0, 2, 0)
        fixed, _counts = store.store_statement(
            "Q", run, WINDOW, ASKED, fetched(trade("1", "11"), trade("2"))
        )
        assert (fixed.rows_added, fixed.duplicates, fixed.corrections) == (0, 1, 1)
        # An older statement showing the old version again changes nothing.
        old, _ = store.store_statement("Q", run, WINDOW, ASKED, fetched(trade("1"), trade("2")))
        assert (old.rows_added, old.duplicates, old.corrections) == (0, 2, 0)
        assert [r["tradePrice"] for r in store.rows("Trade")] == ["10", "11"]
        every = store.rows("Trade", current_only=False)
        assert [(r["transactionID"], r["tradePrice"]) for r in every] == [
            ("1", "10"),
            ("2", "10"),
            ("1", "11"),
        ]
        assert store.count("Trade") == 3
        assert store.count("Trade", current_only=True) == 2


def test_identical_rows_without_ids_are_kept_as_often_as_ib_lists_them(tmp_path: Path) -> None:
    fee = ("UnbundledCommissionDetail", {"amount": "-0.35", "date": "20260105"})
    with Store(tmp_path / "h.db") as store:
        run = store.start_run("Q", WINDOW.first, WINDOW.last)
        first, _ = store.store_statement("Q", run, WINDOW, ASKED, fetched(fee, fee))
        second, _ = store.store_statement("Q", run, WINDOW, ASKED, fetched(fee, fee, fee))
        assert (first.rows_added, second.rows_added, second.duplicates) == (2, 1, 2)


def test_a_new_attribute_adds_a_column_and_names_differing_in_case_are_both_kept(
    tmp_path: Path,
) -> None:
    with Store(tmp_path / "h.db") as store:
        run = store.start_run("Q", WINDOW.first, WINDOW.last)
        store.store_statement("Q", run, WINDOW, ASKED, fetched(trade("1")))
        store.store_statement(
            "Q", run, WINDOW, ASKED, fetched(trade("2", newField="x", NEWFIELD="y", key="k"))
        )
        rows = list(store.rows("Trade"))
    assert rows[1] == {"@account": "U1", "transactionID": "2", "tradePrice": "10",
                       "symbol": "AAPL", "newField": "x", "NEWFIELD": "y", "key": "k"}  # fmt: skip
    assert "newField" not in rows[0]
    columns = {r[1] for r in sql(tmp_path / "h.db", "PRAGMA table_info(Trade)")}
    assert {"newField", "NEWFIELD@2", "key", "@key"} <= columns


def test_an_older_schema_is_migrated_keeping_its_data(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    db = sqlite3.connect(path)
    db.executescript(_MIGRATIONS[0])
    db.execute("PRAGMA user_version = 1")
    db.execute(
        'INSERT INTO "@windows" (query_id, covers_from, covers_to, outcome, stored_at) '
        "VALUES ('Q', '2025-01-01', '2025-12-31', 'empty', 'then')"
    )
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.version == SCHEMA_VERSION
        assert [w.covers for w in store.windows("Q")] == [Window(D("2025-01-01"), D("2025-12-31"))]
        assert store.last_covered("Q") == D("2025-12-31")
        assert store.unfinished_runs("Q") == []


def test_a_database_from_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer ibkr-flex-client"):
        Store(path)
    assert path.read_bytes() == before


def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"my notes, not a database\n" * 100)
    with pytest.raises(StoreError, match="cannot use"):
        Store(path)
    assert path.read_bytes() == b"my notes, not a database\n" * 100


def test_a_damaged_stored_statement_is_reported(tmp_path: Path) -> None:
    with Store(tmp_path / "h.db") as store:
        run = store.start_run("Q", WINDOW.first, WINDOW.last)
        store.store_statement("Q", run, WINDOW, ASKED, fetched(trade("1")))
    sql(tmp_path / "h.db", "UPDATE \"@windows\" SET sha256 = 'x'")
    with Store(tmp_path / "h.db") as store, pytest.raises(StoreError, match="damaged"):
        store.statement("Q", WINDOW.first)
