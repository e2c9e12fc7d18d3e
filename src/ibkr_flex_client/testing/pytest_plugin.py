"""pytest fixtures for testing code that uses ibkr-flex-client; registered on install.

``flex_simulator`` is a running :class:`FlexSimulator` on loopback (in a background thread, so
it works with any async test runner or none), on the virtual time of ``flex_clock``, a
:class:`FakeClock`. Pass ``clock=flex_clock`` to the client, async or blocking:

    async def test_my_report(flex_simulator: FlexSimulator, flex_clock: FakeClock) -> None:
        client = FlexClient(
            token="any", query_id="1", base_url=flex_simulator.base_url, clock=flex_clock
        )
        statement = await client.fetch()

    def test_my_script(flex_simulator: FlexSimulator, flex_clock: FakeClock) -> None:
        statement = fetch_statement(
            token="any", query_id="1", base_url=flex_simulator.base_url, clock=flex_clock
        )

A client on another clock (one that forgot ``clock=``) would be throttled by IB's limits on a
time it never moves; the fixture's simulator refuses its first request instead, with a
:class:`~ibkr_flex_client.QueryError` (IB code 1020) that says to pass ``clock=flex_clock``.

Loading the plugin, which pytest does in every session, imports neither aiohttp nor the
simulator: they load when a test first asks for ``flex_simulator``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from .clock import FakeClock

if TYPE_CHECKING:
    from .simulator import FlexSimulator


@pytest.fixture
def flex_clock() -> FakeClock:
    """Virtual time: pass it to the client (``clock=flex_clock``) so backoffs do not wait."""
    return FakeClock()


@pytest.fixture
def flex_simulator(flex_clock: FakeClock) -> Iterator[FlexSimulator]:
    """A simulated IB Flex Web Service on a free loopback port, on ``flex_clock``'s time.

    It answers only clients on ``flex_clock`` (``require_shared_clock``): any other request
    fails at once with a message saying to pass ``clock=flex_clock``.
    """
    from .simulator import FlexSimulator  # noqa: PLC0415 - aiohttp.web loads on first use

    simulator = FlexSimulator(clock=flex_clock, require_shared_clock=True)
    with simulator.serve_in_thread() as running:
        yield running
