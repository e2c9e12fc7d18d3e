"""The statement file that ``inspect``, ``export`` and ``models`` read: a path or ``-`` for
standard input, gzip-compressed or not (known by its first bytes, not its name).

Its first bytes are kept: when the library refuses the file, :func:`explained` says what the
file looks like instead (an HTML page, a zip archive, IB's CSV output...; see
:mod:`.._sniff`), for the XML parser's own words help nobody with those.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import io
import os
import shutil
import stat
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from .._sniff import HEAD_BYTES, describe, is_gzip
from ..errors import StatementError
from ..inspection import summarize
from .exits import EXIT_ERROR, EXIT_NO_INPUT, Exit
from .parser import STDIN

__all__ = ["Input", "as_path", "explained", "no_rows", "open_input"]


@dataclasses.dataclass(frozen=True, slots=True)
class Input:
    """An input opened for reading: ``stream`` gives the statement's bytes (inflated)."""

    argument: str  # as typed: a path, or "-"
    name: str  # for messages: the path quoted, or "standard input"
    head: bytes  # the statement's first bytes (inflated), for describe()
    compressed: bool
    regular: bool  # a regular file, which its path opens again from the start
    stream: IO[bytes]

    @property
    def plain_file(self) -> bool:
        """A regular file, not compressed: its path reads as the statement itself (a pipe
        given by name, as ``<(zcat x.gz)`` gives, cannot be read again)."""
        return self.regular and not self.compressed


class _Reader(io.RawIOBase):
    """Bytes from ``read``, whose errors ``translate`` turns into the command's own; the
    first :data:`HEAD_BYTES` of them can be looked at before they are read."""

    def __init__(
        self, read: Callable[[int], bytes], translate: Callable[[Exception], Exception]
    ) -> None:
        super().__init__()
        self._read = read
        self._translate = translate
        self._pending = b""

    def readable(self) -> bool:
        return True

    def head(self) -> bytes:
        """The first bytes (up to :data:`HEAD_BYTES`; fewer only at the end), kept to read."""
        while len(self._pending) < HEAD_BYTES and (more := self._more(HEAD_BYTES)):
            self._pending += more
        return self._pending[:HEAD_BYTES]

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self._pending or self._more(len(view))
        size = min(len(data), len(view))
        view[:size] = data[:size]
        self._pending = data[size:]
        return size

    def _more(self, size: int) -> bytes:
        try:
            return self._read(size)
        except (OSError, EOFError, zlib.error) as exc:
            raise self._translate(exc) from exc


def _open_file(argument: str) -> IO[bytes]:
    path = Path(argument)
    try:
        if path.is_dir():  # open() says so on POSIX only, and "permission denied" on Windows
            raise Exit(EXIT_NO_INPUT, f"{argument!r} is a directory, not a statement file")
        return path.open("rb")
    except (FileNotFoundError, NotADirectoryError):
        raise Exit(EXIT_NO_INPUT, f"no such file: {argument!r}") from None
    except OSError as exc:
        raise Exit(EXIT_NO_INPUT, f"cannot read {argument!r}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def open_input(argument: str) -> Iterator[Input]:
    """``argument`` (a path, or ``-``) opened, inflated if it is gzip-compressed."""
    with contextlib.ExitStack() as stack:
        if argument == STDIN:
            name, raw = "standard input", sys.stdin.buffer
        else:
            name, raw = repr(argument), stack.enter_context(_open_file(argument))

        def cannot_read(exc: Exception) -> Exception:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            return Exit(EXIT_NO_INPUT, f"cannot read {name}: {reason}")

        def damaged(exc: Exception) -> Exception:
            return StatementError(
                f"not a Flex statement: {name} is damaged gzip-compressed data ({exc})"
            )

        reader = _Reader(raw.read, cannot_read)
        head = reader.head()
        compressed = is_gzip(head)
        if compressed:
            inflated = gzip.GzipFile(fileobj=io.BufferedReader(reader), mode="rb")
            reader = _Reader(stack.enter_context(inflated).read, damaged)
            head = reader.head()
        regular = argument != STDIN and _is_regular(raw)
        yield Input(argument, name, head, compressed, regular, io.BufferedReader(reader))


def _is_regular(file: IO[bytes]) -> bool:
    try:
        return stat.S_ISREG(os.fstat(file.fileno()).st_mode)
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def as_path(source: Input) -> Iterator[Path]:
    """A path to read the statement from, as often as needed: the file itself, or for
    standard input and compressed files a temporary copy of the XML (readable by its owner
    only, removed at the end of the block, whatever happens)."""
    if source.plain_file:
        yield Path(source.argument)
        return
    descriptor, name = tempfile.mkstemp(prefix="ibkr-flex-", suffix=".xml")  # mode 0600
    path = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as copy:
            try:
                shutil.copyfileobj(source.stream, copy)
                copy.flush()
            except OSError as exc:  # reading fails as Exit or StatementError: not OSError
                raise Exit(
                    EXIT_ERROR,
                    f"cannot copy {source.name} to a temporary file: {exc.strerror or exc}",
                ) from None
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def explained(source: Input) -> Iterator[None]:
    """Within the block, a :class:`StatementError` for a file that is not XML at all says
    what the file looks like instead (see :func:`.._sniff.describe`)."""
    try:
        yield
    except StatementError as exc:
        kind = describe(source.head)
        if kind is None:  # XML: the library's message says what is wrong with it
            raise
        verb = "is" if kind.startswith("empty") else "looks like"
        inflated = " once inflated" if source.compressed else ""
        raise StatementError(
            f"not a Flex statement: {source.name}{inflated} {verb} {kind}"
        ) from exc


def no_rows(source: Input, tag: str, path: Path) -> Exit:
    """The error for a file without ``tag`` rows, with the tags that have rows (read from
    ``path``, the statement as :func:`as_path` gave it)."""
    tags = [t.tag for t in summarize(path).tags.values() if t.attributes]
    return Exit(EXIT_ERROR, f"no <{tag}> rows in {source.name}; tags with rows: {', '.join(tags)}")
