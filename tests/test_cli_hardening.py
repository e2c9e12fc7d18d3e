"""The command line under hostile conditions: killed mid-fetch (by -9, TERM or HUP), asked to
write a very long file name, and handed files the library refuses.

The fetches run as a user runs them: a subprocess against a service on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from ibkr_flex_client import FlexStatement, StatementError
from ibkr_flex_client import cli as cli_module
from ibkr_flex_client._files import new_temp
from ibkr_flex_client.testing import FlexSimulator, build_statement, fingerprint

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")

REPORT = build_statement(accounts=["U1111111"], query_name="Hardening")
SEND_PATH = "/AccountManagement/FlexWebService/SendRequest"
GET_PATH = "/AccountManagement/FlexWebService/GetStatement"
SLOW = 60.0  # seconds of "generation in progress": the fetch is still polling when killed


@pytest.fixture(scope="module")
def service() -> Iterator[FlexSimulator]:
    with FlexSimulator(generation_seconds=0.0, statement=REPORT).serve_in_thread() as sim:
        yield sim


@pytest.fixture
def token() -> str:
    return f"SECRET-{uuid.uuid4().hex}"


_DEFAULT_SIGNALS_THEN_CLI = (
    "import runpy, signal\n"
    "for name in ('SIGHUP', 'SIGTERM', 'SIGINT'):\n"
    "    signal.signal(getattr(signal, name), signal.SIG_DFL if name != 'SIGINT' "
    "else signal.default_int_handler)\n"
    "runpy.run_module('ibkr_flex_client', run_name='__main__', alter_sys=True)\n"
)


def start(*argv: str, token: str, module: bool = True) -> subprocess.Popen[bytes]:
    """``ibkr-flex ARGV`` (or ``python ARGV`` when not ``module``) with ``token`` set."""
    env = {k: v for k, v in os.environ.items() if k != "IBKR_FLEX_TOKEN"}
    env["IBKR_FLEX_TOKEN"] = token
    # Stop signals at their defaults, as in a shell: a CI runner may start us with SIGHUP
    # ignored (nohup-like), which the CLI rightly leaves ignored.
    command = [sys.executable, "-c", _DEFAULT_SIGNALS_THEN_CLI] if module else [sys.executable]
    return subprocess.Popen(  # noqa: S603 - our interpreter, our command
        [*command, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def finish(process: subprocess.Popen[bytes], token: str) -> tuple[int, str]:
    """Wait (bounded) for the CLI to end; its status and stderr, checked to hold no token."""
    try:
        out, err = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate(timeout=5)
        raise
    assert token.encode() not in out + err
    return process.returncode, err.decode()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def asked(service: FlexSimulator, token: str) -> Callable[[], bool]:
    """True once the CLI has sent SendRequest: from then on it waits and polls, with IB's
    one-request-a-second pacing, until the statement is generated (here: never)."""
    mine = fingerprint(token)
    return lambda: any(r.token_fingerprint == mine for r in list(service.requests))


def parts(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.startswith(".")]


def slow_query(service: FlexSimulator) -> str:
    query = f"q{uuid.uuid4().hex[:8]}"
    service.add_query(query, generation_seconds=SLOW)
    return query


# --- a service whose statement stops halfway ------------------------------------------------


class StallingService:
    """IB's two steps on loopback, except that the statement's body stops after its first
    kilobytes and never ends: a large statement arriving slowly, frozen mid-write."""

    PREFIX = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<FlexQueryResponse queryName="Big" type="AF">\n<FlexStatements count="1">\n'
        b'<FlexStatement accountId="U1111111" fromDate="20260302" toDate="20260306">\n'
        b"<Trades>\n" + b'<Trade symbol="AAPL" quantity="10"/>\n' * 200
    )

    def __init__(self) -> None:
        self.base_url = ""
        self._release: asyncio.Event | None = None

    async def _send(self, request: web.Request) -> web.Response:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<FlexStatementResponse timestamp="x">\n'
            "<Status>Success</Status>\n<ReferenceCode>1234567890</ReferenceCode>\n"
            f"<Url>{self.base_url}{GET_PATH}</Url>\n</FlexStatementResponse>\n"
        )
        return web.Response(body=body.encode(), content_type="text/xml")

    async def _get(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/xml"})
        response.content_length = len(self.PREFIX) * 100
        await response.prepare(request)
        await response.write(self.PREFIX)
        assert self._release is not None
        await self._release.wait()
        return response

    @contextlib.contextmanager
    def serving(self) -> Iterator[StallingService]:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        app = web.Application()
        app.router.add_get(SEND_PATH, self._send)
        app.router.add_get(GET_PATH, self._get)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)

        async def open_() -> None:
            self._release = asyncio.Event()
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            self.base_url = f"http://127.0.0.1:{port}"

        async def close() -> None:
            assert self._release is not None
            self._release.set()
            await runner.cleanup()

        asyncio.run_coroutine_threadsafe(open_(), loop).result(timeout=10)
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()


@pytest.fixture(scope="module")
def stalling() -> Iterator[StallingService]:
    with StallingService().serving() as server:
        yield server


def writing(directory: Path) -> Callable[[], bool]:
    """True once part of the statement's body is on disk in a temporary file."""
    return lambda: any(p.stat().st_size > 0 for p in parts(directory) if p.exists())


# --- kill -9 ---------------------------------------------------------------------------------


@pytest.mark.realtime
def test_kill_9_while_polling_leaves_nothing(
    service: FlexSimulator, token: str, tmp_path: Path
) -> None:
    query = slow_query(service)
    target = tmp_path / "report.xml"
    process = start(
        "fetch", "-q", query, "-o", str(target), "--base-url", service.base_url, token=token
    )
    try:
        wait_for(asked(service, token), "SendRequest")
    finally:
        process.kill()
        finish(process, token)
    assert list(tmp_path.iterdir()) == []  # no part before the body starts arriving


@pytest.mark.realtime
def test_kill_9_while_writing_leaves_a_part_the_next_download_removes(
    stalling: StallingService, service: FlexSimulator, token: str, tmp_path: Path
) -> None:
    live = new_temp(tmp_path / "busy.xml")  # this test process: a live writer all along
    killed = start(
        "fetch", "-q", "1", "-o", str(tmp_path / "big.xml"), "--base-url", stalling.base_url,
        token=token,
    )  # fmt: skip
    try:
        wait_for(writing(tmp_path), "the body to reach the disk")
    finally:
        killed.kill()
        finish(killed, token)
    [left] = [p for p in parts(tmp_path) if p != live]  # what kill -9 leaves: no cleanup ran
    assert left.read_bytes().startswith(StallingService.PREFIX[:100])
    target = tmp_path / "next.xml"
    status, err = finish(
        start("fetch", "-q", "701", "-o", str(target), "--base-url", service.base_url, token=token),
        token,
    )
    assert status == 0, err
    assert target.read_bytes() == REPORT
    assert not left.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "next.xml"])


# --- TERM and HUP: as Ctrl-C ------------------------------------------------------------------
# Each test runs its cases side by side: every fetch waits a paced second before GetStatement.

STOPS = {signal.SIGINT: 130, signal.SIGHUP: 129, signal.SIGTERM: 143}


@pytest.mark.realtime
def test_a_stop_signal_while_polling_exits_128_plus_its_number(
    service: FlexSimulator, tmp_path: Path
) -> None:
    runs = {}
    for signum in STOPS:
        token, directory = f"SECRET-{uuid.uuid4().hex}", tmp_path / signal.Signals(signum).name
        directory.mkdir()
        query = slow_query(service)
        argv = ("fetch", "-q", query, "-o", f"{directory}/", "--base-url", service.base_url)
        runs[signum] = (start(*argv, token=token), token, directory)
    try:
        for signum, (process, token, _) in runs.items():
            wait_for(asked(service, token), "SendRequest")
            process.send_signal(signum)
    except BaseException:
        for process, _, _ in runs.values():
            process.kill()
        raise
    finally:
        ended = {signum: finish(process, token) for signum, (process, token, _) in runs.items()}
    for signum, (status, err) in ended.items():
        name = signal.Signals(signum).name
        assert status == STOPS[signum], (name, err)
        said = (
            "ibkr-flex: interrupted\n"
            if signum == signal.SIGINT
            else f"ibkr-flex: interrupted ({name})\n"
        )
        assert err == said
        assert list(runs[signum][2].iterdir()) == []


@pytest.mark.realtime
def test_a_stop_signal_while_writing_removes_the_part(
    stalling: StallingService, tmp_path: Path
) -> None:
    """TERM and HUP as Ctrl-C; and under ``nohup`` (HUP ignored) the download carries on."""
    nohup = (
        "import signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN);"
        "from ibkr_flex_client.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    cases = {"SIGTERM": [signal.SIGTERM], "SIGHUP": [signal.SIGHUP], "nohup": [signal.SIGHUP]}
    runs = {}
    for name in cases:
        token, directory = f"SECRET-{uuid.uuid4().hex}", tmp_path / name
        directory.mkdir()
        argv = ["fetch", "-q", "2", "-o", str(directory / "big.xml")]
        argv += ["--base-url", stalling.base_url]
        if name == "nohup":
            argv = ["-c", nohup, *argv]
        process = start(*argv, token=token, module=name != "nohup")
        runs[name] = (process, token, directory)
    try:
        for name, (process, _, directory) in runs.items():
            wait_for(writing(directory), f"the body to reach the disk ({name})")
            for signum in cases[name]:
                process.send_signal(signum)
        time.sleep(0.3)
        nohup_process = runs["nohup"][0]
        assert nohup_process.poll() is None  # HUP ignored: still downloading
        assert parts(runs["nohup"][2])
        nohup_process.send_signal(signal.SIGTERM)
    except BaseException:
        for process, _, _ in runs.values():
            process.kill()
        raise
    finally:
        ended = {name: finish(process, token) for name, (process, token, _) in runs.items()}
    for name, (status, err) in ended.items():
        signum = signal.SIGHUP if name == "SIGHUP" else signal.SIGTERM
        assert status == STOPS[signum], (name, err)
        assert err == f"ibkr-flex: interrupted ({signal.Signals(signum).name})\n"
        assert list(runs[name][2].iterdir()) == []


def test_the_exit_codes_help_names_the_stop_signals() -> None:
    lines = cli_module.EXIT_CODES_HELP.splitlines()
    assert any(line.split()[:1] == ["129"] and "SIGHUP" in line for line in lines)
    assert any(line.split()[:1] == ["143"] and "SIGTERM" in line for line in lines)


# --- the target's name and place ----------------------------------------------------------------


def test_a_250_character_file_name_downloads(
    service: FlexSimulator, token: str, tmp_path: Path
) -> None:
    target = tmp_path / ("r" * 246 + ".xml")
    status, err = finish(
        start("fetch", "-q", "801", "-o", str(target), "--base-url", service.base_url, token=token),
        token,
    )
    assert status == 0, err
    assert target.read_bytes() == REPORT
    assert list(tmp_path.iterdir()) == [target]


def test_a_target_that_cannot_be_written_costs_no_request(
    cli: Callable[..., tuple[int, bytes, str]],
    service: FlexSimulator,
    token: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IBKR_FLEX_TOKEN", token)
    too_long = tmp_path / ("r" * 300 + ".xml")
    status, _, err = cli("fetch", "-q", "802", "-o", str(too_long), "--base-url", service.base_url)
    assert status == 8
    assert err == f"ibkr-flex: error: cannot write {str(too_long)!r}: file name too long\n"
    (tmp_path / "806.xml").mkdir()
    status, _, err = cli(
        "fetch", "-q", "805", "-q", "806", "-o", f"{tmp_path}/", "--base-url", service.base_url
    )
    assert status == 8
    assert err.endswith("806.xml': it is a directory\n")
    # Checked before the first request: not even the query with a good target ran.
    assert fingerprint(token) not in {r.token_fingerprint for r in list(service.requests)}


# --- files the library refuses, refused by every command ----------------------------------------

GOOD = b"""<?xml version="1.0" encoding="UTF-8"?>
<FlexQueryResponse queryName="Checked" type="AF">
<FlexStatements count="1">
<FlexStatement accountId="U1111111" fromDate="20260302" toDate="20260306" period="">
<Trades><Trade accountId="U1111111" symbol="AAPL" quantity="10"/></Trades>
</FlexStatement>
</FlexStatements>
</FlexQueryResponse>
"""
HEADER = b'accountId="U1111111" fromDate="20260302" toDate="20260306"'

BAD = {
    "no-FlexStatements": GOOD.replace(b'<FlexStatements count="1">\n', b"").replace(
        b"</FlexStatements>\n", b""
    ),
    "no-FlexStatement": GOOD.replace(b"<FlexStatement ", b"<Wrap><FlexStatement ").replace(
        b"</FlexStatement>",
        b"</FlexStatement></Wrap>",  # not in the container itself
    ),
    "empty-FlexStatements": GOOD.split(b'<FlexStatements count="1">')[0]
    + b'<FlexStatements count="0"/>\n</FlexQueryResponse>\n',
    "no-accountId": GOOD.replace(HEADER, b'fromDate="20260302" toDate="20260306"'),
    "no-toDate": GOOD.replace(HEADER, b'accountId="U1111111" fromDate="20260302"'),
    "empty-fromDate": GOOD.replace(b'fromDate="20260302"', b'fromDate=""'),
    "date-20260230": GOOD.replace(b'toDate="20260306"', b'toDate="20260230"'),
    "count-2-of-1": GOOD.replace(b'count="1"', b'count="2"'),
    "dates-disagree": GOOD.replace(
        HEADER, b'accountId="U1111111" fromDate="13/03/2026" toDate="03/14/2026"'
    ),
    "foreign-root": GOOD.replace(b"FlexQueryResponse", b"FlexStatementResponse"),
}
COMMANDS = {
    "inspect": ["inspect"],
    "inspect-json": ["inspect", "--json"],
    "export-csv": ["export", "--tag", "Trade"],
    "export-jsonl": ["export", "--tag", "Trade", "--format", "jsonl"],
    "models": ["models", "--tag", "Trade"],
}


@pytest.fixture
def cli(capsysbinary: pytest.CaptureFixture[bytes]) -> Callable[..., tuple[int, bytes, str]]:
    """The entry point in this process: status, stdout and stderr."""

    def call(*argv: str) -> tuple[int, bytes, str]:
        status = cli_module.main(list(argv))
        captured = capsysbinary.readouterr()
        return status, captured.out, captured.err.decode()

    return call


def refusal(path: Path) -> str:
    with pytest.raises(StatementError) as raised:
        FlexStatement.from_file(path)
    return str(raised.value)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", BAD)
def test_every_command_refuses_what_flex_statement_refuses(
    cli: Callable[..., tuple[int, bytes, str]], tmp_path: Path, kind: str, command: str
) -> None:
    path = tmp_path / f"{kind}.xml"
    path.write_bytes(BAD[kind])
    message = refusal(path)  # the library's judgment, pinned to the command's
    status, out, err = cli(*COMMANDS[command][:1], str(path), *COMMANDS[command][1:])
    assert status == 7
    assert err == f"ibkr-flex: error: {message}\n"
    assert out == b""  # refused before anything is written


def test_an_export_to_a_file_of_a_refused_file_writes_nothing(
    cli: Callable[..., tuple[int, bytes, str]], tmp_path: Path
) -> None:
    path = tmp_path / "bad.xml"
    path.write_bytes(BAD["count-2-of-1"])
    output = tmp_path / "trades.csv"
    status, _, err = cli("export", str(path), "--tag", "Trade", "-o", str(output))
    assert status == 7, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.xml"]


@pytest.mark.parametrize("command", COMMANDS)
def test_an_empty_file_is_refused_by_every_command(
    cli: Callable[..., tuple[int, bytes, str]], tmp_path: Path, command: str
) -> None:
    path = tmp_path / "empty.xml"
    path.write_bytes(b"")
    message = refusal(path)
    status, out, err = cli(*COMMANDS[command][:1], str(path), *COMMANDS[command][1:])
    assert status == 7
    assert out == b""
    # The streaming reader and FlexStatement word it differently ("file" and "document").
    assert message.startswith("not a Flex statement: ")
    assert err.startswith("ibkr-flex: error: not a Flex statement: ")
    assert "empty" in message
    assert "empty" in err


@pytest.mark.parametrize("command", COMMANDS)
def test_what_flex_statement_accepts_every_command_accepts(
    cli: Callable[..., tuple[int, bytes, str]], tmp_path: Path, command: str
) -> None:
    later = GOOD.replace(b"</FlexStatements>", b'</FlexStatements>\n<FlexStatements count="9"/>')
    slashed = GOOD.replace(HEADER, b'accountId="U1111111" fromDate="03/04/26" toDate="13/04/26"')
    for name, xml in {"good": GOOD, "second-container": later, "dd-MM": slashed}.items():
        path = tmp_path / f"{name}.xml"
        path.write_bytes(xml)
        FlexStatement.from_file(path)
        status, out, err = cli(*COMMANDS[command][:1], str(path), *COMMANDS[command][1:])
        assert status == 0, (name, err)
        assert out
