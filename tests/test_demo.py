"""`ibkr-flex demo` as a new user runs it: the installed command, no IB account, no network."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

COMMAND = shutil.which("ibkr-flex", path=str(Path(sys.executable).parent))


# Real time, real subprocesses: run once, in nox's "realtime" session.
pytestmark = pytest.mark.realtime


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_PROXY": "*"}
    return subprocess.run(  # noqa: S603 - our own command, fixed arguments
        argv, capture_output=True, text=True, timeout=60, check=False, env=env
    )


@pytest.mark.skipif(COMMAND is None, reason="the package is not installed with its scripts")
def test_the_installed_command_runs_the_demo() -> None:
    assert COMMAND is not None
    result = run(COMMAND, "demo", "--generation-seconds", "1.2", "--latency", "0.05")
    assert result.returncode == 0, result.stderr
    assert "Simulated IB Flex Web Service on http://127.0.0.1:" in result.stderr
    assert "SendRequest #1" in result.stderr
    assert "IB 1019" in result.stderr  # at least one poll while generation ran
    assert "Report 'Demo activity' (type AF)" in result.stdout
    assert "U1234567     2026-03-02 to 2026-03-06" in result.stdout
    assert "U7654321     2026-03-02 to 2026-03-06" in result.stdout
    assert "Trades            6" in result.stdout
    assert "demo-token" not in result.stdout + result.stderr


def test_python_dash_m_runs_the_same_demo() -> None:
    result = run(sys.executable, "-m", "ibkr_flex_client", "demo", "--generation-seconds", "0")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Report 'Demo activity' (type AF)"
    rows = dict(line.split() for line in lines[lines.index("Section        rows") + 1 :])
    assert rows == {"Trades": "6", "OpenPositions": "4", "CashReport": "2"}


def test_version_and_help() -> None:
    version = run(sys.executable, "-m", "ibkr_flex_client", "--version")
    assert version.returncode == 0
    assert version.stdout.startswith("ibkr-flex 0.")
    helped = run(sys.executable, "-m", "ibkr_flex_client", "demo", "--help")
    assert helped.returncode == 0
    assert "--generation-seconds" in helped.stdout
    bad = run(sys.executable, "-m", "ibkr_flex_client", "nonsense")
    assert bad.returncode == 2
    assert "invalid choice" in bad.stderr
