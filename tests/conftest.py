"""Shared fixtures: a virtual clock and the project's own simulated IB service on loopback."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ibkr_flex_client import FlexClient
from ibkr_flex_client.testing import FakeClock, FlexSimulator

from .redis_server import redis_url  # noqa: F401 - a real Redis server, once per session

DATA = Path(__file__).parent / "data"
TOKEN = "tok-3f9a1c8b7e6d5a4f"  # a fake token whose every appearance the tests hunt for


@pytest.fixture(autouse=True)
def state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own machine-wide budget: never the user's cache, never another test's."""
    directory = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("IBKR_FLEX_STATE_DIR", str(directory))
    monkeypatch.delenv("IBKR_FLEX_PACING", raising=False)
    return directory


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[FlexSimulator]:
    async with FlexSimulator(clock=clock) as simulator:
        yield simulator


@pytest.fixture
def make_client(sim: FlexSimulator, clock: FakeClock) -> Callable[..., FlexClient]:
    """A FlexClient aimed at the simulator, on virtual time; keywords override."""

    def make(**options: Any) -> FlexClient:
        settings: dict[str, Any] = {
            "token": TOKEN,
            "query_id": "42",
            "base_url": sim.base_url,
            "clock": clock,
            "timeout": 0.5,
        }
        settings.update(options)
        return FlexClient(**settings)

    return make


def sql(db: Path | str, statement: str, *params: object) -> list[tuple[Any, ...]]:
    """Run one SQL statement on a database and close it (Python 3.13 warns of a connection
    left to the garbage collector): the rows it gives."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(statement, params).fetchall()
        conn.commit()
    return rows
