"""The local database of a sync: SQLite (the standard library's), in WAL mode.

Schema (version :data:`SCHEMA_VERSION`, kept in ``PRAGMA user_version``; every table and
column of ours has a name that starts with ``@``, which no XML name (so no IB tag or
attribute) can):

* ``"@windows"``: one row per query and window committed: the dates it covers, the range
  asked of IB (``fd``/``td``), the outcome (``statement``, or ``empty`` when IB has no
  statement for its dates), the statement's accounts, dates and ``whenGenerated``, its
  SHA-256 and the raw statement compressed (zlib), and what it added.
* ``"@runs"``: one row per sync of a query (its range; when it finished): an unfinished one
  is resumed by the next sync of the same range, skipping the windows it committed.
* ``"@columns"``: which column of a tag's table holds which IB attribute (the same name,
  except where SQLite, which ignores case in names, would mix up two of them).
* One table per row tag, named exactly as the tag (``"Trade"``, ``"CashTransaction"``),
  with one TEXT column per attribute, valued exactly as IB wrote it, and ours: ``"@id"``,
  ``"@key"`` (what identifies the row, see :mod:`.keys`), ``"@digest"`` (of all its
  attributes), ``"@account"``, ``"@window"`` (the window that first brought this version),
  ``"@version"`` (1, then 2… when IB corrects the row) and ``"@current"`` (1 for the latest
  version of a key, 0 for the ones it replaced).

A row that comes again unchanged is a duplicate and is not stored again; one whose key comes
with other values is a correction: stored as the next version, the old one kept with
``"@current" = 0``. Migrations from every earlier version run on open, in one transaction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import sqlite3
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timezone
from pathlib import Path

from ..dates import parse_ib_date
from ..errors import StoreError
from .keys import row_key
from .windows import Window

__all__ = ["SCHEMA_VERSION", "Store", "StoreError", "StoredWindow", "TagCounts"]

SCHEMA_VERSION = 2
BUSY_MILLISECONDS = 10_000

# Each step takes the schema from its index to the next version. Never edit a step that has
# been released: add one.
_MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: windows and the column registry.
    """
    CREATE TABLE "@windows" (
        "@id" INTEGER PRIMARY KEY,
        query_id TEXT NOT NULL,
        covers_from TEXT NOT NULL,
        covers_to TEXT NOT NULL,
        asked_from TEXT,
        asked_to TEXT,
        outcome TEXT NOT NULL CHECK (outcome IN ('statement', 'empty')),
        note TEXT NOT NULL DEFAULT '',
        accounts TEXT NOT NULL DEFAULT '',
        statement_from TEXT,
        statement_to TEXT,
        when_generated TEXT,
        sha256 TEXT,
        statement BLOB,
        statement_bytes INTEGER,
        rows_added INTEGER NOT NULL DEFAULT 0,
        duplicates INTEGER NOT NULL DEFAULT 0,
        corrections INTEGER NOT NULL DEFAULT 0,
        stored_at TEXT NOT NULL
    );
    CREATE INDEX "@windows_query" ON "@windows" (query_id, covers_to);
    CREATE TABLE "@columns" (
        tag TEXT NOT NULL,
        attribute TEXT NOT NULL,
        "column" TEXT NOT NULL,
        PRIMARY KEY (tag, attribute)
    );
    """,
    # 1 -> 2: runs, so that a sync killed part-way is resumed without fetching again.
    """
    CREATE TABLE "@runs" (
        "@id" INTEGER PRIMARY KEY,
        query_id TEXT NOT NULL,
        first TEXT NOT NULL,
        last TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT
    );
    ALTER TABLE "@windows" ADD COLUMN run_id INTEGER REFERENCES "@runs" ("@id");
    """,
)
if len(_MIGRATIONS) != SCHEMA_VERSION:  # pragma: no cover - caught by any test
    raise RuntimeError("a migration is missing")

_CHUNK = 500  # keys per SELECT ... IN (...): well under SQLite's limit on parameters
_OURS = ("@id", "@key", "@digest", "@account", "@window", "@version", "@current")


@dataclasses.dataclass(frozen=True, slots=True)
class StoredWindow:
    """A window committed to the store."""

    query_id: str
    covers: Window
    outcome: str
    note: str
    asked: tuple[date, date] | None
    rows_added: int
    duplicates: int
    corrections: int


@dataclasses.dataclass(slots=True)
class TagCounts:
    """What storing rows of one tag did."""

    added: int = 0
    duplicates: int = 0
    corrections: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Fetched:
    """A statement to store for a window: its bytes, header data and rows."""

    xml: bytes
    accounts: tuple[str, ...]
    from_date: date
    to_date: date
    when_generated: str
    rows: Sequence[tuple[str, str, Mapping[str, str]]]  # tag, account, attributes
    day_first: bool | None = None  # how its slashed dates read, where the document says


class Store:
    """A sync's SQLite database, opened (and created or migrated) at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, timeout=BUSY_MILLISECONDS / 1000)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}") from None
        self._db.isolation_level = None  # transactions are ours, explicit
        self._columns: dict[str, dict[str, str]] = {}
        try:
            self._prepare()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"cannot use {self.path} as a sync database: {exc}") from None
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- schema ----------------------------------------------------------------------------

    def _prepare(self) -> None:
        self._db.execute(f"PRAGMA busy_timeout = {BUSY_MILLISECONDS}")
        self._refuse_newer()  # before anything is written to the file
        mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: SQLite cannot use WAL mode here (got {mode})")
        # WAL with synchronous=NORMAL loses nothing committed when a process is killed; only
        # a power cut may lose the last window, which the next sync fetches again.
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("PRAGMA foreign_keys = ON")
        with self._transaction():
            version = self._refuse_newer()
            for step in range(version, SCHEMA_VERSION):
                for statement in _statements(_MIGRATIONS[step]):
                    self._db.execute(statement)
            if version != SCHEMA_VERSION:
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            for tag, attribute, column in self._db.execute(
                'SELECT tag, attribute, "column" FROM "@columns"'
            ):
                self._columns.setdefault(tag, {})[attribute] = column

    def _refuse_newer(self) -> int:
        """The schema version, after refusing a database that is not ours to change: one of
        a newer version, or one of another program (version 0 that holds tables)."""
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version == 0:
            tables = self._db.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
            ).fetchone()[0]
            if tables:
                raise StoreError(
                    f"{self.path} is a SQLite database of another program (it holds tables "
                    "but no sync schema): give sync a database of its own"
                )
        return refuse_newer(self._db, self.path, version)

    @property
    def version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- runs and windows ------------------------------------------------------------------

    def unfinished_runs(self, query_id: str) -> list[tuple[int, date, date]]:
        """The query's syncs that never finished (killed, or stopped by an error): id, first
        and last day."""
        return [
            (int(run_id), date.fromisoformat(first), date.fromisoformat(last))
            for run_id, first, last in self._db.execute(
                'SELECT "@id", first, last FROM "@runs" WHERE query_id = ? '
                'AND finished_at IS NULL ORDER BY "@id"',
                (query_id,),
            )
        ]

    def start_run(self, query_id: str, first: date, last: date) -> int:
        with self._transaction():
            cursor = self._db.execute(
                'INSERT INTO "@runs" (query_id, first, last, started_at) VALUES (?, ?, ?, ?)',
                (query_id, first.isoformat(), last.isoformat(), _now()),
            )
        return int(cursor.lastrowid or 0)

    def finish_run(self, run_id: int) -> None:
        with self._transaction():
            self._db.execute('UPDATE "@runs" SET finished_at = ? WHERE "@id" = ?', (_now(), run_id))

    def windows(self, query_id: str | None = None, run_id: int | None = None) -> list[StoredWindow]:
        """Committed windows, oldest first (of one query, of one run)."""
        sql = (
            "SELECT query_id, covers_from, covers_to, outcome, note, asked_from, asked_to, "
            'rows_added, duplicates, corrections FROM "@windows" WHERE 1=1'
        )
        arguments: list[object] = []
        if query_id is not None:
            sql += " AND query_id = ?"
            arguments.append(query_id)
        if run_id is not None:
            sql += " AND run_id = ?"
            arguments.append(run_id)
        sql += " ORDER BY query_id, covers_from, covers_to"
        return [
            StoredWindow(
                query_id=q,
                covers=Window(date.fromisoformat(a), date.fromisoformat(b)),
                outcome=outcome,
                note=note,
                asked=(date.fromisoformat(f), date.fromisoformat(t)) if f and t else None,
                rows_added=added,
                duplicates=duplicates,
                corrections=corrections,
            )
            for q, a, b, outcome, note, f, t, added, duplicates, corrections in self._db.execute(
                sql, arguments
            )
        ]

    def queries(self) -> list[str]:
        return [q for (q,) in self._db.execute('SELECT DISTINCT query_id FROM "@windows"')]

    def last_covered(self, query_id: str) -> date | None:
        row = self._db.execute(
            'SELECT max(covers_to) FROM "@windows" WHERE query_id = ?', (query_id,)
        ).fetchone()
        return date.fromisoformat(row[0]) if row and row[0] else None

    def opened(self, query_id: str) -> date | None:
        """The latest ``dateOpened`` among the accounts of the query's stored statements
        (``AccountInformation``): IB has no statement of the query before it. None when a
        statement's accounts do not all say."""
        columns = self._columns.get("AccountInformation", {})
        if "dateOpened" not in columns:
            return None
        sql = (
            f'SELECT "@account", {_quote(columns["dateOpened"])} FROM "AccountInformation" '  # noqa: S608
            'WHERE "@current" = 1 AND "@window" IN '
            '(SELECT "@id" FROM "@windows" WHERE query_id = ?)'
        )
        found = {
            account: _day_or_none(text) for account, text in self._db.execute(sql, (query_id,))
        }
        if not found or None in found.values():
            return None
        return max(d for d in found.values() if d is not None)

    def store_empty(self, query_id: str, run_id: int, covers: Window, note: str) -> StoredWindow:
        """Commit a window for which IB has no statement."""
        with self._transaction():
            self._insert_window(query_id, run_id, covers, None, "empty", note)
        return StoredWindow(query_id, covers, "empty", note, None, 0, 0, 0)

    def store_statement(
        self,
        query_id: str,
        run_id: int,
        covers: Window,
        asked: tuple[date, date],
        fetched: Fetched,
    ) -> tuple[StoredWindow, dict[str, TagCounts]]:
        """Commit a window's statement and its rows, all or nothing."""
        counts: dict[str, TagCounts] = {}
        with self._transaction():
            window_id = self._insert_window(query_id, run_id, covers, asked, "statement", "")
            self._db.execute(
                'UPDATE "@windows" SET accounts = ?, statement_from = ?, statement_to = ?, '
                "when_generated = ?, sha256 = ?, statement = ?, statement_bytes = ? "
                'WHERE "@id" = ?',
                (
                    ",".join(fetched.accounts),
                    fetched.from_date.isoformat(),
                    fetched.to_date.isoformat(),
                    fetched.when_generated,
                    hashlib.sha256(fetched.xml).hexdigest(),
                    zlib.compress(fetched.xml, 6),
                    len(fetched.xml),
                    window_id,
                ),
            )
            by_tag: dict[str, list[tuple[str, str, str, Mapping[str, str]]]] = {}
            seen: dict[tuple[str, str, str], int] = {}
            for tag, account, attributes in fetched.rows:
                digest = _digest(attributes)
                occurrence = seen.get((tag, account, digest), 0)
                seen[(tag, account, digest)] = occurrence + 1
                key = row_key(tag, account, attributes, digest, occurrence, fetched.day_first)
                by_tag.setdefault(tag, []).append((key, digest, account, attributes))
            for tag, rows in by_tag.items():
                counts[tag] = self._upsert(tag, rows, window_id, fetched.to_date)
            added = sum(c.added for c in counts.values())
            duplicates = sum(c.duplicates for c in counts.values())
            corrections = sum(c.corrections for c in counts.values())
            self._db.execute(
                'UPDATE "@windows" SET rows_added = ?, duplicates = ?, corrections = ? '
                'WHERE "@id" = ?',
                (added, duplicates, corrections, window_id),
            )
        stored = StoredWindow(
            query_id, covers, "statement", "", asked, added, duplicates, corrections
        )
        return stored, counts

    def _insert_window(
        self,
        query_id: str,
        run_id: int,
        covers: Window,
        asked: tuple[date, date] | None,
        outcome: str,
        note: str,
    ) -> int:
        cursor = self._db.execute(
            'INSERT INTO "@windows" (query_id, run_id, covers_from, covers_to, asked_from, '
            "asked_to, outcome, note, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                query_id,
                run_id,
                covers.first.isoformat(),
                covers.last.isoformat(),
                asked[0].isoformat() if asked else None,
                asked[1].isoformat() if asked else None,
                outcome,
                note,
                _now(),
            ),
        )
        return int(cursor.lastrowid or 0)

    # --- rows ------------------------------------------------------------------------------

    def _upsert(
        self,
        tag: str,
        rows: list[tuple[str, str, str, Mapping[str, str]]],
        window_id: int,
        to_date: date,
    ) -> TagCounts:
        """Store one statement's rows of ``tag``: new keys as version 1; known keys with
        other values as their next version, current unless an already stored version comes
        from a statement that ends later (an older range fetched after a newer one shows IB's
        story as it was); rows already stored (in any version) not again."""
        table = self._table(tag, {name: None for *_, attributes in rows for name in attributes})
        versions, newest = self._versions(table, {key for key, *_ in rows})
        counts = TagCounts()
        pending: dict[str, list[str | int]] = {}  # key -> its newest row to insert
        replaced: set[str] = set()  # keys stored before whose versions are no longer current
        inserts: dict[tuple[str, ...], list[list[str | int]]] = {}
        ends = to_date.isoformat()
        for key, digest, account, attributes in rows:
            known = versions.setdefault(key, {})
            if digest in known:
                counts.duplicates += 1  # this version is stored (or about to be)
                continue
            current = 1
            if known:
                counts.corrections += 1
                if key in pending:
                    pending[key][5] = 0  # an earlier version in this same statement
                elif newest.get(key, "") > ends:
                    current = 0  # a later statement's version stays current
                else:
                    replaced.add(key)
            else:
                counts.added += 1
            version = 1 + max(known.values(), default=0)
            known[digest] = version
            values: list[str | int] = [key, digest, account, window_id, version, current]
            values += attributes.values()
            if current:
                pending[key] = values
            inserts.setdefault(tuple(attributes), []).append(values)
        if replaced:
            self._db.executemany(
                f'UPDATE {table} SET "@current" = 0 WHERE "@key" = ?',  # noqa: S608 - quoted
                [(key,) for key in replaced],
            )
        columns = self._columns[tag]
        for present, batch in inserts.items():
            names = ", ".join(_quote(n) for n in (*_OURS[1:], *(columns[a] for a in present)))
            marks = ", ".join("?" * (len(_OURS) - 1 + len(present)))
            self._db.executemany(
                f"INSERT INTO {table} ({names}) VALUES ({marks})",  # noqa: S608 - quoted names
                batch,
            )
        return counts

    def _versions(
        self, table: str, keys: set[str]
    ) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
        """For each of ``keys`` already stored: its versions (digest -> version), and the
        end (ISO ``toDate``) of the statement its current version came from."""
        found: dict[str, dict[str, int]] = {}
        newest: dict[str, str] = {}
        listed = list(keys)
        for start in range(0, len(listed), _CHUNK):
            chunk = listed[start : start + _CHUNK]
            sql = (
                f'SELECT t."@key", t."@digest", t."@version", t."@current", w.statement_to '  # noqa: S608
                f'FROM {table} AS t JOIN "@windows" AS w ON w."@id" = t."@window" '
                f'WHERE t."@key" IN ({", ".join("?" * len(chunk))})'
            )
            for key, digest, version, current, ends in self._db.execute(sql, chunk):
                found.setdefault(key, {})[digest] = version
                if current:
                    newest[key] = ends or ""
        return found, newest

    def _table(self, tag: str, attributes: Iterable[str]) -> str:
        """The quoted table of ``tag``, created, and widened to hold every attribute."""
        table = _quote(tag)
        columns = self._columns.get(tag)
        if columns is None:
            if tag.startswith("@") or tag.lower().startswith("sqlite_"):
                raise StoreError(f"a row tag named {tag!r} cannot be stored")
            clash = [t for t in self._columns if t.casefold() == tag.casefold()]
            if clash:  # SQLite's names ignore case: both would share one table
                raise StoreError(
                    f"row tags {clash[0]!r} and {tag!r} differ only in case, which SQLite "
                    "cannot keep apart in table names"
                )
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS {table} ("
                '"@id" INTEGER PRIMARY KEY, "@key" TEXT NOT NULL, "@digest" TEXT NOT NULL, '
                '"@account" TEXT NOT NULL, '
                '"@window" INTEGER NOT NULL REFERENCES "@windows" ("@id"), '
                '"@version" INTEGER NOT NULL, "@current" INTEGER NOT NULL)'
            )
            self._db.execute(
                f'CREATE INDEX IF NOT EXISTS {_quote("@" + tag + "_key")} ON {table} ("@key")'
            )
            columns = self._columns[tag] = {}
        for attribute in attributes:
            if attribute not in columns:
                self._add_column(tag, table, attribute, columns)
        return table

    def _add_column(self, tag: str, table: str, attribute: str, columns: dict[str, str]) -> None:
        taken = {c.casefold() for c in columns.values()} | {c.casefold() for c in _OURS}
        column, n = attribute, 1
        while column.casefold() in taken:  # SQLite's names ignore case; IB's do not
            n += 1
            column = f"{attribute}@{n}"
        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {_quote(column)} TEXT")
        self._db.execute(
            'INSERT INTO "@columns" (tag, attribute, "column") VALUES (?, ?, ?)',
            (tag, attribute, column),
        )
        columns[attribute] = column

    # --- reading ---------------------------------------------------------------------------

    def tags(self) -> list[str]:
        return sorted(self._columns)

    def statement(self, query_id: str, covers_from: date) -> bytes | None:
        """The raw statement of a committed window, decompressed and checked."""
        row = self._db.execute(
            'SELECT statement, sha256 FROM "@windows" WHERE query_id = ? AND covers_from = ? '
            "AND outcome = 'statement' ORDER BY \"@id\" DESC LIMIT 1",
            (query_id, covers_from.isoformat()),
        ).fetchone()
        if row is None:
            return None
        xml = zlib.decompress(row[0])
        if hashlib.sha256(xml).hexdigest() != row[1]:
            raise StoreError(f"the stored statement of {query_id} {covers_from} is damaged")
        return xml

    def rows(self, tag: str, *, current_only: bool = True) -> Iterator[dict[str, str]]:
        """The stored rows of ``tag``, with IB's attribute names (and ``@account``)."""
        columns = self._columns.get(tag)
        if columns is None:
            return
        selected = ['"@account"', *(_quote(c) for c in columns.values())]
        where = ' WHERE "@current" = 1' if current_only else ""
        sql = f'SELECT {", ".join(selected)} FROM {_quote(tag)}{where} ORDER BY "@id"'  # noqa: S608
        names = ["@account", *columns]
        for values in self._db.execute(sql):
            yield {n: v for n, v in zip(names, values, strict=True) if v is not None}

    def count(self, tag: str, *, current_only: bool = False) -> int:
        if tag not in self._columns:
            return 0
        where = ' WHERE "@current" = 1' if current_only else ""
        sql = f"SELECT count(*) FROM {_quote(tag)}{where}"  # noqa: S608 - a quoted name
        return int(self._db.execute(sql).fetchone()[0])


def read_only_uri(path: Path) -> str:
    """The URI that opens ``path`` read-only, never creating it (``mode=ro``): of the
    absolute path, percent-encoded, so a name may hold ?, # or %."""
    return path.absolute().as_uri() + "?mode=ro"


def refuse_newer(db: sqlite3.Connection, path: Path, version: int | None = None) -> int:
    """The database's schema version; a :class:`StoreError` if a newer library made it."""
    if version is None:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, from a newer ibkr-flex-client "
            f"(this one knows up to {SCHEMA_VERSION}): upgrade the library"
        )
    return version


def _day_or_none(text: str | None) -> date | None:
    try:
        return parse_ib_date(text or "")
    except ValueError:
        return None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _digest(attributes: Mapping[str, str]) -> str:
    """A digest of the attributes, in any order (names and values cannot hold NUL or \x01:
    XML forbids them)."""
    canonical = "\x00".join(map("\x01".join, sorted(attributes.items())))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
