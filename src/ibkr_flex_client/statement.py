"""A Flex statement: the ``<FlexQueryResponse>`` document IB generates ("The statement")."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import date

from ._xml import XmlRejectedError, parse_xml
from .dates import AmbiguousDateError, infer_day_first, parse_ib_date
from .errors import StatementError

__all__ = ["FlexStatement"]

_SLASHED_DATE = re.compile(r"\d{2}/\d{2}/\d{2}")


def _document_day_order(root: ET.Element) -> bool | None:
    """dd/MM (True) or MM/dd (False) from every slashed date in the document, if any decides."""
    values = (
        value
        for element in root.iter()
        for value in element.attrib.values()
        if len(value) >= 8 and value[2:3] == "/"
    )
    try:
        return infer_day_first(values)
    except ValueError:  # free text that looks like dates both ways: undecided
        return None


class FlexStatement:
    """A complete, well-formed Flex statement.

    ``FlexStatement(xml)`` takes the document as ``bytes`` (preferred: the XML declaration's
    encoding is honoured) or ``str``, and raises :class:`StatementError` unless it is a
    ``<FlexQueryResponse>`` holding ``<FlexStatements>`` with at least one ``<FlexStatement>``
    (as many as its ``count`` says) whose ``accountId``, ``fromDate`` and ``toDate`` are set.
    DTDs are refused before parsing, so nothing is ever expanded.

    ``day_first`` settles ``03/04/2026``-style dates (``True`` for dd/MM, ``False`` for
    MM/dd); without it the document decides (see :func:`infer_day_first`).

    Attributes:
        xml: the document exactly as given (same object, unchanged).
        account_id: the account of the report. For a report of several accounts, the distinct
            account ids in document order joined by ``","``.
        from_date: the first day the report covers (the earliest ``fromDate``).
        to_date: the last day the report covers (the latest ``toDate``).
    """

    __slots__ = ("_period", "_root", "account_id", "xml")

    xml: str | bytes
    account_id: str

    def __init__(self, xml: str | bytes, *, day_first: bool | None = None) -> None:
        if not isinstance(xml, (str, bytes)):
            raise TypeError(f"FlexStatement takes str or bytes, not {type(xml).__name__}")
        try:
            root = parse_xml(xml)
        except XmlRejectedError as exc:
            reason = str(exc)
        else:
            self._load(xml, root, day_first)
            return
        raise StatementError(f"not a Flex statement: {reason}")

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
        if container is None:
            raise StatementError("incomplete Flex statement: no <FlexStatements>")
        statements = container.findall("FlexStatement")
        if not statements:
            raise StatementError("incomplete Flex statement: no <FlexStatement>")
        count = container.get("count")
        if count is not None and count.strip() != str(len(statements)):
            raise StatementError(
                f"incomplete Flex statement: count={count!r} but {len(statements)} "
                "<FlexStatement> elements"
            )
        headers = [(s.get("accountId"), s.get("fromDate"), s.get("toDate")) for s in statements]
        if not all(account and start and end for account, start, end in headers):
            raise StatementError(
                "incomplete Flex statement: a <FlexStatement> lacks accountId, fromDate or toDate"
            )
        self.xml = xml
        self._root = root
        self.account_id = ",".join(dict.fromkeys(a or "" for a, _, _ in headers))
        self._period = self._header_period(
            [d for _, start, end in headers for d in (start or "", end or "")], day_first
        )

    def _header_period(
        self, header_dates: list[str], day_first: bool | None
    ) -> tuple[date, date] | str:
        """The report's first and last day, or why they cannot be told apart (dd/MM vs MM/dd).

        Without a ``day_first`` setting, the order of slashed dates comes from the headers, and
        when they are all ambiguous (every day 12 or less) from every date in the document.
        """
        try:
            if day_first is None:
                day_first = infer_day_first(header_dates)
            if day_first is None and any(_SLASHED_DATE.match(d) for d in header_dates):
                day_first = _document_day_order(self._root)
            days = [parse_ib_date(d, day_first=day_first) for d in header_dates]
        except AmbiguousDateError as exc:
            return (
                f"{exc}; nothing in the document tells day and month apart, so pass "
                "day_first=True (dd/MM) or day_first=False (MM/dd)"
            )
        except ValueError as exc:
            reason = str(exc)
        else:
            return min(days[0::2]), max(days[1::2])
        raise StatementError(f"Flex statement header: {reason}")

    @property
    def from_date(self) -> date:
        """The first day the report covers (the earliest ``fromDate``).

        Raises :class:`StatementError` only for ``dd/MM``-or-``MM/dd`` dates that nothing in
        the document disambiguates; construct with ``day_first`` then.
        """
        return self._period_or_raise()[0]

    @property
    def to_date(self) -> date:
        """The last day the report covers (the latest ``toDate``)."""
        return self._period_or_raise()[1]

    def _period_or_raise(self) -> tuple[date, date]:
        if isinstance(self._period, str):
            raise StatementError(self._period)
        return self._period

    def iter(self, tag: str) -> Iterator[ET.Element]:
        """Yield every element named ``tag`` anywhere in the report, in document order.

        ``statement.iter("Trade")`` gives the trades of every account; read values with
        ``element.get("symbol")``. Unknown tags simply yield nothing.
        """
        return self._root.iter(tag)

    def __repr__(self) -> str:
        return (
            f"FlexStatement(account_id={self.account_id!r}, from_date={self.from_date}, "
            f"to_date={self.to_date}, size={len(self.xml)})"
        )
