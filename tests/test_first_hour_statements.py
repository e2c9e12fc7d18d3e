"""What a new user met in their first hour with statements: sections named like their rows,
generated models that would not import, ambiguous dates, and section names given as tags."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import io
import json
import subprocess
import sys
import types
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ibkr_flex_client import FlexStatement, RowError, iter_elements, iter_rows
from ibkr_flex_client.dates import document_day_first
from ibkr_flex_client.inspection import export_rows, infer_model, summarize
from ibkr_flex_client.testing import build_statement

from .conftest import DATA
from .test_statement import SAMPLES

OPTIONS = DATA / "activity-options-futures-space-separator.xml"


def reference_rows(root: ET.Element, tag: str) -> list[dict[str, str]]:
    """The rows named ``tag``, read without the library: elements with attributes below a
    <FlexStatement>, at any depth (sections, wrappers and headers carry none)."""
    return [
        dict(element.attrib)
        for statement in root.iter("FlexStatement")
        for section in statement
        for element in section.iter(tag)
        if element.attrib
    ]


def row_tags(root: ET.Element) -> list[str]:
    tags = {
        element.tag: None
        for statement in root.iter("FlexStatement")
        for section in statement
        for element in section.iter()
        if element.attrib
    }
    return list(tags)


@dataclasses.dataclass
class Nothing:
    """A model that takes no field: counts rows, whatever they hold."""


def every_reading(source: Path, tag: str) -> dict[str, list[dict[str, str]]]:
    """The ``tag`` rows as each path of the library gives them (attributes only)."""
    statement = FlexStatement.from_file(source)
    text = io.StringIO()
    export_rows(source, tag, text, "jsonl")
    return {
        "FlexStatement.iter": [dict(e.attrib) for e in statement.iter(tag)],
        "AccountStatement.iter": [
            dict(e.attrib) for account in statement.statements for e in account.iter(tag)
        ],
        "export_rows jsonl": [json.loads(line) for line in text.getvalue().splitlines()],
    }


def row_counts(source: Path, tag: str) -> dict[str, int]:
    statement = FlexStatement.from_file(source)
    return {
        "FlexStatement.rows": sum(1 for _ in statement.rows(tag, Nothing)),
        "AccountStatement.rows": sum(
            1 for account in statement.statements for _ in account.rows(tag, Nothing)
        ),
        "summarize": summarize(source).tags[tag].rows,
    }


# --- 1. a container is never a row ------------------------------------------------------


def test_option_eae_is_13_rows_on_every_path() -> None:
    root = ET.parse(OPTIONS).getroot()
    expected = reference_rows(root, "OptionEAE")
    assert len(expected) == 13
    for path, rows in every_reading(OPTIONS, "OptionEAE").items():
        assert rows == expected, path
    assert set(row_counts(OPTIONS, "OptionEAE").values()) == {13}


def test_option_eae_export_has_no_blank_row() -> None:
    out = io.StringIO()
    assert export_rows(OPTIONS, "OptionEAE", out, "csv") == 13
    lines = out.getvalue().splitlines()
    assert len(lines) == 14  # the header, then the rows
    assert all(line.strip(",") for line in lines)
    out = io.StringIO()
    assert export_rows(OPTIONS, "OptionEAE", out, "jsonl") == 13
    assert "{}" not in out.getvalue().splitlines()


def test_option_eae_model_has_required_fields() -> None:
    source = infer_model(OPTIONS, "OptionEAE")
    # Before, a phantom row without attributes made every field optional.
    assert "    symbol: str\n" in source
    assert "    quantity: Decimal\n" in source
    assert "    date_: date = field(metadata={'ib': 'date'})\n" in source
    assert source.count("| None") == 1  # subCategory, empty on 3 of the 13 rows


def test_option_eae_inspect_lists_the_section_once_as_its_rows() -> None:
    found = summarize(OPTIONS).tags["OptionEAE"]
    assert (found.depth, found.rows) == (3, 13)
    assert "transactionType" in found.attributes


def test_option_eae_streamed_is_13_rows() -> None:
    root = ET.parse(OPTIONS).getroot()
    expected = reference_rows(root, "OptionEAE")
    assert [dict(e.attrib) for e in iter_elements(OPTIONS, "OptionEAE")] == expected

    @dataclasses.dataclass
    class Exercise:
        symbol: str
        date: date
        quantity: Decimal

    rows = list(iter_rows(OPTIONS, "OptionEAE", Exercise))
    assert [r.symbol for r in rows] == [r["symbol"] for r in expected]


# IB's own shapes, as ibflex (csingley/ibflex, Types.py and parser.py) knows them: sections
# named like their rows (OptionEAE, ClientFeesDetail), sections written as one row
# (AccountInformation, ChangeInNAV), rows in a wrapper (FxPositions > FxLots > FxLot), and
# empty sections. Two accounts: the first has no exercises, the second has two.
SHAPES = b"""<?xml version="1.0" encoding="UTF-8"?>
<FlexQueryResponse queryName="Shapes" type="AF">
<FlexStatements count="2">
<FlexStatement accountId="U1" fromDate="20260302" toDate="20260306" period=""
    whenGenerated="20260309;081502">
  <AccountInformation accountId="U1" currency="USD" name="One"/>
  <ChangeInNAV accountId="U1" startingValue="100" endingValue="110"/>
  <OptionEAE/>
  <ClientFeesDetail>
    <ClientFeesDetail accountId="U1" currency="USD" date="20260303" revenue="-1.5"/>
  </ClientFeesDetail>
  <FxPositions>
    <FxLots>
      <FxLot accountId="U1" functionalCurrency="USD" quantity="100" reportDate="20260306"/>
      <FxLot accountId="U1" functionalCurrency="USD" quantity="-5" reportDate="20260306"/>
    </FxLots>
  </FxPositions>
  <Trades/>
</FlexStatement>
<FlexStatement accountId="U2" fromDate="20260302" toDate="20260306" period=""
    whenGenerated="20260309;081502">
  <AccountInformation accountId="U2" currency="EUR" name="Two"/>
  <OptionEAE>
    <OptionEAE accountId="U2" symbol="XYZ C" date="20260304" transactionType="Exercise"
      quantity="-1"/>
    <OptionEAE accountId="U2" symbol="XYZ" date="20260304" transactionType="Buy" quantity="100"/>
  </OptionEAE>
  <ClientFeesDetail/>
  <Trades>
    <Trade accountId="U2" symbol="XYZ" tradeDate="20260305" quantity="5"/>
  </Trades>
</FlexStatement>
</FlexStatements>
</FlexQueryResponse>
"""

SHAPE_ROWS = {
    "OptionEAE": 2,
    "ClientFeesDetail": 1,
    "AccountInformation": 2,
    "ChangeInNAV": 1,
    "FxLot": 2,
    "Trade": 1,
}


@pytest.fixture
def shapes(tmp_path: Path) -> Path:
    path = tmp_path / "shapes.xml"
    path.write_bytes(SHAPES)
    return path


@pytest.mark.parametrize(("tag", "count"), SHAPE_ROWS.items())
def test_every_shape_of_section_gives_its_rows_only(shapes: Path, tag: str, count: int) -> None:
    root = ET.fromstring(SHAPES)
    expected = reference_rows(root, tag)
    assert len(expected) == count
    for path, rows in every_reading(shapes, tag).items():
        assert rows == expected, path
    assert set(row_counts(shapes, tag).values()) == {count}
    source = infer_model(shapes, tag)
    assert f"typed from the {count} in one statement file" in source


@pytest.mark.parametrize(("tag", "count"), SHAPE_ROWS.items())
def test_every_shape_of_section_streams_its_rows_only(shapes: Path, tag: str, count: int) -> None:
    expected = reference_rows(ET.fromstring(SHAPES), tag)
    assert [dict(e.attrib) for e in iter_elements(shapes, tag)] == expected
    assert sum(1 for _ in iter_rows(shapes, tag, Nothing)) == count


def test_sections_named_otherwise_still_come_whole_from_iter(shapes: Path) -> None:
    statement = FlexStatement.from_file(shapes)
    # The non-empty <Trades> and <FxPositions>, each with its subtree; the empty <Trades/> of
    # U1 has nothing to give.
    (trades,) = statement.iter("Trades")
    assert [t.get("symbol") for t in trades] == ["XYZ"]
    (positions,) = statement.iter("FxPositions")
    assert len(positions[0]) == 2  # <FxLots>, with its two rows
    assert [s.get("accountId") for s in statement.iter("FlexStatement")] == ["U1", "U2"]
    # ... but they are not rows.
    assert list(statement.rows("Trades", Nothing)) == []
    assert list(statement.rows("FlexStatement", Nothing)) == []


def test_inspect_lists_each_shape_once(shapes: Path) -> None:
    tags = summarize(shapes).tags
    listed = {t.tag: (t.depth, t.rows) for t in tags.values()}
    assert listed == {
        "AccountInformation": (3, 2),
        "ChangeInNAV": (3, 1),
        "OptionEAE": (3, 2),
        "ClientFeesDetail": (3, 1),
        "FxPositions": (3, 1),
        "FxLots": (4, 1),
        "FxLot": (5, 2),
        "Trades": (3, 2),
        "Trade": (4, 1),
    }
    assert list(tags["FxPositions"].holds) == ["FxLot"]


@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_every_tag_agrees_with_a_plain_reading(name: str) -> None:
    path = DATA / name
    root = ET.parse(path).getroot()
    for tag in row_tags(root):
        expected = reference_rows(root, tag)
        for reading, rows in every_reading(path, tag).items():
            assert rows == expected, (tag, reading)
        assert set(row_counts(path, tag).values()) == {len(expected)}, tag


@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_every_tag_streams_as_a_plain_reading(name: str) -> None:
    path = DATA / name
    root = ET.parse(path).getroot()
    for tag in row_tags(root):
        expected = reference_rows(root, tag)
        assert [dict(e.attrib) for e in iter_elements(path, tag)] == expected, tag
        assert sum(1 for _ in iter_rows(path, tag, Nothing)) == len(expected), tag


# --- 2. generated models import, and read every row ------------------------------------


def load(source: str, monkeypatch: pytest.MonkeyPatch) -> type[Any]:
    """The one class a generated module defines, the module imported as a real one."""
    module = types.ModuleType(f"generated_{uuid.uuid4().hex}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(source, "<models>", "exec"), module.__dict__)  # noqa: S102 - our output
    (model,) = (v for v in vars(module).values() if getattr(v, "__module__", "") == module.__name__)
    return model  # type: ignore[no-any-return]


def _sample_tags() -> Iterator[tuple[str, str]]:
    for name in SAMPLES:
        root = ET.parse(DATA / name).getroot()
        for tag in row_tags(root):
            yield name, tag


STYLES = ["dataclass", "pydantic"]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(("name", "tag"), list(_sample_tags()))
def test_generated_models_import_and_read_every_row(
    name: str, tag: str, style: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    if style == "pydantic":
        pytest.importorskip("pydantic")
    path = DATA / name
    model = load(infer_model(path, tag, style), monkeypatch)
    statement = FlexStatement.from_file(path)
    rows = list(statement.rows(tag, model))
    expected = reference_rows(ET.parse(path).getroot(), tag)
    assert len(rows) == len(expected)
    # Every attribute found its field: a value IB wrote is never lost on the way in (MULTI
    # is None in a date field, itself in a str one).
    first, attributes = rows[0], expected[0]
    is_dataclass = dataclasses.is_dataclass(first) and not isinstance(first, type)
    values = dataclasses.asdict(first) if is_dataclass else dict(first)
    given = [v.strip() for v in attributes.values() if v.strip() not in ("", "-", "--", "N/A")]
    kept = sum(1 for v in values.values() if v is not None)
    assert len(given) - given.count("MULTI") <= kept <= len(given)


NAMES_THAT_SHADOW = {
    "date": "20260302",
    "datetime": "20260302;101500",
    "type": "DIV",
    "class": "A",
    "str": "x",
    "id": "7",
    "field": "f",
    "modelName": "m",
    "json": "{}",
}


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("optional", [False, True])
def test_fields_that_would_shadow_a_name_get_an_alias(
    tmp_path: Path, style: Any, optional: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if style == "pydantic":
        pytest.importorskip("pydantic")
    rows = [dict(NAMES_THAT_SHADOW)]
    if optional:
        rows.append(dict.fromkeys(NAMES_THAT_SHADOW, ""))
    path = tmp_path / "r.xml"
    path.write_bytes(build_statement(sections={"S": ("R", rows)}))
    source = infer_model(path, "R", style)
    for attribute in NAMES_THAT_SHADOW:
        assert f"alias={attribute!r}" in source or f"{{'ib': {attribute!r}}}" in source
    model = load(source, monkeypatch)
    first, *rest = FlexStatement.from_file(path).rows("R", model)
    assert first.date_ == date(2026, 3, 2)
    assert first.datetime_ == datetime(2026, 3, 2, 10, 15)
    assert (first.type_, first.class_, first.str_, first.id_) == ("DIV", "A", "x", 7)
    assert (first.field_, first.f_model_name, first.json_) == ("f", "m", "{}")
    if optional:
        (empty,) = rest
        assert (empty.date_, empty.datetime_, empty.type_, empty.id_) == (None,) * 4


# --- 3. an ambiguous date in a row says how to settle it --------------------------------


@pytest.mark.parametrize(
    ("annotation", "attribute", "value"),
    [(date, "tradeDate", date(2026, 3, 4)), (datetime, "dateTime", datetime(2026, 3, 4, 9))],
)
def test_an_ambiguous_row_date_explains_day_first(
    annotation: type, attribute: str, value: date
) -> None:
    document = build_statement(
        sections={"Trades": ("Trade", [{attribute: value}])}, date_format="dd/MM/yyyy"
    )
    model = dataclasses.make_dataclass(
        "Row", [("when", annotation, dataclasses.field(metadata={"ib": attribute}))]
    )
    statement = FlexStatement(document)
    assert statement.day_first is None  # nothing in the document decides
    with pytest.raises(RowError) as caught:
        list(statement.rows("Trade", model))
    text = str(caught.value)
    assert "ambiguous" in text
    assert "day_first" in text
    assert "not a valid" not in text
    assert caught.value.attribute == attribute
    with pytest.raises(RowError, match="day_first"):
        list(iter_rows(io.BytesIO(document), "Trade", model))


# --- 4. the document's day order: the first date that decides, decides ------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('<T d="24/03/2026"/>', True),
        ("<T d='03/24/2026'/>", False),
        ('<T d="24/03/26;101500"/>', True),
        ('<T d="03/24/26 10:15:00 EDT"/>', False),
        ('<T d="03/04/2026" e="04/03/2026"/>', None),  # every date reads both ways
        ('<T d="45/03/2026" e="03/45/2026"/>', None),  # no such day either way
        ('<T d="2026/13/01" e="x 13/01/2026"/>', None),  # not at the start of a value
        ('<T d="13/13/2026"/>', None),
        ('<T a="03/04/2026" b="24/03/2026" c="03/25/2026"/>', True),  # the first decides
        ("", None),
    ],
)
def test_document_day_first(text: str, expected: bool | None) -> None:
    assert document_day_first(text) is expected
    assert document_day_first(text.encode()) is expected


def test_the_first_deciding_date_of_the_document_decides() -> None:
    rows: list[dict[str, date | str]] = [
        {"tradeDate": date(2026, 3, 24), "notes": ""},  # 24/03/2026: only dd/MM reads it
        {"tradeDate": date(2026, 3, 4), "notes": "03/25/2026 split"},  # free text, later
    ]
    document = build_statement(sections={"Trades": ("Trade", rows)}, date_format="dd/MM/yyyy")
    statement = FlexStatement(document)
    assert statement.day_first is True
    assert statement.from_date == date(2026, 3, 2)


def test_a_utf16_document_decides_its_day_order_too() -> None:
    rows = [{"tradeDate": date(2026, 3, 24)}]
    text = build_statement(sections={"T": ("Trade", rows)}, date_format="dd/MM/yyyy").decode()
    data = text.replace("encoding='utf-8'", "encoding='utf-16'").encode("utf-16")
    assert FlexStatement(data).day_first is True


# --- 7. a section name as a tag: its rows, or which row tag to use ----------------------

REPORT = build_statement(accounts=["U1111111", "U2222222"])  # Trades hold only <Trade>
MIXED = DATA / "activity-corporate-action-crlf.xml"  # Trades hold SymbolSummary, Order, Trade


@pytest.fixture
def report(tmp_path: Path) -> Path:
    path = tmp_path / "report.xml"
    path.write_bytes(REPORT)
    return path


@pytest.mark.parametrize("output_format", ["csv", "jsonl"])
def test_a_section_of_one_row_tag_exports_as_its_rows(report: Path, output_format: Any) -> None:
    by_section, by_row = io.StringIO(), io.StringIO()
    assert export_rows(report, "Trades", by_section, output_format) == 6
    assert export_rows(report, "Trade", by_row, output_format) == 6
    assert by_section.getvalue() == by_row.getvalue()


def test_a_section_of_one_row_tag_models_as_its_rows(report: Path) -> None:
    assert infer_model(report, "Trades") == infer_model(report, "Trade")
    with report.open("rb") as file:  # read twice: from where it stood
        assert infer_model(file, "Trades", "pydantic") == infer_model(report, "Trade", "pydantic")


def test_a_section_tag_from_a_pipe_names_its_row_tag() -> None:
    class Pipe(io.BytesIO):
        def seekable(self) -> bool:
            return False

        def tell(self) -> int:
            raise io.UnsupportedOperation("tell")

    with pytest.raises(ValueError, match="pass 'Trade' as the tag"):
        infer_model(Pipe(REPORT), "Trades")
    assert "class Trade" in infer_model(Pipe(REPORT), "Trade")


@pytest.mark.parametrize(
    ("tag", "says"),
    [
        ("Trades", ["<Trades>", "<SymbolSummary>", "<Order>", "<Trade>"]),
        ("FlexStatement", ["<FlexStatement>", "header", "Trade"]),
        ("FlexQueryResponse", ["<FlexQueryResponse>", "header"]),
        ("NoSuchTag", ["no <NoSuchTag> rows", "CorporateAction", "Trade"]),
    ],
)
@pytest.mark.parametrize("reader", ["export", "models"])
def test_export_and_models_refuse_alike_and_say_which_row_tags(
    tag: str, says: list[str], reader: str
) -> None:
    out = io.StringIO()
    readers: dict[str, Callable[[], object]] = {
        "export": lambda: export_rows(MIXED, tag, out, "csv"),
        "models": lambda: infer_model(MIXED, tag),
    }
    with pytest.raises(ValueError, match="row") as caught:
        readers[reader]()
    for part in says:
        assert part in str(caught.value)
    assert out.getvalue() == ""  # nothing written, not even a header or a blank line


def run(*argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(  # noqa: S603 - our interpreter, our command
        [sys.executable, "-m", "ibkr_flex_client", *argv],
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", ["export", "models"])
@pytest.mark.parametrize("tag", ["NoSuchTag", "Trades", "FlexStatement"])
def test_cli_export_and_models_fail_alike_without_a_blank_line(command: str, tag: str) -> None:
    result = run(command, str(MIXED), "--tag", tag)
    assert result.returncode == 1
    assert result.stdout == b""
    assert f"<{tag}>" in result.stderr.decode()
    assert "Trade" in result.stderr.decode()  # the row tags to use instead


@pytest.mark.parametrize("command", ["export", "models"])
def test_cli_a_section_of_one_row_tag_works_as_its_rows(command: str, report: Path) -> None:
    by_section = run(command, str(report), "--tag", "Trades")
    assert by_section.returncode == 0, by_section.stderr
    assert by_section.stdout == run(command, str(report), "--tag", "Trade").stdout
    assert by_section.stdout.strip()


def test_cli_export_of_option_eae_has_13_rows() -> None:
    result = run("export", str(OPTIONS), "--tag", "OptionEAE")
    assert result.returncode == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout.decode())))
    assert len(rows) == 13
    assert all(row["symbol"] for row in rows)


# --- 6. the benchmark pairs its runs ----------------------------------------------------


def _bench(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    path = Path(__file__).parent.parent / "bench" / "statements.py"
    spec = importlib.util.spec_from_file_location("bench_statements", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_bench_alternates_the_two_and_takes_the_median_of_paired_ratios(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = _bench(monkeypatch)
    calls: list[str] = []
    now = [0.0]
    # Ours takes 2, 3, 10 (a disturbed run), the baseline 1 each: paired ratios 2, 3, 10.
    ours_costs, base_costs = iter([2.0, 3.0, 10.0]), iter([1.0, 1.0, 1.0])

    def ours() -> None:
        calls.append("ours")
        now[0] += next(ours_costs)

    def baseline() -> None:
        calls.append("baseline")
        now[0] += next(base_costs)

    monkeypatch.setattr(bench.time, "perf_counter", lambda: now[0])
    measured = bench.paired(ours, baseline, rounds=3)
    assert calls == ["baseline", "ours"] * 3
    assert measured.ratio == 3.0  # the median of 2, 3 and 10
    assert (measured.ours, measured.baseline) == (3.0, 1.0)  # medians too


# --- 5. typed rows cost little more than a hand-written loop ----------------------------


def test_rows_with_ever_new_attribute_sets_stay_cheap() -> None:
    # A hostile statement could give every row its own attribute names: the reader must not
    # compile (and keep) one reader per row.
    import dataclasses as dc  # noqa: PLC0415

    from ibkr_flex_client.rows import MAX_PLANS, RowReader  # noqa: PLC0415

    @dc.dataclass
    class Row:
        a: int

    reader = RowReader(Row, day_first=None)
    rows = [reader.read(ET.Element("r", {"a": str(n), f"x{n}": "1"})) for n in range(500)]
    assert [row.a for row in rows] == list(range(500))  # type: ignore[attr-defined]
    assert len(reader._plans) == MAX_PLANS
