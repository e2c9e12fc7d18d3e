"""A Flex statement: the ``<FlexQueryResponse>`` document IB generates ("The statement")."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import date

from ._xml import XmlRejectedError, parse_xml
from .dates import infer_day_first, parse_ib_date
from .errors import StatementError

__all__ = ["FlexStatement"]


class FlexStatement:
    """A complete, well-formed Flex statement.

    ``FlexStatement(xml)`` takes the document as ``bytes`` (preferred: the XML declaration's
    encoding is honoured) or ``str``, and raises :class:`StatementError` unless it is a
    ``<FlexQueryResponse>`` holding ``<FlexStatements>`` with at least one ``<FlexStatement>``
    (as many as its ``count`` says) whose ``accountId``, ``fromDate`` and ``toDate`` are set.
    DTDs are refused before parsing, so nothing is ever expanded.

    Attributes:
        xml: the document exactly as given (same object, unchanged).
        account_id: the account of the report. For a report of several accounts, the distinct
            account ids in document order joined by ``","``.
        from_date: the first day the report covers (the earliest ``fromDate``).
        to_date: the last day the report covers (the latest ``toDate``).
    """

    __slots__ = ("_root", "account_id", "from_date", "to_date", "xml")

    xml: str | bytes
    account_id: str
    from_date: date
    to_date: date

    def __init__(self, xml: str | bytes) -> None:
        if not isinstance(xml, (str, bytes)):
            raise TypeError(f"FlexStatement takes str or bytes, not {type(xml).__name__}")
        try:
            root = parse_xml(xml)
        except XmlRejectedError as exc:
            reason = str(exc)
        else:
            self._load(xml, root)
            return
        raise StatementError(f"not a Flex statement: {reason}")

    @classmethod
    def _from_root(cls, xml: str | bytes, root: ET.Element) -> FlexStatement:
        """Build from a document the caller already parsed (the client parses once)."""
        statement = cls.__new__(cls)
        statement._load(xml, root)
        return statement

    def _load(self, xml: str | bytes, root: ET.Element) -> None:
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
        for account, start, end in headers:
            if not account or not start or not end:
                raise StatementError(
                    "incomplete Flex statement: a <FlexStatement> lacks accountId, fromDate "
                    "or toDate"
                )
        header_dates = [d for _, start, end in headers for d in (start, end) if d is not None]
        try:
            day_first = infer_day_first(header_dates)
            starts = [parse_ib_date(start or "", day_first=day_first) for _, start, _ in headers]
            ends = [parse_ib_date(end or "", day_first=day_first) for _, _, end in headers]
        except ValueError as exc:
            reason = str(exc)
        else:
            self.xml = xml
            self._root = root
            self.account_id = ",".join(dict.fromkeys(a or "" for a, _, _ in headers))
            self.from_date = min(starts)
            self.to_date = max(ends)
            return
        raise StatementError(f"Flex statement header: {reason}")

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
