"""``ibkr-flex export``: one tag's rows as CSV or JSON lines, streaming, from a statement FILE;
or as CSV, JSON lines or Parquet from a sync database (``--db``, read-only: see
:mod:`..sync.export`)."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TextIO, cast

from .._files import atomic_output
from ..errors import StatementError
from ..inspection import export_rows
from .exits import EXIT_CONFIG, EXIT_ERROR, EXIT_NO_INPUT, EXIT_OK, EXIT_USAGE, Exit
from .inputs import as_path, explained, no_rows, open_input
from .output import OutputError, Sink

__all__ = ["main"]


def main(args: argparse.Namespace, out: TextIO) -> int:
    _check_usage(args)
    if args.db is not None:
        return _export_database(args, out)
    try:
        return _export(args, out)
    except StatementError:
        raise
    except ValueError as exc:  # the tag names no rows: the library says which do
        raise Exit(EXIT_ERROR, str(exc)) from None


def _check_usage(args: argparse.Namespace) -> None:
    """What the grammar cannot say: one source, and what each source can give."""
    if (args.file is None) == (args.db is None):
        given = "both" if args.db is not None else "neither"
        raise Exit(
            EXIT_USAGE,
            f"export reads a statement FILE or a sync database (--db PATH): {given} given",
        )
    if args.db is None and args.all_versions:
        raise Exit(EXIT_USAGE, "--all-versions needs --db: a statement file holds no versions")
    if args.db is None and args.format == "parquet":
        raise Exit(EXIT_USAGE, "--format parquet reads a sync database: use --db")
    if args.format == "parquet" and args.output is None:
        raise Exit(EXIT_USAGE, "--format parquet needs -o FILE (Parquet is not written to stdout)")


def _export(args: argparse.Namespace, out: TextIO) -> int:
    # export_rows() reads its input twice (a check, then the rows): as_path() gives it a
    # file it can reopen, a temporary copy for standard input or a compressed file.
    with open_input(args.file) as source, explained(source), as_path(source) as path:
        if args.output is None:
            sink = Sink(out)
            count = export_rows(path, args.tag, cast("IO[str]", sink), args.format)
            sink.flush()
            if count == 0:
                raise no_rows(source, args.tag, path)
            return EXIT_OK
        with _text_file(args.output) as sink:
            count = export_rows(path, args.tag, cast("IO[str]", sink), args.format)
            if count == 0:  # nothing is written: the output stays as it was
                raise no_rows(source, args.tag, path)
    return EXIT_OK


def _export_database(args: argparse.Namespace, out: TextIO) -> int:
    from ..sync.export import export_tag  # noqa: PLC0415 - only this path needs the sync

    path = _database(args.db)
    versions = bool(args.all_versions)

    def write(into: IO[str]) -> None:
        with _library_errors(path):
            export_tag(path, args.tag, into, args.format, all_versions=versions)

    if args.format == "parquet":
        with _binary_file(args.output) as binary, _library_errors(path):
            export_tag(path, args.tag, binary, "parquet", all_versions=versions)
    elif args.output is None:
        sink = Sink(out)
        write(cast("IO[str]", sink))
        sink.flush()
    else:
        with _text_file(args.output) as sink:
            write(cast("IO[str]", sink))
    return EXIT_OK


def _database(argument: str) -> Path:
    """``--db``: an existing, readable file (never created: export only reads)."""
    path = Path(argument)
    if path.is_dir():
        raise Exit(EXIT_NO_INPUT, f"{argument!r} is a directory, not a sync database")
    if not path.exists():
        raise Exit(EXIT_NO_INPUT, f"no sync database at {argument!r}")
    if not os.access(path, os.R_OK):
        raise Exit(EXIT_NO_INPUT, f"cannot read {argument!r}: permission denied")
    return path


@contextlib.contextmanager
def _library_errors(path: Path) -> Iterator[None]:
    """export_tag()'s documented errors as exit statuses (StoreError maps by its class)."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError):  # gone since _database() looked
        raise Exit(EXIT_NO_INPUT, f"no sync database at {str(path)!r}") from None
    except ImportError as exc:  # --format parquet without pyarrow: the message names the extra
        raise Exit(EXIT_CONFIG, str(exc)) from None
    except ValueError as exc:  # no rows of the tag: the library says which tags there are
        raise Exit(EXIT_ERROR, str(exc)) from None


@contextlib.contextmanager
def _text_file(output: str) -> Iterator[Sink[str]]:
    """``-o FILE`` for text (UTF-8), there only if the block completes."""
    with _binary_file(output) as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        try:
            sink = Sink(text, repr(output))
            yield sink
            sink.flush()
        finally:
            text.detach()  # the binary file is atomic_output's to close


@contextlib.contextmanager
def _binary_file(output: str) -> Iterator[IO[bytes]]:
    """``-o FILE``, written atomically: on any error it stays as it was."""
    try:
        with atomic_output(Path(output)) as binary:
            yield binary
    except OSError as exc:  # atomic_output's flush to disk and close
        raise OutputError(repr(output), exc) from exc
