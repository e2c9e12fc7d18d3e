"""Download Interactive Brokers Flex Query reports through IB's Flex Web Service.

>>> client = FlexClient(token="…", query_id="…")                  # doctest: +SKIP
>>> async with aiohttp.ClientSession() as session:                 # doctest: +SKIP
...     statement = await client.fetch(session)
>>> for trade in statement.iter("Trade"):                          # doctest: +SKIP
...     print(trade.get("symbol"), trade.get("quantity"))

Reading statements (:class:`FlexStatement`, :func:`iter_rows`, …) never touches the network,
so the network stack (aiohttp, ssl) loads only when :class:`FlexClient`,
:func:`fetch_statement` or :func:`download_statement` is first used.
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_names
from ._version import __version__
from .dates import parse_ib_date, parse_ib_datetime
from .errors import (
    FlexError,
    LockedOutError,
    NotReadyError,
    PacingError,
    QueryError,
    SaveError,
    ServiceUnavailableError,
    StatementError,
    Step,
    StoreBusyError,
    StoreError,
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

if TYPE_CHECKING:  # what type checkers see; at run time, __getattr__ below loads them
    from .client import FlexClient, download_statement, fetch_statement
    from .pacing import unlock
    from .sync import sync_history, sync_history_blocking

# Names whose module imports aiohttp (or asyncio, which imports ssl): each loads on first
# use, from the module named here.
_LAZY = {
    "FlexClient": "client",
    "download_statement": "client",
    "fetch_statement": "client",
    "unlock": "pacing",
    "sync_history": "sync",
    "sync_history_blocking": "sync",
}

__all__ = [
    "AccountStatement",
    "EventKind",
    "FetchEvent",
    "FlexClient",
    "FlexError",
    "FlexStatement",
    "LockedOutError",
    "NotReadyError",
    "PacingError",
    "ProgressCallback",
    "QueryError",
    "RowError",
    "SaveError",
    "ServiceUnavailableError",
    "StatementError",
    "Step",
    "StoreBusyError",
    "StoreError",
    "TemporaryError",
    "ThrottledError",
    "TokenError",
    "TransportError",
    "UnknownCodeError",
    "UnsafeUrlError",
    "__version__",
    "download_statement",
    "fetch_statement",
    "iter_elements",
    "iter_rows",
    "parse_ib_date",
    "parse_ib_datetime",
    "sync_history",
    "sync_history_blocking",
    "unlock",
]


if not TYPE_CHECKING:  # hidden from type checkers, so a misspelt name stays an error there
    __getattr__, __dir__ = lazy_names(__name__, _LAZY, globals(), __all__)
