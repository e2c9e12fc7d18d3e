"""Progress events: what a callback and the log see during a fetch."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from ibkr_flex_client import EventKind, FetchEvent, FlexClient, Step
from ibkr_flex_client.testing import FakeClock, Fault, FlexSimulator

MakeClient = Callable[..., FlexClient]


async def test_events_follow_the_fetch(
    make_client: MakeClient, sim: FlexSimulator, clock: FakeClock
) -> None:
    sim.add_query("42", generation_seconds=1.5)
    events: list[FetchEvent] = []
    await make_client().fetch(on_event=events.append)
    assert [(e.kind, e.step, e.attempt, e.wait, e.code) for e in events] == [
        (EventKind.REQUEST, Step.SEND_REQUEST, 1, None, None),
        (EventKind.WAIT, Step.GET_STATEMENT, 0, 1.1, None),
        (EventKind.REQUEST, Step.GET_STATEMENT, 1, None, None),
        (EventKind.WAIT, Step.GET_STATEMENT, 1, 1.1, 1019),
        (EventKind.REQUEST, Step.GET_STATEMENT, 2, None, None),
        (EventKind.DONE, Step.GET_STATEMENT, 2, None, None),
    ]
    assert [e.elapsed for e in events] == pytest.approx([0.0, 0.0, 1.1, 1.1, 2.2, 2.2])
    assert events[-1].size is not None
    assert events[-1].size > 1000
    assert all(e.query_id == "42" for e in events)
    assert "1019" in (events[3].detail or "")


async def test_each_wait_and_attempt_is_logged_with_its_code(
    make_client: MakeClient, sim: FlexSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.fail("42", Fault.ib_code(1009))
    with caplog.at_level(logging.DEBUG, logger="ibkr_flex_client"):
        await make_client().fetch()
    lines = [r.getMessage() for r in caplog.records if r.name == "ibkr_flex_client"]
    assert lines[0].startswith("query 42 SendRequest #1: GET ")
    assert "query 42 GetStatement: waiting 10.0 s before #2 (IB 1009: " in lines[3]
    assert lines[-1].startswith("query 42 GetStatement #2: statement received (")


async def test_a_failing_callback_does_not_abort_the_fetch(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: FetchEvent) -> None:
        raise RuntimeError("display went away")

    statement = await make_client().fetch(on_event=broken)
    assert statement.account_id == "U1234567"
    assert any("on_event callback raised" in r.getMessage() for r in caplog.records)
