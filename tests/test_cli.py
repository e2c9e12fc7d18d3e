"""`ibkr-flex` as a user runs it: a subprocess against the simulator, over loopback."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import stat
import subprocess
import sys
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ibkr_flex_client import FlexStatement, fetch_statement
from ibkr_flex_client import cli as cli_module
from ibkr_flex_client.cli import fetch as fetch_command
from ibkr_flex_client.cli.parser import build_parser
from ibkr_flex_client.testing import Fault, FlexSimulator, build_statement, fingerprint

from .conftest import DATA
from .test_statement import SAMPLES

REPORT = build_statement(accounts=["U1111111", "U2222222"], query_name="Two accounts")


@pytest.fixture(scope="module")
def service() -> Iterator[FlexSimulator]:
    """One simulator for the module, on real time (the CLI runs in its own process)."""
    with FlexSimulator(generation_seconds=0.2, statement=REPORT).serve_in_thread() as sim:
        yield sim


@pytest.fixture
def token() -> str:
    """A fresh token per test: IB's limits are per token, and the simulator enforces them."""
    return f"SECRET-{uuid.uuid4().hex}"


def run(
    *argv: str, token: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "IBKR_FLEX_TOKEN"}
    if token is not None:
        env["IBKR_FLEX_TOKEN"] = token
    result = subprocess.run(  # noqa: S603 - our interpreter, our command
        [sys.executable, "-m", "ibkr_flex_client", *argv],
        capture_output=True,
        timeout=60,
        check=False,
        env=env,
        cwd=cwd,
    )
    if token is not None:  # whatever happened, the token was never shown
        assert token.encode() not in result.stdout + result.stderr
    return result


class Ran:
    """What an in-process run of the command line gave: the status and the bytes written."""

    def __init__(self, returncode: int, stdout: bytes, stderr: bytes) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(capsysbinary: pytest.CaptureFixture[bytes]) -> Callable[..., Ran]:
    """The entry point called in this process (faster than a subprocess, same code path)."""

    def call(*argv: str) -> Ran:
        try:
            status = cli_module.main(list(argv))
        except SystemExit as exit_:  # argparse's --help, --version and usage errors
            status = int(exit_.code or 0)
        captured = capsysbinary.readouterr()
        return Ran(status, captured.out, captured.err)

    return call


def fetch(service: FlexSimulator, token: str, *argv: str) -> subprocess.CompletedProcess[bytes]:
    return run("fetch", "--base-url", service.base_url, *argv, token=token)


# --- fetch -----------------------------------------------------------------------------------


def test_one_query_to_stdout_quietly(service: FlexSimulator, token: str) -> None:
    result = fetch(service, token, "-q", "101")
    assert result.returncode == 0, result.stderr
    assert result.stdout == REPORT
    assert result.stderr == b""  # not a terminal: no progress


def test_several_queries_into_a_directory_at_once(
    service: FlexSimulator, token: str, tmp_path: Path
) -> None:
    result = fetch(service, token, "-q", "201", "-q", "202", "-o", f"{tmp_path}/")
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""  # not a terminal, no --verbose: quiet
    for query in ("201", "202"):
        path = tmp_path / f"{query}.xml"
        assert path.read_bytes() == REPORT
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    mine = [r for r in service.requests if r.token_fingerprint == fingerprint(token)]
    assert {r.query for r in mine if r.step == "SendRequest"} == {"201", "202"}
    assert "1018" not in [r.answer for r in mine]  # paced as one token
    assert sorted(p.name for p in tmp_path.iterdir()) == ["201.xml", "202.xml"]


def test_a_failed_fetch_leaves_the_existing_file_alone(
    service: FlexSimulator, token: str, tmp_path: Path
) -> None:
    target = tmp_path / "report.xml"
    target.write_bytes(b"last week's")
    result = fetch(service, token, "-q", "invalid-query", "-o", str(target))
    assert result.returncode == 4
    assert target.read_bytes() == b"last week's"
    assert list(tmp_path.iterdir()) == [target]
    assert result.stderr.decode().strip() == (
        "ibkr-flex: error: query invalid-query: IB error 1014 from SendRequest: Query is invalid."
    )


Arrange = Callable[[FlexSimulator, str, str], None]


@pytest.mark.parametrize(
    ("arrange", "status", "says"),
    [
        (lambda sim, token, query: sim.token_codes.__setitem__(token, 1012), 3, "1012"),
        (lambda sim, token, query: sim.token_codes.__setitem__(token, 1025), 5, "1025"),
        (lambda sim, token, query: sim.fail(query, Fault.ib_code(1009), times=2), 75, "gave up"),
        (lambda sim, token, query: sim.fail(query, Fault.foreign_url()), 6, "not sent there"),
        (lambda sim, token, query: sim.fail(query, Fault.ib_code(1099)), 6, "1099"),
    ],
    ids=["token", "locked-out", "temporary", "unsafe-url", "unknown-code"],
)
def test_each_error_class_has_its_exit_status(
    service: FlexSimulator, token: str, arrange: Arrange, status: int, says: str
) -> None:
    query = f"q{uuid.uuid4().hex[:8]}"  # faults are per query: each test its own
    arrange(service, token, query)
    result = fetch(service, token, "-q", query, "--max-retries", "2", "--backoff-base", "0.1")
    assert result.returncode == status, result.stderr
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1  # one readable line, no traceback
    assert says in lines[0]


def test_verbose_shows_the_steps_and_the_traceback_but_never_the_token(
    service: FlexSimulator, token: str
) -> None:
    result = fetch(service, token, "-q", "invalid-query", "--verbose")
    assert result.returncode == 4
    text = result.stderr.decode()
    assert "Traceback" in text
    assert "SendRequest #1: GET" in text
    assert "t=***" in text


@pytest.mark.parametrize(
    ("argv", "status", "says"),
    [
        (["-q", "1", "-q", "2"], 2, "several queries need -o DIR"),
        (["-q", "1", "--from-date", "2026-01-01", "--to-date", "20260102"], 2, "yyyyMMdd"),
        (["-q", "1", "--from-date", "20260101"], 2, "--to-date is required"),
        (["-q", "1", "--period", "400"], 2, "--period must be 1 to 365 days"),
        (["-q", "../x", "-o", "out/"], 2, "cannot name a file"),
    ],
)
def test_usage_errors(
    service: FlexSimulator, token: str, tmp_path: Path, argv: list[str], status: int, says: str
) -> None:
    result = run("fetch", "--base-url", service.base_url, *argv, token=token, cwd=tmp_path)
    assert result.returncode == status
    assert says in result.stderr.decode()


def test_the_token_comes_from_the_environment_or_a_file(
    service: FlexSimulator, token: str, tmp_path: Path
) -> None:
    missing = run("fetch", "--base-url", service.base_url, "-q", "1")
    assert missing.returncode == 78
    assert "IBKR_FLEX_TOKEN" in missing.stderr.decode()
    token_file = tmp_path / "token"
    token_file.write_text(f"{token}\n")  # a trailing newline, as editors leave it
    from_file = run(
        "fetch", "--base-url", service.base_url, "-q", "301", "--token-file", str(token_file)
    )
    assert from_file.returncode == 0, from_file.stderr
    assert token.encode() not in from_file.stdout + from_file.stderr
    token_file.write_text("\n")
    empty = run("fetch", "--base-url", service.base_url, "-q", "1", "--token-file", str(token_file))
    assert empty.returncode == 78


def test_an_unwritable_output_is_its_own_status(service: FlexSimulator, token: str) -> None:
    result = fetch(service, token, "-q", "401", "-o", "/proc/no-such-dir/report.xml")
    assert result.returncode == 8


def test_live_progress_on_a_terminal(service: FlexSimulator, token: str) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    args = build_parser().parse_args(
        ["fetch", "-q", "501", "-q", "502", "--base-url", service.base_url, "-o", "/dev/null/x/"]
    )
    args.output = None
    args.query = ["501"]
    err, out = Terminal(), io.BytesIO()
    os.environ["IBKR_FLEX_TOKEN"] = token
    try:
        status = asyncio.run(fetch_command.run(args, out, err))
    finally:
        del os.environ["IBKR_FLEX_TOKEN"]
    assert status == 0
    shown = err.getvalue()
    assert "\r" in shown
    assert "501: SendRequest #1 sent" in shown
    assert "501: GetStatement #1" in shown
    assert "s  501:" in shown  # the elapsed time leads the line
    assert out.getvalue() == REPORT


# --- inspect, export, models -------------------------------------------------------------------


@pytest.fixture
def report(tmp_path: Path) -> Path:
    path = tmp_path / "report.xml"
    path.write_bytes(REPORT)
    return path


def test_inspect_shows_accounts_and_an_aligned_tag_table(
    cli: Callable[..., Ran], report: Path
) -> None:
    result = cli("inspect", str(report))
    assert result.returncode == 0
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "Report 'Two accounts' (type AF)"
    assert lines[2].split() == ["ACCOUNT", "FROM", "TO", "PERIOD", "GENERATED"]
    assert lines[3].split() == ["U1111111", "20260302", "20260306", "-", "20260309;081502"]
    assert lines[4].split()[0] == "U2222222"
    table = lines[6:]
    assert table[0].index("ROWS") == table[1].index("2") - 3  # right-aligned counts
    assert [line.split()[:2] for line in table[1:]] == [
        ["Trades", "2"],
        ["Trade", "6"],
        ["OpenPositions", "2"],
        ["OpenPosition", "4"],
        ["CashReport", "2"],
        ["CashReportCurrency", "2"],
    ]
    assert "tradeDate," in table[2]


def test_inspect_json(cli: Callable[..., Ran], report: Path) -> None:
    result = cli("inspect", str(report), "--json")
    data = json.loads(result.stdout)
    assert data["type"] == "AF"
    assert [a["account_id"] for a in data["accounts"]] == ["U1111111", "U2222222"]
    trade = next(t for t in data["tags"] if t["tag"] == "Trade")
    assert trade["rows"] == 6
    assert trade["attributes"][:4] == ["accountId", "currency", "assetCategory", "symbol"]


@pytest.mark.parametrize("name", SAMPLES)
def test_inspect_every_sample(cli: Callable[..., Ran], name: str) -> None:
    result = cli("inspect", str(DATA / name), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["accounts"]


def test_export_csv_has_every_attribute_seen_as_a_column(
    cli: Callable[..., Ran], report: Path, tmp_path: Path
) -> None:
    result = cli("export", str(report), "--tag", "Trade")
    rows = list(csv.DictReader(io.StringIO(result.stdout.decode())))
    assert len(rows) == 6
    assert {r["accountId"] for r in rows} == {"U1111111", "U2222222"}
    assert rows[0]["tradeDate"] == "20260306"
    output = tmp_path / "trades.csv"
    assert cli("export", str(report), "--tag", "Trade", "-o", str(output)).returncode == 0
    assert output.read_bytes() == result.stdout


def test_export_csv_unions_columns_across_rows(cli: Callable[..., Ran], tmp_path: Path) -> None:
    rows = [{"a": "1"}, {"b": "2"}, {"a": "3", "c": "4"}]
    path = tmp_path / "r.xml"
    path.write_bytes(build_statement(sections={"S": ("R", rows)}))
    result = cli("export", str(path), "--tag", "R")
    assert result.stdout.decode().splitlines() == ["a,b,c", "1,,", ",2,", "3,,4"]


def test_export_jsonl(cli: Callable[..., Ran], report: Path) -> None:
    result = cli("export", str(report), "--tag", "OpenPosition", "--format", "jsonl")
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [line["symbol"] for line in lines] == ["AAPL", "SAP", "AAPL", "SAP"]


def test_export_of_a_missing_tag_writes_nothing(
    cli: Callable[..., Ran], report: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out.csv"
    result = cli("export", str(report), "--tag", "Trad", "-o", str(output))
    assert result.returncode == 1
    assert "no <Trad> rows" in result.stderr.decode()
    assert "Trade" in result.stderr.decode()  # the tags that do have rows
    assert not output.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.xml"]


def test_bad_input_files(cli: Callable[..., Ran], tmp_path: Path) -> None:
    assert cli("inspect", str(tmp_path / "nope.xml")).returncode == 66
    broken = tmp_path / "broken.xml"
    broken.write_bytes(REPORT[:500])
    result = cli("inspect", str(broken))
    assert result.returncode == 7
    assert "not well-formed" in result.stderr.decode()


@pytest.mark.parametrize("style", ["dataclass", "pydantic"])
@pytest.mark.parametrize(
    ("name", "tag"),
    [
        ("activity-orders-odd-values.xml", "Trade"),
        ("activity-orders-odd-values.xml", "CashTransaction"),
        ("activity-multi-values-iso-dates.xml", "OpenPosition"),
        ("activity-options-futures-space-separator.xml", "Trade"),
        ("activity-statement-of-funds-bom.xml", "StatementOfFundsLine"),
        ("activity-zone-suffix-times.xml", "EquitySummaryByReportDateInBase"),
        ("activity-corporate-action-crlf.xml", "CorporateAction"),
    ],
)
def test_models_are_ready_to_use_with_rows(
    cli: Callable[..., Ran], name: str, tag: str, style: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if style == "pydantic":
        pytest.importorskip("pydantic")
    result = cli("models", str(DATA / name), "--tag", tag, "--style", style)
    assert result.returncode == 0, result.stderr
    source = result.stdout.decode()
    module = types.ModuleType(f"generated_{uuid.uuid4().hex}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(source, "<models>", "exec"), module.__dict__)  # noqa: S102 - our output
    model = next(
        v for v in vars(module).values() if getattr(v, "__module__", "") == module.__name__
    )
    statement = FlexStatement.from_file(DATA / name)
    rows = list(statement.rows(tag, model))
    assert len(rows) == len(list(statement.iter(tag)))


def test_models_infer_types_and_optionality(cli: Callable[..., Ran], tmp_path: Path) -> None:
    rows = [
        {
            "tradeDate": "20260302",
            "dateTime": "20260302;101500",
            "quantity": "10",
            "conid": "265598",
            "price": "1.5",
            "isAPI": "Y",
            "notes": "",
            "code": "A",
        },
        {
            "tradeDate": "20260303",
            "dateTime": "20260303;101500",
            "quantity": "1,000",
            "conid": "272093",
            "price": "2",
            "isAPI": "N",
            "notes": "P",
            "code": "B",
        },
    ]
    path = tmp_path / "r.xml"
    path.write_bytes(build_statement(sections={"Trades": ("Trade", rows)}))
    source = cli("models", str(path), "--tag", "Trade").stdout.decode()
    fields = [
        line.strip()
        for line in source.splitlines()
        if line.startswith("    ") and ":" in line and not line.strip().startswith('"""')
    ]
    assert fields == [
        "trade_date: date",
        "date_time: datetime",
        "quantity: Decimal",  # whole today, fractional tomorrow: Decimal
        "conid: int",  # an identifier
        "price: Decimal",
        "is_api: bool",
        "notes: str | None",
        "code: str",
    ]


def test_every_command_has_help_and_there_is_a_version(cli: Callable[..., Ran]) -> None:
    for command in ("fetch", "inspect", "export", "models", "demo"):
        result = cli(command, "--help")
        assert result.returncode == 0
        assert b"exit codes:" in result.stdout
    assert cli("--version").stdout.decode().startswith("ibkr-flex ")
    assert cli().returncode == 2


# --- the blocking API ------------------------------------------------------------------------


def test_fetch_statement_blocks_until_the_statement_arrives(
    service: FlexSimulator, token: str
) -> None:
    statement = fetch_statement(token=token, query_id="601", base_url=service.base_url)
    assert statement.account_id == "U1111111,U2222222"


async def test_fetch_statement_inside_an_event_loop_says_to_await(token: str) -> None:
    with pytest.raises(RuntimeError, match=r"await FlexClient\(.*\)\.fetch\(\)"):
        fetch_statement(token=token, query_id="1")


def test_parser_lists_every_command() -> None:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    commands = {"fetch", "sync", "inspect", "export", "models", "demo", "simulator", "unlock"}
    assert set(actions[0].choices) == commands
