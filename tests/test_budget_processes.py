"""Real processes sharing one token's budget against one simulated IB, on real time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ibkr_flex_client.testing import FlexSimulator

from .test_pacing import assert_within_ibs_limits

pytestmark = pytest.mark.realtime

WORKER = Path(__file__).with_name("budget_worker.py")
TOKEN = "tok-processes-7d1e"


@pytest.fixture
def simulator() -> Iterator[FlexSimulator]:
    with FlexSimulator(generation_seconds=0.5).serve_in_thread() as sim:
        yield sim


def start_worker(url: str, pacing: str, queries: list[str], state: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "IBKR_FLEX_TOKEN": TOKEN, "IBKR_FLEX_STATE_DIR": str(state)}
    return subprocess.Popen(  # noqa: S603 - our own interpreter and worker
        [sys.executable, str(WORKER), url, pacing, *queries],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def results(workers: list[subprocess.Popen[str]]) -> list[dict[str, object]]:
    out = []
    for worker in workers:
        stdout, _ = worker.communicate(timeout=240)
        assert worker.returncode == 0
        out.append(json.loads(stdout))
    return out


def test_processes_sharing_a_token_get_no_1018(simulator: FlexSimulator, tmp_path: Path) -> None:
    workers = [
        start_worker(simulator.base_url, "machine", [f"{n}{q}" for q in range(2)], tmp_path)
        for n in range(3)
    ]
    for result in results(workers):
        assert result == {"fetched": 2, "errors": []}
    answers = simulator.answers()
    assert answers.count("1018") == 0, answers
    assert_within_ibs_limits([r.at for r in simulator.requests])


def test_a_process_killed_mid_fetch_holds_nobody_up(
    simulator: FlexSimulator, tmp_path: Path
) -> None:
    simulator.generation_seconds = 30.0  # the victim sits in its polls, holding references
    victim = start_worker(simulator.base_url, "machine", ["v1", "v2"], tmp_path)
    deadline = time.monotonic() + 30
    while sum(r.step == "GetStatement" for r in simulator.requests) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    simulator.generation_seconds = 0.5
    start = time.monotonic()
    (result,) = results([start_worker(simulator.base_url, "machine", ["next"], tmp_path)])
    assert result == {"fetched": 1, "errors": []}
    # Its references in flight and its place in line went with it: not minutes of waiting.
    assert time.monotonic() - start < 20
    assert simulator.answers().count("1018") == 0
