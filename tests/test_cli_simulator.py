"""`ibkr-flex simulator`: one simulated IB for several processes, its records read from outside.

The grammar, the records endpoint and a busy port are tested in this process; serving other
processes and stopping on a signal run as a user runs them, the command in a subprocess on
real time (nox's realtime session).
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ibkr_flex_client import FlexClient, FlexStatement
from ibkr_flex_client import cli as cli_module
from ibkr_flex_client.cli.parser import build_parser
from ibkr_flex_client.testing import FakeClock, FlexSimulator, build_statement, fingerprint
from ibkr_flex_client.testing.simulator import REQUESTS_PATH

SEND = "/AccountManagement/FlexWebService/SendRequest"


def _cli(ignored: tuple[str, ...]) -> str:
    """Python that runs the command line with the stop signals at their defaults, as in a
    shell (a CI runner, or ``cmd &`` in a script, may start us with SIGINT or SIGHUP
    ignored, which the command rightly leaves ignored), but for ``ignored`` (as nohup)."""
    return (
        "import runpy, signal\n"
        "for name in ('SIGHUP', 'SIGTERM', 'SIGINT'):\n"
        "    signal.signal(getattr(signal, name), signal.SIG_DFL if name != 'SIGINT' "
        "else signal.default_int_handler)\n"
        f"for name in {ignored!r}:\n"
        "    signal.signal(getattr(signal, name), signal.SIG_IGN)\n"
        "runpy.run_module('ibkr_flex_client', run_name='__main__', alter_sys=True)\n"
    )


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def secret() -> str:
    return f"SECRET-{uuid.uuid4().hex}"


def records(url: str) -> tuple[dict[str, Any], bytes]:
    """What ``GET URL/_simulator/requests`` answers, parsed, and as sent."""
    with _NO_PROXY.open(url + REQUESTS_PATH, timeout=10) as response:
        assert response.headers.get_content_type() == "application/json"
        body: bytes = response.read()
    parsed: dict[str, Any] = json.loads(body)
    return parsed, body


def send_request(url: str, token: str, query: str) -> bytes:
    """One SendRequest on a connection of its own."""
    with _NO_PROXY.open(f"{url}{SEND}?t={token}&q={query}&v=3", timeout=10) as response:
        body: bytes = response.read()
    return body


# --- the records endpoint (in this process, on virtual time) --------------------------------


async def test_the_records_endpoint_shows_every_request_but_no_token() -> None:
    clock = FakeClock()
    token = secret()
    async with FlexSimulator(clock=clock) as sim, aiohttp.ClientSession() as http:
        for _ in range(2):  # the same virtual second: the second is over IB's limit
            async with http.get(sim.base_url + SEND, params={"t": token, "q": "7", "v": "3"}):
                pass
        async with http.get(sim.base_url + REQUESTS_PATH) as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            body = await response.read()
        assert len(sim.requests) == 2  # reading the records is not a request to IB
    assert token.encode() not in body
    shown = json.loads(body)
    assert shown["requests"] == [dataclasses.asdict(r) for r in sim.requests]
    assert [(r["step"], r["answer"]) for r in shown["requests"]] == [
        ("SendRequest", "reference"),
        ("SendRequest", "1018"),
    ]
    assert {r["token_fingerprint"] for r in shown["requests"]} == {fingerprint(token)}
    assert shown["requests"][0]["params"] == {"q": "7", "v": "3"}
    assert shown["answers"] == {"reference": 1, "1018": 1}


async def test_the_records_endpoint_starts_empty() -> None:
    async with (
        FlexSimulator() as sim,
        aiohttp.ClientSession() as http,
        http.get(sim.base_url + REQUESTS_PATH) as response,
    ):
        assert await response.json() == {"requests": [], "answers": {}}


# --- the grammar --------------------------------------------------------------------------------


def test_the_options_default_to_the_simulators_own_defaults() -> None:
    args = build_parser().parse_args(["simulator"])
    assert (args.host, args.port) == ("127.0.0.1", 0)
    defaults = inspect.signature(FlexSimulator).parameters
    for name in ("generation_seconds", "penalty_seconds", "reference_ttl", "latency"):
        assert getattr(args, name) == defaults[name].default, name


def test_every_option_is_taken() -> None:
    args = build_parser().parse_args(
        ["simulator", "--port", "8123", "--host", "localhost", "--generation-seconds", "30",
         "--penalty-seconds", "600", "--reference-ttl", "5", "--latency", "0.25"]
    )  # fmt: skip
    assert (args.port, args.host) == (8123, "127.0.0.1")  # the URL printed is the one to use
    assert (args.generation_seconds, args.penalty_seconds) == (30.0, 600.0)
    assert (args.reference_ttl, args.latency) == (5.0, 0.25)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "LOCALHOST"])
def test_loopback_addresses_are_served(host: str) -> None:
    args = build_parser().parse_args(["simulator", "--host", host])
    assert args.host == ("127.0.0.1" if host == "LOCALHOST" else host)


@pytest.mark.parametrize(
    "host",
    ["0.0.0.0", "192.168.1.20", "10.0.0.1", "::", "::1", "example.com", "127.1", ""],  # noqa: S104
)
def test_no_other_address_is(host: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["simulator", "--host", host])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --host: expected an IPv4 loopback address" in err
    assert "plain HTTP" in err


@pytest.mark.parametrize("port", ["-1", "65536", "80.5", "http", "²", ""])
def test_a_port_is_0_to_65535(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["simulator", "--port", port])
    assert exited.value.code == 2
    assert "argument --port: expected a port from 0 to 65535" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--generation-seconds", "--penalty-seconds", "--latency"])
def test_durations_are_0_or_more(option: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulator", option, "-1"])
    assert "expected 0 or more seconds" in capsys.readouterr().err


def test_the_help_says_how_to_use_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_module.main(["simulator", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for words in (REQUESTS_PATH, "--base-url URL", "1018", "token_fingerprint", "loopback"):
        assert words in text, words
    assert "SIGHUP stop it (answers in flight are finished first) with exit status 0" in text
    assert "a port already in use, or any other failure to listen, exits 1" in text
    top = build_parser().format_help()
    assert "simulator" in top


# --- a busy port (in this process: it fails before serving) ---------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_a_busy_port_is_one_clear_line_and_status_1(
    busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cli_module.main(["simulator", "--port", str(busy_port)])
    out, err = capsys.readouterr()
    assert status == cli_module.EXIT_ERROR == 1
    assert out == ""  # no URL: a parent reading one line sees the end of the stream
    assert err == (
        f"ibkr-flex: error: cannot listen on 127.0.0.1:{busy_port}: the port is already in "
        "use (another simulator?); choose another --port, or --port 0 for any free one\n"
    )


# --- as a user runs it: a subprocess, on real time ---------------------------------------------


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment for every process here: a private state directory, no proxy, no token."""
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("IBKR_FLEX_STATE_DIR", str(state))  # for the clients in this process
    variables = {k: v for k, v in os.environ.items() if k != "IBKR_FLEX_TOKEN"}
    return {**variables, "IBKR_FLEX_STATE_DIR": str(state), "NO_PROXY": "*"}


class Served:
    """``ibkr-flex simulator ARGV`` in a subprocess; :meth:`ready` reads its URL."""

    def __init__(self, env: dict[str, str], *argv: str, ignored: tuple[str, ...] = ()) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our interpreter, our command
            [sys.executable, "-c", _cli(ignored), "simulator", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.url = ""

    def ready(self, timeout: float = 20.0) -> str:
        """Stdout's first line, the URL, as a parent process reads it (bounded)."""
        lines: list[bytes] = []
        stdout = self.process.stdout
        assert stdout is not None
        reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not lines or not lines[0].endswith(b"\n"):
            self.process.kill()
            _, err = self.process.communicate(timeout=10)
            pytest.fail(f"no URL on stdout; stderr: {err.decode()!r}")
        self.url = lines[0].decode().rstrip("\n")
        return self.url

    def finish(self) -> tuple[int, str, str]:
        """Wait (bounded) for the end: the exit status, what stdout had left, and stderr."""
        try:
            out, err = self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate(timeout=5)
            raise
        return self.process.returncode, out.decode(), err.decode()

    def stop(self, signum: int) -> tuple[int, str, str]:
        """Send ``signum``, then :meth:`finish`."""
        self.process.send_signal(signum)
        return self.finish()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=5)


class Asker:
    """A client on one keep-alive connection, left open between requests."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.connection = http.client.HTTPConnection(host, int(port), timeout=10)
        self.path = f"{SEND}?t={secret()}&q=1&v=3"
        self.asked = 0

    def ask(self) -> bytes:
        self.connection.request("GET", self.path)
        body = self.connection.getresponse().read()
        self.asked += 1
        return body


def refused(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


async def fetch(url: str, token: str, query_id: str) -> FlexStatement:
    """What a user's program does: FlexClient, aimed at the simulator, on real time."""
    return await FlexClient(token=token, query_id=query_id, base_url=url, timeout=10).fetch()


@pytest.mark.realtime
@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_processes_share_one_simulator_and_its_limits(env: dict[str, str], tmp_path: Path) -> None:
    served = Served(env, "--generation-seconds", "0")
    try:
        url = served.ready()
        assert url.startswith("http://127.0.0.1:")
        assert int(url.rsplit(":", 1)[1]) > 0  # --port 0: a free port, named in the URL
        tokens = {"cli": secret(), "client": secret(), "raw": secret()}
        saved = tmp_path / "cli.xml"
        fetcher = subprocess.Popen(  # noqa: S603 - our interpreter, our command
            [sys.executable, "-m", "ibkr_flex_client", "fetch", "-q", "11", "-o", str(saved),
             "--base-url", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**env, "IBKR_FLEX_TOKEN": tokens["cli"]},
        )  # fmt: skip
        try:
            statement = asyncio.run(fetch(url, tokens["client"], "12"))
            # Two connections, one token, the same second: the simulator, not a client,
            # holds the count, so the second is refused whoever sends it.
            first = send_request(url, tokens["raw"], "13")
            second = send_request(url, tokens["raw"], "13")
        finally:
            _, fetched = fetcher.communicate(timeout=30)
        assert fetcher.returncode == 0, fetched.decode()
        assert saved.read_bytes() == statement.xml == build_statement()
        assert b"<ReferenceCode>" in first
        assert b"<ErrorCode>1018</ErrorCode>" in second

        shown, body = records(url)
        for token in tokens.values():
            assert token.encode() not in body
        by_token = {name: fingerprint(token) for name, token in tokens.items()}
        answers = {
            name: [(r["step"], r["answer"]) for r in shown["requests"]
                   if r["token_fingerprint"] == mine]
            for name, mine in by_token.items()
        }  # fmt: skip
        for name in ("cli", "client"):
            assert answers[name] == [("SendRequest", "reference"), ("GetStatement", "statement")]
        assert answers["raw"] == [("SendRequest", "reference"), ("SendRequest", "1018")]
        assert shown["answers"] == {"reference": 3, "statement": 2, "1018": 1}
        assert len(shown["requests"]) == 6

        status, out, err = served.stop(signal.SIGINT)
    finally:
        served.kill()
    assert status == 0, err
    assert out == ""  # the URL was the one line on stdout, read above
    assert "Traceback" not in err
    for token in tokens.values():
        assert token not in err
    hint, stopped = err.splitlines()
    assert hint.startswith(f"ibkr-flex: simulated IB Flex Web Service at {url}")
    assert f"--base-url {url}" in hint
    assert f"{url}{REQUESTS_PATH}" in hint
    assert "Ctrl-C" in hint
    assert stopped == "ibkr-flex: simulator stopped (SIGINT) after 6 requests"
    assert refused(url)


# What each case sends; under nohup, SIGHUP is ignored and only SIGTERM stops it.
STOPS = {
    "SIGINT": [signal.SIGINT],
    "SIGTERM": [signal.SIGTERM],
    "SIGHUP": [signal.SIGHUP],
    "nohup": [signal.SIGHUP, signal.SIGTERM],
}


@pytest.mark.realtime
@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_every_stop_signal_closes_it_at_once_with_status_0(env: dict[str, str]) -> None:
    """Ctrl-C, SIGTERM and SIGHUP, side by side, each sent the moment an answer arrives:
    the signal finds the server still finishing that answer, inside one of aiohttp's tasks,
    and a client's keep-alive connection open. It closes at once and quietly (no
    traceback), with status 0. Under nohup, SIGHUP is ignored and it serves on."""
    served = {name: Served(env, ignored=("SIGHUP",) if name == "nohup" else ()) for name in STOPS}
    try:
        askers = {name: Asker(one.ready()) for name, one in served.items()}
        for asker in askers.values():
            assert b"<ReferenceCode>" in asker.ask()
        for name, one in served.items():
            assert b"<ErrorCode>1018</ErrorCode>" in askers[name].ask()  # within the second
            one.process.send_signal(STOPS[name][0])
        assert b"<ErrorCode>" in askers["nohup"].ask()  # still serving
        served["nohup"].process.send_signal(STOPS["nohup"][-1])
        ended = {name: one.finish() for name, one in served.items()}
    finally:
        for one in served.values():
            one.kill()
    for name, (status, out, err) in ended.items():
        assert status == 0, (name, err)
        assert out == ""  # the URL was the one line on stdout, read above
        assert "Traceback" not in err, (name, err)
        assert "Task exception" not in err, (name, err)
        signum = STOPS[name][-1]
        asked = askers[name].asked
        assert err.splitlines()[-1] == (
            f"ibkr-flex: simulator stopped ({signal.Signals(signum).name}) after {asked} requests"
        )
        assert refused(served[name].url), name
        askers[name].connection.close()


@pytest.mark.realtime
@pytest.mark.parametrize("form", ["csv", "csv-plain", "text"])
def test_it_serves_a_query_in_csv_or_text_form(env: dict[str, str], form: str) -> None:
    served = Served(env, "--generation-seconds", "0", "--format", form)
    try:
        url = served.ready()
        statement = asyncio.run(fetch(url, secret(), "21"))
        received = statement.xml if isinstance(statement.xml, bytes) else statement.xml.encode()
        assert not received.lstrip().startswith(b"<")  # CSV, as received
        assert [t.attrib for t in statement.iter("Trade")] == [
            t.attrib for t in FlexStatement(build_statement()).iter("Trade")
        ]
    finally:
        served.kill()
