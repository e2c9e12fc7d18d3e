"""The Redis budget (``pacing="redis://…"``) against a real Redis server (tests/redis_server.py).

Time here is real: the backend's clock is the server's ``TIME``. Each test uses its own key
(a fresh digest or token), so tests sharing the session's server never see each other.
"""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
import redis

from ibkr_flex_client import FlexClient, LockedOutError, PacingError, unlock
from ibkr_flex_client._clock import SYSTEM_CLOCK
from ibkr_flex_client.pacing import TokenPacer, pacer_for, token_digest
from ibkr_flex_client.pacing import redis_backend as module
from ibkr_flex_client.pacing.redis_backend import KEY_PREFIX, RedisBackend
from ibkr_flex_client.pacing.slots import (
    GRACE,
    Decision,
    Granted,
    Later,
    Locked,
    Rank,
    TokenState,
    Why,
    lock,
    take,
)
from ibkr_flex_client.retry import MINUTE, PER_MINUTE, SECOND
from ibkr_flex_client.testing import FlexSimulator

from .redis_server import free_port
from .test_pacing import assert_within_ibs_limits

PASSWORD = "s3cret-Redis-pw"  # hunted for in every message


@pytest.fixture
def digest() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def backend(redis_url: str, digest: str) -> RedisBackend:
    return RedisBackend(redis_url, digest)


@pytest.fixture
def server(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client of the test server, to look at and tamper with keys."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def taker(who: str = "h:1/a") -> Callable[[TokenState, float], Decision]:
    return functools.partial(take, who=who, rank=Rank.SEND)


# --- one change at a time -------------------------------------------------------------------


async def test_take_grant_and_later_round_trip(backend: RedisBackend, server: redis.Redis) -> None:
    before = time.time()
    first, now = await backend.apply(taker())
    assert first == Granted()
    assert abs(now - before) < 5  # the server's clock, which is this machine's here
    second, then = await backend.apply(taker())
    assert isinstance(second, Later)
    assert second.why is Why.PACING
    assert then >= now
    assert second.at == pytest.approx(now + SECOND, abs=1e-3)  # IB's second, and a margin
    stored = TokenState.from_json(server.get(backend.key))  # type: ignore[arg-type]
    assert stored.sent == [now]


async def test_results_and_changes_of_any_change_come_back(backend: RedisBackend) -> None:
    until, now = await backend.apply(functools.partial(lock, seconds=30.0, message="1025"))
    assert until == pytest.approx(now + 30.0, abs=1e-3)
    decision, _ = await backend.apply(taker())
    assert decision == Locked(until, "1025")


async def test_the_key_expires_when_nothing_constrains(
    backend: RedisBackend, server: redis.Redis
) -> None:
    await backend.apply(taker())
    ttl = server.pttl(backend.key)
    assert isinstance(ttl, int)
    # 61 s after the last request (IB's minute) plus the margin, never forever (-1).
    assert (
        (MINUTE + module.EXPIRY_MARGIN - 2) * 1000 < ttl <= (MINUTE + module.EXPIRY_MARGIN) * 1000
    )
    await backend.apply(functools.partial(lock, seconds=3600.0, message="1025"))
    ttl = server.pttl(backend.key)
    assert isinstance(ttl, int)
    assert 3600_000 < ttl <= (3600 + module.EXPIRY_MARGIN) * 1000


async def test_keys_are_named_by_the_digest(redis_url: str, server: redis.Redis) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    pacer = pacer_for(token, SYSTEM_CLOCK, redis_url)
    await pacer.acquire()
    keys = {k.decode() for k in server.scan_iter(f"{KEY_PREFIX}*")}
    assert f"{KEY_PREFIX}{token_digest(token)}" in keys
    assert not any(token in k for k in keys)


@pytest.mark.parametrize("value", [b"garbage", b"", b'{"v":2}', b"[" * 100_000, b"x" * 300_000])
async def test_a_corrupt_value_means_a_full_minute_and_is_replaced(
    backend: RedisBackend, server: redis.Redis, value: bytes
) -> None:
    server.set(backend.key, value)
    decision, now = await backend.apply(taker())
    assert isinstance(decision, Later)
    assert decision.at == pytest.approx(now + MINUTE, abs=1e-3)  # never a burst
    stored = TokenState.from_json(server.get(backend.key))  # type: ignore[arg-type]
    assert stored.sent == [now] * PER_MINUTE


async def test_a_value_of_another_type_means_a_full_minute_and_is_replaced(
    backend: RedisBackend, server: redis.Redis
) -> None:
    server.rpush(backend.key, "a", "b")
    decision, now = await backend.apply(taker())
    assert isinstance(decision, Later)
    assert decision.at == pytest.approx(now + MINUTE, abs=1e-3)
    assert server.type(backend.key) == b"string"
    TokenState.from_json(server.get(backend.key))  # type: ignore[arg-type]


async def test_a_flushed_script_cache_is_reloaded(
    backend: RedisBackend, server: redis.Redis
) -> None:
    server.script_flush()
    decision, _ = await backend.apply(taker())
    assert decision == Granted()


# --- atomicity ------------------------------------------------------------------------------


async def test_a_write_between_read_and_write_is_never_overwritten(
    backend: RedisBackend, server: redis.Redis
) -> None:
    """The compare-and-set: another worker's request, counted between our read and our
    write, makes us decide again on the state that holds it."""
    seen: list[int] = []

    def meddling_take(state: TokenState, now: float) -> Decision:
        seen.append(len(state.sent))
        if len(seen) == 1:
            other = TokenState(sent=[now])  # another worker took the slot meanwhile
            server.set(backend.key, other.to_json())
        return take(state, now, who="h:1/a", rank=Rank.SEND)

    decision, _ = await backend.apply(meddling_take)
    assert seen == [0, 1]
    assert isinstance(decision, Later)  # the slot went to the other worker
    stored = TokenState.from_json(server.get(backend.key))  # type: ignore[arg-type]
    assert len(stored.sent) == 1


async def test_endless_interference_is_a_clear_error(
    backend: RedisBackend, server: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(module, "TRIES", 5)
    calls = 0

    def always_interfered(state: TokenState, now: float) -> None:
        nonlocal calls
        calls += 1
        server.set(backend.key, TokenState(sent=[now - calls]).to_json())

    with pytest.raises(PacingError, match="changed by other workers 5 times"):
        await backend.apply(always_interfered)
    assert calls == 5


# A worker in another process: asks for slots from START to END (wall-clock seconds) as fast
# as it is told to, and prints the server times of the slots it was granted.
_WORKER = """
import asyncio, functools, json, sys, time
from ibkr_flex_client.pacing.redis_backend import RedisBackend
from ibkr_flex_client.pacing.slots import Granted, Rank, take

url, digest, start, end, who = sys.argv[1:6]

async def main():
    backend = RedisBackend(url, digest)
    granted = []
    await asyncio.sleep(max(float(start) - time.time(), 0))
    while time.time() < float(end):
        decision, now = await backend.apply(functools.partial(take, who=who, rank=Rank.SEND))
        if isinstance(decision, Granted):
            granted.append(now)
        await asyncio.sleep(0.002)
    print(json.dumps(granted))

asyncio.run(main())
"""


async def hammer(backend: RedisBackend, who: str, start: float, end: float) -> list[float]:
    """Ask for slots from ``start`` to ``end`` (wall clock) without pause; granted times."""
    granted = []
    await asyncio.sleep(max(start - time.time(), 0))
    while time.time() < end:
        decision, now = await backend.apply(taker(who))
        if isinstance(decision, Granted):
            granted.append(now)
        await asyncio.sleep(0.002)
    return granted


async def contend(url: str, digest: str, seconds: float) -> list[float]:
    """Six tasks here and two other processes asking for one token's slots at once for
    ``seconds``: every slot granted, in server time."""
    start = time.time() + 1.0  # time for the other processes to import the library
    end = start + seconds
    workers = [
        subprocess.Popen(  # noqa: S603, ASYNC220 - our own interpreter; a test
            [sys.executable, "-c", _WORKER, url, digest, str(start), str(end), f"p:{n}/w"],
            stdout=subprocess.PIPE,
        )
        for n in range(2)
    ]
    backend = RedisBackend(url, digest)
    try:
        mine = await asyncio.gather(*(hammer(backend, f"h:1/t{n}", start, end) for n in range(6)))
    finally:
        outputs = [worker.communicate(timeout=20)[0] for worker in workers]
    assert all(worker.returncode == 0 for worker in workers)
    theirs = [json.loads(output) for output in outputs]
    return sorted(t for times in [*mine, *theirs] for t in times)


async def test_contending_tasks_and_processes_never_share_a_second(
    redis_url: str, digest: str
) -> None:
    granted = await contend(redis_url, digest, 2.5)
    assert 2 <= len(granted) <= 3  # at 0, 1.1 and perhaps 2.2 s
    assert_within_ibs_limits(granted)


async def test_contending_tasks_and_processes_never_overfill_the_minute(
    redis_url: str, digest: str, server: redis.Redis
) -> None:
    """Nine requests went within the last minute: of everyone asking at once, exactly one
    gets the tenth slot; the eleventh waits for the first to leave the minute."""
    seconds, microseconds = server.time()
    now = seconds + microseconds / 1e6
    earlier = [now - 50 + 1.1 * i for i in range(PER_MINUTE - 1)]
    server.set(f"{KEY_PREFIX}{digest}", TokenState(sent=earlier).to_json(), px=120_000)
    granted = await contend(redis_url, digest, 1.5)
    assert len(granted) == 1
    assert_within_ibs_limits(earlier + granted)


def test_one_backend_serves_several_event_loops_and_threads(redis_url: str, digest: str) -> None:
    """A pacer outlives event loops (the blocking helpers run one per call) and may be
    shared by threads: nothing of one loop is used on another, nothing is left open."""
    backend = RedisBackend(redis_url, digest)
    results: list[object] = []

    def run() -> None:
        results.append(asyncio.run(backend.apply(taker(f"h:1/{threading.get_ident()}")))[0])

    run()
    run()
    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(Granted()) == 1
    assert len(results) == 6


# --- sharing between workers ----------------------------------------------------------------


async def test_a_lock_out_in_one_worker_stops_another_and_unlock_clears_it(
    redis_url: str,
) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    clock = SYSTEM_CLOCK
    one = TokenPacer(clock, RedisBackend(redis_url, token_digest(token)), owner="one:1")
    other = TokenPacer(clock, RedisBackend(redis_url, token_digest(token)), owner="two:2")
    await one.lock_out(LockedOutError("IB said 1025", code=1025), 600.0)
    started = time.monotonic()
    with pytest.raises(LockedOutError, match=r"the Redis server redis://127\.0\.0\.1") as caught:
        await other.acquire()
    assert time.monotonic() - started < 1.0
    assert PASSWORD not in str(caught.value)
    assert await unlock(token, pacing=redis_url)
    await other.acquire()


async def test_a_waiter_of_another_worker_is_served_in_turn(redis_url: str, digest: str) -> None:
    """Two pacers (two workers) of one token: the second waits for the slot the first took,
    no longer than IB's second plus a recheck."""
    clock = SYSTEM_CLOCK
    first = TokenPacer(clock, RedisBackend(redis_url, digest), owner="one:1")
    second = TokenPacer(clock, RedisBackend(redis_url, digest), owner="two:2")
    started = time.monotonic()
    await first.acquire()
    await second.acquire()
    assert 1.0 <= time.monotonic() - started < 1.1 + GRACE


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"redis://user:{PASSWORD}@127.0.0.1:{{port}}/3",
        f"redis://127.0.0.1:{{port}}/3?password={PASSWORD}",
    ],
)
async def test_an_unreachable_server_is_a_clear_error_at_once(digest: str, url: str) -> None:
    port = free_port()  # nothing listens there
    backend = RedisBackend(url.format(port=port), digest)
    assert backend.describe() == f"the Redis server redis://127.0.0.1:{port}/3"
    assert PASSWORD not in repr(backend)
    started = time.monotonic()
    with pytest.raises(PacingError) as caught:
        await backend.apply(taker())
    assert time.monotonic() - started < 6.0
    message = str(caught.value)
    assert f"redis://127.0.0.1:{port}/3" in message
    assert "no request was sent" in message
    assert PASSWORD not in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


async def test_a_wrong_password_is_a_clear_error(redis_url: str, digest: str) -> None:
    parts = urlsplit(redis_url)
    backend = RedisBackend(f"redis://:{PASSWORD}@{parts.netloc}{parts.path}", digest)
    with pytest.raises(PacingError, match="cannot use the Redis server") as caught:
        await backend.apply(taker())
    assert PASSWORD not in str(caught.value)


async def test_tls_to_a_plain_server_is_a_clear_error(redis_url: str, digest: str) -> None:
    backend = RedisBackend(redis_url.replace("redis://", "rediss://"), digest, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(PacingError, match=r"rediss://127\.0\.0\.1"):
        await backend.apply(taker())
    assert time.monotonic() - started < 6.0


async def test_a_server_that_never_answers_is_a_clear_error_in_time(digest: str) -> None:
    """A server that accepts the connection and then says nothing: the read times out."""
    held: list[asyncio.StreamWriter] = []

    async def say_nothing(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    silent = await asyncio.start_server(say_nothing, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    backend = RedisBackend(f"redis://127.0.0.1:{port}/0", digest, timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(PacingError, match="Timeout"):
            await backend.apply(taker())
    finally:
        for writer in held:
            writer.close()
        silent.close()
        await silent.wait_closed()
    assert time.monotonic() - started < 3.0


def test_without_the_redis_package_the_setting_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redis_url = "redis://127.0.0.1:6379/0"
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    expected = "needs the redis package: pip install 'ibkr-flex-client\\[redis\\]'"
    with pytest.raises(ValueError, match=expected):
        RedisBackend(redis_url, "d" * 32)
    with pytest.raises(ValueError, match=expected) as caught:
        FlexClient(token=f"tok-{uuid.uuid4().hex}", query_id="1", pacing=redis_url)
    assert "tok-" not in str(caught.value)


# --- a client through Redis, against the simulator, on real time ----------------------------


async def test_clients_sharing_a_token_through_redis_draw_no_1018(redis_url: str) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    async with FlexSimulator(generation_seconds=0.2) as sim:
        clients = [
            FlexClient(token=token, query_id=str(q), base_url=sim.base_url, pacing=redis_url)
            for q in (1, 2)
        ]
        statements = await asyncio.gather(*(c.fetch() for c in clients))
    assert len(statements) == 2
    assert "1018" not in sim.answers()
    assert_within_ibs_limits([r.at for r in sim.requests])


_CLIENT = """
import asyncio, sys
from ibkr_flex_client import FlexClient

url, token, base_url = sys.argv[1:4]

async def main():
    clients = [
        FlexClient(token=token, query_id=str(q), base_url=base_url, pacing=url) for q in (1, 2)
    ]
    await asyncio.gather(*(c.fetch() for c in clients))

asyncio.run(main())
"""


@pytest.mark.realtime
def test_two_processes_sharing_a_token_through_redis_draw_no_1018(redis_url: str) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    with FlexSimulator(generation_seconds=0.5).serve_in_thread() as sim:
        workers = [
            subprocess.Popen(  # noqa: S603 - our own interpreter; a test
                [sys.executable, "-c", _CLIENT, redis_url, token, sim.base_url]
            )
            for _ in range(2)
        ]
        assert [worker.wait(timeout=60) for worker in workers] == [0, 0]
        answers = sim.answers()
        times = [r.at for r in sim.requests]
    assert "1018" not in answers
    assert len(times) >= 8
    assert_within_ibs_limits(times)
