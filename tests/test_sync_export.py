"""``ibkr-flex export --db``: a tag's rows out of a sync database, read-only."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from ibkr_flex_client import StoreError
from ibkr_flex_client import cli as cli_module
from ibkr_flex_client.sync.export import export_tag
from ibkr_flex_client.sync.store import Fetched, Store
from ibkr_flex_client.sync.windows import Window
from ibkr_flex_client.testing import build_statement

D = date.fromisoformat
JANUARY = Window(D("2026-01-01"), D("2026-01-31"))
FEBRUARY = Window(D("2026-02-01"), D("2026-02-28"))
AWKWARD = 'Zürich, "AG"\nline 2; 株式会社'  # a comma, quotes, a newline, non-ASCII

Cli = Callable[..., tuple[int, bytes, str]]


@pytest.fixture
def cli(capsysbinary: pytest.CaptureFixture[bytes]) -> Cli:
    """The entry point in this process: status, stdout and stderr (usage errors included)."""

    def call(*argv: str) -> tuple[int, bytes, str]:
        try:
            status = cli_module.main(list(argv))
        except SystemExit as exit_:
            status = int(exit_.code or 0)
        captured = capsysbinary.readouterr()
        return status, captured.out, captured.err.decode()

    return call


def store(
    database: Store, covers: Window, *rows: tuple[str, dict[str, str]], account: str = "U1"
) -> None:
    """Commit a window with these rows, as a sync does."""
    run = database.start_run("Q", covers.first, covers.last)
    fetched = Fetched(
        xml=b"<FlexQueryResponse/>",
        accounts=(account,),
        from_date=covers.first,
        to_date=covers.last,
        when_generated="20260301;101500",
        rows=[(tag, account, attributes) for tag, attributes in rows],
    )
    database.store_statement("Q", run, covers, (covers.first, covers.last), fetched)
    database.finish_run(run)


def trade(tid: str, price: str, **more: str) -> tuple[str, dict[str, str]]:
    return "Trade", {"transactionID": tid, "symbol": "AAPL", "tradePrice": price, **more}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Three trades (the first corrected in February, the third with an attribute the
    others lack) and a cash transaction."""
    path = tmp_path / "history.db"
    with Store(path) as database:
        store(
            database,
            JANUARY,
            trade("1", "10.5"),
            trade("2", "20", description=AWKWARD),
            ("CashTransaction", {"amount": "-1.00", "type": "Fees"}),
        )
        store(database, FEBRUARY, trade("1", "10.75"), trade("3", "30", notes="P;O"))
    return path


def fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


# --- CSV and JSON lines ----------------------------------------------------------------------


def test_csv_has_current_rows_our_account_and_every_attribute_in_first_seen_order(
    cli: Cli, db: Path, tmp_path: Path
) -> None:
    status, out, err = cli("export", "--db", str(db), "--tag", "Trade")
    assert (status, err) == (0, "")
    rows = list(csv.reader(io.StringIO(out.decode())))
    assert rows[0] == ["@account", "transactionID", "symbol", "tradePrice", "description", "notes"]
    assert rows[1:] == [
        ["U1", "2", "AAPL", "20", AWKWARD, ""],
        ["U1", "1", "AAPL", "10.75", "", ""],  # the correction replaced 10.5
        ["U1", "3", "AAPL", "30", "", "P;O"],
    ]
    target = tmp_path / "trades.csv"
    assert cli("export", "--db", str(db), "--tag", "Trade", "-o", str(target))[0] == 0
    assert target.read_bytes() == out


def test_commas_quotes_newlines_and_non_ascii_round_trip_through_csv(
    cli: Cli, db: Path, tmp_path: Path
) -> None:
    target = tmp_path / "t.csv"
    assert cli("export", "--db", str(db), "--tag", "Trade", "-o", str(target))[0] == 0
    with target.open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert rows[0]["description"] == AWKWARD
    assert len(rows) == 3  # the newline inside a value did not split its row


def test_jsonl_has_only_the_attributes_each_row_has(cli: Cli, db: Path) -> None:
    status, out, _ = cli("export", "--db", str(db), "--tag", "Trade", "--format", "jsonl")
    assert status == 0
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert lines[0] == {
        "@account": "U1",
        "transactionID": "2",
        "symbol": "AAPL",
        "tradePrice": "20",
        "description": AWKWARD,
    }
    assert [line["tradePrice"] for line in lines] == ["20", "10.75", "30"]
    assert "株式会社" in out.decode()  # as written, not \u-escaped


def test_all_versions_shows_the_correction_with_version_and_current(cli: Cli, db: Path) -> None:
    status, out, _ = cli("export", "--db", str(db), "--tag", "Trade", "--all-versions")
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out.decode())))
    assert list(rows[0])[:3] == ["@account", "@version", "@current"]
    assert [(r["transactionID"], r["tradePrice"], r["@version"], r["@current"]) for r in rows] == [
        ("1", "10.5", "1", "0"),
        ("2", "20", "1", "1"),
        ("1", "10.75", "2", "1"),
        ("3", "30", "1", "1"),
    ]
    status, out, _ = cli(
        "export", "--db", str(db), "--tag", "Trade", "--all-versions", "--format", "jsonl"
    )
    first = json.loads(out.decode().splitlines()[0])
    assert (first["@version"], first["@current"]) == ("1", "0")  # strings, as every value


# --- Parquet ---------------------------------------------------------------------------------


def test_parquet_has_a_string_column_each_and_nulls_where_a_row_lacks_one(
    cli: Cli, db: Path, tmp_path: Path
) -> None:
    pa = pytest.importorskip("pyarrow")
    parquet = pytest.importorskip("pyarrow.parquet")
    target = tmp_path / "trades.parquet"
    status, out, err = cli(
        "export", "--db", str(db), "--tag", "Trade", "--format", "parquet", "-o", str(target)
    )
    assert (status, out, err) == (0, b"", "")
    table = parquet.read_table(target)
    assert table.column_names == [
        "@account", "transactionID", "symbol", "tradePrice", "description", "notes"
    ]  # fmt: skip
    assert all(field.type == pa.string() for field in table.schema)
    assert table.to_pylist() == [
        {"@account": "U1", "transactionID": "2", "symbol": "AAPL", "tradePrice": "20",
         "description": AWKWARD, "notes": None},
        {"@account": "U1", "transactionID": "1", "symbol": "AAPL", "tradePrice": "10.75",
         "description": None, "notes": None},
        {"@account": "U1", "transactionID": "3", "symbol": "AAPL", "tradePrice": "30",
         "description": None, "notes": "P;O"},
    ]  # fmt: skip


def test_parquet_of_all_versions_in_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parquet = pytest.importorskip("pyarrow.parquet")
    monkeypatch.setattr("ibkr_flex_client.sync.export._BATCH", 2)  # several record batches
    path = tmp_path / "h.db"
    with Store(path) as database:
        store(database, JANUARY, *(trade(str(n), "1") for n in range(5)))
        store(database, FEBRUARY, trade("0", "2"))
    target = tmp_path / "all.parquet"
    with target.open("wb") as binary:
        assert export_tag(path, "Trade", binary, "parquet", all_versions=True) == 6
    table = parquet.read_table(target)
    assert table.column("@version").to_pylist() == ["1"] * 5 + ["2"]
    assert table.column("@current").to_pylist() == ["0"] + ["1"] * 5


def test_parquet_needs_an_output_file_and_a_database(cli: Cli, db: Path, tmp_path: Path) -> None:
    status, _, err = cli("export", "--db", str(db), "--tag", "Trade", "--format", "parquet")
    assert status == 2
    assert "-o FILE" in err
    statement = tmp_path / "s.xml"
    statement.write_bytes(build_statement())
    argv = ("--tag", "Trade", "--format", "parquet", "-o", str(tmp_path / "t.parquet"))
    status, _, err = cli("export", str(statement), *argv)
    assert status == 2
    assert "--db" in err


def test_parquet_without_pyarrow_names_the_extra(
    cli: Cli, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow: ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    target = tmp_path / "t.parquet"
    status, _, err = cli(
        "export", "--db", str(db), "--tag", "Trade", "--format", "parquet", "-o", str(target)
    )
    assert status == 78
    assert "pip install 'ibkr-flex-client[parquet]'" in err
    assert sorted(p.name for p in tmp_path.iterdir() if "parquet" in p.name) == []


# --- what export refuses -----------------------------------------------------------------------


def test_an_unknown_tag_names_the_tags_held_and_writes_nothing(
    cli: Cli, db: Path, tmp_path: Path
) -> None:
    target = tmp_path / "out.csv"
    status, out, err = cli("export", "--db", str(db), "--tag", "trade", "-o", str(target))
    assert (status, out) == (1, b"")
    assert "no <trade> rows" in err
    assert "row tags in it: CashTransaction, Trade" in err
    assert not target.exists()
    status, out, err = cli("export", "--db", str(db), "--tag", "Trades")
    assert (status, out) == (1, b"")  # not even a CSV header


def test_a_missing_database_is_no_input_and_is_not_created(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    status, _, err = cli("export", "--db", str(missing), "--tag", "Trade")
    assert status == 66
    assert "no sync database at" in err
    assert list(tmp_path.iterdir()) == []
    assert cli("export", "--db", str(tmp_path), "--tag", "Trade")[0] == 66  # a directory
    with pytest.raises(FileNotFoundError):
        export_tag(missing, "Trade", io.StringIO(), "csv")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["statement.xml", "--db", "history.db"], "both given"),
        ([], "neither given"),
        (["statement.xml", "--all-versions"], "--all-versions needs --db"),
    ],
)
def test_one_source_exactly(cli: Cli, argv: list[str], said: str) -> None:
    status, out, err = cli("export", *argv, "--tag", "Trade")
    assert (status, out) == (2, b"")
    assert said in err


def test_a_database_of_a_newer_schema_or_none_at_all_is_refused(
    cli: Cli, db: Path, tmp_path: Path
) -> None:
    newer = sqlite3.connect(db)
    newer.execute("PRAGMA user_version = 99")
    newer.close()
    status, _, err = cli("export", "--db", str(db), "--tag", "Trade")
    assert status == 8
    assert "schema version 99" in err
    assert "upgrade" in err
    for name, content in [("empty.db", b""), ("text.db", b"not SQLite at all, not at all")]:
        other = tmp_path / name
        other.write_bytes(content)
        status, _, err = cli("export", "--db", str(other), "--tag", "Trade")
        assert status == 8, err
        assert "sync database" in err
        assert other.read_bytes() == content


# --- read-only -------------------------------------------------------------------------------


def test_export_never_changes_the_database(cli: Cli, db: Path, tmp_path: Path) -> None:
    before = fingerprint(db)
    for argv in (["--format", "jsonl"], ["--all-versions"], ["-o", str(tmp_path / "x.csv")]):
        assert cli("export", "--db", str(db), "--tag", "Trade", *argv)[0] == 0
    assert fingerprint(db) == before


def test_export_reads_while_a_sync_writes(cli: Cli, db: Path) -> None:
    """A sync in the middle of committing a window: export neither waits for it nor sees
    the half-stored window."""
    with Store(db) as database:  # as the sync holds it
        writer = sqlite3.connect(db, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute(
            'INSERT INTO "Trade" ("@key", "@digest", "@account", "@window", "@version", '
            "\"@current\", \"transactionID\") VALUES ('k', 'd', 'U1', 1, 1, 1, '99')"
        )
        try:
            started = time.monotonic()
            status, out, err = cli("export", "--db", str(db), "--tag", "Trade")
            assert time.monotonic() - started < 5  # far below the busy timeout (10 s)
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        assert (status, err) == (0, "")
        committed = csv.DictReader(io.StringIO(out.decode()))
        assert [r["transactionID"] for r in committed] == ["2", "1", "3"]  # not 99
        text = io.StringIO()
        assert export_tag(database, "CashTransaction", text, "jsonl") == 1  # a Store, too


def test_a_database_whose_name_looks_like_a_uri(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "a b#?%20é.db"
    with Store(path) as database:
        store(database, JANUARY, trade("1", "10"))
    status, out, _ = cli("export", "--db", str(path), "--tag", "Trade", "--format", "jsonl")
    assert status == 0
    assert json.loads(out)["transactionID"] == "1"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))) == [
        "a b#?%20é.db"
    ]


def test_the_library_refuses_an_unknown_format_and_a_missing_tag(db: Path) -> None:
    with pytest.raises(ValueError, match="output_format"):
        export_tag(db, "Trade", io.StringIO(), "xml")  # type: ignore[call-overload]
    out = io.StringIO()
    with pytest.raises(ValueError, match="no <Order> rows"):
        export_tag(db, "Order", out, "csv")
    assert out.getvalue() == ""


def test_sqlite_errors_are_store_errors(db: Path) -> None:
    """A tag listed in "@columns" whose table is gone (a damaged database)."""
    broken = sqlite3.connect(db)
    broken.execute('DROP TABLE "CashTransaction"')
    broken.commit()
    broken.close()
    with pytest.raises(StoreError, match=r"cannot read .* as a sync database: no such table"):
        export_tag(db, "CashTransaction", io.StringIO(), "csv")
