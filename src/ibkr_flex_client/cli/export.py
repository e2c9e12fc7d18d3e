"""``ibkr-flex export``: one tag's rows as CSV or JSON lines, streaming."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import IO, TextIO, cast

from .._files import atomic_output
from ..errors import StatementError
from ..inspection import export_rows
from .exits import EXIT_ERROR, EXIT_OK, Exit
from .inputs import as_path, explained, no_rows, open_input
from .output import OutputError, Sink

__all__ = ["main"]


def main(args: argparse.Namespace, out: TextIO) -> int:
    try:
        return _export(args, out)
    except StatementError:
        raise
    except ValueError as exc:  # the tag names no rows: the library says which do
        raise Exit(EXIT_ERROR, str(exc)) from None


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
        name = repr(args.output)
        try:
            with atomic_output(Path(args.output)) as binary:
                text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
                sink = Sink(text, name)
                count = export_rows(path, args.tag, cast("IO[str]", sink), args.format)
                sink.flush()
                text.detach()
                if count == 0:  # nothing is written: the output stays as it was
                    raise no_rows(source, args.tag, path)
        except OSError as exc:  # atomic_output's flush to disk and close
            raise OutputError(name, exc) from exc
    return EXIT_OK
