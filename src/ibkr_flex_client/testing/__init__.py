"""Test your code against a simulated IB Flex Web Service, with no IB account and no waiting.

>>> from ibkr_flex_client.testing import FakeClock, FlexSimulator      # doctest: +SKIP
>>> clock = FakeClock()
>>> async with FlexSimulator(clock=clock, generation_seconds=30) as sim:
...     client = FlexClient(token="t", query_id="1", base_url=sim.base_url, clock=clock)
...     statement = await client.fetch()    # 30 virtual seconds, a few real milliseconds

The pytest plugin (installed with the package) adds the ``flex_simulator`` and ``flex_clock``
fixtures. :class:`FlexSimulator` (an aiohttp server) loads on first use: the clock, the
statement builder, the account history and the faults import without aiohttp.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_names
from .clock import FakeClock
from .content import DATE_FORMATS, build_statement, default_sections, format_ib_date
from .faults import (
    IB_MESSAGES,
    QUERY_CODES,
    TOKEN_CODES,
    Fault,
    FaultKind,
    RequestRecord,
    fingerprint,
)
from .history import AccountHistory, Correction

if TYPE_CHECKING:  # what type checkers see; at run time, __getattr__ below loads it
    from .simulator import FlexSimulator

# Names whose module imports aiohttp.web: each loads on first use, from the module named here.
_LAZY = {"FlexSimulator": "simulator"}

__all__ = [
    "DATE_FORMATS",
    "IB_MESSAGES",
    "QUERY_CODES",
    "TOKEN_CODES",
    "AccountHistory",
    "Correction",
    "FakeClock",
    "Fault",
    "FaultKind",
    "FlexSimulator",
    "RequestRecord",
    "build_statement",
    "default_sections",
    "fingerprint",
    "format_ib_date",
]

if not TYPE_CHECKING:  # hidden from type checkers, so a misspelt name stays an error there
    __getattr__, __dir__ = lazy_names(__name__, _LAZY, globals(), __all__)
