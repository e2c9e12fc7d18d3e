"""The per-token pacer: IB's windows, sharing, cancellation, 1018 and 1025, on virtual time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from ibkr_flex_client import EventKind, FetchEvent, FlexClient, LockedOutError, Step
from ibkr_flex_client.pacing import SlotSchedule, TokenPacer, pacer_for
from ibkr_flex_client.testing import FakeClock, Fault, FlexSimulator

MakeClient = Callable[..., FlexClient]


def assert_within_ibs_limits(times: Sequence[float]) -> None:
    """No two requests within 1 s, never more than 10 in any 60 s (IB's rules, exactly)."""
    ordered = sorted(times)
    for i, t in enumerate(ordered):
        if i:
            assert t - ordered[i - 1] >= 1.0, ordered
        assert sum(1 for s in ordered[: i + 1] if s > t - 60.0) <= 10, ordered


# --- the pure schedule -------------------------------------------------------------------


def test_slots_are_spaced_and_windowed() -> None:
    schedule = SlotSchedule()
    slots = [schedule.reserve(now=100.0)[0] for _ in range(12)]
    assert slots[:10] == pytest.approx([100.0 + 1.1 * i for i in range(10)])
    assert slots[10] == pytest.approx(161.0)  # the 11th waits for the 1st to leave 61 s
    assert slots[11] == pytest.approx(162.1)
    assert_within_ibs_limits(slots)


def test_a_released_future_slot_is_reused() -> None:
    schedule = SlotSchedule()
    schedule.reserve(0.0)
    second = schedule.reserve(0.0)
    assert schedule.release(second, now=0.5) is True
    assert schedule.reserve(0.5)[0] == pytest.approx(1.1)  # the same time, free again


def test_a_slot_that_may_have_been_used_is_not_released() -> None:
    schedule = SlotSchedule()
    first = schedule.reserve(0.0)
    assert schedule.release(first, now=0.0) is False  # its time has come
    assert schedule.release((5.0, 999), now=0.0) is False  # never handed out
    assert len(schedule) == 1


def test_a_block_delays_every_later_slot() -> None:
    schedule = SlotSchedule()
    schedule.reserve(0.0)
    schedule.block(until=30.0)
    assert schedule.reserve(1.0)[0] == 30.0
    assert schedule.reserve(1.0)[0] == pytest.approx(31.1)


def test_old_slots_are_forgotten() -> None:
    schedule = SlotSchedule()
    for _ in range(10):
        schedule.reserve(0.0)
    assert schedule.reserve(500.0)[0] == 500.0
    assert len(schedule) == 1


# --- sharing across clients, over loopback, on virtual time ---------------------------------


async def test_four_clients_of_one_token_at_once_get_zero_1018(
    sim: FlexSimulator, make_client: MakeClient
) -> None:
    clients = [make_client(query_id=str(q)) for q in (101, 102, 103, 104)]
    statements = await asyncio.gather(*(c.fetch() for c in clients))
    assert len(statements) == 4
    assert "1018" not in sim.answers()
    assert_within_ibs_limits([r.at for r in sim.requests])


async def test_eight_clients_of_one_token_cross_the_minute_window(
    sim: FlexSimulator, make_client: MakeClient, clock: FakeClock
) -> None:
    start = clock.now()
    clients = [make_client(query_id=str(q)) for q in range(200, 208)]
    await asyncio.gather(*(c.fetch() for c in clients))
    assert "1018" not in sim.answers()
    assert len(sim.requests) >= 16
    assert_within_ibs_limits([r.at for r in sim.requests])
    assert clock.now() - start >= 60.0  # 16 requests cannot fit in IB's first minute


async def test_long_generations_on_one_token_stay_within_limits(
    sim: FlexSimulator, make_client: MakeClient
) -> None:
    sim.generation_seconds = 25.0
    clients = [make_client(query_id=str(q), max_retries=30) for q in (1, 2, 3)]
    await asyncio.gather(*(c.fetch() for c in clients))
    assert "1018" not in sim.answers()
    assert_within_ibs_limits([r.at for r in sim.requests])


async def test_different_tokens_do_not_wait_for_each_other(
    sim: FlexSimulator, make_client: MakeClient
) -> None:
    tokens = ["token-a", "token-b", "token-c"]
    await asyncio.gather(*(make_client(token=t).fetch() for t in tokens))
    sends = [r.at for r in sim.requests if r.step == "SendRequest"]
    assert max(sends) - min(sends) < 1.0  # all three sent in the same virtual second
    assert "1018" not in sim.answers()


async def test_clients_of_one_token_share_one_pacer(clock: FakeClock) -> None:
    one = FlexClient(token="shared", query_id="1", clock=clock)
    two = FlexClient(token="shared", query_id="2", clock=clock)
    other = FlexClient(token="other", query_id="1", clock=clock)
    assert one._pacer is two._pacer
    assert one._pacer is not other._pacer
    assert pacer_for("shared", clock) is one._pacer
    assert pacer_for("shared", FakeClock()) is not one._pacer  # another clock, another world


# --- cancellation -------------------------------------------------------------------------


async def test_cancelling_a_waiting_fetch_gives_back_its_slot_only(clock: FakeClock) -> None:
    pacer = TokenPacer(clock)
    await pacer.acquire()  # slot at t0
    waiting = asyncio.ensure_future(pacer.acquire())  # slot at t0 + 1.1
    await asyncio.sleep(0)
    assert len(pacer.schedule) == 2
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert len(pacer.schedule) == 1  # its own slot went back, the used one stayed
    start = clock.now()
    await pacer.acquire()  # the pacer still works, and reuses the freed time
    assert clock.now() - start == pytest.approx(1.1)


async def test_cancelling_a_fetch_leaves_the_others_and_the_pacer_working(
    sim: FlexSimulator, make_client: MakeClient
) -> None:
    sim.generation_seconds = 5.0
    polling = asyncio.Event()

    def on_event(event: FetchEvent) -> None:
        if event.step is Step.GET_STATEMENT and event.attempt >= 1:
            polling.set()  # mid-fetch: it has sent, polled, and waits again

    doomed = asyncio.ensure_future(make_client(query_id="9").fetch(on_event=on_event))
    others = [asyncio.ensure_future(make_client(query_id=str(q)).fetch()) for q in (10, 11)]
    await polling.wait()
    doomed.cancel()
    results = await asyncio.gather(*others)
    assert len(results) == 2
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await make_client(query_id="12").fetch()  # and afterwards
    assert "1018" not in sim.answers()
    assert_within_ibs_limits([r.at for r in sim.requests])


# --- 1018 and 1025 reach every fetch of the token -----------------------------------------


async def test_a_1018_slows_every_fetch_of_the_token_down(
    sim: FlexSimulator, make_client: MakeClient, clock: FakeClock
) -> None:
    # Another process used the token: IB refuses the first poll of query 1 with 1018.
    sim.generation_seconds = 3.0
    sim.fail("1", Fault.ib_code(1018))
    events: list[FetchEvent] = []
    first = asyncio.ensure_future(make_client(query_id="1", backoff_base=30.0).fetch())
    second = asyncio.ensure_future(make_client(query_id="2").fetch(on_event=events.append))
    await asyncio.gather(first, second)
    refused_at = next(r.at for r in sim.requests if r.answer == "1018")
    after = [r.at for r in sim.requests if r.at > refused_at]
    assert after
    assert min(after) >= refused_at + 30.0  # nobody of this token asked during the backoff
    assert any(e.kind is EventKind.WAIT and e.code == 1018 for e in events)


async def test_a_1025_stops_every_fetch_of_the_token(
    sim: FlexSimulator, make_client: MakeClient, clock: FakeClock
) -> None:
    sim.generation_seconds = 30.0  # the second fetch is still polling when the first fails
    sim.fail("1", Fault.ib_code(1025))
    first = asyncio.ensure_future(make_client(query_id="1").fetch())
    second = asyncio.ensure_future(make_client(query_id="2").fetch())
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert all(isinstance(r, LockedOutError) for r in results), results
    assert all(r.code == 1025 for r in results if isinstance(r, LockedOutError))
    locked_at = next(r.at for r in sim.requests if r.answer == "1025")
    assert [r for r in sim.requests if r.at > locked_at] == []
    count = len(sim.requests)
    with pytest.raises(LockedOutError):  # a new client of the token stops before asking
        await make_client(query_id="3").fetch()
    assert len(sim.requests) == count
    await make_client(token="another-token").fetch()  # other tokens are unaffected


async def test_lock_out_cuts_a_long_backoff_short(
    sim: FlexSimulator, make_client: MakeClient, clock: FakeClock
) -> None:
    sim.fail("1", Fault.ib_code(1009))  # query 1 will back off for 600 s
    sim.fail("2", Fault.ib_code(1025))
    start = clock.now()
    results = await asyncio.gather(
        make_client(query_id="1", backoff_base=600.0).fetch(),
        make_client(query_id="2").fetch(),
        return_exceptions=True,
    )
    assert all(isinstance(r, LockedOutError) for r in results), results
    assert clock.now() - start < 600.0


async def test_pacer_waits_are_reported_as_events(
    sim: FlexSimulator, make_client: MakeClient
) -> None:
    events: list[FetchEvent] = []
    await asyncio.gather(
        make_client(query_id="1").fetch(),
        make_client(query_id="2").fetch(on_event=events.append),
    )
    pacing = [e for e in events if e.kind is EventKind.WAIT and e.detail == "pacing"]
    assert pacing
    assert pacing[0].step is Step.SEND_REQUEST
    assert pacing[0].wait == pytest.approx(1.1)
