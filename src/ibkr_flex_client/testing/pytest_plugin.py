"""pytest fixtures for testing code that uses ibkr-flex-client; registered on install.

``flex_simulator`` is a running :class:`FlexSimulator` on loopback (in a background thread, so
it works with any async test runner or none), sharing ``flex_clock``, a :class:`FakeClock`:

    async def test_my_report(flex_simulator, flex_clock):
        client = FlexClient(
            token="any", query_id="1", base_url=flex_simulator.base_url, clock=flex_clock
        )
        statement = await client.fetch()
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .clock import FakeClock
from .simulator import FlexSimulator


@pytest.fixture
def flex_clock() -> FakeClock:
    """Virtual time: pass it to ``FlexClient(clock=...)`` so backoffs do not really wait."""
    return FakeClock()


@pytest.fixture
def flex_simulator(flex_clock: FakeClock) -> Iterator[FlexSimulator]:
    """A simulated IB Flex Web Service on a free loopback port, on ``flex_clock``'s time."""
    with FlexSimulator(clock=flex_clock).serve_in_thread() as simulator:
        yield simulator
