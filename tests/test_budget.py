"""One token's budget under load and shared between processes, on virtual time.

"Processes" here are pacers with their own lines and owners sharing one machine-wide state
file on the test's virtual clock; real processes are in test_budget_processes.py.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ibkr_flex_client import (
    EventKind,
    FetchEvent,
    FlexClient,
    LockedOutError,
    PacingError,
    Step,
    ThrottledError,
)
from ibkr_flex_client.pacing import TokenPacer, token_digest
from ibkr_flex_client.pacing.machine import MachineBackend, default_state_dir
from ibkr_flex_client.pacing.slots import MAX_AWAITING, Rank, TokenState, take
from ibkr_flex_client.testing import FakeClock, Fault, FlexSimulator

from .conftest import TOKEN
from .test_pacing import assert_within_ibs_limits

MakeClient = Callable[..., FlexClient]


def ib_floor(requests: int) -> float:
    """The least time IB's limits allow between the first and the last of ``requests``
    requests of one token: 1 per second, 10 per minute."""
    last = requests - 1
    return max(last * 1.0, (last // 10) * 60.0)


def first_poll_delays(sim: FlexSimulator) -> list[float]:
    """For each reference code the simulator issued, seconds until its first poll."""
    first: dict[str, float] = {}
    for record in sim.requests:
        if record.step == "GetStatement":
            first.setdefault(record.query, record.at)
    return [
        first[code] - (reference.expires_at - sim.reference_ttl)
        for code, reference in sim._references.items()
    ]


async def test_two_hundred_queries_on_one_token(
    sim: FlexSimulator, make_client: MakeClient, clock: FakeClock
) -> None:
    start = clock.now()
    arrivals: list[float] = []

    async def one(query: int) -> None:
        await make_client(query_id=str(query)).fetch()
        arrivals.append(clock.now())

    await asyncio.gather(*(one(q) for q in range(200)))
    answers = sim.answers()
    assert len(arrivals) == 200
    assert answers.count("1018") == 0
    assert answers.count("1017") == 0
    floor = ib_floor(2 * 200)  # each query needs a SendRequest and a GetStatement
    elapsed = max(arrivals) - start
    assert elapsed <= 1.3 * floor, (elapsed, floor)
    assert min(arrivals) - start < 10.0  # the first statement within seconds
    assert max(first_poll_delays(sim)) <= 60.0
    assert_within_ibs_limits([r.at for r in sim.requests])


async def test_slow_generations_keep_first_polls_within_a_minute(
    sim: FlexSimulator, make_client: MakeClient
) -> None:
    sim.generation_seconds = 25.0  # every statement takes several polls
    await asyncio.gather(*(make_client(query_id=str(q)).fetch() for q in range(30)))
    assert sim.answers().count("1018") == 0
    assert sim.answers().count("1017") == 0
    assert max(first_poll_delays(sim)) <= 60.0


async def test_waiting_for_the_budget_is_reported(
    sim: FlexSimulator, make_client: MakeClient
) -> None:
    events: list[FetchEvent] = []
    await asyncio.gather(
        *(make_client(query_id=str(q)).fetch() for q in range(6)),
        make_client(query_id="99").fetch(on_event=events.append),
    )
    waits = [e.detail or "" for e in events if e.kind is EventKind.WAIT]
    assert any(detail.startswith("pacing") for detail in waits), waits


async def test_a_queued_fetch_gives_up_within_its_bound(
    sim: FlexSimulator, make_client: MakeClient, clock: FakeClock
) -> None:
    # One request per step: a bound of 610 s, while 120 queries need some 24 minutes.
    start = clock.now()
    clients = [make_client(query_id=str(q), max_retries=1, backoff_base=0.1) for q in range(120)]
    bound = clients[0].worst_case_seconds
    results = await asyncio.gather(*(c.fetch() for c in clients), return_exceptions=True)
    late = [r for r in results if isinstance(r, ThrottledError)]
    assert late
    assert all("worst_case_seconds" in str(r) for r in late)
    assert len(late) + sum(1 for r in results if not isinstance(r, Exception)) == 120
    assert clock.now() - start <= bound + 1.0
    assert sim.answers().count("1018") == 0


# --- several "processes" sharing a state file ---------------------------------------------


def shared_pacers(
    directory: Path, clock: FakeClock, count: int, token: str = TOKEN
) -> list[TokenPacer]:
    digest = token_digest(token)
    return [
        TokenPacer(clock, MachineBackend(directory, digest, now=clock.now), owner=f"host:{n}")
        for n in range(count)
    ]


async def test_pacers_sharing_a_state_file_keep_ibs_limits(
    tmp_path: Path, clock: FakeClock
) -> None:
    pacers = shared_pacers(tmp_path, clock, 3)
    granted: list[float] = []

    async def requests(pacer: TokenPacer, count: int) -> None:
        for _ in range(count):
            await pacer.acquire()
            granted.append(clock.now())

    await asyncio.gather(*(requests(p, 8) for p in pacers))
    assert len(granted) == 24
    assert_within_ibs_limits(granted)
    assert max(granted) - min(granted) <= ib_floor(24) * 1.1


async def test_a_1025_in_one_process_stops_another_without_a_request(
    tmp_path: Path, clock: FakeClock
) -> None:
    one, two = shared_pacers(tmp_path, clock, 2)
    await one.lock_out(LockedOutError("IB 1025: too many failed attempts", code=1025), 600.0)
    with pytest.raises(LockedOutError, match="locked out for another 600 s") as raised:
        await two.acquire()
    assert raised.value.code == 1025
    assert "ibkr-flex unlock" in str(raised.value)
    clock.advance(600.0)  # the lock-out ends by itself
    await two.acquire()


async def test_unlock_clears_a_lock_out_everywhere(tmp_path: Path, clock: FakeClock) -> None:
    one, two = shared_pacers(tmp_path, clock, 2)
    await one.lock_out(LockedOutError("IB 1025", code=1025), 3600.0)
    assert await two.unlock() is True
    assert await two.unlock() is False
    await one.acquire()
    await two.acquire()


async def test_a_lock_out_stops_a_client_of_another_process_before_it_sends(
    sim: FlexSimulator, make_client: MakeClient, clock: FakeClock, tmp_path: Path
) -> None:
    # The client's pacer reads the state file the "other process" wrote.
    client = make_client()
    other = shared_pacers(tmp_path, clock, 1)[0]
    client._pacer = shared_pacers(tmp_path, clock, 1)[0]
    await other.lock_out(LockedOutError("IB 1025", code=1025), 3600.0)
    with pytest.raises(LockedOutError):
        await client.fetch()
    assert sim.requests == []


async def test_a_1025_is_kept_for_lockout_seconds(
    sim: FlexSimulator, make_client: MakeClient, clock: FakeClock
) -> None:
    sim.fail("1", Fault.ib_code(1025))
    with pytest.raises(LockedOutError):
        await make_client(query_id="1", lockout_seconds=120.0).fetch()
    count = len(sim.requests)
    with pytest.raises(LockedOutError, match="locked out for another 120 s"):
        await make_client(query_id="2").fetch()
    assert len(sim.requests) == count  # refused without a request
    clock.advance(121.0)
    await make_client(query_id="2").fetch()  # and afterwards the token may try again


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b'{"v":1}', b"\x00" * 100, b'{"v":1,"sent":[1e308]}', b"x" * 300_000],
)
async def test_a_corrupt_state_file_means_a_full_minute_and_is_rebuilt(
    tmp_path: Path, clock: FakeClock, content: bytes
) -> None:
    backend = MachineBackend(tmp_path, "d" * 32, now=clock.now)
    backend.path.write_bytes(content)
    pacer = TokenPacer(clock, backend)
    start = clock.now()
    await pacer.acquire()
    assert clock.now() - start == pytest.approx(61.0)  # waited: never a burst
    state = TokenState.from_json(backend.path.read_bytes())  # rebuilt, readable
    assert state.sent[-1] == clock.now()


async def test_a_state_file_that_is_not_a_file_is_replaced(
    tmp_path: Path, clock: FakeClock
) -> None:
    backend = MachineBackend(tmp_path, "d" * 32, now=clock.now)
    target = tmp_path / "elsewhere.json"
    target.write_bytes(b"precious")
    backend.path.symlink_to(target)
    await TokenPacer(clock, backend).acquire()
    assert target.read_bytes() == b"precious"  # a link is never followed
    assert not backend.path.is_symlink()


async def test_state_files_are_private_and_named_by_a_digest(
    tmp_path: Path, clock: FakeClock
) -> None:
    directory = tmp_path / "state"
    (pacer,) = shared_pacers(directory, clock, 1)
    await pacer.acquire()
    assert directory.stat().st_mode & 0o777 == 0o700
    for path in directory.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600
        assert TOKEN not in path.name
        assert TOKEN.encode() not in path.read_bytes()


async def test_a_too_open_state_directory_is_closed(tmp_path: Path, clock: FakeClock) -> None:
    tmp_path.chmod(0o777)
    (pacer,) = shared_pacers(tmp_path, clock, 1)
    await pacer.acquire()
    assert tmp_path.stat().st_mode & 0o777 == 0o700


async def test_an_unusable_state_directory_is_a_clear_error(
    tmp_path: Path, clock: FakeClock
) -> None:
    in_the_way = tmp_path / "not-a-directory"
    in_the_way.write_bytes(b"")
    (pacer,) = shared_pacers(in_the_way / "state", clock, 1)
    with pytest.raises(PacingError, match="IBKR_FLEX_STATE_DIR") as raised:
        await pacer.acquire()
    assert "no request was sent" in str(raised.value)


async def test_a_lock_held_too_long_is_a_clear_error(tmp_path: Path, clock: FakeClock) -> None:
    backend = MachineBackend(tmp_path, "e" * 32, now=clock.now, patience=0.2)
    await TokenPacer(clock, backend).acquire()  # creates the files
    holder = subprocess.Popen(  # noqa: S603, ASYNC220 - our own interpreter; a test
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            "f = open(sys.argv[1], 'r+')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
            str(tmp_path / f"{'e' * 32}.lock"),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"held\n"
        with pytest.raises(PacingError, match="locked by another process"):
            await TokenPacer(clock, backend).acquire()
        holder.kill()  # kill -9 lets go of the lock: the budget works again at once
        holder.wait()
        await TokenPacer(clock, backend).acquire()
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()


async def test_a_killed_process_references_and_place_are_dropped(
    tmp_path: Path, clock: FakeClock
) -> None:
    backend = MachineBackend(tmp_path, "f" * 32, now=clock.now)
    dead = subprocess.run(  # noqa: ASYNC221 - our own interpreter; a test
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    owner = f"{socket.gethostname()}:{dead.stdout.strip()}"
    # The dead process had taken every reference in flight, and waited in line.
    for n in range(MAX_AWAITING):
        await backend.apply(
            functools.partial(
                take, who=f"{owner}/x", rank=Rank.SEND, seat=f"dead{n}", seat_ttl=900.0
            )
        )
        clock.advance(1.1)
    start = clock.now()
    pacer = TokenPacer(clock, backend)
    ticket = pacer.ticket(900.0)
    await pacer.acquire(ticket, Step.SEND_REQUEST)
    assert clock.now() - start < 2.0  # not the 900 s until its references expire


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"IBKR_FLEX_STATE_DIR": "/srv/flex"}, Path("/srv/flex")),
        ({"XDG_CACHE_HOME": "/c", "HOME": "/h"}, Path("/c/ibkr-flex-client")),
        ({"XDG_CACHE_HOME": "relative", "HOME": "/h"}, Path("/h/.cache/ibkr-flex-client")),
        ({"HOME": "/h"}, Path("/h/.cache/ibkr-flex-client")),
    ],
)
def test_the_state_directory_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], expected: Path
) -> None:
    for name in ("IBKR_FLEX_STATE_DIR", "XDG_CACHE_HOME", "HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert default_state_dir() == expected


def test_without_a_home_the_state_directory_is_the_users_own_in_tmp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("IBKR_FLEX_STATE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", no_home)
    assert default_state_dir().name == f"ibkr-flex-client-{os.getuid()}"
