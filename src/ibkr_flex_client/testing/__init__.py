"""Test your code against a simulated IB Flex Web Service, with no IB account and no waiting.

>>> from ibkr_flex_client.testing import FakeClock, FlexSimulator      # doctest: +SKIP
>>> clock = FakeClock()
>>> async with FlexSimulator(clock=clock, generation_seconds=30) as sim:
...     client = FlexClient(token="t", query_id="1", base_url=sim.base_url, clock=clock)
...     statement = await client.fetch()    # 30 virtual seconds, a few real milliseconds

The pytest plugin (installed with the package) adds the ``flex_simulator`` fixture.
"""

from .clock import FakeClock
from .content import DATE_FORMATS, build_statement, default_sections, format_ib_date
from .simulator import (
    IB_MESSAGES,
    QUERY_CODES,
    TOKEN_CODES,
    Fault,
    FaultKind,
    FlexSimulator,
    RequestRecord,
    fingerprint,
)

__all__ = [
    "DATE_FORMATS",
    "IB_MESSAGES",
    "QUERY_CODES",
    "TOKEN_CODES",
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
