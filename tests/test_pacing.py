"""The per-token pacer: IB's windows, sharing, cancellation, 1018 and 1025, on virtual time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from ibkr_flex_client import EventKind, FetchEvent, FlexClient, LockedOutError, Step
from ibkr_flex_client.pacing import TokenPacer, pacer_for
from ibkr_flex_client.pacing.slots import (
    GRACE,
    MAX_AWAITING,
    Granted,
    Later,
    Locked,
    Rank,
    TokenState,
    Why,
    expires_in,
    full_minute,
    lock,
    release,
    slow_down,
    take,
    unlock,
)
from ibkr_flex_client.retry import MAX_BACKOFF
from ibkr_flex_client.testing import FakeClock, Fault, FlexSimulator

MakeClient = Callable[..., FlexClient]


def assert_within_ibs_limits(times: Sequence[float]) -> None:
    """No two requests within 1 s, never more than 10 in any 60 s (IB's rules, exactly)."""
    ordered = sorted(times)
    for i, t in enumerate(ordered):
        if i:
            assert t - ordered[i - 1] >= 1.0, ordered
        assert sum(1 for s in ordered[: i + 1] if s > t - 60.0) <= 10, ordered


# --- the pure rules (slots.py) ------------------------------------------------------------


def grant_times(state: TokenState, start: float, count: int, rank: Rank = Rank.SEND) -> list[float]:
    """Ask again whenever told to, as a lone waiter does; the times requests were granted."""
    now, granted = start, list[float]()
    while len(granted) < count:
        decision = take(state, now, who="h:1/a", rank=rank)
        if isinstance(decision, Granted):
            granted.append(now)
        else:
            assert isinstance(decision, Later)
            now = decision.at
    return granted


def test_slots_are_spaced_and_windowed() -> None:
    slots = grant_times(TokenState(), 100.0, 12)
    assert slots[:10] == pytest.approx([100.0 + 1.1 * i for i in range(10)])
    assert slots[10] == pytest.approx(161.0)  # the 11th waits for the 1st to leave 61 s
    assert slots[11] == pytest.approx(162.1)
    assert_within_ibs_limits(slots)


def test_a_block_delays_every_later_slot() -> None:
    state = TokenState()
    grant_times(state, 0.0, 1)
    slow_down(state, 0.0, seconds=30.0)
    assert take(state, 1.0, who="h:1/a", rank=Rank.SEND) == Later(30.0, Why.THROTTLED)
    assert grant_times(state, 30.0, 2) == pytest.approx([30.0, 31.1])


def test_old_slots_are_forgotten() -> None:
    state = TokenState()
    grant_times(state, 0.0, 10)
    assert grant_times(state, 500.0, 1) == [500.0]
    assert len(state.sent) == 1


def test_polls_go_before_sends_of_another_waiter() -> None:
    state = TokenState()
    grant_times(state, 0.0, 1)
    # Both come back at 1.1; the poll's waiter asked later but outranks the send.
    assert isinstance(take(state, 0.5, who="h:1/send", rank=Rank.SEND), Later)
    assert isinstance(take(state, 0.6, who="h:2/poll", rank=Rank.POLL), Later)
    assert take(state, 1.1, who="h:1/send", rank=Rank.SEND, waited=0.6) == Later(
        1.1 + 1.1, Why.OTHERS
    )
    assert take(state, 1.1, who="h:2/poll", rank=Rank.POLL) == Granted()
    assert take(state, 2.2, who="h:1/send", rank=Rank.SEND, waited=1.7) == Granted()


def test_a_waiter_that_does_not_come_back_loses_its_place() -> None:
    state = TokenState()
    grant_times(state, 0.0, 1)
    assert isinstance(take(state, 0.1, who="h:2/gone", rank=Rank.FIRST_POLL), Later)
    # At 1.1 the poll's waiter should come; it never does. The send waits GRACE at most.
    decision = take(state, 1.1, who="h:1/send", rank=Rank.SEND)
    assert isinstance(decision, Later)
    assert decision.why is Why.OTHERS
    assert take(state, 1.1 + GRACE + 0.01, who="h:1/send", rank=Rank.SEND) == Granted()


def test_references_in_flight_are_bounded() -> None:
    state = TokenState()
    now = 0.0
    for n in range(MAX_AWAITING):
        assert take(state, now, who="h:1/a", rank=Rank.SEND, seat=f"f{n}", seat_ttl=900) == (
            Granted()
        )
        now += 1.1
    # Two references wait for their first poll: a third SendRequest must wait for them.
    refused = take(state, now, who="h:1/a", rank=Rank.SEND, seat="f9", seat_ttl=900)
    assert isinstance(refused, Later)
    assert refused.why is Why.REFERENCES
    # A re-send by a fetch already holding a reference is not a new one.
    assert take(state, now, who="h:1/a", rank=Rank.SEND, seat="f0", seat_ttl=900) == Granted()
    now += 1.1
    assert take(state, now, who="h:1/a", rank=Rank.FIRST_POLL, seat="f0", seat_ttl=900) == (
        Granted()
    )
    now += 1.1
    assert take(state, now, who="h:1/a", rank=Rank.SEND, seat="f9", seat_ttl=900) == Granted()
    assert len(state.seats) == 3
    release(state, now, seat="f0")
    assert set(state.seats) == {"f1", "f9"}


def test_a_dead_fetchs_reference_expires() -> None:
    state = TokenState()
    take(state, 0.0, who="h:1/a", rank=Rank.SEND, seat="f0", seat_ttl=100)
    take(state, 1.1, who="h:1/a", rank=Rank.SEND, seat="f1", seat_ttl=100)
    refused = take(state, 2.2, who="h:1/a", rank=Rank.SEND, seat="f2", seat_ttl=100)
    assert refused == Later(100.0, Why.REFERENCES)
    assert take(state, 100.0, who="h:1/a", rank=Rank.SEND, seat="f2", seat_ttl=100) == Granted()


def test_a_lock_out_refuses_everything_until_it_ends_or_is_cleared() -> None:
    state = TokenState()
    assert lock(state, 10.0, seconds=3600.0, message="IB 1025") == 3610.0
    assert take(state, 11.0, who="h:1/a", rank=Rank.POLL) == Locked(3610.0, "IB 1025")
    assert take(state, 3610.0, who="h:1/a", rank=Rank.POLL) == Granted()
    lock(state, 4000.0, seconds=3600.0, message="IB 1025")
    assert unlock(state, 4001.0) is True
    assert unlock(state, 4001.0) is False
    assert take(state, 4002.0, who="h:1/a", rank=Rank.POLL) == Granted()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"[]",
        b'{"v": 2}',
        b'{"v": 1}',
        b'{"v":1,"sent":["x"],"blocked_until":null,"locked_until":null,"locked_message":"",'
        b'"seats":{},"demands":{}}',
        b'{"v":1,"sent":[1e999],"blocked_until":null,"locked_until":null,"locked_message":"",'
        b'"seats":{},"demands":{}}',
        b'{"v":1,"sent":[],"blocked_until":null,"locked_until":null,"locked_message":"",'
        b'"seats":{"a":[1,2]},"demands":{}}',
        b"\xff\xfe" + b"\x00" * 10,
        b"[" * 100_000,
    ],
)
def test_a_corrupt_state_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="corrupt token state"):
        TokenState.from_json(data)


def test_a_state_survives_its_json() -> None:
    state = TokenState()
    take(state, 5.0, who="h:1/a", rank=Rank.SEND, seat="f0", seat_ttl=100)
    take(state, 5.5, who="h:1/b", rank=Rank.POLL)
    slow_down(state, 5.5, seconds=20.0)
    lock(state, 5.5, seconds=60.0, message="IB 1025: locked")
    assert TokenState.from_json(state.to_json()) == state


def test_full_minute_means_a_minute_of_waiting() -> None:
    state = full_minute(50.0)
    decision = take(state, 50.0, who="h:1/a", rank=Rank.FIRST_POLL)
    assert decision == Later(50.0 + 61.0, Why.PACING)


def test_times_from_a_clock_put_back_are_pulled_in() -> None:
    # Written by a clock an hour ahead of ours: never a wait longer than the rules give.
    state = TokenState(sent=[3600.0 + i for i in range(10)], blocked_until=9000.0)
    decision = take(state, 0.0, who="h:1/a", rank=Rank.SEND)
    assert isinstance(decision, Later)
    assert decision.at <= 0.0 + MAX_BACKOFF


def test_the_state_expires_when_nothing_constrains() -> None:
    state = TokenState()
    assert expires_in(state, 10.0) == 0.0
    grant_times(state, 10.0, 1)
    assert expires_in(state, 10.0) == pytest.approx(61.0)


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
    assert pacer_for("shared", clock, "machine") is one._pacer  # virtual time: this process
    assert pacer_for("shared", FakeClock()) is not one._pacer  # another clock, another world


# --- cancellation -------------------------------------------------------------------------


async def test_cancelling_a_waiting_request_takes_nothing(clock: FakeClock) -> None:
    pacer = TokenPacer(clock)
    await pacer.acquire()  # a request at t0
    waiting = asyncio.ensure_future(pacer.acquire())  # would go at t0 + 1.1
    await asyncio.sleep(0)
    assert len(pacer) == 1
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert len(pacer) == 0  # it left the line
    start = clock.now()
    await pacer.acquire()  # the pacer still works: the next request goes 1.1 s after t0
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
