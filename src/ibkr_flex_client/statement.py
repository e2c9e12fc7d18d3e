"""A Flex statement: the ``<FlexQueryResponse>`` document IB generates ("The statement").

::

    <FlexQueryResponse queryName="…" type="AF">          AF = Activity, TCF = Trade Confirmation
      <FlexStatements count="N">
        <FlexStatement accountId="U…" fromDate="…" toDate="…" period="…" whenGenerated="…">
          <Trades><Trade …/></Trades>  <OpenPositions>…</OpenPositions>  …

Below the headers, data is in attributes ("The statement", docs/protocol.md): a row is an
element that carries attributes; a container (a section such as ``<Trades>``, or a wrapper
such as the ``<FxLots>`` of older ``<FxPositions>``) carries none, whatever its name. IB names
some sections like their rows (``<OptionEAE><OptionEAE …/></OptionEAE>``, and
``<ClientFeesDetail>``), and writes a few sections as one row of their own
(``<AccountInformation …/>``, ``<ChangeInNAV …/>``). :func:`is_row` and :func:`iter_keeps`
hold that rule for every reader: the parsed statement, the stream, and inspection.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import TypeVar, cast

from ._csv import NO_HEADERS, CsvError, headerless_csv, looks_like_csv, parse_csv
from ._sniff import HEAD_BYTES, describe
from ._xml import XmlRejectedError, parse_xml
from .dates import (
    AmbiguousDateError,
    document_day_first,
    infer_day_first,
    parse_ib_date,
    parse_ib_datetime,
)
from .errors import StatementError
from .rows import RowReader

__all__ = [
    "HEADER_TAGS",
    "AccountStatement",
    "FlexStatement",
    "check_structure",
    "is_row",
    "iter_keeps",
]

T = TypeVar("T")

# The document's frame: never rows, whatever attributes they carry.
HEADER_TAGS = frozenset({"FlexQueryResponse", "FlexStatements", "FlexStatement"})

_SLASHED_DATE = re.compile(r"\d{2}/\d{2}/\d{2}")


def is_row(element: ET.Element) -> bool:
    """Whether ``element`` is a row: it carries attributes and is not a header.

    A section or a wrapper carries none, whatever its name, so the ``<OptionEAE>`` that
    holds the ``<OptionEAE …/>`` rows is not one of them; a section written as one row of its
    own (``<AccountInformation …/>``) is a row."""
    return bool(element.attrib) and element.tag not in HEADER_TAGS


def iter_keeps(element: ET.Element) -> bool:
    """Whether ``iter(tag)`` yields an element named ``tag``, its subtree still attached.

    Rows and headers, yes; a container too (``iter("Trades")`` gives the sections), unless
    it holds nothing or holds elements of its own name: then the tag means the rows (IB's
    ``<OptionEAE>`` section of ``<OptionEAE>`` rows, or an empty ``<OptionEAE/>``)."""
    if element.attrib:
        return True
    tag = element.tag
    return len(element) > 0 and all(child.tag != tag for child in element)


def _document_day_order(xml: str | bytes, root: ET.Element) -> bool | None:
    """dd/MM (True) or MM/dd (False) from the first slashed date in the document that only one
    order reads, if any (one query emits one format: "Formats", docs/protocol.md)."""
    if isinstance(xml, bytes) and (xml[:2] in (b"\xfe\xff", b"\xff\xfe") or b"\0" in xml[:4]):
        # UTF-16 or UTF-32, which IB does not send: read the text back from the tree.
        xml = ET.tostring(root, encoding="unicode")
    return document_day_first(xml)


def _day_order(
    headers: Iterable[str], xml: str | bytes, root: ET.Element, day_first: bool | None
) -> bool | None:
    """The document's dd/MM (True) or MM/dd (False) order; None if it has no say or none."""
    if day_first is not None:
        return day_first
    dates = list(headers)
    try:
        decided = infer_day_first(dates)
    except ValueError as exc:
        raise StatementError(f"Flex statement header: {exc}") from None
    if decided is None and any(_SLASHED_DATE.match(d) for d in dates):
        decided = _document_day_order(xml, root)
    return decided


def check_structure(
    container: ET.Element | None,
    statements: list[ET.Element],
    day_first: bool | None = None,
    *,
    dates: bool = True,
) -> None:
    """Raise :class:`StatementError` unless ``<FlexStatements>`` holds at least one
    ``<FlexStatement>``, as many as its ``count`` says, each with its header set to dates in
    one of IB's formats (a date ambiguous for want of ``day_first`` passes). A statement read
    from CSV without header records (``dates=False``) has no dates to check."""
    if container is None:
        raise StatementError("incomplete Flex statement: no <FlexStatements>")
    if not statements:
        raise StatementError("incomplete Flex statement: no <FlexStatement>")
    count = container.get("count")
    if count is not None and count.strip() != str(len(statements)):
        raise StatementError(
            f"incomplete Flex statement: count={count!r} but {len(statements)} "
            "<FlexStatement> elements"
        )
    required = ("accountId", "fromDate", "toDate") if dates else ()
    for element in statements:
        if not all(element.get(name) for name in required):
            raise StatementError(
                "incomplete Flex statement: a <FlexStatement> lacks accountId, fromDate or toDate"
            )
    try:
        for element in statements:
            for name in ("fromDate", "toDate") if element.get("fromDate") or dates else ():
                with contextlib.suppress(AmbiguousDateError):
                    parse_ib_date(element.get(name, ""), day_first=day_first)
    except ValueError as exc:
        reason = str(exc)
    else:
        return
    raise StatementError(f"Flex statement header: {reason}")


class AccountStatement:
    """One ``<FlexStatement>``: one account's part of a report (or one day's, for a query
    broken out by day).

    Attributes:
        account_id: ``accountId``.
        period: ``period`` as IB wrote it (``"LastBusinessDay"``, ``"YearToDate"``, or ``""``).
        element: the ``<FlexStatement>`` element itself.
    """

    __slots__ = ("_day_first", "account_id", "element", "period")

    def __init__(self, element: ET.Element, day_first: bool | None) -> None:
        self.element = element
        self.account_id = element.get("accountId", "")
        self.period = element.get("period", "")
        self._day_first = day_first

    def _date(self, name: str) -> date:
        text = self.element.get(name, "")
        if not text and self.element.get("accountId") is not None:
            raise StatementError(
                f"no {name} in this statement: read from CSV without header and trailer "
                "records, it carries no dates (set the Flex Query's 'Include header and "
                "trailer records?' to Yes)"
            )
        try:
            return parse_ib_date(text, day_first=self._day_first)
        except AmbiguousDateError as exc:
            reason = f"{exc}; nothing in the document decides, construct with day_first"
        raise StatementError(reason)

    @property
    def from_date(self) -> date:
        """``fromDate``: the first day this part covers."""
        return self._date("fromDate")

    @property
    def to_date(self) -> date:
        """``toDate``: the last day this part covers."""
        return self._date("toDate")

    @property
    def when_generated(self) -> datetime:
        """``whenGenerated``: when IB generated it (aware if IB named a zone)."""
        text = self.element.get("whenGenerated", "")
        try:
            return parse_ib_datetime(text, day_first=self._day_first)
        except ValueError as exc:
            reason = str(exc)
        raise StatementError(f"whenGenerated of account {self.account_id}: {reason}")

    def iter(self, tag: str) -> Iterator[ET.Element]:
        """Every element named ``tag`` in this account's part, in document order (see
        :meth:`FlexStatement.iter`)."""
        return filter(iter_keeps, self.element.iter(tag))

    def rows(self, tag: str, model: type[T]) -> Iterator[T]:
        """Every ``tag`` row of this account as a ``model`` instance (see
        :meth:`FlexStatement.rows`)."""
        reader = RowReader(model, day_first=self._day_first)
        return cast("Iterator[T]", reader.read_all(filter(is_row, self.element.iter(tag))))

    def __repr__(self) -> str:
        return (
            f"AccountStatement(account_id={self.account_id!r}, "
            f"fromDate={self.element.get('fromDate')!r}, toDate={self.element.get('toDate')!r})"
        )


class FlexStatement:
    """A complete, well-formed Flex statement.

    ``FlexStatement(xml)`` takes the document as ``bytes`` (preferred: the XML declaration's
    encoding is honoured, so non-ASCII names survive byte for byte) or ``str``, and raises
    :class:`StatementError` unless it is a ``<FlexQueryResponse>`` holding ``<FlexStatements>``
    with at least one ``<FlexStatement>`` (as many as its ``count`` says) whose ``accountId``,
    ``fromDate`` and ``toDate`` are set. Expat itself refuses a DTD (where entities are
    declared) before the tree is built, so nothing is ever expanded.

    ``day_first`` settles ``03/04/2026``-style dates (``True`` for dd/MM, ``False`` for
    MM/dd); without it the headers decide, and where they are all ambiguous every date in the
    document does. Only when nothing decides do the dates raise :class:`StatementError`.

    Attributes:
        xml: the document exactly as given (same object, unchanged).
        account_id: the report's account. For a report of several accounts, the distinct
            account ids in document order joined by ``","`` (use :attr:`statements` for each).
        from_date: the first day the report covers (the earliest ``fromDate``).
        to_date: the last day the report covers (the latest ``toDate``).
        statements: one :class:`AccountStatement` per ``<FlexStatement>``, in order.
        query_name: the query's name (``queryName``).
        type: ``"AF"`` (activity) or ``"TCF"`` (trade confirmation), as IB wrote it.
    """

    __slots__ = ("_day_first", "_root", "account_id", "query_name", "statements", "type", "xml")

    xml: str | bytes
    account_id: str
    statements: tuple[AccountStatement, ...]
    query_name: str
    type: str

    def __init__(self, xml: str | bytes, *, day_first: bool | None = None) -> None:
        if not isinstance(xml, (str, bytes)):
            raise TypeError(f"FlexStatement takes str or bytes, not {type(xml).__name__}")
        head = (
            xml[:HEAD_BYTES].encode("utf-8", "replace")
            if isinstance(xml, str)
            else xml[:HEAD_BYTES]
        )
        if not looks_like_csv(head) and headerless_csv(head):
            raise StatementError(f"not a Flex statement: {describe(head)}, in which {NO_HEADERS}")
        try:
            root = parse_csv(xml) if looks_like_csv(head) else parse_xml(xml)
        except CsvError as exc:
            reason = f"not a complete Flex statement in CSV form: {exc}"
        except XmlRejectedError as exc:
            reason = f"not a Flex statement: {exc}"
        else:
            self._load(xml, root, day_first)
            return
        raise StatementError(reason)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], *, day_first: bool | None = None
    ) -> FlexStatement:
        """Read and check a statement file (the whole document goes into memory; for files too
        large for that, stream it with :func:`ibkr_flex_client.iter_elements`)."""
        return cls(Path(path).read_bytes(), day_first=day_first)

    @classmethod
    def _from_root(
        cls, xml: str | bytes, root: ET.Element, day_first: bool | None = None
    ) -> FlexStatement:
        """Build from a document the caller already parsed (the client parses once)."""
        statement = cls.__new__(cls)
        statement._load(xml, root, day_first)
        return statement

    def _load(self, xml: str | bytes, root: ET.Element, day_first: bool | None) -> None:
        if root.tag != "FlexQueryResponse":
            raise StatementError(f"not a Flex statement: the root is <{root.tag[:40]}>")
        container = root.find("FlexStatements")
        elements = container.findall("FlexStatement") if container is not None else []
        header_dates = [e.get(name, "") for e in elements for name in ("fromDate", "toDate")]
        self._day_first = _day_order(header_dates, xml, root, day_first)
        # Ambiguous dates pass: a valid statement all the same; from_date explains when asked.
        check_structure(container, elements, self._day_first, dates=root.get("format") != "CSV")
        self.xml = xml
        self._root = root
        self.statements = tuple(AccountStatement(e, self._day_first) for e in elements)
        self.account_id = ",".join(dict.fromkeys(s.account_id for s in self.statements))
        self.query_name = root.get("queryName", "")
        self.type = root.get("type", "")

    @property
    def from_date(self) -> date:
        """The first day the report covers (the earliest ``fromDate``).

        Raises :class:`StatementError` only for ``dd/MM``-or-``MM/dd`` dates that nothing in
        the document disambiguates; construct with ``day_first`` then.
        """
        return min(s.from_date for s in self.statements)

    @property
    def to_date(self) -> date:
        """The last day the report covers (the latest ``toDate``)."""
        return max(s.to_date for s in self.statements)

    @property
    def day_first(self) -> bool | None:
        """How slashed dates read in this document: True dd/MM, False MM/dd, None undecided
        (or no slashed dates)."""
        return self._day_first

    def iter(self, tag: str) -> Iterator[ET.Element]:
        """Yield every element named ``tag`` anywhere in the report, in document order.

        ``statement.iter("Trade")`` gives the trades of every account; read values with
        ``element.get("symbol")``. Unknown tags simply yield nothing. A section's name gives
        the sections, each with its rows inside, except where IB names the rows like their
        section (``<OptionEAE>``): then it gives the rows, never the section.
        """
        return filter(iter_keeps, self._root.iter(tag))

    def rows(self, tag: str, model: builtins.type[T]) -> Iterator[T]:
        """Every ``tag`` row of the report as an instance of ``model``, in document order.

        ``model`` is a dataclass or a pydantic model. Each field takes the attribute of its
        name (``tradeDate``, or ``trade_date`` for snake_case; ``metadata={"ib": ...}`` or a
        pydantic alias to name one), converted by its annotation: ``str``, ``int``,
        ``float``, ``Decimal``, ``date``, ``datetime``, ``bool`` (Y/N, Yes/No, true/false),
        an ``Enum`` (by value, then by name), or ``X | None`` of one, where IB's empty
        markers (``""``, ``-``, ``--``, ``N/A``; ``MULTI`` for dates) become ``None``.
        Thousands separators are understood. Attributes the model does not name are ignored.
        Only rows are read: a section or a header named ``tag`` is passed over.

        Raises:
            TypeError: at once, for a model or field type it cannot fill.
            RowError: (a :class:`StatementError`) for a row with a required field missing or a
                value that does not convert, naming the tag, the attribute and the value.
        """
        reader = RowReader(model, day_first=self._day_first)
        return cast("Iterator[T]", reader.read_all(filter(is_row, self._root.iter(tag))))

    def __repr__(self) -> str:
        try:
            period = f"from_date={self.from_date}, to_date={self.to_date}"
        except StatementError:  # ambiguous dates: a repr must not raise
            period = "from_date=?, to_date=?"
        return f"FlexStatement(account_id={self.account_id!r}, {period}, size={len(self.xml)})"
