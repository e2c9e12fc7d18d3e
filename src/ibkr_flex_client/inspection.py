"""Looking into statement files without writing code: what is in them, their rows as CSV or
JSON lines, and model classes inferred from their values. All of it streams.

Each of them judges the file as :class:`FlexStatement` does (the same
:func:`~.statement.check_structure`), and raises its :class:`StatementError` for a file it
would refuse: a summary or rows of a file the library rejects would only mislead.
"""

from __future__ import annotations

import builtins
import csv
import dataclasses
import json
import keyword
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import IO, Literal

from .dates import AmbiguousDateError, parse_ib_date, parse_ib_datetime
from .rows import EMPTY_DATE_MARKERS
from .statement import HEADER_TAGS, is_row
from .stream import HeaderCheck, Source, iter_elements, walk

__all__ = ["AccountSummary", "Summary", "TagSummary", "export_rows", "infer_model", "summarize"]

# Depths in a statement: FlexQueryResponse 0, FlexStatements 1, FlexStatement 2, sections 3.
_STATEMENT_DEPTH = 2


@dataclasses.dataclass(slots=True)
class TagSummary:
    """One tag of a statement: how many elements, and every attribute name seen.

    A tag of rows counts its rows. A container (a section, or a wrapper such as ``<FxLots>``)
    counts its occurrences (one per account) and lists in ``holds`` the row tags found inside
    it. A section that IB names like its rows (``<OptionEAE>``) is listed once, at its own
    depth, as its rows."""

    tag: str
    depth: int  # 3 for a section, 4 for its rows, more below
    rows: int = 0
    attributes: dict[str, None] = dataclasses.field(default_factory=dict)  # ordered set
    holds: dict[str, None] = dataclasses.field(default_factory=dict)  # row tags inside

    @property
    def is_rows(self) -> bool:
        """Whether the tag names rows (elements with attributes), not containers."""
        return bool(self.attributes)


@dataclasses.dataclass(frozen=True, slots=True)
class AccountSummary:
    """One ``<FlexStatement>``'s header, as IB wrote it."""

    account_id: str
    from_date: str
    to_date: str
    period: str
    when_generated: str


@dataclasses.dataclass(slots=True)
class Summary:
    """What :func:`summarize` found in a statement file."""

    query_name: str = ""
    type: str = ""
    accounts: list[AccountSummary] = dataclasses.field(default_factory=list)
    tags: dict[str, TagSummary] = dataclasses.field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {
            "query_name": self.query_name,
            "type": self.type,
            "accounts": [dataclasses.asdict(a) for a in self.accounts],
            "tags": [
                {
                    "tag": t.tag,
                    "depth": t.depth,
                    "rows": t.rows,
                    "attributes": list(t.attributes),
                }
                for t in self.tags.values()
            ],
        }

    def see(self, depth: int, parent: str | None, element: ET.Element) -> bool:
        """Count one element as :func:`~.stream.walk` gives it; True if it is a row."""
        if depth > _STATEMENT_DEPTH:
            return self._see_tag(depth, parent, element)
        if depth == _STATEMENT_DEPTH and element.tag == "FlexStatement":
            get = element.get
            self.accounts.append(
                AccountSummary(
                    get("accountId", ""),
                    get("fromDate", ""),
                    get("toDate", ""),
                    get("period", ""),
                    get("whenGenerated", ""),
                )
            )
        elif depth == 0:
            self.query_name = element.get("queryName", "")
            self.type = element.get("type", "")
        return False

    def _see_tag(self, depth: int, parent: str | None, element: ET.Element) -> bool:
        tags, tag = self.tags, element.tag
        holder = parent if depth > _STATEMENT_DEPTH + 1 else None
        # Elements are seen when they end, a section after its rows: list the section first,
        # then its rows, in the order they appear. Rows named like their section are listed
        # in its place.
        if holder is not None and holder != tag and holder not in tags:
            tags[holder] = TagSummary(holder, depth - 1)
        found = tags.get(tag)
        if found is None:
            found = tags[tag] = TagSummary(tag, depth - 1 if holder == tag else depth)
        row = is_row(element)
        if row:
            if not found.attributes:  # counted as a container so far: it names rows
                found.rows = 0
            found.rows += 1
            found.attributes.update(dict.fromkeys(element.attrib))
        elif not found.attributes:  # a container; where its rows share its name, they count
            found.rows += 1
        if holder is not None:  # a wrapper's rows are its container's too
            tags[holder].holds.update({tag: None} if row else found.holds)
        return row

    def row_tag(self, tag: str) -> str:
        """The row tag that ``tag`` means in this file: itself if it names rows, or the one
        row tag inside the section (or wrapper) it names.

        Raises ``ValueError`` otherwise, saying which row tags to use."""
        found = self.tags.get(tag)
        if found is not None and found.is_rows:
            return tag
        if found is not None and len(found.holds) == 1:
            return next(iter(found.holds))
        row_tags = ", ".join(t.tag for t in self.tags.values() if t.is_rows) or "none"
        if found is not None and found.holds:
            held = ", ".join(f"<{t}>" for t in found.holds)
            raise ValueError(f"<{tag}> is a section of several row tags: {held}; pass one of them")
        if found is not None:
            raise ValueError(f"<{tag}> holds no rows in this file; row tags in it: {row_tags}")
        if tag in HEADER_TAGS:
            raise ValueError(
                f"<{tag}> is a statement header, not a row (inspect shows the headers); "
                f"row tags in this file: {row_tags}"
            )
        raise ValueError(f"no <{tag}> rows in the file; row tags in it: {row_tags}")


def _checked_walk(source: Source) -> Iterator[tuple[int, str | None, ET.Element]]:
    """:func:`~.stream.walk`, then :class:`StatementError` at the end if :class:`FlexStatement`
    would refuse the file (malformed XML, a DTD or a foreign root raise where they are met)."""
    headers = HeaderCheck()
    for item in walk(source):
        headers.see(*item)
        yield item
    headers.check()


def summarize(source: Source) -> Summary:
    """Every tag below the statements (sections and rows) with its count and attribute names,
    the accounts with their periods, the query's name and type. One streaming pass.

    Raises :class:`StatementError` for a file :class:`FlexStatement` refuses."""
    summary = Summary()
    see = summary.see
    for item in _checked_walk(source):
        see(*item)
    return summary


def export_rows(
    path: str | os.PathLike[str], tag: str, out: IO[str], output_format: Literal["csv", "jsonl"]
) -> int:
    """Write every ``tag`` row to ``out``, one column per attribute seen on any of them (in
    first-seen order; empty where a row lacks it). Returns the rows written.

    ``tag`` names rows (``Trade``), or a section that holds rows of one tag (``Trades``, in a
    statement without orders or summaries). The file is read twice, memory flat: first to
    check it as :class:`FlexStatement` would (and to learn the CSV columns), so a file it
    refuses raises :class:`StatementError` before anything is written, and a ``tag`` that
    names no rows raises ``ValueError`` (see :meth:`Summary.row_tag`); then to write the
    rows."""
    summary = summarize(path)
    tag = summary.row_tag(tag)
    rows = filter(is_row, iter_elements(path, tag))
    count = 0
    if output_format == "jsonl":
        for count, element in enumerate(rows, start=1):  # noqa: B007
            out.write(json.dumps(element.attrib, ensure_ascii=False) + "\n")
        return count
    columns = list(summary.tags[tag].attributes)
    writer = csv.DictWriter(out, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for count, element in enumerate(rows, start=1):  # noqa: B007
        writer.writerow(element.attrib)
    return count


# --- model inference ---------------------------------------------------------------------

_INT = re.compile(r"[+-]?(0|[1-9]\d{0,2}(,\d{3})+|[1-9]\d*)")
_DECIMAL = re.compile(r"[+-]?(\d{1,3}(,\d{3})+|\d+)?\.\d+([eE][+-]?\d+)?|[+-]?\d+[eE][+-]?\d+")
_BOOLS = frozenset({"y", "n", "yes", "no", "true", "false"})
# In order of preference. Dates come before numbers: 20260302 is a date, not an int.
_KINDS = ("bool", "date", "datetime", "int", "Decimal", "str")
# Whole numbers are int only in identifier columns: a quantity or an amount that is whole in
# this file may be fractional in the next one, and would then fail to convert.
_IDENTIFIER = re.compile(r".*(ID|Id|id)$|conid|.*Conid|multiplier")


@dataclasses.dataclass(slots=True)
class _Column:
    """What the values of one attribute could all be."""

    possible: set[str] = dataclasses.field(default_factory=lambda: set(_KINDS))
    optional: bool = False
    seen: int = 0


def _fits(kinds: set[str], text: str) -> set[str]:
    """The kinds (of ``kinds``) that ``text`` could be. Dates are tried in either day order:
    a value is a date if one reading is, and the model's reader settles the order later."""
    fits = {"str"}
    if "bool" in kinds and text.lower() in _BOOLS:
        fits.add("bool")
    if "int" in kinds and _INT.fullmatch(text):
        fits.add("int")
    if "Decimal" in kinds and (_DECIMAL.fullmatch(text) or _INT.fullmatch(text)):
        fits.add("Decimal")
    if "date" in kinds and _parses(parse_ib_date, text):
        fits.add("date")
    if "datetime" in kinds and _parses(parse_ib_datetime, text):
        fits.add("datetime")
    return fits


def _parses(parse: Callable[[str], object], text: str) -> bool:
    """Whether ``text`` is in the format (an ambiguous dd/MM date still is a date)."""
    try:
        parse(text)
    except AmbiguousDateError:
        return True
    except ValueError:
        return False
    return True


def snake_case(name: str) -> str:
    """``tradeDate`` -> ``trade_date``, ``securityID`` -> ``security_id``, ``isAPIOrder`` ->
    ``is_api_order``: the names :meth:`FlexStatement.rows` maps back to IB's attributes."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return re.sub(r"\W", "_", spaced).lower()


def _class_name(tag: str) -> str:
    name = re.sub(r"\W", "", tag[:1].upper() + tag[1:])
    return name if name.isidentifier() and not keyword.iskeyword(name) else f"Row{name}"


def infer_model(
    source: Source, tag: str, style: Literal["dataclass", "pydantic"] = "dataclass"
) -> str:
    """Python source for a model of ``tag``'s rows, each field typed from every value in the
    file: ``bool``, ``int``, ``Decimal``, ``date``, ``datetime``, else ``str``; ``| None``
    where values are empty or missing. Ready for :meth:`FlexStatement.rows`.

    ``tag`` names rows, or a section of one row tag (as for :func:`export_rows`; the file is
    then read twice, so a file object must be seekable). A field whose name would shadow a
    type, a builtin or a keyword (``date``, ``type``) takes a trailing ``_`` and names its
    attribute explicitly.

    Raises :class:`StatementError` for a file :class:`FlexStatement` refuses, and
    ``ValueError`` for a ``tag`` that names no rows (see :meth:`Summary.row_tag`)."""
    file = None if isinstance(source, (str, os.PathLike)) else source
    start = file.tell() if file is not None and file.seekable() else None
    columns, rows, summary = _infer_columns(source, tag)
    if rows == 0:
        row_tag = summary.row_tag(tag)  # ValueError unless the section has one row tag
        if file is not None:
            if start is None:  # a pipe: it cannot be read again
                raise ValueError(f"<{tag}> holds <{row_tag}> rows: pass {row_tag!r} as the tag")
            file.seek(start)
        tag = row_tag
        columns, rows, _ = _infer_columns(source, tag)
    for column in columns.values():
        if column.seen < rows:
            column.optional = True  # some rows lack the attribute
    return _render(tag, columns, style, rows)


def _infer_columns(source: Source, tag: str) -> tuple[dict[str, _Column], int, Summary]:
    """What every ``tag`` row's values could be, how many rows, and the file's summary."""
    columns: dict[str, _Column] = {}
    rows = 0
    summary = Summary()
    see = summary.see
    for depth, parent, element in _checked_walk(source):
        if not see(depth, parent, element) or element.tag != tag:
            continue
        rows += 1
        for name, value in element.attrib.items():
            column = columns.get(name)
            if column is None:
                column = columns[name] = _Column()
            column.seen += 1
            text = value.strip()
            if text in EMPTY_DATE_MARKERS:  # the wider set: "MULTI" is no value either
                column.optional = True
                continue
            column.possible &= _fits(column.possible, text)
    return columns, rows, summary


def _type_of(attribute: str, column: _Column) -> str:
    never_seen = column.possible == set(_KINDS)  # every value was empty
    kind = "str" if never_seen else next(k for k in _KINDS if k in column.possible)
    if kind == "int" and not _IDENTIFIER.fullmatch(attribute):
        kind = "Decimal"
    return f"{kind} | None" if column.optional else kind


# Names a field must not take: in a class body, a field named ``date`` hides the type
# ``date`` from the annotations after it (pydantic then fails on ``date | None``), and one
# named like a builtin, an imported name or a method of pydantic's BaseModel hides those.
_RESERVED = frozenset(
    {name for name in dir(builtins) if not name.startswith("_")}
    | {"annotations", "dataclass", "field", "date", "datetime", "Decimal", "BaseModel", "Field"}
    | {"construct", "copy", "dict", "fields", "json", "schema", "schema_json", "validate"}
)


def _field_name(attribute: str, used: set[str]) -> str:
    name = snake_case(attribute)
    if not name.isidentifier():
        name = f"f_{name}"
    if name.startswith("model_"):  # pydantic keeps the model_ prefix for itself
        name = f"f_{name}"
    while keyword.iskeyword(name) or name in _RESERVED or name in used:
        name += "_"
    return name


def _render(
    tag: str, columns: dict[str, _Column], style: Literal["dataclass", "pydantic"], rows: int
) -> str:
    folded = [a.replace("_", "").lower() for a in columns]
    fields: list[Field] = []
    used: set[str] = set()
    for attribute, column in columns.items():
        name = _field_name(attribute, used)
        used.add(name)
        # Name the attribute explicitly where the field's name would not find it back, or is
        # not the attribute's own.
        key = attribute.replace("_", "").lower()
        explicit = (
            name != snake_case(attribute)
            or name.replace("_", "").lower() != key
            or folded.count(key) > 1
        )
        fields.append((name, _type_of(attribute, column), attribute, explicit, column.optional))
    return "\n".join(_header(tag, fields, style, rows) + _body(fields, style)) + "\n"


Field = tuple[str, str, str, bool, bool]  # name, type, attribute, explicit, optional


def _header(tag: str, fields: list[Field], style: str, rows: int) -> list[str]:
    kinds = {kind.split(" | ")[0] for _, kind, _, _, _ in fields}
    any_explicit = any(explicit for *_, explicit, _ in fields)
    lines = ["from __future__ import annotations", ""]
    if style == "dataclass":
        lines.append("from dataclasses import dataclass" + (", field" if any_explicit else ""))
    if dated := sorted(kinds & {"date", "datetime"}):
        lines.append(f"from datetime import {', '.join(dated)}")
    if "Decimal" in kinds:
        lines.append("from decimal import Decimal")
    if style == "pydantic":
        if len(lines) > 2:
            lines.append("")
        lines.append("from pydantic import BaseModel" + (", Field" if any_explicit else ""))
        lines += ["", "", f"class {_class_name(tag)}(BaseModel):"]
    else:
        lines += ["", "", "@dataclass(frozen=True, slots=True)", f"class {_class_name(tag)}:"]
    lines += [f'    """<{tag}> rows, typed from the {rows} in one statement file."""', ""]
    return lines


def _body(fields: list[Field], style: str) -> list[str]:
    lines = []
    for name, kind, attribute, explicit, optional in fields:
        if style == "pydantic":
            if explicit:
                value = f" = Field({'None, ' if optional else ''}alias={attribute!r})"
            else:
                value = " = None" if optional else ""
        else:
            value = f" = field(metadata={{'ib': {attribute!r}}})" if explicit else ""
        lines.append(f"    {name}: {kind}{value}")
    return lines
