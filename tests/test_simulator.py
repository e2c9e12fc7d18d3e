"""The simulator itself: each rule and fault, so users can trust it as a stand-in for IB."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import aiohttp
import pytest

from ibkr_flex_client import FlexClient, FlexStatement, Step
from ibkr_flex_client.testing import (
    IB_MESSAGES,
    FakeClock,
    Fault,
    FlexSimulator,
    build_statement,
    fingerprint,
)

SEND = "/AccountManagement/FlexWebService/SendRequest"
GET = "/AccountManagement/FlexWebService/GetStatement"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        session._retry_connection = False  # see what the simulator does, not aiohttp's retry
        yield session


async def call(
    http: aiohttp.ClientSession, sim: FlexSimulator, path: str, **params: str
) -> tuple[int, bytes]:
    async with http.get(sim.base_url + path, params=params, allow_redirects=False) as response:
        return response.status, await response.read()


def error_code(body: bytes) -> int | None:
    code = ET.fromstring(body).findtext("ErrorCode")
    return int(code) if code else None


async def send(http: aiohttp.ClientSession, sim: FlexSimulator, token: str = "T") -> str:
    status, body = await call(http, sim, SEND, t=token, q="42", v="3")
    assert status == 200
    reference = ET.fromstring(body).findtext("ReferenceCode")
    assert reference, body
    return reference


async def test_send_request_answers_like_ib(
    http: aiohttp.ClientSession, sim: FlexSimulator
) -> None:
    status, body = await call(http, sim, SEND, t="T", q="42", v="3")
    root = ET.fromstring(body)
    assert (status, root.tag, root.findtext("Status")) == (200, "FlexStatementResponse", "Success")
    assert root.findtext("ReferenceCode", "").isdigit()
    assert root.findtext("Url") == sim.base_url + GET


async def test_generation_time_answers_1019_as_warn_until_ready(
    http: aiohttp.ClientSession, sim: FlexSimulator, clock: FakeClock
) -> None:
    sim.add_query("42", generation_seconds=5)
    reference = await send(http, sim)
    clock.advance(4.9)
    _, body = await call(http, sim, GET, t="T", q=reference, v="3")
    assert error_code(body) == 1019
    assert ET.fromstring(body).findtext("Status") == "Warn"
    assert ET.fromstring(body).findtext("ErrorMessage") == IB_MESSAGES[1019]
    clock.advance(1.0)
    _, body = await call(http, sim, GET, t="T", q=reference, v="3")
    assert FlexStatement(body).account_id == "U1234567"


async def test_one_request_per_second_per_token(
    http: aiohttp.ClientSession, sim: FlexSimulator, clock: FakeClock
) -> None:
    await send(http, sim, "A")
    clock.advance(0.99)
    _, body = await call(http, sim, SEND, t="A", q="42", v="3")
    assert error_code(body) == 1018
    await send(http, sim, "B")  # another token has its own limits
    clock.advance(1.0)
    await send(http, sim, "A")


async def test_ten_requests_per_minute_per_token(
    http: aiohttp.ClientSession, sim: FlexSimulator, clock: FakeClock
) -> None:
    for _ in range(10):
        await send(http, sim)
        clock.advance(1.0)
    _, body = await call(http, sim, SEND, t="T", q="42", v="3")
    assert error_code(body) == 1018  # the 11th within 60 s
    clock.advance(50.0)  # the first request has left the window, but so has not the 1018
    _, body = await call(http, sim, SEND, t="T", q="42", v="3")
    assert error_code(body) == 1018  # refused requests count too: IB sees every one
    clock.advance(60.0)
    await send(http, sim)


async def test_penalty_box_after_a_violation(http: aiohttp.ClientSession, clock: FakeClock) -> None:
    async with FlexSimulator(clock=clock, penalty_seconds=600) as sim:
        await send(http, sim)
        _, body = await call(http, sim, SEND, t="T", q="42", v="3")
        assert error_code(body) == 1018
        clock.advance(300.0)
        _, body = await call(http, sim, SEND, t="T", q="42", v="3")
        assert error_code(body) == 1018
        clock.advance(601.0)
        await send(http, sim)


async def test_limits_can_be_switched_off(http: aiohttp.ClientSession, clock: FakeClock) -> None:
    async with FlexSimulator(clock=clock, enforce_limits=False) as sim:
        for _ in range(12):
            await send(http, sim)


async def test_reference_codes_expire_and_belong_to_their_token(
    http: aiohttp.ClientSession, sim: FlexSimulator, clock: FakeClock
) -> None:
    reference = await send(http, sim)
    clock.advance(2.0)
    _, body = await call(http, sim, GET, t="other", q=reference, v="3")
    assert error_code(body) == 1017
    clock.advance(2.0)
    _, body = await call(http, sim, GET, t="T", q="12345", v="3")
    assert error_code(body) == 1017
    clock.advance(sim.reference_ttl)
    _, body = await call(http, sim, GET, t="T", q=reference, v="3")
    assert error_code(body) == 1017


async def test_missing_parameters_are_1020(http: aiohttp.ClientSession, sim: FlexSimulator) -> None:
    _, body = await call(http, sim, SEND, t="T", v="3")
    assert error_code(body) == 1020


async def test_repeated_terminal_failures_lock_the_token_out(
    http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with FlexSimulator(clock=clock, lockout_after=3) as sim:
        for _ in range(3):
            _, body = await call(http, sim, SEND, t="T", q="invalid-query", v="3")
            assert error_code(body) == 1014
            clock.advance(2.0)
        _, body = await call(http, sim, SEND, t="T", q="42", v="3")
        assert error_code(body) == 1025


async def test_each_fault_does_what_it_says(
    http: aiohttp.ClientSession, sim: FlexSimulator, clock: FakeClock
) -> None:
    async def poll() -> tuple[int, bytes]:
        clock.advance(2.0)
        return await call(http, sim, GET, t="T", q=reference, v="3")

    reference = await send(http, sim)
    sim.fail("42", Fault.http_status(502), Fault.html(), Fault.empty(), Fault.ib_code(1009))
    status, body = await poll()
    assert status == 502
    assert b"temporarily unavailable" in body
    status, body = await poll()
    assert status == 200
    assert body.startswith(b"<!DOCTYPE html>")
    assert await poll() == (200, b"")
    _, body = await poll()
    assert error_code(body) == 1009
    sim.fail("42", Fault.redirect("https://flex.example.net/x"))
    clock.advance(2.0)
    async with http.get(
        sim.base_url + GET, params={"t": "T", "q": reference, "v": "3"}, allow_redirects=False
    ) as response:
        assert (response.status, response.headers["Location"]) == (
            302,
            "https://flex.example.net/x",
        )
    sim.fail("42", Fault.drop())
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await poll()
    sim.fail("42", Fault.truncated())
    with pytest.raises(aiohttp.ClientPayloadError):
        await poll()
    sim.fail("42", Fault.hang())
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(poll(), 0.2)
    status, body = await poll()
    assert FlexStatement(body).account_id == "U1234567"


async def test_foreign_url_fault_applies_to_send_request(
    http: aiohttp.ClientSession, sim: FlexSimulator
) -> None:
    sim.fail("42", Fault.foreign_url("https://flex.example.net/GetStatement"))
    _, body = await call(http, sim, SEND, t="T", q="42", v="3")
    assert ET.fromstring(body).findtext("Url") == "https://flex.example.net/GetStatement"


async def test_faults_can_be_scripted_per_step_and_repeated(
    http: aiohttp.ClientSession, sim: FlexSimulator, clock: FakeClock
) -> None:
    sim.fail("42", Fault.ib_code(1001), Fault.ib_code(1009), times=2, step=Step.SEND_REQUEST)
    codes = []
    for _ in range(5):
        _, body = await call(http, sim, SEND, t="T", q="42", v="3")
        codes.append(error_code(body))
        clock.advance(2.0)
    assert codes == [1001, 1009, 1001, 1009, None]


async def test_every_request_is_recorded(sim: FlexSimulator, clock: FakeClock) -> None:
    sim.add_query("42", generation_seconds=1.5)
    client = FlexClient(token="T0K", query_id="42", base_url=sim.base_url, clock=clock)
    start = clock.now()
    await client.fetch()
    records = sim.requests
    assert [(r.step, r.answer) for r in records] == [
        ("SendRequest", "reference"),
        ("GetStatement", "1019"),
        ("GetStatement", "statement"),
    ]
    assert {r.token_fingerprint for r in records} == {fingerprint("T0K")}
    assert [r.at - start for r in records] == pytest.approx([0.0, 1.1, 2.2])
    assert records[0].params == {"q": "42", "v": "3"}
    assert records[0].user_agent.startswith("ibkr-flex-client/")
    assert sim.answers(Step.GET_STATEMENT) == ["1019", "statement"]


async def test_content_is_configurable_per_query(sim: FlexSimulator, clock: FakeClock) -> None:
    document = build_statement(
        accounts=["U1", "U2", "U3"],
        sections={"Trades": ("Trade", [{"symbol": "X", "quantity": "1"}])},
        date_format="dd/MM/yyyy",
        report_type="TCF",
    )
    sim.add_query("7", statement=document)
    calls: list[int] = []

    def factory() -> bytes:
        calls.append(1)
        return build_statement(accounts=["U9"])

    sim.add_query("8", statement=factory)
    first = await FlexClient(token="T", query_id="7", base_url=sim.base_url, clock=clock).fetch()
    assert first.xml == document
    assert first.account_id == "U1,U2,U3"
    assert b'fromDate="02/03/2026"' in document
    clock.advance(61.0)
    second = await FlexClient(token="T", query_id="8", base_url=sim.base_url, clock=clock).fetch()
    assert (second.account_id, calls) == ("U9", [1])


def test_serve_in_thread_for_synchronous_callers(clock: FakeClock) -> None:
    with FlexSimulator(clock=clock, generation_seconds=3).serve_in_thread() as sim:
        client = FlexClient(token="T", query_id="1", base_url=sim.base_url, clock=clock)
        statement = asyncio.run(client.fetch())
        assert statement.account_id == "U1234567"
        assert sim.answers()[-1] == "statement"


def test_hang_is_released_when_the_threaded_simulator_closes() -> None:
    with FlexSimulator().serve_in_thread() as sim:
        sim.fail("1", Fault.hang(), step=Step.SEND_REQUEST)
        client = FlexClient(
            token="T", query_id="1", base_url=sim.base_url, timeout=0.1, max_retries=1
        )
        with pytest.raises(Exception, match="no progress"):
            asyncio.run(client.fetch())
    # Leaving the block did not hang on the pending request.


async def test_pytest_plugin_fixture_is_registered(
    flex_simulator: FlexSimulator, flex_clock: FakeClock
) -> None:
    flex_simulator.add_query("5", generation_seconds=20)
    client = FlexClient(token="T", query_id="5", base_url=flex_simulator.base_url, clock=flex_clock)
    statement = await client.fetch()
    assert statement.account_id == "U1234567"
    assert flex_simulator.answers().count("1019") >= 5
