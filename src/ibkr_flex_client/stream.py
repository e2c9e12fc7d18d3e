"""Statements of any size, read as a stream: one tag's elements (or typed rows) at a time.

Memory stays flat however large the file: every element is detached from the tree once it
has been handed over (or is known not to be wanted), so only the open ancestors of the
current element are kept. The parsing is :class:`._xml.XmlStream`'s: expat refuses a DTD or
an entity before anything is read, and what no Flex statement holds (elements nested more
than ``MAX_DEPTH`` deep, a tag with more than ``MAX_ATTRIBUTES`` attributes) is refused before
it can fill memory. :class:`StatementCheck` is :func:`check_statement_file` for a body that
arrives in pieces: ``download()`` checks the statement as it writes it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar, cast

from ._csv import CsvError, CsvStream, looks_like_csv
from ._xml import CHUNK, XmlLimitError, XmlRejectedError, XmlStream
from .dates import infer_day_first
from .errors import StatementError
from .rows import RowReader
from .statement import check_structure, is_row, iter_keeps

__all__ = [
    "HeaderCheck",
    "StatementCheck",
    "check_statement_file",
    "iter_elements",
    "iter_rows",
    "walk",
]

T = TypeVar("T")

Source = str | os.PathLike[str] | IO[bytes]
_ROOT = "FlexQueryResponse"


def _chunks(source: Source) -> Iterator[bytes]:
    with contextlib.ExitStack() as stack:
        file: IO[bytes] = (
            stack.enter_context(open(source, "rb"))  # noqa: PTH123 - a path or a file object
            if isinstance(source, (str, os.PathLike))
            else source
        )
        while chunk := file.read(CHUNK):
            yield chunk


_HEADERS = frozenset({"FlexStatements", "FlexStatement"})
_BOM = b"\xef\xbb\xbf"


class DocumentStream:
    """:class:`._xml.XmlStream` or :class:`._csv.CsvStream`, as the first bytes say: the same
    events either way, so every reader here takes a statement in XML or in CSV form."""

    __slots__ = ("_head", "_inner")

    def __init__(self) -> None:
        self._head = b""
        self._inner: XmlStream | CsvStream | None = None

    @property
    def root_tag(self) -> str | None:
        return self._inner.root_tag if self._inner is not None else None

    @property
    def stalled(self) -> int:
        return self._inner.stalled if self._inner is not None else len(self._head)

    def feed(self, data: bytes) -> None:
        inner = self._inner
        if inner is None:
            self._head += data
            inner = self._decide(final=False)
            if inner is None:
                return
            data, self._head = self._head, b""
        inner.feed(data)

    def _decide(self, *, final: bool) -> XmlStream | CsvStream | None:
        """The reader the first bytes call for; None while they cannot tell yet (a CSV
        layout shows in its first line)."""
        head = self._head
        text = head.removeprefix(_BOM).lstrip()
        if text.startswith(b"<"):
            self._inner = XmlStream()
        elif final or (text and (b"\n" in head or len(head) >= 512)):
            self._inner = CsvStream() if looks_like_csv(head) else XmlStream()
        return self._inner

    def close(self) -> None:
        inner = self._inner
        if inner is None:
            inner = self._decide(final=True)
            head, self._head = self._head, b""
            if head and inner is not None:
                inner.feed(head)
        if inner is not None:
            inner.close()

    def read_events(self) -> Iterator[tuple[str, ET.Element]]:
        if self._inner is None:
            return iter(())
        return self._inner.read_events()


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
            if element.tag != _ROOT:
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
            # Its subtree is still whole here: a section named like its rows (or empty) is
            # not what the tag means (statement.iter_keeps).
            wanted = iter_keeps(element)
        if not self.inside and stack:
            del stack[-1][-1]  # it is its parent's last child, and done with
        return wanted


def _describe(xml: DocumentStream, exc: XmlRejectedError | CsvError) -> str:
    if isinstance(exc, CsvError):
        return f"not a complete Flex statement in CSV form: {exc}"
    if xml.root_tag == _ROOT and not isinstance(exc, XmlLimitError):
        return f"not a complete Flex statement: {exc}"
    return f"not a Flex statement: {exc}"


def _elements(
    xml: DocumentStream, pruner: _Pruner, pieces: Iterable[bytes | None]
) -> Iterator[ET.Element]:
    """Feed ``pieces`` (None: the document is complete) and yield what ``pruner`` wants."""
    start, end = pruner.start, pruner.end
    try:
        for piece in pieces:
            if piece is None:
                xml.close()
            else:
                xml.feed(piece)
            for event, element in xml.read_events():
                if event == "start":
                    start(element)
                elif end(element):
                    yield element
    except (XmlRejectedError, CsvError) as exc:
        reason = _describe(xml, exc)
    else:
        return
    raise StatementError(reason)


def _walk(source: Source, pruner: _Pruner) -> Iterator[ET.Element]:
    return _elements(DocumentStream(), pruner, itertools.chain(_chunks(source), (None,)))


def iter_elements(source: Source, tag: str) -> Iterator[ET.Element]:
    """Yield every ``<tag>`` element of a Flex statement file, in document order.

    ``source`` is a path or a binary file object; the elements are those
    :meth:`FlexStatement.iter` gives. Each element comes with its attributes and its own
    subtree; it is detached from the document, so keep what you need. A file that turns out
    truncated or malformed raises :class:`StatementError` where the reader reaches
    the fault (after the rows before it); a DTD is refused before anything is read, and so is
    what no statement holds (see the module docstring) before it can fill memory.
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
        if not is_row(element):  # a section or a header of that name
            continue
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


class HeaderCheck:
    """The headers :class:`FlexStatement` checks, collected as a walk meets them (the first
    ``<FlexStatements>`` under the root, and the ``<FlexStatement>`` elements directly in it),
    then judged as :class:`FlexStatement` judges them. Their children are gone by then (the
    walk detaches them), so keeping them costs little."""

    __slots__ = ("container", "csv", "statements")

    def __init__(self) -> None:
        self.container: ET.Element | None = None
        self.statements: list[ET.Element] = []
        self.csv = False  # read from CSV (whose statements may carry no dates)

    def see(self, depth: int, parent: str | None, element: ET.Element) -> None:
        """Note an element as it ends (``depth`` and ``parent`` as :func:`walk` gives them)."""
        # Elements arrive as they end: the first container's statements come before it, and
        # once it has ended, later containers are none of FlexStatement's business.
        if depth == 0:
            self.csv = element.get("format") == "CSV"
        if self.container is not None:
            return
        if depth == 1 and element.tag == "FlexStatements":
            self.container = element
        elif depth == 2 and element.tag == "FlexStatement" and parent == "FlexStatements":
            self.statements.append(element)

    def check(self) -> None:
        """Raise what :class:`FlexStatement` raises for these headers: dd/MM against MM/dd
        decided by the headers (where they leave it open, every date reads the same either
        way, so the document's other dates need not be consulted), then the structure."""
        dates = [e.get(name, "") for e in self.statements for name in ("fromDate", "toDate")]
        try:
            day_first = infer_day_first(dates)
        except ValueError as exc:
            raise StatementError(f"Flex statement header: {exc}") from None
        check_structure(self.container, self.statements, day_first, dates=not self.csv)


class StatementCheck:
    """:func:`check_statement_file` for a body that arrives in pieces, in flat memory.

    ``feed(piece)`` raises :class:`StatementError` as soon as the bytes cannot be a Flex
    statement ("not a Flex statement: …": refused XML, a limit, the wrong root) or stop being
    well-formed ("not a complete Flex statement: …"); after that every call raises it again.
    :attr:`root_tag` names the root once its start tag has been read (it stays readable after
    a failure). ``close()`` finishes the document and judges its headers as
    :class:`FlexStatement` does (:class:`HeaderCheck`).
    """

    __slots__ = ("_error", "_headers", "_pruner", "_xml")

    def __init__(self) -> None:
        self._xml = DocumentStream()
        self._headers = HeaderCheck()
        self._pruner = _Pruner(None, None)  # every element, none kept
        self._error: StatementError | None = None

    @property
    def root_tag(self) -> str | None:
        """The root element's name once its start tag has been read; None before."""
        return self._xml.root_tag

    @property
    def stalled(self) -> int:
        """Bytes taken since the parser last finished a token (see ``XmlStream.stalled``)."""
        return self._xml.stalled

    def feed(self, data: bytes) -> None:
        """Check the next piece of the statement."""
        self._run(data)

    def close(self) -> None:
        """The statement is complete: raise :class:`StatementError` unless it is a complete,
        well-formed Flex statement."""
        self._run(None)
        self._headers.check()

    def _run(self, piece: bytes | None) -> None:
        if self._error is not None:
            raise self._error
        stack, see = self._pruner.stack, self._headers.see
        try:
            for element in _elements(self._xml, self._pruner, (piece,)):
                see(len(stack), stack[-1].tag if stack else None, element)
        except StatementError as exc:
            self._error = exc
            raise


def check_statement_file(source: Source) -> None:
    """Read a whole statement file as a stream and raise :class:`StatementError` unless it is
    a complete, well-formed Flex statement (what :class:`FlexStatement` checks), in flat
    memory."""
    check = StatementCheck()
    for chunk in _chunks(source):
        check.feed(chunk)
    check.close()


def walk(source: Source) -> Iterator[tuple[int, str | None, ET.Element]]:
    """Every element of a statement file as ``(depth, parent tag, element)`` when it ends
    (the root is depth 0, parent None), in flat memory: an element's children are gone by
    the time it is yielded."""
    pruner = _Pruner(None, None)
    stack = pruner.stack
    for element in _walk(source, pruner):
        yield len(stack), (stack[-1].tag if stack else None), element
