"""A sync killed (kill -9) at random moments, again and again, then run to the end: nothing
committed is lost or fetched again, nothing is stored twice, no gap is left."""

from __future__ import annotations

import contextlib
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from ibkr_flex_client.sync.status import read_status

from .sync_worker import HISTORY, TODAY
from .test_sync import expected_ids

WORKER = Path(__file__).with_name("sync_worker.py")
SINCE = "2019-01-01"


@pytest.mark.realtime
def test_a_sync_killed_at_random_resumes_and_ends_whole(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    chance = random.Random(12)  # noqa: S311 - a test's schedule
    kills = 0
    while True:  # kill it at random until one run gets to the end
        worker = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, str(WORKER), str(db), SINCE], stdout=subprocess.PIPE, text=True
        )
        assert worker.stdout is not None
        assert worker.stdout.readline() == "ready\n"
        time.sleep(chance.uniform(0.0, 0.5) if kills < 25 else 30.0)
        ended = worker.poll() is not None
        if not ended:
            worker.send_signal(signal.SIGKILL)
            kills += 1
        worker.wait()
        worker.stdout.close()
        if ended:
            assert worker.returncode == 0
            break
        if _finished(db):  # killed after its run ended, before the process did: done too
            break
    assert kills >= 3
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        windows = conn.execute(
            "SELECT covers_from, covers_to FROM \"@windows\" WHERE outcome = 'statement'"
        ).fetchall()
        assert len(windows) == len(set(windows))  # no window committed (fetched) twice
        stored = conn.execute('SELECT "@account", transactionID FROM Trade').fetchall()
    assert len(stored) == len(set(stored))
    yesterday = TODAY - timedelta(days=1)
    for account in HISTORY.accounts:
        ids = expected_ids(HISTORY, date.fromisoformat(SINCE), yesterday, account=account)
        assert {i for a, i in stored if a == account} == ids
    (status,) = read_status(db)
    assert status.gaps == ()
    assert str(status.first) == SINCE
    assert not status.unfinished


def _finished(db: Path) -> bool:
    """Whether a sync run of the database got to its end (a later sync of the same range
    would be a new run, fetching everything again, by design)."""
    if not db.exists():
        return False
    with contextlib.closing(sqlite3.connect(db)) as conn:
        try:
            row = conn.execute('SELECT count(*) FROM "@runs" WHERE finished_at IS NOT NULL')
        except sqlite3.OperationalError:  # killed before the schema was committed
            return False
        return bool(row.fetchone()[0])
