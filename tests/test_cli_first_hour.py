"""A new user's first hour with ``ibkr-flex``: each test pins a stumble, now fixed.

Options where a user puts them, a directory or a full disk named as such, ``-o`` into
directories not made yet, messages in the options' own names, a progress line that fits the
terminal, files that are not statements said to be what they look like, standard input and
gzip, and a start-up that loads no network stack for reading files.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import io
import json
import os
import re
import stat
import subprocess
import sys
import threading
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ibkr_flex_client import FlexStatement
from ibkr_flex_client import cli as cli_module
from ibkr_flex_client._sniff import describe
from ibkr_flex_client.cli import export as export_command
from ibkr_flex_client.cli import fetch as fetch_command
from ibkr_flex_client.cli.fetch import OPTIONS
from ibkr_flex_client.cli.parser import build_parser
from ibkr_flex_client.cli.progress import Progress
from ibkr_flex_client.errors import Step
from ibkr_flex_client.events import EventKind, FetchEvent
from ibkr_flex_client.inspection import export_rows
from ibkr_flex_client.testing import FlexSimulator, build_statement

REPORT = build_statement(accounts=["U1111111"], query_name="First hour")
READERS = {
    "inspect": ["inspect"],
    "export": ["export", "--tag", "Trade"],
    "models": ["models", "--tag", "Trade"],
}


@pytest.fixture(scope="module")
def service() -> Iterator[FlexSimulator]:
    with FlexSimulator(generation_seconds=0.0, statement=REPORT).serve_in_thread() as sim:
        yield sim


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh token, set for in-process runs (subprocesses get it from :func:`run`)."""
    value = f"SECRET-{uuid.uuid4().hex}"
    monkeypatch.setenv("IBKR_FLEX_TOKEN", value)
    return value


@pytest.fixture
def cli(capsysbinary: pytest.CaptureFixture[bytes]) -> Callable[..., tuple[int, bytes, str]]:
    """The entry point in this process: status, stdout and stderr (usage errors included)."""

    def call(*argv: str) -> tuple[int, bytes, str]:
        try:
            status = cli_module.main(list(argv))
        except SystemExit as exit_:
            status = int(exit_.code or 0)
        captured = capsysbinary.readouterr()
        return status, captured.out, captured.err.decode()

    return call


def run(
    *argv: str,
    token: str | None = None,
    stdin: bytes | None = None,
    stdout: int | io.BufferedWriter | None = subprocess.PIPE,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    environ = {k: v for k, v in os.environ.items() if k != "IBKR_FLEX_TOKEN"}
    if token is not None:
        environ["IBKR_FLEX_TOKEN"] = token
    result = subprocess.run(  # noqa: S603 - our interpreter, our command
        [sys.executable, "-m", "ibkr_flex_client", *argv],
        input=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        timeout=30,
        check=False,
        env={**environ, **(env or {})},
    )
    if token is not None:
        assert token.encode() not in (result.stdout or b"") + result.stderr
    return result


@pytest.fixture
def report(tmp_path: Path) -> Path:
    path = tmp_path / "report.xml"
    path.write_bytes(REPORT)
    return path


# --- 1. global options before or after the command ------------------------------------------


def _global_options(parser: argparse.ArgumentParser) -> list[str]:
    return [
        a.option_strings[-1]
        for a in parser._actions
        if a.option_strings and not isinstance(a, (argparse._HelpAction, argparse._VersionAction))
    ]


@pytest.mark.parametrize("command", ["fetch -q 1", "inspect F", "export F --tag T", "demo"])
def test_every_global_option_works_before_and_after_the_command(command: str) -> None:
    parser = build_parser()
    options = _global_options(parser)
    assert "--verbose" in options
    for option in options:
        name = option.lstrip("-").replace("-", "_")
        before = parser.parse_args([option, *command.split()])
        after = parser.parse_args([*command.split(), option])
        neither = parser.parse_args(command.split())
        assert getattr(before, name) is True, option
        assert getattr(after, name) is True, option
        assert getattr(neither, name) is False, option


def test_verbose_before_the_command_shows_the_traceback(
    cli: Callable[..., tuple[int, bytes, str]], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.xml"
    broken.write_bytes(REPORT[:300])
    for argv in (["-v", "inspect", str(broken)], ["inspect", "-v", str(broken)]):
        status, _, err = cli(*argv)
        assert status == 7
        assert "Traceback" in err, argv


# --- 2. a directory given as the input --------------------------------------------------------


@pytest.mark.parametrize("command", READERS)
def test_a_directory_is_said_to_be_one(
    cli: Callable[..., tuple[int, bytes, str]], tmp_path: Path, command: str
) -> None:
    status, out, err = cli(*READERS[command][:1], str(tmp_path), *READERS[command][1:])
    assert status == 66
    assert err == f"ibkr-flex: error: {str(tmp_path)!r} is a directory, not a statement file\n"
    assert out == b""
    assert "is a directory" in cli_module.EXIT_CODES_HELP


# --- 3. a full device ------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_device_is_exit_8_with_a_clear_message(
    service: FlexSimulator, token: str, report: Path
) -> None:
    commands = [[*argv[:1], str(report), *argv[1:]] for argv in READERS.values()]
    commands.append(["fetch", "-q", "101", "--base-url", service.base_url])
    for argv in commands:
        with Path("/dev/full").open("wb") as full:
            result = run(*argv, token=token, stdout=full)
        assert result.returncode == 8, (argv, result.stderr)
        assert result.stderr.decode() == (
            "ibkr-flex: error: cannot write standard output: No space left on device\n"
        ), argv


# --- 4. -o into directories that do not exist yet -------------------------------------------


def test_several_queries_and_an_existing_file_is_still_a_usage_error(
    cli: Callable[..., tuple[int, bytes, str]], token: str, report: Path
) -> None:
    status, _, err = cli("fetch", "-q", "1", "-q", "2", "-o", str(report))
    assert status == 2
    assert "is a file" in err


# --- 5. messages name the options typed --------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["--from-date", "20260101"],
            "--to-date is required too: IB takes --from-date and --to-date together",
        ),
        (["--to-date", "20260101"], "--from-date is required too"),
        (["--from-date", "20260301", "--to-date", "20260101"], "--from-date 2026-03-01 is after"),
        (["--from-date", "20250101", "--to-date", "20260301"], "spans 425 days"),
        (["--period", "0"], "--period must be 1 to 365 days, got 0"),
        (
            ["--period", "7", "--from-date", "20260101", "--to-date", "20260102"],
            "give --period or --from-date/--to-date, not both",
        ),
        (["--timeout", "0"], "--timeout must be "),
        (["--max-retries", "0"], "--max-retries must be a whole number from 1"),
        (["--backoff-base", "-1"], "--backoff-base must be "),
        (["--base-url", "ftp://x"], "--base-url must be an http(s) URL"),
        (["--base-url", "http://example.com/timeout"], "'http://example.com/timeout'"),
        (["-q", " "], "--query must be a non-empty string"),
    ],
)
def test_settings_errors_name_the_command_line_options(
    cli: Callable[..., tuple[int, bytes, str]], token: str, argv: list[str], says: str
) -> None:
    query = [] if "-q" in argv else ["-q", "1"]
    status, _, err = cli("fetch", *query, *argv)
    assert status == 2
    assert says in err
    unquoted = re.sub(r"'[^']*'", "", err)  # a value the message repeats is the user's
    assert not re.search(r"(?<!-)\b(" + "|".join(OPTIONS) + r")\b", unquoted), err


# --- 6. the live progress line ---------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def event(kind: EventKind, query: str, *, wait: float | None = None) -> FetchEvent:
    size = 4844 if kind is EventKind.DONE else None
    return FetchEvent(kind, query, Step.GET_STATEMENT, 2, 1.0, wait=wait, code=1019, size=size)


def drawn(stream: Terminal) -> list[str]:
    """Each state of the live line, as drawn."""
    return [part.rstrip() for part in stream.getvalue().split("\r") if part.strip()]


@pytest.mark.parametrize("columns", [40, 80, 200])
def test_the_live_line_never_exceeds_the_terminal_width(
    monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    stream = Terminal()
    progress = Progress(stream)
    kinds = [EventKind.REQUEST, EventKind.WAIT, EventKind.DONE]
    for number in range(6):
        progress(event(kinds[number % 3], f"10000{number}", wait=9.0))
    lines = drawn(stream)
    assert lines
    assert all(len(line) < columns for line in lines), lines
    if columns == 80:  # six queries do not fit: counted instead
        assert lines[-1].endswith("6 queries: 2 done, 2 waiting (next in 9.0s), 2 sending")


def test_waits_count_down() -> None:
    clock, stream = Clock(), Terminal()
    progress = Progress(stream, columns=80, clock=clock)
    progress(event(EventKind.WAIT, "101", wait=5.0))
    clock.now = 2.0
    progress.render()
    clock.now = 9.0
    progress.render()
    lines = drawn(stream)
    assert "101: GetStatement #3 in 5.0s (after IB 1019)" in lines[0]
    assert "in 3.0s" in lines[1]
    assert "in 0.0s" in lines[2]


def test_several_queries_into_a_new_directory_create_it_and_list_the_files_written(
    service: FlexSimulator, token: str, tmp_path: Path
) -> None:
    """On a terminal, the fetch ends with one line per file written, after the live line."""
    new = tmp_path / "newdir"  # not there yet, and no trailing /: several queries, a directory
    args = build_parser().parse_args(
        ["fetch", "-q", "11", "-q", "12", "-o", str(new), "--base-url", service.base_url]
    )
    err, out = Terminal(), io.BytesIO()
    assert asyncio.run(fetch_command.run(args, out, err)) == 0
    assert sorted(p.name for p in new.iterdir()) == ["11.xml", "12.xml"]
    assert stat.S_IMODE(new.stat().st_mode) & 0o077 == 0  # account data: private
    size = len(REPORT)
    assert err.getvalue().split("\r")[-1].splitlines() == [
        f"ibkr-flex: wrote {new / '11.xml'} ({size:,} bytes)",
        f"ibkr-flex: wrote {new / '12.xml'} ({size:,} bytes)",
    ]
    assert out.getvalue() == b""


def test_one_query_into_missing_directories_creates_them_and_verbose_lists_it(
    service: FlexSimulator, token: str, tmp_path: Path
) -> None:
    """Piped, only --verbose lists the files written (quiet otherwise: see test_cli)."""
    target = tmp_path / "nd" / "sub" / "file.xml"
    result = run(
        "-v", "fetch", "-q", "3", "-o", str(target), "--base-url", service.base_url, token=token
    )
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == REPORT
    for made in (tmp_path / "nd", tmp_path / "nd" / "sub"):
        assert stat.S_IMODE(made.stat().st_mode) & 0o077 == 0, made  # account data: private
    last = result.stderr.decode().splitlines()[-1]
    assert last == f"ibkr-flex: wrote {target} ({len(REPORT):,} bytes)"
    assert result.stdout == b""


# --- 7. files that are not statements; standard input; gzip ------------------------------------

IB_CSV = b'"ClientAccountID","AccountAlias","Symbol"\n"U1111111","","AAPL"\n'


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("report.xml", REPORT)
    return buffer.getvalue()


KINDS: dict[str, tuple[bytes, str | None]] = {
    "xml": (REPORT, None),
    "xml-bom": (b"\xef\xbb\xbf" + REPORT, None),
    "truncated-xml": (REPORT[:100], None),
    "empty": (b"", "empty"),
    "white-space": (b" \n\n", "empty but for white space"),
    "gzip": (gzip.compress(REPORT), "gzip"),
    "zip": (_zip(), "zip archive"),
    "pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "PDF"),
    "html": (b"\n<!DOCTYPE html>\n<html lang=en><head>", "HTML page"),
    "html-bare": (b"<HTML><BODY>Service unavailable</BODY></HTML>", "HTML page"),
    "xhtml": (b'<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml">', "HTML page"),
    "json": (b'{"error": "token expired"}', "JSON"),
    "json-list": (b'  [{"a": 1}]', "JSON"),
    "ib-csv": (IB_CSV, "IB's CSV output"),
    "ib-csv-bof": (b"BOF,U1111111,Activity,5,20260302,20260306\nHEADER,TRNT,x\n", "IB's CSV"),
    "ib-csv-header": (b'"HEADER","TRNT","ClientAccountID"\n"DATA","TRNT","U1"\n', "IB's CSV"),
    "csv": (b"symbol,quantity,price\nAAPL,10,227.5\nMSFT,-5,410\n", "a CSV file"),
    "text": (b"Statement could not be generated.\nPlease try again later.\n", "plain text"),
    "binary": (bytes(range(256)), "binary data"),
    "utf-8-cut": ("Grüße café au lait ".encode() * 200, "plain text"),  # cut mid-character
}


@pytest.mark.parametrize("kind", KINDS)
def test_describe_names_the_kind_of_file(kind: str) -> None:
    data, expected = KINDS[kind]
    found = describe(data[:2048])
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert expected in found


@pytest.mark.parametrize("command", READERS)
@pytest.mark.parametrize("kind", ["html", "ib-csv-bof", "zip", "json", "text", "binary", "pdf"])
def test_a_file_that_is_not_a_statement_is_said_to_look_like_what_it_is(
    cli: Callable[..., tuple[int, bytes, str]], tmp_path: Path, kind: str, command: str
) -> None:
    data, expected = KINDS[kind]
    path = tmp_path / "report.xml"
    path.write_bytes(data)
    status, out, err = cli(*READERS[command][:1], str(path), *READERS[command][1:])
    assert status == 7
    assert out == b""
    assert err.startswith(f"ibkr-flex: error: not a Flex statement: {str(path)!r} looks like ")
    assert str(expected) in err
    assert "line 1" not in err  # the XML parser's words are gone


@pytest.mark.parametrize("command", READERS)
def test_gzip_is_read_by_its_magic_bytes_whatever_the_name(
    cli: Callable[..., tuple[int, bytes, str]], report: Path, tmp_path: Path, command: str
) -> None:
    squeezed = tmp_path / "squeezed.xml"  # no .gz: known by its first bytes
    squeezed.write_bytes(gzip.compress(REPORT))
    plain = cli(*READERS[command][:1], str(report), *READERS[command][1:])
    status, out, err = cli(*READERS[command][:1], str(squeezed), *READERS[command][1:])
    assert status == 0, err
    assert out == plain[1]


def test_damaged_gzip_is_said_to_be_damaged(
    cli: Callable[..., tuple[int, bytes, str]], tmp_path: Path
) -> None:
    path = tmp_path / "report.xml.gz"
    path.write_bytes(gzip.compress(REPORT * 3)[:200])
    status, _, err = cli("inspect", str(path))
    assert status == 7
    assert "is damaged gzip-compressed data" in err


def test_a_gzip_holding_html_says_so(
    cli: Callable[..., tuple[int, bytes, str]], tmp_path: Path
) -> None:
    path = tmp_path / "report.xml.gz"
    path.write_bytes(gzip.compress(KINDS["html"][0]))
    status, _, err = cli("inspect", str(path))
    assert status == 7
    assert "once inflated looks like an HTML page" in err


def test_standard_input_as_dash(tmp_path: Path) -> None:
    """``-`` for inspect (one pass) and export (two passes: a private temporary copy)."""
    shown = run("inspect", "-", "--json", stdin=gzip.compress(REPORT))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["query_name"] == "First hour"
    spool = tmp_path / "tmp"
    spool.mkdir()
    rows = run("export", "-", "--tag", "Trade", stdin=REPORT, env={"TMPDIR": str(spool)})
    assert rows.returncode == 0, rows.stderr
    assert rows.stdout.decode().count("\n") == 1 + REPORT.count(b"<Trade ")
    assert list(spool.iterdir()) == []  # the copy is gone
    html = run("models", "-", "--tag", "Trade", stdin=KINDS["html"][0])
    assert html.returncode == 7
    assert "standard input looks like an HTML page" in html.stderr.decode()


def test_the_copy_of_standard_input_is_private_and_removed(
    cli: Callable[..., tuple[int, bytes, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[Path, int]] = []

    def spy(path: Path, *args: object, **kwargs: object) -> int:
        seen.append((Path(path), stat.S_IMODE(Path(path).stat().st_mode)))
        return export_rows(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(export_command, "export_rows", spy)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(gzip.compress(REPORT))))
    status, out, err = cli("export", "-", "--tag", "Trade")
    assert status == 0, err
    assert out.startswith(b"accountId,")
    assert len(seen) == 1
    path, mode = seen[0]
    assert mode == 0o600
    assert not path.exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_named_pipe_is_read_once_like_standard_input(
    cli: Callable[..., tuple[int, bytes, str]], tmp_path: Path
) -> None:
    """``export <(zcat x.gz)``: the path is a pipe, which cannot be opened again."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(REPORT,))
    writer.start()
    try:
        status, out, err = cli("export", str(fifo), "--tag", "Trade")
    finally:
        writer.join(timeout=10)
    assert status == 0, err
    assert out.decode().count("\n") == 1 + REPORT.count(b"<Trade ")


# --- 8. demo's durations ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-inf", "soon"])
@pytest.mark.parametrize("option", ["--generation-seconds", "--latency"])
def test_demo_refuses_negative_and_non_finite_durations(
    cli: Callable[..., tuple[int, bytes, str]], option: str, value: str
) -> None:
    status, _, err = cli("demo", f"{option}={value}")
    assert status == 2
    assert "expected 0 or more seconds" in err


# --- 9. start-up without the network stack ---------------------------------------------------

NO_AIOHTTP = """
import json, sys
from ibkr_flex_client.cli import main
loaded = {}
for argv in json.loads(sys.argv[1]):
    try:
        main(argv)
    except SystemExit:
        pass
    loaded[" ".join(argv[:1])] = "aiohttp" in sys.modules
print(json.dumps(loaded))
"""


def test_help_and_the_file_commands_do_not_import_aiohttp(report: Path) -> None:
    """They cost ~0.3 s and 25 MB: only fetch and demo need them. (Needs the package's
    ``__init__`` to load the client lazily, too.)"""
    commands = [["--help"]] + [[*argv[:1], str(report), *argv[1:]] for argv in READERS.values()]
    result = subprocess.run(  # noqa: S603 - our interpreter, our script
        [sys.executable, "-c", NO_AIOHTTP, json.dumps(commands)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.decode().splitlines()[-1])
    assert loaded == {"--help": False, "inspect": False, "export": False, "models": False}


def test_demo_saves_a_statement_the_file_commands_read(tmp_path: Path) -> None:
    target = tmp_path / "new" / "demo.xml"
    saved = run("demo", "-o", str(tmp_path / "demo.xml"), "--generation-seconds", "0")
    assert saved.returncode == 0, saved.stderr
    demo = tmp_path / "demo.xml"
    assert f"wrote {demo}" in saved.stderr.decode()
    assert demo.stat().st_mode & 0o777 == 0o600
    assert FlexStatement.from_file(demo).account_id == "U1234567,U7654321"
    inspected = run("inspect", str(demo))
    assert inspected.returncode == 0
    assert b"OpenPosition           4" in inspected.stdout
    refused = run("demo", "-o", str(target / "x"), "--generation-seconds", "0")
    assert refused.returncode == 8
    assert not target.exists()
