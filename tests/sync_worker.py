"""A sync in a process of its own, to be killed at any moment: its own simulator of one
account's history, on a virtual clock (so it moves fast), into the database given.

    python tests/sync_worker.py DB SINCE

Prints "ready" when it starts, then syncs until done (or killed).
"""

from __future__ import annotations

import asyncio
import sys
from datetime import date

from ibkr_flex_client.sync import sync_history
from ibkr_flex_client.testing import AccountHistory, FakeClock, FlexSimulator

TODAY = date(2026, 11, 27)
HISTORY = AccountHistory(accounts=("U1234567", "U7654321"), trades_per_year=800, seed="kill")


async def main(db: str, since: str) -> None:
    clock = FakeClock()
    async with FlexSimulator(clock=clock) as sim:
        sim.add_query("1", history=HISTORY)
        print("ready", flush=True)
        await sync_history(
            db,
            token="worker-token",
            query_ids=["1"],
            since=since,
            today=TODAY,
            base_url=sim.base_url,
            clock=clock,
        )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
