"""Download Interactive Brokers Flex Query reports through IB's Flex Web Service.

>>> client = FlexClient(token="…", query_id="…")                  # doctest: +SKIP
>>> async with aiohttp.ClientSession() as session:                 # doctest: +SKIP
...     statement = await client.fetch(session)
>>> for trade in statement.iter("Trade"):                          # doctest: +SKIP
...     print(trade.get("symbol"), trade.get("quantity"))
"""

from ._version import __version__
from .client import FlexClient
from .dates import parse_ib_date
from .errors import (
    FlexError,
    LockedOutError,
    NotReadyError,
    QueryError,
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
from .statement import FlexStatement

__all__ = [
    "EventKind",
    "FetchEvent",
    "FlexClient",
    "FlexError",
    "FlexStatement",
    "LockedOutError",
    "NotReadyError",
    "ProgressCallback",
    "QueryError",
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
    "parse_ib_date",
]
