"""Download Interactive Brokers Flex Query reports through IB's Flex Web Service.

>>> client = FlexClient(token="…", query_id="…")                  # doctest: +SKIP
>>> async with aiohttp.ClientSession() as session:                 # doctest: +SKIP
...     statement = await client.fetch(session)
>>> for trade in statement.iter("Trade"):                          # doctest: +SKIP
...     print(trade.get("symbol"), trade.get("quantity"))
"""

from ._version import __version__
from .client import FlexClient, fetch_statement
from .dates import parse_ib_date, parse_ib_datetime
from .errors import (
    FlexError,
    LockedOutError,
    NotReadyError,
    QueryError,
    SaveError,
    ServiceUnavailableError,
    StatementError,
    Step,
    TemporaryError,
    ThrottledError,
    TokenError,
    TransportError,
    UnknownCodeError,
    UnsafeUrlError,
)
from .events import EventKind, FetchEvent, ProgressCallback
from .rows import RowError
from .statement import AccountStatement, FlexStatement
from .stream import iter_elements, iter_rows

__all__ = [
    "AccountStatement",
    "EventKind",
    "FetchEvent",
    "FlexClient",
    "FlexError",
    "FlexStatement",
    "LockedOutError",
    "NotReadyError",
    "ProgressCallback",
    "QueryError",
    "RowError",
    "SaveError",
    "ServiceUnavailableError",
    "StatementError",
    "Step",
    "TemporaryError",
    "ThrottledError",
    "TokenError",
    "TransportError",
    "UnknownCodeError",
    "UnsafeUrlError",
    "__version__",
    "fetch_statement",
    "iter_elements",
    "iter_rows",
    "parse_ib_date",
    "parse_ib_datetime",
]
