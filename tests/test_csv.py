"""Flex statements in CSV or text form: every layout, the names, counts, truncation, and the
same rows as the XML form, through FlexStatement, the streaming readers and the client."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from ibkr_flex_client import (
    FlexClient,
    FlexStatement,
    StatementError,
    TransportError,
    iter_elements,
    iter_rows,
)
from ibkr_flex_client._csv_names import attribute_name, section_tags
from ibkr_flex_client.stream import check_statement_file
from ibkr_flex_client.testing import FlexSimulator, build_statement
from ibkr_flex_client.testing.content import CSV_LAYOUTS, csv_header, default_sections, to_csv

XML = build_statement(accounts=("U1111111", "U2222222"), query_name="Two accounts")
TAGS = ("Trade", "OpenPosition", "CashReportCurrency")
DELIMITERS = {"comma": ",", "pipe": "|", "tab": "\t"}


def rows(statement: FlexStatement, tag: str) -> list[dict[str, str]]:
    return [dict(e.attrib) for e in statement.iter(tag)]


@pytest.mark.parametrize("quote_all", [True, False], ids=["quoted", "bare"])
@pytest.mark.parametrize("delimiter", DELIMITERS.values(), ids=DELIMITERS.keys())
@pytest.mark.parametrize("layout", CSV_LAYOUTS)
def test_every_layout_reads_as_the_xml_form(layout: str, delimiter: str, quote_all: bool) -> None:
    document = to_csv(XML, layout=layout, delimiter=delimiter, quote_all=quote_all)
    csv_form, xml_form = FlexStatement(document), FlexStatement(XML)
    assert csv_form.xml == document
    assert csv_form.account_id == xml_form.account_id == "U1111111,U2222222"
    for tag in TAGS:
        assert rows(csv_form, tag) == rows(xml_form, tag)
        assert rows(csv_form, tag)
    if layout.startswith("trailers"):  # the header data come from BOF
        assert (csv_form.from_date, csv_form.to_date) == (xml_form.from_date, xml_form.to_date)
        assert csv_form.query_name == "Two accounts"
        assert csv_form.statements[0].when_generated == datetime(2026, 3, 9, 8, 15, 2)
    else:
        with pytest.raises(StatementError, match="Include header and trailer records"):
            _ = csv_form.from_date


@pytest.mark.parametrize(
    ("header", "attribute"),
    [
        ("ClientAccountID", "accountId"),
        ("CurrencyPrimary", "currency"),
        ("AssetClass", "assetCategory"),
        ("Buy/Sell", "buySell"),
        ("IBCommission", "ibCommission"),
        ("IBExecID", "ibExecID"),
        ("FXRateToBase", "fxRateToBase"),
        ("TradeID", "tradeID"),
        ("TradePrice", "tradePrice"),
        ("ISIN", "isin"),
        ("Open/CloseIndicator", "openCloseIndicator"),
        ("Notes/Codes", "notes"),
        ("Date/Time", "dateTime"),
        ("\ufeffClientAccountID", "accountId"),
        ("Some Odd Column (1)", "Some Odd Column (1)"),  # no name of IB's: kept
    ],
)
def test_column_headers_map_to_xml_attributes(header: str, attribute: str) -> None:
    assert attribute_name(header) == attribute


def test_every_attribute_of_the_sample_round_trips_through_its_header() -> None:
    for _, sample in default_sections("U1", date(2026, 3, 6)).values():
        for name in sample[0]:
            assert attribute_name(csv_header(name)) == name


def test_section_codes_map_to_tags_and_unknown_ones_keep_their_code() -> None:
    assert section_tags("TRNT", []) == ("Trades", "Trade")
    assert section_tags("POST", []) == ("OpenPositions", "OpenPosition")
    assert section_tags("ZZZZ", []) == ("ZZZZ", "ZZZZ")
    assert attribute_name("Quantity", "POST") == "position"


def test_an_unknown_section_and_column_still_reach_the_user() -> None:
    text = (
        '"BOF","U1","Q","1","20260302","20260306","20260309;081502","100","100"\n'
        '"BOS","ZZZZ","Something new"\n'
        '"ClientAccountID","Brand New Column (x)"\n'
        '"U1","42"\n'
        '"EOS","ZZZZ","1","0"\n"EOF"\n'
    )
    (row,) = FlexStatement(text).iter("ZZZZ")
    assert row.attrib == {"accountId": "U1", "Brand New Column (x)": "42"}


def test_quoted_commas_newlines_and_non_ascii_survive() -> None:
    odd = {
        "symbol": 'NESN, "Nestlé"',
        "description": "line one\nline two",
        "quantity": "1",
        "buySell": "BUY",
    }
    sections = {"Trades": ("Trade", [{"accountId": "U1", **odd}])}
    document = build_statement(accounts=("U1",), sections=sections)
    for layout in CSV_LAYOUTS:
        (row,) = FlexStatement(to_csv(document, layout=layout)).iter("Trade")
        assert row.attrib == {"accountId": "U1", **odd}


def _cut(document: bytes) -> list[bytes]:
    lines = document.splitlines(keepends=True)
    return [b"".join(lines[:n]) for n in range(2, len(lines))] + [document[:-7]]


@pytest.mark.parametrize("layout", ["trailers", "trailers+descriptors"])
def test_a_file_cut_short_anywhere_is_never_a_statement(layout: str) -> None:
    document = to_csv(XML, layout=layout)
    for cut in _cut(document):
        with pytest.raises(StatementError, match="CSV"):
            FlexStatement(cut)
        with pytest.raises(StatementError):
            list(iter_elements(io.BytesIO(cut), "Trade"))


def test_an_eos_count_that_disagrees_is_refused() -> None:
    document = to_csv(XML).replace(b'"EOS","TRNT","3"', b'"EOS","TRNT","4"', 1)
    with pytest.raises(StatementError, match="EOS says 4 rows, 3 were read"):
        FlexStatement(document)


@pytest.mark.parametrize("layout", CSV_LAYOUTS)
def test_without_column_headers_nothing_can_be_named_and_it_says_which_setting(
    layout: str,
) -> None:
    document = to_csv(XML, layout=layout, column_headers=False)
    with pytest.raises(StatementError, match="Include column headers"):
        FlexStatement(document)


@dataclasses.dataclass(frozen=True)
class Trade:
    account_id: str
    symbol: str
    quantity: Decimal
    trade_price: Decimal
    trade_date: date
    date_time: datetime
    buy_sell: str


@pytest.mark.parametrize("layout", CSV_LAYOUTS)
def test_one_dataclass_gives_equal_rows_from_both_forms(layout: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "statement.csv"
    csv_file.write_bytes(to_csv(XML, layout=layout))
    from_xml = list(FlexStatement(XML).rows("Trade", Trade))
    assert list(FlexStatement.from_file(csv_file).rows("Trade", Trade)) == from_xml
    assert list(iter_rows(csv_file, "Trade", Trade)) == from_xml
    check_statement_file(csv_file)


# --- through the client ----------------------------------------------------------------------


@pytest.mark.parametrize("layout", CSV_LAYOUTS)
async def test_a_csv_answer_is_a_statement_at_once_never_retried(
    sim: FlexSimulator, make_client: Callable[..., FlexClient], layout: str, tmp_path: Path
) -> None:
    document = to_csv(XML, layout=layout, delimiter="|" if layout == "plain" else ",")
    sim.add_query("42", statement=document)
    statement = await make_client().fetch()
    assert statement.xml == document
    assert rows(statement, "Trade") == rows(FlexStatement(XML), "Trade")
    saved = await make_client().download(tmp_path / "s.csv")
    assert saved.read_bytes() == document
    assert sim.answers().count("statement") == 2
    assert "1019" not in sim.answers()[2:] or len(sim.requests) <= 8


async def test_a_csv_answer_cut_short_is_never_returned(
    sim: FlexSimulator, make_client: Callable[..., FlexClient]
) -> None:
    document = to_csv(XML)
    sim.add_query("42", statement=document[: len(document) // 2])
    with pytest.raises(TransportError, match="CSV form"):
        await make_client(max_retries=2).fetch()


async def test_a_csv_answer_without_column_headers_fails_at_once_naming_the_setting(
    sim: FlexSimulator, make_client: Callable[..., FlexClient]
) -> None:
    sim.add_query("42", statement=to_csv(XML, column_headers=False))
    with pytest.raises(StatementError, match="Include column headers"):
        await make_client().fetch()
    assert sim.answers().count("statement") == 1


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b'{"error": "nope"}', "JSON"),
        (b"%PDF-1.7\n...", "PDF"),
        (b"symbol,quantity\nAAPL,10\n", "a CSV file"),
        (bytes(range(256)) * 4, "binary data"),
    ],
)
async def test_an_answer_in_a_form_we_cannot_read_fails_at_once_naming_it(
    sim: FlexSimulator, make_client: Callable[..., FlexClient], body: bytes, kind: str
) -> None:
    sim.add_query("42", statement=body)
    with pytest.raises(StatementError, match=kind):
        await make_client().fetch()
    assert sim.answers().count("statement") == 1  # not asked again


# --- the command line --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "delimiter"), [("trailers", ","), ("descriptors", "|"), ("plain", "\t")]
)
def test_inspect_export_and_models_read_csv_and_text_files(
    layout: str, delimiter: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ibkr_flex_client import cli  # noqa: PLC0415 - the command line only here

    path = tmp_path / "statement.csv"
    path.write_bytes(to_csv(XML, layout=layout, delimiter=delimiter))
    xml_path = tmp_path / "statement.xml"
    xml_path.write_bytes(XML)
    assert cli.main(["export", str(path), "--tag", "Trade"]) == 0
    from_csv = capsys.readouterr().out
    assert cli.main(["export", str(xml_path), "--tag", "Trade"]) == 0
    assert from_csv == capsys.readouterr().out
    assert cli.main(["inspect", str(path)]) == 0
    assert "Trade" in capsys.readouterr().out
    assert cli.main(["models", str(path), "--tag", "Trade"]) == 0
    assert "class Trade" in capsys.readouterr().out


@pytest.mark.parametrize("form", ["csv", "text"])
def test_demo_shows_a_query_in_csv_or_text_form(
    form: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ibkr_flex_client import cli  # noqa: PLC0415

    argv = ["demo", "--format", form, "--generation-seconds", "0", "--latency", "0"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "U7654321     2026-03-02 to 2026-03-06" in out
    assert "Trades            6" in out
