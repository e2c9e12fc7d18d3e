"""Writing a command's output: a failed write (a full disk, ``> /dev/full``, a quota) is the
output's fault, reported as such (exit 8), never as a raw ``[Errno 28]``.

Only the output stream is guarded, so an error reading the input is never mistaken for one
writing the output. A broken pipe (``| head``) is left to :func:`~.main` to end quietly.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import IO, AnyStr, Generic

from .exits import EXIT_SAVE, Exit

__all__ = ["OutputError", "Sink", "silence_stdout", "writing"]

STDOUT = "standard output"


class OutputError(Exit):
    """The output could not be written."""

    def __init__(self, name: str, error: OSError) -> None:
        super().__init__(EXIT_SAVE, f"cannot write {name}: {error.strerror or error}")
        self.name = name


@contextlib.contextmanager
def writing(name: str) -> Iterator[None]:
    """Within the block, an :class:`OSError` (not a broken pipe) is :class:`OutputError`."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(name, exc) from exc


class Sink(Generic[AnyStr]):
    """``stream``'s ``write`` and ``flush``, each failure an :class:`OutputError` naming it.

    Enough for what the commands and the library's writers call (``csv``, ``json``)."""

    def __init__(self, stream: IO[AnyStr], name: str = STDOUT) -> None:
        self._stream: IO[AnyStr] = stream
        self.name = name

    def write(self, data: AnyStr) -> int:
        with writing(self.name):
            written: int = self._stream.write(data)
        return written

    def flush(self) -> None:
        with writing(self.name):
            self._stream.flush()


def silence_stdout() -> None:
    """Point file descriptor 1 at the null device: what is still buffered for stdout when the
    interpreter exits goes nowhere, rather than failing a second time (exit 120) after the
    first failure was reported (a broken pipe, a full disk)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
