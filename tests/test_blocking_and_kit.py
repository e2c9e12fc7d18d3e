"""The blocking functions, the pytest fixtures as a user's tests meet them, and a light import."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import ibkr_flex_client
from ibkr_flex_client import FlexClient, FlexStatement, QueryError, SaveError, fetch_statement
from ibkr_flex_client.testing import FakeClock, FlexSimulator

# What a test that forgets the clock is told (the simulator's answer, through the error).
HINT = "clock=flex_clock"


def options(function: Callable[..., Any], *, skip: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
    """Each parameter as (name, kind, default, annotation), in order."""
    return [
        (p.name, p.kind, p.default, p.annotation)
        for p in inspect.signature(function).parameters.values()
        if p.name not in ("self", *skip)
    ]


# --- the blocking functions take every FlexClient option ---------------------------------------


def test_fetch_statement_takes_every_flexclient_option() -> None:
    assert options(fetch_statement, skip=("on_event",)) == options(FlexClient.__init__)
    on_event = inspect.signature(fetch_statement).parameters["on_event"]
    assert (on_event.kind, on_event.default) == (inspect.Parameter.KEYWORD_ONLY, None)


def test_download_statement_takes_every_flexclient_option() -> None:
    download = ibkr_flex_client.download_statement
    assert options(download, skip=("path", "on_event")) == options(FlexClient.__init__)
    path = next(iter(inspect.signature(download).parameters.values()))
    assert (path.name, path.kind) == ("path", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    assert "download_statement" in ibkr_flex_client.__all__


def test_plain_test_fetches_through_the_fixture(
    flex_simulator: FlexSimulator, flex_clock: FakeClock
) -> None:
    flex_simulator.add_query("7", generation_seconds=30)
    started, virtual = time.monotonic(), flex_clock.now()
    statement = fetch_statement(
        token="plain-fetch", query_id="7", base_url=flex_simulator.base_url, clock=flex_clock
    )
    assert statement.account_id == "U1234567"
    assert flex_clock.now() - virtual >= 30  # the generation time passed, virtually
    assert time.monotonic() - started < 10
    assert flex_simulator.answers()[-1] == "statement"


def test_download_statement_saves_the_file(
    flex_simulator: FlexSimulator, flex_clock: FakeClock, tmp_path: Path
) -> None:
    events: list[str] = []
    target = ibkr_flex_client.download_statement(
        tmp_path / "statement.xml",
        token="plain-download",
        query_id="3",
        base_url=flex_simulator.base_url,
        clock=flex_clock,
        on_event=lambda event: events.append(event.kind.value),
    )
    assert target == tmp_path / "statement.xml"
    assert FlexStatement(target.read_bytes()).account_id == "U1234567"
    assert events[-1] == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["statement.xml"]


def test_download_statement_refuses_a_bad_target_before_any_request(
    flex_simulator: FlexSimulator, flex_clock: FakeClock, tmp_path: Path
) -> None:
    with pytest.raises(SaveError):
        ibkr_flex_client.download_statement(
            tmp_path,  # a directory
            token="plain-bad-target",
            query_id="3",
            base_url=flex_simulator.base_url,
            clock=flex_clock,
        )
    assert flex_simulator.requests == []


async def test_blocking_calls_refuse_a_running_loop(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"await FlexClient\(.*\)\.fetch\(\)"):
        fetch_statement(token="in-loop", query_id="1")
    with pytest.raises(RuntimeError, match=r"await FlexClient\(.*\)\.download\(path\)"):
        ibkr_flex_client.download_statement(tmp_path / "s.xml", token="in-loop", query_id="1")
    assert list(tmp_path.iterdir()) == []


# --- a client that is not on the fixture's clock is told so at once ---------------------------
# Bounded even where the check were missing: few, short retries (the next test has defaults).


def test_plain_test_forgetting_the_clock_fails_at_once(flex_simulator: FlexSimulator) -> None:
    started = time.monotonic()
    with pytest.raises(QueryError, match=HINT) as caught:
        fetch_statement(
            token="plain-forgot",
            query_id="1",
            base_url=flex_simulator.base_url,
            max_retries=2,
            backoff_base=0.5,
        )
    assert time.monotonic() - started < 5
    assert caught.value.code == 1020
    assert flex_simulator.answers() == ["1020"]  # one request, and the fetch stopped


async def test_async_test_forgetting_the_clock_fails_at_once(
    flex_simulator: FlexSimulator,
) -> None:
    client = FlexClient(
        token="async-forgot",
        query_id="1",
        base_url=flex_simulator.base_url,
        max_retries=2,
        backoff_base=0.5,
    )
    started = time.monotonic()
    with pytest.raises(QueryError, match=HINT):
        await client.fetch()
    assert time.monotonic() - started < 5
    assert flex_simulator.answers() == ["1020"]


async def test_the_clock_check_is_the_fixtures_choice(clock: FakeClock) -> None:
    # A simulator of one's own answers any client, as before: here a raw request.
    async with FlexSimulator(clock=clock) as sim, aiohttp.ClientSession() as http:
        url = sim.base_url + "/AccountManagement/FlexWebService/SendRequest"
        async with http.get(url, params={"t": "own-sim", "q": "1", "v": "3"}) as response:
            body = await response.read()
    assert ET.fromstring(body).findtext("Status") == "Success"
    assert sim.answers() == ["reference"]
    with pytest.raises(ValueError, match="FakeClock"):
        FlexSimulator(require_shared_clock=True)  # real time: nothing to share


USER_TESTS = """
import pytest

from ibkr_flex_client import FlexClient, fetch_statement


def test_sync_on_the_clock(flex_simulator, flex_clock):
    flex_simulator.add_query("9", generation_seconds=45)
    statement = fetch_statement(
        token="u1", query_id="9", base_url=flex_simulator.base_url, clock=flex_clock
    )
    assert statement.account_id == "U1234567"


def test_sync_forgot_the_clock(flex_simulator):
    fetch_statement(token="u2", query_id="9", base_url=flex_simulator.base_url)


@pytest.mark.asyncio
async def test_async_forgot_the_clock(flex_simulator):
    await FlexClient(token="u3", query_id="9", base_url=flex_simulator.base_url).fetch()
"""


def test_user_tests_on_the_fixtures_with_default_settings(tmp_path: Path) -> None:
    """A user's test module, as pytest runs it: nothing waits on real backoff."""
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TESTS), encoding="utf-8")
    report = tmp_path / "report.xml"
    result = subprocess.run(  # noqa: S603 - our interpreter, our file
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={report}"],
        capture_output=True,
        text=True,
        timeout=60,  # where the check were missing, the sync test would back off for minutes
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert report.exists(), result.stdout + result.stderr
    cases = {case.get("name"): case for case in ET.parse(report).iter("testcase")}
    assert set(cases) == {
        "test_sync_on_the_clock",
        "test_sync_forgot_the_clock",
        "test_async_forgot_the_clock",
    }, result.stdout
    assert len(cases["test_sync_on_the_clock"]) == 0, result.stdout  # no failure element
    for name in ("test_sync_forgot_the_clock", "test_async_forgot_the_clock"):
        failure = cases[name].find("failure")
        assert failure is not None, result.stdout
        assert "QueryError" in (failure.get("message") or ""), result.stdout
        assert HINT in (failure.get("message") or ""), result.stdout
        assert float(cases[name].get("time", "0")) < 5


# --- importing the package does not load the network stack ------------------------------------


def loaded_after(code: str) -> set[str]:
    """The modules of interest loaded after ``code`` runs in a fresh interpreter."""
    probe = (
        f"{code}\nimport sys\n"
        "print(*sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'aiohttp', 'ssl', 'yarl', 'multidict'} or m.startswith('ibkr_flex_client.')))"
    )
    result = subprocess.run(  # noqa: S603 - our interpreter, our code
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(result.stdout.split())


NETWORK = {"aiohttp", "yarl", "multidict", "ibkr_flex_client.client"}


@pytest.mark.parametrize(
    ("code", "absent"),
    [
        ("import ibkr_flex_client", {*NETWORK, "ssl"}),
        (
            "from ibkr_flex_client import FlexStatement, iter_elements, iter_rows, FlexError",
            {*NETWORK, "ssl"},
        ),
        (
            "import ibkr_flex_client.statement, ibkr_flex_client.stream, ibkr_flex_client.rows",
            {*NETWORK, "ssl"},
        ),
        ("import ibkr_flex_client.inspection, ibkr_flex_client.dates", {*NETWORK, "ssl"}),
        # FakeClock needs asyncio, which loads ssl itself; aiohttp still stays out.
        ("from ibkr_flex_client.testing import FakeClock, build_statement, Fault", NETWORK),
        ("import ibkr_flex_client.testing.pytest_plugin", NETWORK),
    ],
)
def test_reading_statements_does_not_load_the_network_stack(code: str, absent: set[str]) -> None:
    loaded = loaded_after(code)
    assert not absent & loaded, loaded


def test_network_names_load_on_first_use() -> None:
    loaded = loaded_after("from ibkr_flex_client import FlexClient")
    assert {"aiohttp", "ibkr_flex_client.client"} <= loaded
    assert "aiohttp.web" not in loaded  # the simulator's server, only for the simulator
    assert "aiohttp.web" in loaded_after("from ibkr_flex_client.testing import FlexSimulator")


def test_lazy_names_behave_like_plain_ones() -> None:
    from ibkr_flex_client import client  # noqa: PLC0415

    assert ibkr_flex_client.FlexClient is client.FlexClient
    assert ibkr_flex_client.fetch_statement is client.fetch_statement
    assert ibkr_flex_client.download_statement is client.download_statement
    assert set(ibkr_flex_client.__all__) <= set(dir(ibkr_flex_client))
    assert ibkr_flex_client.__all__ == sorted(ibkr_flex_client.__all__)
    with pytest.raises(AttributeError, match="has no attribute 'FlexClinet'"):
        getattr(ibkr_flex_client, "FlexClinet")  # noqa: B009 - the lookup is the test
    from ibkr_flex_client import testing  # noqa: PLC0415

    assert set(testing.__all__) <= set(dir(testing))
    with pytest.raises(AttributeError, match="has no attribute 'FlexSimulater'"):
        getattr(testing, "FlexSimulater")  # noqa: B009
