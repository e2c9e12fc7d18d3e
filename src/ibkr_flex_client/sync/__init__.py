"""``ibkr-flex sync``: a query's whole history, kept current in a local SQLite database.

* :mod:`.windows`: which dates to ask for (pure: windows of at most 365 days, and the search
  for a range IB serves after a 1003).
* :mod:`.keys`: what identifies a row of each tag.
* :mod:`.store`: the database (schema, migrations, de-duplication, corrections).
* :mod:`.engine`: drives the fetches into the store (loads the network client).
* :mod:`.status` and :mod:`.export`: read the database only.

The engine's names load on first use, so reading a database (``--status``, ``export --db``)
never loads the network client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names
from ..errors import StoreBusyError, StoreError
from .export import export_tag
from .status import QueryStatus, read_status
from .store import SCHEMA_VERSION, Store, StoredWindow, TagCounts
from .windows import Window

if TYPE_CHECKING:
    from .engine import SyncEvent, SyncEventKind, SyncReport, sync_history, sync_history_blocking

_LAZY = dict.fromkeys(
    ("SyncEvent", "SyncEventKind", "SyncReport", "sync_history", "sync_history_blocking"), "engine"
)

__all__ = [
    "SCHEMA_VERSION",
    "QueryStatus",
    "Store",
    "StoreBusyError",
    "StoreError",
    "StoredWindow",
    "SyncEvent",
    "SyncEventKind",
    "SyncReport",
    "TagCounts",
    "Window",
    "export_tag",
    "read_status",
    "sync_history",
    "sync_history_blocking",
]

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_names(__name__, _LAZY, globals(), __all__)
