"""The command line and the token's shared budget: --pacing, IBKR_FLEX_PACING, unlock."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ibkr_flex_client import EventKind, FetchEvent, LockedOutError, Step
from ibkr_flex_client._clock import SystemClock
from ibkr_flex_client.cli import parser as cli_parser
from ibkr_flex_client.cli import progress
from ibkr_flex_client.pacing import PACING_VARIABLE, TokenPacer, token_digest
from ibkr_flex_client.pacing.machine import MachineBackend
from ibkr_flex_client.testing import FlexSimulator, fingerprint

from .test_cli import run


@pytest.fixture(scope="module")
def service() -> Iterator[FlexSimulator]:
    with FlexSimulator(generation_seconds=0.2).serve_in_thread() as sim:
        yield sim


@pytest.fixture
def token() -> str:
    return f"SECRET-{uuid.uuid4().hex}"


def lock_out(token: str, state_dir: Path, seconds: float = 3600.0) -> None:
    """What another process does on IB's 1025: keep the lock-out in the shared state."""
    pacer = TokenPacer(SystemClock(), MachineBackend(state_dir, token_digest(token)))
    error = LockedOutError("IB 1025: too many failed attempts", code=1025)
    asyncio.run(pacer.lock_out(error, seconds))


def requests_of(service: FlexSimulator, token: str) -> list[str]:
    return [r.answer for r in service.requests if r.token_fingerprint == fingerprint(token)]


def test_two_fetches_back_to_back_share_the_budget(service: FlexSimulator, token: str) -> None:
    for query in ("1", "2", "3"):
        result = run("fetch", "--base-url", service.base_url, "-q", query, token=token)
        assert result.returncode == 0, result.stderr
    answers = requests_of(service, token)
    assert "1018" not in answers
    assert answers.count("statement") == 3


def test_a_locked_out_token_sends_nothing_until_unlocked(
    service: FlexSimulator, token: str, state_dir: Path
) -> None:
    lock_out(token, state_dir)
    refused = run("fetch", "--base-url", service.base_url, "-q", "1", token=token)
    assert refused.returncode == 5
    assert b"ibkr-flex unlock" in refused.stderr
    assert requests_of(service, token) == []

    unlocked = run("unlock", token=token)
    assert unlocked.returncode == 0, unlocked.stderr
    assert b"unlocked" in unlocked.stdout
    again = run("unlock", token=token)
    assert again.returncode == 0
    assert b"was not locked out" in again.stdout

    fetched = run("fetch", "--base-url", service.base_url, "-q", "1", token=token)
    assert fetched.returncode == 0, fetched.stderr


def test_a_lock_out_is_kept_for_lockout_seconds_only(
    service: FlexSimulator, token: str, state_dir: Path
) -> None:
    lock_out(token, state_dir, seconds=0.5)
    time.sleep(0.6)
    fetched = run("fetch", "--base-url", service.base_url, "-q", "1", token=token)
    assert fetched.returncode == 0, fetched.stderr


@pytest.mark.parametrize(
    ("argv", "environment", "expected"),
    [
        (["--pacing", "bogus"], {}, b"--pacing must be"),
        (["--pacing", "redis://:hunter2@"], {}, b"may hold a password"),
        (["--pacing", "redis://h:1/0?password=hunter2 x"], {}, b"may hold a password"),
        ([], {PACING_VARIABLE: "everywhere"}, PACING_VARIABLE.encode()),
        (["--lockout-seconds", "0"], {}, b"--lockout-seconds must be"),
    ],
)
def test_bad_pacing_settings_are_usage_errors(
    service: FlexSimulator,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    environment: dict[str, str],
    expected: bytes,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    result = run("fetch", "--base-url", service.base_url, "-q", "1", *argv, token=token)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert b"hunter2" not in result.stderr
    assert requests_of(service, token) == []


def test_an_unusable_state_directory_exits_78_before_any_request(
    service: FlexSimulator, token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_bytes(b"")
    monkeypatch.setenv("IBKR_FLEX_STATE_DIR", str(in_the_way / "state"))
    result = run("fetch", "--base-url", service.base_url, "-q", "1", token=token)
    assert result.returncode == 78, result.stderr
    assert b"IBKR_FLEX_STATE_DIR" in result.stderr
    assert requests_of(service, token) == []
    # process pacing needs no state directory
    fetched = run(
        "fetch", "--base-url", service.base_url, "-q", "1", "--pacing", "process", token=token
    )
    assert fetched.returncode == 0, fetched.stderr


def test_unlock_without_a_token_says_how_to_give_one() -> None:
    result = run("unlock")
    assert result.returncode == 78
    assert b"IBKR_FLEX_TOKEN" in result.stderr


def test_the_command_line_names_the_librarys_variable() -> None:
    assert cli_parser.PACING_VARIABLE == PACING_VARIABLE


@pytest.mark.parametrize(
    ("detail", "shown"),
    [
        ("pacing", "SendRequest #1 in 6.0s (pacing)"),
        ("pacing: queued behind 3 requests of this token", "(queued behind 3 requests"),
        ("pacing: another process of this token goes first", "(another process of this"),
        ("generation takes about a second", "GetStatement #1 in 6.0s"),
    ],
)
def test_progress_says_when_a_query_waits_for_the_tokens_budget(detail: str, shown: str) -> None:
    step = Step.GET_STATEMENT if detail.startswith("generation") else Step.SEND_REQUEST
    event = FetchEvent(EventKind.WAIT, "7", step, 0, 1.0, wait=6.0, detail=detail)
    line = progress._state(event, 0.0)
    assert shown in line
    if not detail.startswith("pacing"):
        assert "(" not in line
