"""``ibkr-flex sync`` (the command line, in this process) against a simulator in a thread,
on real time, that can stop inside the commit of its second window: the transaction is
open, part of the window's rows are inserted, and it waits there for a release file.

    python tests/sync_adversarial_worker.py DB SINCE pause|run

Prints "paused" inside that commit (with ``pause``), then, at the end, "served N" (the
SendRequests the simulator answered with a reference) and exits with the command's status.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from datetime import date
from pathlib import Path

from ibkr_flex_client import cli
from ibkr_flex_client.sync.store import Store, TagCounts
from ibkr_flex_client.testing import AccountHistory, FlexSimulator

HISTORY = AccountHistory(
    accounts=("U1234567", "U7654321"), trades_per_year=300, seed="adversarial", today=date.today()
)
PAUSE_SECONDS = 60.0


def main(db: str, since: str, pause: bool) -> int:
    upsert = Store._upsert
    release = Path(db + ".release")
    paused: list[int] = []

    def pausing(
        self: Store,
        tag: str,
        rows: list[tuple[str, str, str, Mapping[str, str]]],
        window_id: int,
        to_date: date,
    ) -> TagCounts:
        counts = upsert(self, tag, rows, window_id, to_date)
        if pause and window_id == 2 and not paused:
            paused.append(window_id)
            print("paused", flush=True)
            deadline = time.monotonic() + PAUSE_SECONDS
            while not release.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return counts

    Store._upsert = pausing  # type: ignore[method-assign]
    with FlexSimulator(generation_seconds=0.0, enforce_limits=False).serve_in_thread() as sim:
        sim.add_query("1", history=HISTORY)
        argv = ["sync", "-q", "1", "--db", db, "--since", since, "--base-url", sim.base_url]
        status = cli.main(argv)
        print(f"served {sim.answers().count('reference')}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3] == "pause"))
