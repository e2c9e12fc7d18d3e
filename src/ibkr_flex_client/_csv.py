"""Flex statements in CSV (or text) form, read into the elements the XML paths yield.

A Flex Query set to CSV answers GetStatement with CSV text ("Output formats other than XML"
in ``docs/protocol.md``). :class:`CsvStream` reads it in pieces, as :class:`._xml.XmlStream`
reads XML, and hands out the same ``("start" | "end", element)`` events: a
``<FlexQueryResponse>`` holding ``<FlexStatements>``, a ``<FlexStatement>`` per account with
the header's dates, a container per section (``<Trades>``) and a row element per data record
(``<Trade>``), with IB's XML attribute names (:mod:`._csv_names`). So statements, streaming
readers, typed rows and the CLI read both forms alike.

The layouts, told apart by the first record:

* header and trailer records: ``BOF`` (account, query, dates, ``whenGenerated``), per account
  ``BOA`` … ``EOA``, per section ``BOS`` (code) … ``EOS`` (code, row count), last ``EOF``;
* section code and line descriptor: ``HEADER,CODE,…`` names a section's columns, ``DATA,CODE,…``
  is one of its rows (with or without the records above);
* neither: each section starts with its own column-header row.

Counts are checked: an ``EOS`` whose count disagrees with the rows read, a ``BOS`` or ``BOF``
without its trailer, a record cut short: :class:`CsvError`. A file without column headers
cannot be named: a :class:`CsvError` says which query setting to change. Values are kept
exactly as written.
"""

from __future__ import annotations

import codecs
import csv
import gc
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

from ._csv_names import KNOWN_HEADERS, attribute_name, section_tags

__all__ = [
    "NO_HEADERS",
    "CsvError",
    "CsvStream",
    "headerless_csv",
    "looks_like_csv",
    "parse_csv",
]

Event = tuple[str, ET.Element]

# The first record of each layout: a trailer record, a line descriptor, or a column header
# (IB's first column is the account: ClientAccountID, or AccountID in some sections).
_FIRST = re.compile(
    r'^\ufeff?\s*"?(BOF|BOA|BOS|HEADER|DATA|MSG|ClientAccountID|AccountID|AccountAlias)"?'
    r"\s*([,\t|;])",
    re.IGNORECASE,
)
_DELIMITERS = ",\t|;"
_MAX_RECORD = 8 * 1024 * 1024  # no record of IB's is megabytes long
# Lines end at CR, LF or CRLF only (not at the other breaks str.splitlines knows: a form feed
# or U+2028 inside a value is part of it).
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
_OTHER_BREAKS = ("\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9 /()&._%-]*$")
_VALUE_LIKE = re.compile(r"^[-+]?[0-9][0-9.,:;/ -]*$")
_TRAILERS = frozenset({"BOF", "BOA", "BOS", "EOS", "EOA", "EOF"})
_DESCRIPTORS = frozenset({"HEADER", "DATA"})
_MARKERS = frozenset(
    {*_TRAILERS, *_DESCRIPTORS, "MSG"} | {m.lower() for m in (*_TRAILERS, *_DESCRIPTORS, "MSG")}
)


class CsvError(ValueError):
    """Not a complete Flex statement in CSV form. ``final`` is True when asking again would
    give the same (a query setting, an encoding, a record no statement holds), not when the
    transfer may have cut it short."""

    def __init__(self, message: str, *, final: bool = False) -> None:
        super().__init__(message)
        self.final = final


NO_HEADERS = (
    "nothing in it can be named: if it is a Flex Query's CSV output, set the query's "
    "'Include column headers?' to Yes (and keep the account id its first column)"
)


def looks_like_csv(head: bytes | str) -> bool:
    """Whether a document starting with ``head`` is one of IB's CSV (or text) layouts."""
    text = head.decode("utf-8", "replace") if isinstance(head, bytes) else head
    return bool(_FIRST.match(text[:512]))


def headerless_csv(head: bytes) -> bool:
    """Whether text that is none of IB's layouts still reads as delimited records (its
    first line three fields or more): CSV output without column headers, most likely."""
    text = head.decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    if not text or text.startswith(("<", "{", "[")) or "\0" in text or "\ufffd" in text[:2]:
        return False  # markup, JSON, UTF-16 or binary
    first = text.splitlines()[0]
    return any(len(next(csv.reader([first], delimiter=d), [])) >= 3 for d in _DELIMITERS)


def parse_csv(data: bytes | str) -> ET.Element:
    """The whole document as a tree, as :func:`._xml.parse_xml` gives for XML; the accounts'
    parts that a layout without ``BOA`` records splits are joined per account."""
    stream = CsvStream(events=False)
    # The tree holds no reference cycles; the cyclic collector, run again and again over
    # its growing heap of rows, would cost a fifth of the time: paused while it is built.
    collecting = gc.isenabled()
    gc.disable()
    try:
        stream.feed(data.encode() if isinstance(data, str) else data)
        stream.close()
    finally:
        if collecting:
            gc.enable()
    root = stream.root
    if root is None:  # pragma: no cover - close() raises first
        raise CsvError("an empty document")
    _join_accounts(root)
    return root


def _join_accounts(root: ET.Element) -> None:
    holder = root.find("FlexStatements")
    if holder is None:
        return
    first: dict[str, ET.Element] = {}
    for statement in list(holder):
        account = statement.get("accountId", "")
        if account in first:
            first[account].extend(list(statement))
            holder.remove(statement)
        else:
            first[account] = statement
    holder.set("count", str(len(holder)))


class CsvStream:
    """One CSV document fed in pieces, handed out as element events (see the module)."""

    def __init__(self, *, events: bool = True) -> None:
        """``events=False``: build the tree only (:attr:`root`), no events to read."""
        self._keep = events
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._text = ""  # decoded, not yet split into records
        self._pending = ""  # a record's lines so far (a quoted value may hold newlines)
        self._quotes = 0
        self._delimiter: str | None = None
        self._events: list[Event] = []
        self._closed = False
        self._done = False
        self.root_tag: str | None = None
        self.stalled = 0
        self._records = 0
        # the document being built
        self._root: ET.Element | None = None
        self._holder: ET.Element | None = None
        self._header: dict[str, str] = {}
        self._layout = ""
        self._statement: ET.Element | None = None
        self._account = ""
        self._section: ET.Element | None = None
        self._code = ""
        self._row_tag = ""
        self._columns: list[str] = []
        self._rows = 0
        self._bof = self._eof = False
        self._in_account = False
        self._opened = 0  # FlexStatement elements started
        self._unended = False  # the last record had no line end (a file cut short?)
        self._header_raw: list[str] = []  # the column-header record in use, as written
        self._open: list[ET.Element] = []  # started, not yet ended

    # --- input ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self._closed:
            raise CsvError("fed after close()")
        try:
            self._text += self._decoder.decode(data)
        except UnicodeDecodeError as exc:
            raise CsvError(
                f"not UTF-8 text: {exc.reason} at byte {exc.start}", final=True
            ) from None
        self._split(final=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._text += self._decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise CsvError(f"not UTF-8 text: {exc.reason}", final=True) from None
        self._split(final=True)
        if self._pending.strip():
            raise CsvError("cut short: the last record ends inside a quoted value")
        self._finish()

    @property
    def root(self) -> ET.Element | None:
        """The document's root, once the first record has been read."""
        return self._root

    def read_events(self) -> Iterator[Event]:
        events, self._events = self._events, []
        yield from events

    def _split(self, *, final: bool) -> None:
        text = self._text
        if not final and "\n" not in text and "\r" not in text:
            if len(text) > _MAX_RECORD:
                raise CsvError(f"a record over {_MAX_RECORD:,} bytes: not one of IB's", final=True)
            self.stalled = len(self._pending) + len(text)
            return  # no line end yet: nothing to split
        # str.splitlines also breaks at form feeds, U+2028 and the like, which may sit in a
        # value: only where none is, its speed is taken.
        exotic = any(mark in text for mark in _OTHER_BREAKS)
        lines = _LINES.findall(text) if exotic else text.splitlines(keepends=True)
        # A line without its end (or a CR that a LF may follow) waits for more, unless final.
        if lines and not final and (not lines[-1].endswith(("\n", "\r")) or text.endswith("\r")):
            self._text = lines.pop()
        else:
            self._text = ""
        complete: list[str] = []
        add = complete.append
        for line in lines:
            quotes = line.count('"')
            if not self._pending and not quotes % 2:  # the usual: a record on one line
                if not line.isspace():
                    add(line)
                continue
            self._pending += line
            self._quotes += quotes
            if self._quotes % 2 == 0:
                add(self._pending)
                self._pending, self._quotes = "", 0
            elif len(self._pending) > _MAX_RECORD:
                raise CsvError(f"a record over {_MAX_RECORD:,} bytes: not one of IB's", final=True)
        self.stalled = len(self._pending) + len(self._text)
        if final and complete and not complete[-1].endswith(("\n", "\r")) and not self._bof:
            self._unended = True
        if complete:
            self._records_in(complete)

    def _records_in(self, texts: list[str]) -> None:
        """Parse complete records (one reader for the lot: far faster than one each)."""
        if self._delimiter is None:
            self._delimiter = _delimiter(texts[0])
        reader = csv.reader(texts, delimiter=self._delimiter, strict=True)
        try:
            for record in reader:
                self._records += 1
                if record:
                    record[0] = record[0].strip()
                    self._record(record)
        except csv.Error as exc:
            raise CsvError(f"record {self._records + 1}: {exc}") from None

    # --- the document --------------------------------------------------------------------

    def _record(self, record: list[str]) -> None:
        if self._done:
            raise CsvError("a record after EOF")
        if (
            self._columns
            and record[0] not in _MARKERS
            and self._layout != "descriptor"
            and (self._layout == "trailer" or not self._new_header(record))
        ):
            self._row(record)  # the hot path: a data record in a section with headers
            return
        kind = record[0].upper()
        if kind == "MSG" and len(record) == 2:
            return  # IB's note at the top ("Realized P/L is not ready ..."): not a row
        if self._root is None:
            self._start(kind)
        if kind in _TRAILERS and self._layout == "trailer":
            self._trailer(kind, record)
        elif kind in _DESCRIPTORS and len(record) > 1:
            self._descriptor(kind, record)
        else:
            self._plain(record)

    def _start(self, kind: str) -> None:
        if kind in _TRAILERS:
            self._layout = "trailer"
        else:
            self._layout = "descriptor" if kind in _DESCRIPTORS else "plain"
        self._root = ET.Element("FlexQueryResponse", format="CSV")
        self._holder = ET.Element("FlexStatements")
        self.root_tag = self._root.tag
        self._emit("start", self._root)
        self._emit("start", self._holder)

    def _trailer(self, kind: str, record: list[str]) -> None:
        fields = record[1:]
        if kind == "BOF":
            if self._bof:
                raise CsvError("a second BOF record")
            self._bof = True
            self._header = _bof_header(fields)
            if self._root is not None:
                for name in ("queryName", "type"):
                    if self._header.get(name):
                        self._root.set(name, self._header[name])
        elif kind == "BOA":
            self._end_statement()
            self._in_account = True
            self._open_statement(fields[0] if fields else "")
        elif kind == "EOA":
            if not self._in_account:
                raise CsvError("an EOA record without its BOA")
            self._end_section()
            self._end_statement()
            self._in_account = False
        elif kind == "BOS":
            self._end_section()
            self._code = fields[0] if fields else ""
            self._columns = []
            self._rows = 0
        elif kind == "EOS":
            self._check_count(fields)
            self._end_section()
            self._code = ""
        else:  # EOF
            self._end_section()
            self._end_statement()
            self._eof = True
            self._done = True

    def _check_count(self, fields: list[str]) -> None:
        code = fields[0] if fields else ""
        if self._code and code and code != self._code:
            raise CsvError(f"EOS of section {code} inside section {self._code}")
        written = fields[1].strip() if len(fields) > 1 else ""
        if not written.isdigit():
            raise CsvError(f"section {self._code or code}: EOS without a row count")
        if int(written) != self._rows:
            raise CsvError(
                f"section {self._code or code}: EOS says {int(written)} rows, "
                f"{self._rows} were read"
            )

    def _descriptor(self, kind: str, record: list[str]) -> None:
        code, values = record[1], record[2:]
        if kind == "HEADER":
            if code != self._code or self._section is None or self._columns:
                self._end_section()
                self._code = code
            self._columns = _named(values, code)
            return
        if code != self._code or not self._columns:
            raise CsvError(
                f"section {code} has no column headers, so nothing in it can be named: set "
                "the Flex Query's 'Include column headers?' to Yes",
                final=True,
            )
        self._row(values)

    def _plain(self, record: list[str]) -> None:
        new_header = self._layout == "plain" and self._new_header(record)
        if not self._columns or new_header:
            if not _looks_like_header(record):
                raise CsvError(
                    "no column headers, so nothing can be named: set the Flex Query's "
                    "'Include column headers?' to Yes",
                    final=True,
                )
            self._end_section()
            if self._layout == "plain":
                self._code = ""
            self._columns = _named(record, self._code)
            self._header_raw = record
            return
        self._row(record)

    def _new_header(self, record: list[str]) -> bool:
        """In a layout without codes, a record that starts another section: its column
        headers (the same as the section before, for another account or day, too)."""
        return record == self._header_raw or _looks_like_header(record)

    def _row(self, values: list[str]) -> None:
        if len(values) != len(self._columns):
            raise CsvError(
                f"record {self._records}: {len(values)} values under {len(self._columns)} "
                "column headers (a record cut short?)"
            )
        row = ET.Element(self._row_tag)
        row.attrib = attributes = dict(zip(self._columns, values))  # noqa: B905 - lengths checked
        account = attributes.get("accountId", "")
        if self._statement is None or (
            account != self._account and account and not self._in_account
        ):
            self._end_section()
            self._end_statement()
            self._open_statement(account or self._header.get("accountId", ""))
        section = self._section
        if section is None:
            container, self._row_tag = section_tags(self._code, self._columns)
            row.tag = self._row_tag
            section = self._section = ET.Element(container)
            self._rows = 0
            self._emit("start", section)
        self._rows += 1
        section.append(row)  # a row starts and ends at once, inside its section
        if self._keep:
            self._events += (("start", row), ("end", row))

    def _open_statement(self, account: str) -> None:
        self._account = account
        header = {
            "accountId": account,
            "fromDate": self._header.get("fromDate", ""),
            "toDate": self._header.get("toDate", ""),
            "period": self._header.get("period", ""),
            "whenGenerated": self._header.get("whenGenerated", ""),
        }
        self._statement = ET.Element("FlexStatement", {k: v for k, v in header.items() if v})
        self._opened += 1
        self._emit("start", self._statement)

    def _end_section(self) -> None:
        if self._section is not None:
            self._emit("end", self._section)
            self._section = None

    def _end_statement(self) -> None:
        if self._statement is not None:
            self._emit("end", self._statement)
            self._statement = None

    def _finish(self) -> None:
        if self._root is None or self._holder is None:
            raise CsvError("an empty document")
        if self._bof and not self._eof:
            raise CsvError("cut short: no EOF record after the BOF record")
        if self._unended:
            raise CsvError("cut short: the last record has no line end")
        if self._in_account:
            raise CsvError("cut short: an account's BOA without its EOA")
        if self._layout == "trailer" and self._code:
            raise CsvError(f"cut short: section {self._code} has no EOS record")
        self._end_section()
        if not self._opened:  # no row at all: still one account's (empty) statement
            self._open_statement(self._header.get("accountId", ""))
        self._end_statement()
        self._holder.set("count", str(self._opened))
        self._emit("end", self._holder)
        self._emit("end", self._root)

    def _emit(self, kind: str, element: ET.Element) -> None:
        # Attached to its parent as it starts, as an XML parser does: readers prune the tree
        # by detaching what they are done with.
        if kind == "start":
            if self._open:
                self._open[-1].append(element)
            self._open.append(element)
        else:
            self._open.pop()
        if self._keep:
            self._events.append((kind, element))


def _delimiter(first: str) -> str:
    match = _FIRST.match(first)
    if match:
        return match.group(2)
    counts = {d: first.count(d) for d in _DELIMITERS}
    return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


def _named(headers: list[str], code: str) -> list[str]:
    """The attribute names of a section's column headers; a header whose name another one
    already took keeps its CSV name (two columns never share an attribute: no value lost)."""
    names: list[str] = []
    for header in headers:
        name = attribute_name(header, code)
        names.append(name if name not in names else header.strip())
    if len(set(names)) != len(names):
        raise CsvError(f"section {code or '?'} names a column twice", final=True)
    return names


def _looks_like_header(record: list[str]) -> bool:
    """Whether a record names columns: every value a name, none a number or a date, and one
    at least a column IB names (an account's id, a symbol...)."""
    if not record or not all(value and _NAME.match(value) for value in record):
        return False
    if any(_VALUE_LIKE.match(value) for value in record):
        return False
    return any(value.strip().lstrip("\ufeff") in KNOWN_HEADERS for value in record)


def _bof_header(fields: list[str]) -> dict[str, str]:
    """BOF's fields: account, query name, number of sections, from and to dates,
    whenGenerated, then two build numbers (``"100"``)."""
    names = ("accountId", "queryName", "", "fromDate", "toDate", "whenGenerated")
    return {name: value for name, value in zip(names, fields, strict=False) if name and value}
