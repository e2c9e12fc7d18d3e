"""``ibkr-flex models``: a model class for one tag's rows, typed from the file's values."""

from __future__ import annotations

import argparse
from typing import TextIO

from ..errors import StatementError
from ..inspection import infer_model
from .exits import EXIT_ERROR, EXIT_OK, Exit
from .inputs import as_path, explained, open_input
from .output import Sink

__all__ = ["main"]


def main(args: argparse.Namespace, out: TextIO) -> int:
    # infer_model() may read the file twice (a section's tag, then its rows): as_path()
    # gives it a file it can reopen, a temporary copy for standard input or a compressed file.
    with open_input(args.file) as source, explained(source), as_path(source) as path:
        try:
            code = infer_model(path, args.tag, args.style)
        except StatementError:
            raise
        except ValueError as exc:  # the tag names no rows: the library says which do
            raise Exit(EXIT_ERROR, str(exc)) from None
    sink = Sink(out)
    sink.write(code)
    sink.flush()
    return EXIT_OK
