"""Out of the store: one tag's rows of a sync database as CSV, JSON lines or Parquet.

The database is opened read-only (SQLite's ``mode=ro``): none is created where there is
none, and nothing in it changes. A sync may run meanwhile: in WAL mode a reader never waits
for the writer, and the export reads one snapshot (one read transaction), so it sees the
windows committed before it began and nothing half-stored. (Like any SQLite reader of a WAL
database, it may leave the side files ``-wal`` and ``-shm`` beside it, empty of data; the
next sync removes them.)

Columns: ours first (``@account``; with ``all_versions`` also ``@version`` and
``@current``), then IB's attributes in the order the store first saw them. Every value is
a string, exactly as IB wrote it (``@version`` and ``@current`` too, for one rule); a row
without an attribute has an empty CSV field, no key in JSON lines, a null in Parquet.
Parquet needs pyarrow, the ``parquet`` extra: ``pip install 'ibkr-flex-client[parquet]'``.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import importlib
import itertools
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import IO, Literal, cast, overload

from ..errors import StoreError
from .store import BUSY_MILLISECONDS, Store, _quote, read_only_uri, refuse_newer

__all__ = ["FORMATS", "PARQUET_EXTRA", "export_tag"]

FORMATS = ("csv", "jsonl", "parquet")
PARQUET_EXTRA = "ibkr-flex-client[parquet]"
_BATCH = 10_000  # rows per Parquet record batch: memory stays flat whatever the table holds

Values = tuple[str | None, ...]  # one row, aligned with the column names


@overload
def export_tag(
    database: Store | str | os.PathLike[str],
    tag: str,
    out: IO[str],
    output_format: Literal["csv", "jsonl"],
    *,
    all_versions: bool = False,
) -> int: ...
@overload
def export_tag(
    database: Store | str | os.PathLike[str],
    tag: str,
    out: IO[bytes],
    output_format: Literal["parquet"],
    *,
    all_versions: bool = False,
) -> int: ...
def export_tag(
    database: Store | str | os.PathLike[str],
    tag: str,
    out: IO[str] | IO[bytes],
    output_format: Literal["csv", "jsonl", "parquet"],
    *,
    all_versions: bool = False,
) -> int:
    """Write the stored ``tag`` rows of a sync database to ``out`` (text for ``csv`` and
    ``jsonl``, binary for ``parquet``), in the order they were stored. Returns the rows
    written. Current versions only, unless ``all_versions`` (then the versions a correction
    replaced too).

    ``database`` is the database's path, or an open :class:`Store` (read through a read-only
    connection of its own). Before anything is written, raises: :class:`FileNotFoundError`
    (or another :class:`OSError`) if there is no database file there; :class:`StoreError` if
    it is not a sync database, or one of a newer schema; ``ValueError`` if it holds no
    ``tag`` rows (saying which tags it does hold) or ``output_format`` is unknown;
    :class:`ImportError` for ``parquet`` without pyarrow (naming the extra to install).
    """
    if output_format not in FORMATS:
        raise ValueError(f"output_format must be one of {', '.join(FORMATS)}: {output_format!r}")
    arrow = _pyarrow() if output_format == "parquet" else None
    path = database.path if isinstance(database, Store) else Path(database)
    try:
        with _snapshot(path) as db:
            names, rows = _select(db, path, tag, all_versions=all_versions)
            if arrow is not None:
                return _parquet(arrow, names, rows, cast("IO[bytes]", out))
            text = cast("IO[str]", out)
            if output_format == "jsonl":
                return _jsonl(names, rows, text)
            return _csv(names, rows, text)
    except sqlite3.Error as exc:  # translated here, once: nothing of sqlite3 escapes
        raise StoreError(f"cannot read {path} as a sync database: {exc}") from None


@contextlib.contextmanager
def _snapshot(path: Path) -> Iterator[sqlite3.Connection]:
    """``path`` opened read-only, in one read transaction; checked to be a sync database
    whose schema this library knows."""
    if not path.exists():  # mode=ro never creates it: this is for a clear message
        raise FileNotFoundError(errno.ENOENT, "no sync database", str(path))
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "a directory, not a sync database", str(path))
    db = sqlite3.connect(read_only_uri(path), uri=True, timeout=BUSY_MILLISECONDS / 1000)
    try:
        db.isolation_level = None  # the transaction below is ours
        version = refuse_newer(db, path)
        db.execute("BEGIN")  # deferred: the snapshot starts at the first read below
        known = db.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '@columns'"
        ).fetchone()[0]
        if version == 0 or not known:
            raise StoreError(f"{path} is not a sync database (`ibkr-flex sync` makes one)")
        yield db
    finally:
        db.close()  # a read transaction: nothing to commit or roll back


def _select(
    db: sqlite3.Connection, path: Path, tag: str, *, all_versions: bool
) -> tuple[list[str], Iterator[Values]]:
    """The column names and the rows of ``tag``; ``ValueError`` if there are none."""
    # "@columns" has a rowid: the order in which the store first met each attribute.
    columns = db.execute(
        'SELECT attribute, "column" FROM "@columns" WHERE tag = ? ORDER BY rowid', (tag,)
    ).fetchall()
    table = _quote(tag)
    where = "" if all_versions else ' WHERE "@current" = 1'
    first = None
    if columns:
        first = db.execute(f"SELECT 1 FROM {table}{where} LIMIT 1").fetchone()  # noqa: S608
    if first is None:
        held = [t for (t,) in db.execute('SELECT DISTINCT tag FROM "@columns" ORDER BY tag')]
        raise ValueError(f"no <{tag}> rows in {path}; row tags in it: {', '.join(held) or 'none'}")
    ours = ["@account"]
    selected = ['"@account"']
    if all_versions:  # as text: every value exported is a string
        ours += ["@version", "@current"]
        selected += ['CAST("@version" AS TEXT)', 'CAST("@current" AS TEXT)']
    selected += [_quote(column) for _, column in columns]
    sql = f'SELECT {", ".join(selected)} FROM {table}{where} ORDER BY "@id"'  # noqa: S608
    return [*ours, *(attribute for attribute, _ in columns)], db.execute(sql)


def _jsonl(names: list[str], rows: Iterator[Values], out: IO[str]) -> int:
    count = 0
    for count, values in enumerate(rows, start=1):  # noqa: B007
        row = {n: v for n, v in zip(names, values, strict=True) if v is not None}
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return count


def _csv(names: list[str], rows: Iterator[Values], out: IO[str]) -> int:
    writer = csv.writer(out, lineterminator="\n")  # as the file export writes
    writer.writerow(names)
    count = 0
    for count, values in enumerate(rows, start=1):  # noqa: B007
        writer.writerow(["" if v is None else v for v in values])
    return count


def _parquet(
    arrow: tuple[ModuleType, ModuleType], names: list[str], rows: Iterator[Values], out: IO[bytes]
) -> int:
    """One string column per name (null where a row lacks the attribute), in batches."""
    pa, parquet = arrow
    schema = pa.schema([pa.field(name, pa.string()) for name in names])
    count = 0
    with parquet.ParquetWriter(out, schema) as writer:
        while batch := list(itertools.islice(rows, _BATCH)):
            arrays = [pa.array(column, pa.string()) for column in zip(*batch, strict=True)]
            writer.write_batch(pa.record_batch(arrays, schema=schema))
            count += len(batch)
    return count


def _pyarrow() -> tuple[ModuleType, ModuleType]:
    """pyarrow and pyarrow.parquet, or an ImportError that says which extra to install.
    Imported by name, when first needed: pyarrow is optional, and ships no type hints."""
    try:
        return importlib.import_module("pyarrow"), importlib.import_module("pyarrow.parquet")
    except ImportError as exc:
        raise ImportError(
            f"Parquet output needs pyarrow: pip install '{PARQUET_EXTRA}' ({exc})", name="pyarrow"
        ) from None
