"""Statements of any size, read as a stream: one tag's elements (or typed rows) at a time.

Memory stays flat however large the file: every element is detached from the tree once it
has been handed over (or is known not to be wanted), so only the open ancestors of the
current element are kept. The prolog is checked for a DTD before anything is parsed.
"""

from __future__ import annotations

import contextlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import IO, TypeVar, cast

from ._xml import XmlRejectedError, check_prolog, prolog_read
from .dates import infer_day_first
from .errors import StatementError
from .rows import RowReader
from .statement import check_structure

__all__ = ["check_statement_file", "iter_elements", "iter_rows", "walk"]

T = TypeVar("T")

CHUNK = 64 * 1024
# A prolog (declaration, comments) longer than this before the root is not a Flex statement.
MAX_PROLOG = 1024 * 1024

Source = str | os.PathLike[str] | IO[bytes]


def _chunks(source: Source) -> Iterator[bytes]:
    """The file's bytes in chunks, the first one long enough to hold the whole prolog."""
    with contextlib.ExitStack() as stack:
        file: IO[bytes] = (
            stack.enter_context(open(source, "rb"))  # noqa: PTH123 - a path or a file object
            if isinstance(source, (str, os.PathLike))
            else source
        )
        head = b""
        while True:
            chunk = file.read(CHUNK)
            head += chunk
            if not chunk or prolog_read(head):
                break
            if len(head) >= MAX_PROLOG:
                raise StatementError("not a Flex statement: no root element in the first MiB")
        try:
            check_prolog(head)
        except XmlRejectedError as exc:
            raise StatementError(f"not a Flex statement: {exc}") from None
        if not head.strip():
            raise StatementError("not a Flex statement: the file is empty")
        yield head
        while chunk := file.read(CHUNK):
            yield chunk


_HEADERS = frozenset({"FlexStatements", "FlexStatement"})


class _Pruner:
    """Keeps only what is still needed: the open ancestors, and the subtrees of wanted tags."""

    __slots__ = ("headers", "inside", "root_seen", "stack", "tag")

    def __init__(self, tag: str | None, headers: list[ET.Element] | None) -> None:
        self.tag = tag
        self.headers = headers
        self.stack: list[ET.Element] = []
        self.inside = 0  # open elements named `tag`: their subtrees are kept whole
        self.root_seen = False

    def start(self, element: ET.Element) -> None:
        if not self.root_seen:
            self.root_seen = True
            if element.tag != "FlexQueryResponse":
                raise StatementError(f"not a Flex statement: the root is <{element.tag[:40]}>")
        self.stack.append(element)
        if element.tag == self.tag:  # never for tag None: then no subtree is kept
            self.inside += 1
        elif self.headers is not None and element.tag in _HEADERS:
            self.headers.append(element)

    def end(self, element: ET.Element) -> bool:
        """True if ``element`` is wanted (every one for tag None); either way it is detached
        once nothing needs it."""
        stack = self.stack
        stack.pop()
        if self.tag is None:
            wanted = True
        elif wanted := element.tag == self.tag:
            self.inside -= 1
        if not self.inside and stack:
            del stack[-1][-1]  # it is its parent's last child, and done with
        return wanted


def _walk(source: Source, pruner: _Pruner) -> Iterator[ET.Element]:
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start", "end"))
    start, end = pruner.start, pruner.end
    problem = ""
    try:
        for chunk in _chunks(source):
            parser.feed(chunk)
            events: Iterator[tuple[str, ET.Element]] = parser.read_events()  # type: ignore[assignment]
            for event, element in events:
                if event == "start":
                    start(element)
                elif end(element):
                    yield element
        parser.close()
    except ET.ParseError as exc:
        problem = str(exc)
    if problem:
        raise StatementError(f"not a complete Flex statement: not well-formed XML ({problem})")
    if not pruner.root_seen:
        raise StatementError("not a Flex statement: no root element")


def iter_elements(source: Source, tag: str) -> Iterator[ET.Element]:
    """Yield every ``<tag>`` element of a Flex statement file, in document order.

    ``source`` is a path or a binary file object. Each element comes with its attributes and
    its own subtree; it is detached from the document, so keep what you need. A file that
    turns out truncated or malformed raises :class:`StatementError` where the reader reaches
    the fault (after the rows before it); a DTD is refused before anything is read.
    """
    return _walk(source, _Pruner(tag, None))


def iter_rows(
    source: Source, tag: str, model: type[T], *, day_first: bool | None = None
) -> Iterator[T]:
    """Yield every ``<tag>`` row of a Flex statement file as a ``model`` instance.

    The conversions are those of :meth:`FlexStatement.rows`. ``day_first`` settles
    ``dd/MM`` versus ``MM/dd``; without it the statement headers (which come first) decide,
    and a slashed date nothing decided raises :class:`RowError` rather than being guessed.
    """
    headers: list[ET.Element] = []
    reader: RowReader | None = None
    for element in _walk(source, _Pruner(tag, headers)):
        if reader is None:
            order = day_first
            if order is None:
                dates = [
                    h.get(n, "")
                    for h in headers
                    if h.tag == "FlexStatement"
                    for n in ("fromDate", "toDate")
                ]
                try:
                    order = infer_day_first(dates)
                except ValueError as exc:
                    raise StatementError(f"Flex statement header: {exc}") from None
            reader = RowReader(model, day_first=order)
        yield cast("T", reader.read(element))


def check_statement_file(source: Source) -> None:
    """Read a whole statement file as a stream and raise :class:`StatementError` unless it is
    a complete, well-formed Flex statement (what :class:`FlexStatement` checks), in flat
    memory."""
    headers: list[ET.Element] = []
    for _ in _walk(source, _Pruner(None, headers)):  # every element, none kept
        pass
    containers = [h for h in headers if h.tag == "FlexStatements"]
    statements = [h for h in headers if h.tag == "FlexStatement"]
    try:
        order = infer_day_first(h.get(n, "") for h in statements for n in ("fromDate", "toDate"))
    except ValueError:
        order = None  # contradictory headers: each date is still checked on its own
    check_structure(containers[0] if containers else None, statements, order)


def walk(source: Source) -> Iterator[tuple[int, str | None, ET.Element]]:
    """Every element of a statement file as ``(depth, parent tag, element)`` when it ends
    (the root is depth 0, parent None), in flat memory: an element's children are gone by
    the time it is yielded."""
    pruner = _Pruner(None, None)
    stack = pruner.stack
    for element in _walk(source, pruner):
        yield len(stack), (stack[-1].tag if stack else None), element
