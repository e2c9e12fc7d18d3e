"""How fast statements arrive and how politely: the real client against the simulated IB.

Runs in real time over loopback, with IB's per-token limits enforced by the simulator
(1 request per second, 10 per minute), and prints two tables:

1. Statements ready after 1, 4, 10 and 30 s: how long after readiness the statement was
   served (median of several trials, each on its own token), requests used, 1018 answers.
   Baselines measured in the same run: the usual hand-written loop that polls every 1 s, and
   one that polls every 5 s, neither paced.
2. 4 and 8 queries of one token fetched at once: wall time, its ratio to the lower bound that
   IB's limits allow, and 1018 answers; the same naive 1-second loop as the baseline.

    python bench/pacing.py            # about three minutes
"""

from __future__ import annotations

import asyncio
import statistics
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable

import aiohttp

from ibkr_flex_client import FlexClient, FlexError
from ibkr_flex_client.testing import FlexSimulator, fingerprint

READINESS = (1.0, 4.0, 10.0, 30.0)
TRIALS = 3
CONCURRENCY = (4, 8)
GIVE_UP = 100.0  # seconds a naive loop keeps polling before it gives up
SEND = "/AccountManagement/FlexWebService/SendRequest"

Fetcher = Callable[[FlexSimulator, str, str], Awaitable[None]]


async def ours(sim: FlexSimulator, token: str, query: str) -> None:
    await FlexClient(token=token, query_id=query, base_url=sim.base_url, max_retries=30).fetch()


def naive(every: float) -> Fetcher:
    """The loop most hand-written Flex clients use: send, then poll at a fixed interval."""

    async def fetch(sim: FlexSimulator, token: str, query: str) -> None:
        deadline = time.monotonic() + GIVE_UP
        async with aiohttp.ClientSession() as http:
            params = {"t": token, "q": query, "v": "3"}
            while True:  # a refused SendRequest (1018) is simply tried again
                async with http.get(sim.base_url + SEND, params=params) as response:
                    root = ET.fromstring(await response.read())
                reference, url = root.findtext("ReferenceCode"), root.findtext("Url")
                if reference and url:
                    break
                if time.monotonic() > deadline:
                    return
                await asyncio.sleep(every)
            while time.monotonic() < deadline:
                await asyncio.sleep(every)
                async with http.get(url, params={**params, "q": reference}) as response:
                    body = await response.read()
                if body.lstrip().startswith(b"<?xml") and b"<FlexQueryResponse" in body[:200]:
                    return

    return fetch


def lower_bound(requests: int) -> float:
    """The earliest the n-th request can go under IB's limits (1/s, 10 per 60 s)."""
    times: list[float] = []
    for i in range(requests):
        t = times[-1] + 1.0 if times else 0.0
        if i >= 10:
            t = max(t, times[i - 10] + 60.0)
        times.append(t)
    return times[-1]


def lateness(sim: FlexSimulator, token: str, generation: float) -> float:
    """Seconds between the statement being ready and being served, as the server saw it;
    infinite when it never was (the loop gave up)."""
    mine = [r for r in sim.requests if r.token_fingerprint == fingerprint(token)]
    sent = next(r.at for r in mine if r.answer == "reference")
    served = next((r.at for r in mine if r.answer == "statement"), float("inf"))
    return served - (sent + generation)


def counts(sim: FlexSimulator, tokens: list[str]) -> tuple[int, int]:
    prints = {fingerprint(t) for t in tokens}
    mine = [r for r in sim.requests if r.token_fingerprint in prints]
    return len(mine), sum(1 for r in mine if r.answer == "1018")


async def readiness_table(sim: FlexSimulator) -> list[str]:
    fetchers: dict[str, Fetcher] = {"ours": ours, "poll 1 s": naive(1.0), "poll 5 s": naive(5.0)}
    jobs: list[Awaitable[None]] = []
    plan: list[tuple[float, str, list[str]]] = []
    for generation in READINESS:
        query = f"ready-{generation:g}"
        sim.add_query(query, generation_seconds=generation)
        for name, fetch in fetchers.items():
            tokens = [f"{name}-{generation:g}-{n}".replace(" ", "") for n in range(TRIALS)]
            plan.append((generation, name, tokens))
            jobs += [fetch(sim, token, query) for token in tokens]
    await asyncio.gather(*jobs)
    lines = [
        "| ready after | client | past readiness (median) | requests per fetch | 1018 answers |",
        "|---:|---|---:|---:|---:|",
    ]
    for generation, name, tokens in plan:
        late = statistics.median(lateness(sim, t, generation) for t in tokens)
        shown = f"{late:.2f} s" if late != float("inf") else f"never (gave up at {GIVE_UP:g} s)"
        requests, refused = counts(sim, tokens)
        lines.append(
            f"| {generation:g} s | {name} | {shown} | {requests / len(tokens):.1f} | {refused} |"
        )
    return lines


async def concurrency_table(sim: FlexSimulator) -> list[str]:
    lines = [
        "| queries on one token | client | wall time | lower bound | ratio | 1018 answers |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for n in CONCURRENCY:
        bound = lower_bound(2 * n)  # one SendRequest and one GetStatement per query at best
        for name, fetch in (("ours", ours), ("poll 1 s", naive(1.0))):
            token = f"concurrent-{n}-{name}".replace(" ", "")
            queries = [f"c{n}-{i}" for i in range(n)]
            for query in queries:
                sim.add_query(query, generation_seconds=1.0)
            start = time.monotonic()
            try:
                await asyncio.gather(*(fetch(sim, token, q) for q in queries))
            except FlexError as error:
                wall, ratio = f"failed: {type(error).__name__}", "-"
            else:
                elapsed = time.monotonic() - start
                served = sum(
                    1
                    for r in sim.requests
                    if r.token_fingerprint == fingerprint(token) and r.answer == "statement"
                )
                wall, ratio = f"{elapsed:.1f} s", f"{elapsed / bound:.2f}"
                if served < n:
                    wall, ratio = f"{served} of {n} served in {elapsed:.0f} s", "-"
            _, refused = counts(sim, [token])
            lines.append(f"| {n} | {name} | {wall} | {bound:.0f} s | {ratio} | {refused} |")
    return lines


async def main() -> None:
    async with FlexSimulator(generation_seconds=1.0) as sim:
        started = time.monotonic()
        print("Statements ready after a given time (real time, loopback, IB's limits):\n")
        print("\n".join(await readiness_table(sim)))
        print("\nSeveral queries of one token at once (statements ready after 1 s):\n")
        print("\n".join(await concurrency_table(sim)))
        print(f"\n({time.monotonic() - started:.0f} s in all)")


if __name__ == "__main__":
    asyncio.run(main())
