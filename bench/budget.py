"""One token shared by several processes: wall time against IB's floor, and 1018 answers.

Prints three tables:

1. The cost per request of the shared budget: one ``apply`` of the machine-wide state file
   against the in-process state, alternated (ABAB) over several rounds; the median of the
   paired ratios and the median microseconds each.
2. 200 queries of one token in one process, on the virtual clock: time to the last
   statement against the floor, time to the first, requests, 1018 and 1017 answers, and the
   longest wait from a reference code to its first poll.
3. Processes x queries (1, 2 and 4 processes, 4 queries each, one token) against one
   simulated IB on loopback in real time, with each pacing setting: ``process`` (each
   process paces itself: the baseline, what every Flex client did before), ``machine`` (a
   locked state file) and Redis (a real redis-server on loopback, when the ``redis-server``
   binary the tests use is installed). Wall time, its ratio to the floor that IB's limits allow
   (a SendRequest and a GetStatement per statement), the requests made, and the 1018 answers.

    python bench/budget.py            # about 15 minutes (real time: IB's limits)
    python bench/budget.py --quick    # 1 and 2 processes only, about 5 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ibkr_flex_client import FlexClient
from ibkr_flex_client.pacing.backend import LocalBackend
from ibkr_flex_client.pacing.machine import MachineBackend
from ibkr_flex_client.pacing.slots import Rank, TokenState, take
from ibkr_flex_client.testing import FakeClock, FlexSimulator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.redis_server import find_redis_server, free_port, ping  # noqa: E402

WORKER = ROOT / "tests" / "budget_worker.py"
QUERIES_PER_PROCESS = 4
TOKEN = "bench-budget-token"  # noqa: S105 - a fake token for the simulator


def ib_floor(requests: int) -> float:
    """The least time IB's limits (1 per second, 10 per minute) allow for ``requests``."""
    last = requests - 1
    return max(last * 1.0, (last // 10) * 60.0)


@contextmanager
def redis_server() -> Iterator[str | None]:
    """A throwaway redis-server on loopback (the tests' binary), or None when none is found."""
    binary = find_redis_server()
    if binary is None:
        yield None
        return
    port = free_port()
    directory = tempfile.mkdtemp()
    server = subprocess.Popen(  # noqa: S603 - the tests' redis-server binary
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not ping(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(directory, ignore_errors=True)


def processes_run(pacing: str, processes: int) -> dict[str, float]:
    """``processes`` workers x 4 queries of one token; wall time, requests and 1018s."""
    with FlexSimulator(generation_seconds=0.5).serve_in_thread() as sim:
        state = tempfile.mkdtemp()
        env = {**os.environ, "IBKR_FLEX_TOKEN": TOKEN, "IBKR_FLEX_STATE_DIR": state}
        start = time.monotonic()
        workers = [
            subprocess.Popen(  # noqa: S603 - our own interpreter and worker
                [
                    sys.executable,
                    str(WORKER),
                    sim.base_url,
                    pacing,
                    *(f"{p}-{q}" for q in range(QUERIES_PER_PROCESS)),
                ],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            for p in range(processes)
        ]
        fetched = sum(json.loads(w.communicate()[0])["fetched"] for w in workers)
        wall = time.monotonic() - start
        shutil.rmtree(state, ignore_errors=True)
        answers = sim.answers()
        return {
            "wall": wall,
            "requests": len(answers),
            # Each statement needs a SendRequest and a GetStatement at least.
            "floor": ib_floor(2 * processes * QUERIES_PER_PROCESS),
            "throttled": answers.count("1018"),
            "fetched": fetched,
        }


def table_processes(counts: tuple[int, ...]) -> None:
    print("\n3. processes x 4 queries, one token, real time over loopback")
    print("| pacing | processes | statements | requests | wall s | floor s | wall/floor | 1018 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    with redis_server() as redis_url:
        pacings = ["process", "machine"] + ([redis_url] if redis_url else [])
        for processes in counts:
            for pacing in pacings:
                r = processes_run(pacing, processes)
                name = "redis" if pacing.startswith("redis") else pacing
                print(
                    f"| {name} | {processes} | {r['fetched']:.0f}/{processes * 4} "
                    f"| {r['requests']:.0f} | {r['wall']:.1f} | {r['floor']:.0f} "
                    f"| {r['wall'] / max(r['floor'], 1.0):.2f} | {r['throttled']:.0f} |",
                    flush=True,
                )
        if not redis_url:
            print("(no redis-server installed: the Redis rows are missing)")


async def two_hundred() -> dict[str, float]:
    clock = FakeClock()
    async with FlexSimulator(clock=clock) as sim:
        start, arrivals = clock.now(), []

        async def one(query: int) -> None:
            client = FlexClient(
                token=TOKEN, query_id=str(query), base_url=sim.base_url, clock=clock
            )
            await client.fetch()
            arrivals.append(clock.now())

        await asyncio.gather(*(one(q) for q in range(200)))
        first_poll: dict[str, float] = {}
        for record in sim.requests:
            if record.step == "GetStatement":
                first_poll.setdefault(record.query, record.at)
        delays = [
            first_poll[code] - (ref.expires_at - sim.reference_ttl)
            for code, ref in sim._references.items()
        ]
        answers = sim.answers()
        return {
            "last": max(arrivals) - start,
            "first": min(arrivals) - start,
            "floor": ib_floor(400),
            "requests": len(answers),
            "throttled": answers.count("1018"),
            "expired": answers.count("1017"),
            "first_poll": max(delays),
        }


def table_two_hundred() -> None:
    r = asyncio.run(two_hundred())
    print("\n2. 200 queries of one token in one process, virtual clock")
    print(
        "| last statement s | floor s | ratio | first statement s | requests | 1018 | 1017 "
        "| longest reference-to-first-poll s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {r['last']:.0f} | {r['floor']:.0f} | {r['last'] / r['floor']:.3f} "
        f"| {r['first']:.1f} | {r['requests']:.0f} | {r['throttled']:.0f} "
        f"| {r['expired']:.0f} | {r['first_poll']:.1f} |"
    )


async def applies(backend: LocalBackend | MachineBackend, count: int, clock: list[float]) -> float:
    start = time.perf_counter()
    for _ in range(count):
        clock[0] += 61.0  # every request is granted: the cost measured is the backend's
        await backend.apply(functools.partial(take, who="bench:1/a", rank=Rank.SEND))
    return (time.perf_counter() - start) / count


def table_cost(rounds: int = 9, count: int = 500) -> None:
    clock = [1e9]

    def now() -> float:
        return clock[0]

    directory = Path(tempfile.mkdtemp())
    local, machine = LocalBackend(now), MachineBackend(directory, "b" * 32, now=now)
    ours, base, ratios = [], [], []
    for _ in range(rounds):  # ABAB: the baseline, then ours
        b = asyncio.run(applies(local, count, clock))
        m = asyncio.run(applies(machine, count, clock))
        base.append(b)
        ours.append(m)
        ratios.append(m / b)
    TokenState.from_json(machine.path.read_bytes())  # it wrote a valid state
    shutil.rmtree(directory, ignore_errors=True)
    print(f"1. cost per request, {rounds} ABAB rounds of {count} applies")
    print("| backend | median us per request | ratio to in-process (median of pairs) |")
    print("|---|---:|---:|")
    print(f"| process (baseline) | {statistics.median(base) * 1e6:.1f} | 1 |")
    print(
        f"| machine (state file) | {statistics.median(ours) * 1e6:.1f} "
        f"| {statistics.median(ratios):.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 2 processes only")
    args = parser.parse_args()
    table_cost()
    table_two_hundred()
    table_processes((1, 2) if args.quick else (1, 2, 4))


if __name__ == "__main__":
    main()
