"""``ibkr-flex sync`` and ``--status`` from the command line, against a simulator on real
time (a short history: one window each), and ``demo --sync``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from ibkr_flex_client import cli as cli_module
from ibkr_flex_client.testing import AccountHistory, FlexSimulator

from .conftest import sql
from .test_cli_first_hour import NO_AIOHTTP

TODAY = date.today()
SINCE = (TODAY - timedelta(days=40)).isoformat()


@pytest.fixture(scope="module")
def service() -> Iterator[FlexSimulator]:
    with FlexSimulator(generation_seconds=0.0).serve_in_thread() as sim:
        sim.add_query("7", history=AccountHistory(today=TODAY, seed="cli"))
        yield sim


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[int, str, str]]:
    monkeypatch.setenv("IBKR_FLEX_TOKEN", f"SECRET-{uuid.uuid4().hex}")

    def call(*argv: str) -> tuple[int, str, str]:
        try:
            status = cli_module.main(list(argv))
        except SystemExit as exit_:
            status = int(exit_.code or 0)
        out, err = capsys.readouterr()
        token = os.environ.get("IBKR_FLEX_TOKEN")
        if token:
            assert token not in out + err
        return status, out, err

    return call


def test_sync_then_status_then_a_re_run(
    service: FlexSimulator, cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    db = str(tmp_path / "h.db")
    status, out, err = cli("sync", "-q", "7", "--db", db, "--since", SINCE, "--base-url",
                           service.base_url)  # fmt: skip
    assert status == 0, err
    assert "1 window committed" in out
    assert "Trade" in out
    added = int(next(line.split()[1] for line in out.splitlines() if line.startswith("Trade")))
    rows = sql(db, "SELECT count(*) FROM Trade")[0][0]
    assert added == rows > 0
    status, out, _ = cli("sync", "--status", "--db", db)
    assert status == 0
    yesterday = TODAY - timedelta(days=1)
    assert f"query 7: {SINCE} to {yesterday}" in out
    assert "gap" not in out
    status, out, err = cli("sync", "-q", "7", "--db", db, "--base-url", service.base_url)
    assert status == 0, err
    assert "0 windows committed" in out  # incremental: up to date


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["sync", "--db", "x.db"], 2, "at least one -q"),
        (["sync", "-q", "7", "--db", "x.db", "--since", "2026-13-01"], 2, "not a date"),
        (["sync", "-q", "7", "--db", "x.db", "--since", "1 May"], 2, "yyyy-MM-dd"),
        (["sync", "-q", "7", "--db", "x.db", "--until", "2999-01-01"], 2, "not before today"),
        (["sync", "--status", "--db", "missing.db"], 66, "no sync database"),
    ],
)
def test_bad_input_is_a_clear_error(
    cli: Callable[..., tuple[int, str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    code: int,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    status, _, err = cli(*argv)
    assert status == code, err
    assert message in err
    assert not (tmp_path / "x.db").exists()


def test_a_file_that_is_not_a_sync_database(
    service: FlexSimulator, cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    notes = tmp_path / "notes.db"
    notes.write_text("not a database\n" * 50)
    status, _, err = cli("sync", "-q", "7", "--db", str(notes), "--base-url", service.base_url)
    assert status == 8, err
    assert "cannot use" in err
    assert notes.read_text() == "not a database\n" * 50


def test_demo_sync_shows_a_backfill_a_correction_and_an_incremental_run(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    db = tmp_path / "demo.db"
    status, out, err = cli("demo", "--sync", "--db", str(db))
    assert status == 0, err
    assert "before 2024-03-14, when the account opened" in err
    assert "1 correction" in err
    assert "0 windows committed, 0 requests to IB" in out
    assert "query 123456: 2023-06-01 to" in out
    assert db.exists()


def test_status_and_export_from_the_database_do_not_load_the_network_client(
    service: FlexSimulator, cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    db = str(tmp_path / "h.db")
    status, _, err = cli("sync", "-q", "7", "--db", db, "--since", SINCE, "--base-url",
                         service.base_url)  # fmt: skip
    assert status == 0, err
    commands = [["sync", "--status", "--db", db], ["export", "--db", db, "--tag", "Trade"]]
    result = subprocess.run(  # noqa: S603 - our interpreter, our script
        [sys.executable, "-c", NO_AIOHTTP, json.dumps(commands)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.decode().splitlines()[-1])
    assert loaded == {"sync": False, "export": False}


def test_a_mistake_in_the_dates_is_said_before_a_missing_token(
    cli: Callable[..., tuple[int, str, str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("IBKR_FLEX_TOKEN")
    status, _, err = cli("sync", "-q", "7", "--db", str(tmp_path / "x.db"), "--since", "2024-02-30")
    assert status == 2
    assert err.splitlines() == ["ibkr-flex: error: --since '2024-02-30' is not a date: write "
                                "yyyy-MM-dd or yyyyMMdd"]  # fmt: skip


def test_missing_folders_of_the_database_are_created_private(
    service: FlexSimulator, cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    db = tmp_path / "new" / "folder" / "h.db"
    status, _, err = cli("sync", "-q", "7", "--db", str(db), "--since", SINCE, "--base-url",
                         service.base_url)  # fmt: skip
    assert status == 0, err
    assert db.is_file()
    assert (db.parent.stat().st_mode & 0o777) == 0o700


def test_demo_db_goes_with_sync(cli: Callable[..., tuple[int, str, str]]) -> None:
    status, _, err = cli("demo", "--db", "x.db")
    assert status == 2
    assert "--db goes with --sync" in err
