"""Adversarial tests of the token's shared budget (pacing): each one a broken promise."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ibkr_flex_client import (
    FlexClient,
    FlexError,
    LockedOutError,
    PacingError,
    Step,
    fetch_statement,
)
from ibkr_flex_client._clock import SYSTEM_CLOCK
from ibkr_flex_client.pacing import TokenPacer, pacer_for, token_digest
from ibkr_flex_client.pacing.machine import MachineBackend, steady_clock
from ibkr_flex_client.pacing.slots import TokenState, forget, next_slot
from ibkr_flex_client.testing import FakeClock, Fault, FlexSimulator

from .conftest import TOKEN

MakeClient = Callable[..., FlexClient]


def shared_pacers(directory: Path, clock: FakeClock, count: int) -> list[TokenPacer]:
    digest = token_digest(TOKEN)
    return [
        TokenPacer(clock, MachineBackend(directory, digest, now=clock.now), owner=f"host:{n}")
        for n in range(count)
    ]


async def test_unlock_in_another_process_lets_a_fetch_here_poll(
    sim: FlexSimulator, make_client: MakeClient, clock: FakeClock, tmp_path: Path
) -> None:
    here, elsewhere = shared_pacers(tmp_path, clock, 2)
    sim.fail("1", Fault.ib_code(1025))
    locked = make_client(query_id="1")
    locked._pacer = here
    with pytest.raises(LockedOutError):
        await locked.fetch()
    assert await elsewhere.unlock() is True  # `ibkr-flex unlock`, run in another process
    client = make_client(query_id="2")
    client._pacer = here
    await client.fetch()


async def test_a_waiter_behind_others_gives_up_at_its_deadline_on_a_fake_clock(
    clock: FakeClock,
) -> None:
    pacer = TokenPacer(clock)
    await pacer.acquire()
    head = asyncio.ensure_future(pacer.acquire())
    await asyncio.sleep(0)
    behind = asyncio.ensure_future(pacer.acquire(deadline=clock.now() + 0.5))
    # The head's slot is 1.1 virtual seconds away, the other's deadline 0.5: both end within
    # milliseconds of real time, unless the clock stops at the deadline (it does: the
    # waiter behind sleeps 0 s at the deadline, again and again, and time never moves on).
    done, _ = await asyncio.wait({head, behind}, timeout=2.0)
    stuck_at = clock.now()
    for task in (head, behind):
        task.cancel()
    await asyncio.gather(head, behind, return_exceptions=True)
    assert stuck_at > 1001.0, stuck_at
    assert head in done
    assert behind in done


@pytest.mark.parametrize("name", ["{}.json", "{}.json.tmp"])
async def test_a_directory_in_place_of_a_state_file_is_replaced(
    tmp_path: Path, clock: FakeClock, name: str
) -> None:
    digest = token_digest(TOKEN)
    (tmp_path / name.format(digest)).mkdir()
    pacer = TokenPacer(clock, MachineBackend(tmp_path, digest, now=clock.now))
    await pacer.acquire()  # "not a regular file": a full minute, then rewritten
    assert (tmp_path / f"{digest}.json").is_file()


async def test_a_wall_clock_stepped_forward_lets_no_burst_through(tmp_path: Path) -> None:
    # Real time runs on `real`; the state file's times come from the wall clock, which
    # NTP (or a resumed laptop or VM) steps forward by two minutes halfway through.
    real = FakeClock()
    offset = [0.0]

    def wall() -> float:
        return real.now() + offset[0]

    def steady() -> tuple[str, float]:  # CLOCK_BOOTTIME: never stepped
        return "this-boot", real.now() + 5_000.0

    backend = MachineBackend(tmp_path, token_digest(TOKEN), now=wall, steady=steady)
    pacer = TokenPacer(real, backend)
    granted = []
    for n in range(20):
        if n == 10:
            offset[0] += 120.0
        await pacer.acquire()
        granted.append(real.now())
    # IB counts real seconds: never more than 10 in any 60 s of them.
    for t in granted:
        assert sum(1 for s in granted if t - 60.0 < s <= t) <= 10, granted


# --- real processes, killed at random -------------------------------------------------------

_GRANTER = """
import asyncio, os, sys, time
from ibkr_flex_client._clock import SYSTEM_CLOCK
from ibkr_flex_client.pacing import pacer_for

async def main() -> None:
    pacer = pacer_for(os.environ["IBKR_FLEX_TOKEN"], SYSTEM_CLOCK, "machine")
    with open(sys.argv[1], "a") as out:
        print("ready", flush=True)
        while True:
            await pacer.acquire()
            out.write(f"{time.time()!r}\\n")
            out.flush()

asyncio.run(main())
"""

# Rewrites the state as fast as it can (a no-op change), to be killed mid-write.
_HAMMER = """
import asyncio, os, sys
from pathlib import Path
from ibkr_flex_client.pacing import token_digest
from ibkr_flex_client.pacing.machine import MachineBackend
from ibkr_flex_client.pacing.slots import forget

async def main() -> None:
    backend = MachineBackend(Path(os.environ["IBKR_FLEX_STATE_DIR"]),
                             token_digest(os.environ["IBKR_FLEX_TOKEN"]))
    print("ready", flush=True)
    while True:
        await backend.apply(forget)

asyncio.run(main())
"""


def _spawn(code: str, out: Path, state: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "IBKR_FLEX_TOKEN": TOKEN, "IBKR_FLEX_STATE_DIR": str(state)}
    process = subprocess.Popen(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code, str(out)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    return process


@pytest.mark.realtime
def test_processes_killed_at_random_never_break_the_budget(tmp_path: Path) -> None:
    state = tmp_path / "state"
    chance = random.Random(7)  # noqa: S311 - a test's schedule
    outputs = [tmp_path / f"granted-{n}.txt" for n in range(40)]
    spawned = 0
    running: list[subprocess.Popen[str]] = []

    def spawn() -> None:
        nonlocal spawned
        code = _HAMMER if spawned % 3 == 2 else _GRANTER
        running.append(_spawn(code, outputs[spawned], state))
        spawned += 1

    try:
        for _ in range(4):
            spawn()
        end = time.monotonic() + 7.0
        while time.monotonic() < end and spawned < len(outputs):
            time.sleep(chance.uniform(0.05, 0.6))
            victim = running.pop(chance.randrange(len(running)))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            assert victim.stdout is not None
            victim.stdout.close()
            spawn()
    finally:
        for process in running:
            process.kill()
            process.wait()
        for process in running:
            assert process.stdout is not None
            process.stdout.close()
    granted = sorted(
        float(line) for out in outputs if out.exists() for line in out.read_text().split()
    )
    assert len(granted) >= 5, granted
    for earlier, later in itertools.pairwise(granted):
        assert later - earlier >= 1.0, granted
    for t in granted:
        assert sum(1 for s in granted if t - 60.0 < s <= t) <= 10, granted
    # The state file is whole and readable, and a newcomer is not held up by the dead.
    digest = token_digest(TOKEN)
    left = TokenState.from_json((state / f"{digest}.json").read_bytes())
    slot = next_slot(left, time.time()) - time.time()  # what IB's limits alone ask
    pacer = TokenPacer(SYSTEM_CLOCK, MachineBackend(state, digest))
    start = time.monotonic()
    asyncio.run(pacer.acquire(pacer.ticket(60.0), Step.SEND_REQUEST))
    assert time.monotonic() - start < slot + 2.5


# --- fair scheduling on virtual time --------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Fault.drop(), Fault.http_status(503), Fault.ib_code(1018)],
    ids=["dropped", "503", "1018"],
)
async def test_a_retried_send_request_is_not_stuck_behind_new_ones(
    sim: FlexSimulator, make_client: MakeClient, clock: FakeClock, fault: Fault
) -> None:
    # The first two SendRequests fail once and are retried after a short backoff; their
    # fetches hold the token's two references "awaiting a first poll" meanwhile.
    sim.fail("0", fault, step=Step.SEND_REQUEST)
    sim.fail("1", fault, step=Step.SEND_REQUEST)
    start = clock.now()
    await asyncio.gather(*(make_client(query_id=str(q)).fetch() for q in range(4)))
    # Eight requests and two retries after a 10 s backoff: well within two minutes, not
    # the ~11 minutes until the stalled references expire.
    assert clock.now() - start < 120.0, clock.now() - start


# --- several threads on one pacer -----------------------------------------------------------


@pytest.mark.realtime
def test_threads_share_the_budget_and_a_lock_out_stops_them_all() -> None:
    token = f"threads-{os.getpid()}-{time.monotonic_ns()}"
    with FlexSimulator(generation_seconds=3.0).serve_in_thread() as simulator:
        simulator.fail("0", Fault.ib_code(1025))
        outcomes: dict[str, str] = {}

        def one(query: str) -> None:
            try:
                fetch_statement(token=token, query_id=query, base_url=simulator.base_url)
                outcomes[query] = "statement"
            except FlexError as error:
                outcomes[query] = type(error).__name__

        threads = [threading.Thread(target=one, args=(str(q),)) for q in range(5)]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
        assert time.monotonic() - start < 20.0
        records = list(simulator.requests)
    assert set(outcomes.values()) <= {"statement", "LockedOutError"}, outcomes
    assert outcomes["0"] == "LockedOutError"
    locked_at = next(r.at for r in records if r.answer == "1025")
    assert [r for r in records if r.at > locked_at] == []
    assert "1018" not in [r.answer for r in records]
    assert len(pacer_for(token, SYSTEM_CLOCK, "machine")) == 0


# --- the state file and the wall clock ------------------------------------------------------


async def test_a_clock_put_back_never_stretches_a_lock_out(tmp_path: Path) -> None:
    # A 1025 kept while the wall clock ran a day fast (a bad RTC before NTP corrected it):
    # lockout_seconds is an hour, so the token must not stay locked for a day.
    real = FakeClock()
    offset = [86_400.0]

    def wall() -> float:
        return real.now() + offset[0]

    pacer = TokenPacer(real, MachineBackend(tmp_path, token_digest(TOKEN), now=wall))
    await pacer.lock_out(LockedOutError("IB 1025", code=1025), 3600.0)
    offset[0] = 0.0  # NTP steps the clock back to the truth
    fresh = TokenPacer(real, MachineBackend(tmp_path, token_digest(TOKEN), now=wall))
    with pytest.raises(LockedOutError) as raised:
        await fresh.acquire()
    remaining = float(str(raised.value).split("for another ")[1].split(" s")[0])
    assert remaining <= 3600.0, str(raised.value)


async def test_an_unusable_lock_file_is_named_in_the_error(
    tmp_path: Path, clock: FakeClock
) -> None:
    digest = token_digest(TOKEN)
    lock_file = tmp_path / f"{digest}.lock"
    lock_file.symlink_to(tmp_path / "elsewhere")
    pacer = TokenPacer(clock, MachineBackend(tmp_path, digest, now=clock.now))
    with pytest.raises(PacingError) as raised:
        await pacer.acquire()
    assert str(lock_file) in str(raised.value)  # not the .json, which is fine


def test_the_readmes_exit_table_says_what_78_means_now() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (row,) = [line for line in readme.splitlines() if line.startswith("| 78 |")]
    assert "budget" in row, row  # `ibkr-flex --help` says so; the README does not


async def test_a_state_from_another_boot_keeps_its_wall_clock_times(tmp_path: Path) -> None:
    # Across a reboot the steady clock restarts: the stored times are taken as they are.
    real = FakeClock()
    boot = ["first"]
    digest = token_digest(TOKEN)

    def steady() -> tuple[str, float]:
        return boot[0], 10.0 if boot[0] == "second" else real.now()

    backend = MachineBackend(tmp_path, digest, now=real.now, steady=steady)
    await TokenPacer(real, backend).lock_out(LockedOutError("IB 1025", code=1025), 600.0)
    boot[0] = "second"
    real.advance(100.0)
    with pytest.raises(LockedOutError, match="another 500 s"):
        await TokenPacer(
            real, MachineBackend(tmp_path, digest, now=real.now, steady=steady)
        ).acquire()


async def test_a_directory_with_files_in_the_way_is_moved_aside(
    tmp_path: Path, clock: FakeClock
) -> None:
    digest = token_digest(TOKEN)
    (tmp_path / f"{digest}.json.tmp").mkdir()
    (tmp_path / f"{digest}.json.tmp" / "kept").write_text("someone's file")
    await TokenPacer(clock, MachineBackend(tmp_path, digest, now=clock.now)).acquire()
    assert (tmp_path / f"{digest}.json").is_file()
    (aside,) = tmp_path.glob(f"{digest}.json.tmp.moved-aside-*")
    assert (aside / "kept").read_text() == "someone's file"


@pytest.mark.skipif(sys.platform != "linux", reason="CLOCK_BOOTTIME is Linux's")
def test_the_machine_backend_tells_wall_clock_steps_by_default(tmp_path: Path) -> None:
    steady = steady_clock()
    assert steady is not None
    assert len(steady[0]) >= 32  # the boot's id
    backend = MachineBackend(tmp_path, token_digest(TOKEN))
    asyncio.run(backend.apply(forget))
    state = TokenState.from_json(backend.path.read_bytes())
    assert state.mark is not None
    assert state.mark.boot == steady[0]
