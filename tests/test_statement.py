"""FlexStatement: the documented attributes, the real samples, and what it refuses."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from ibkr_flex_client import FlexStatement, StatementError
from ibkr_flex_client.testing import build_statement

from .conftest import DATA

# Every published sample, with its header as IB wrote it.
SAMPLES = {
    "activity-corporate-action-crlf.xml": ("U1234567", date(2025, 1, 1), date(2025, 12, 31)),
    "activity-multi-values-iso-dates.xml": ("U12349876", date(2025, 1, 1), date(2026, 1, 1)),
    "activity-options-futures-space-separator.xml": (
        "U0000000",
        date(2025, 1, 1),
        date(2025, 12, 31),
    ),
    "activity-orders-odd-values.xml": ("U12345678", date(2021, 1, 4), date(2021, 12, 24)),
    "activity-statement-of-funds-bom.xml": ("DU231262", date(2018, 3, 12), date(2019, 3, 11)),
    "activity-zone-suffix-times.xml": ("U1234567", date(2025, 4, 25), date(2025, 4, 25)),
}


@pytest.mark.parametrize(("name", "header"), SAMPLES.items())
def test_real_samples_parse_from_bytes_and_from_text(
    name: str, header: tuple[str, date, date]
) -> None:
    raw = (DATA / name).read_bytes()
    for given in (raw, raw.decode("utf-8")):
        statement = FlexStatement(given)
        assert statement.xml is given  # kept exactly as given
        assert (statement.account_id, statement.from_date, statement.to_date) == header


def test_iter_yields_every_matching_element_in_document_order() -> None:
    statement = FlexStatement((DATA / "activity-orders-odd-values.xml").read_bytes())
    trades = list(statement.iter("Trade"))
    assert len(trades) == 3
    assert trades[0].get("symbol") == "KMI"
    assert trades[0].get("quantity") == "100"
    assert list(statement.iter("NoSuchSection")) == []


def test_non_ascii_survives_from_declared_latin1_bytes() -> None:
    text = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n<FlexQueryResponse queryName="Q" type="AF">'
        '<FlexStatements count="1"><FlexStatement accountId="U1" fromDate="20260102" '
        'toDate="20260102"><Trades><Trade description="Société Générale"/></Trades>'
        "</FlexStatement></FlexStatements></FlexQueryResponse>"
    )
    statement = FlexStatement(text.encode("latin-1"))
    assert next(statement.iter("Trade")).get("description") == "Société Générale"


BROKEN = {
    "empty": b"",
    "not xml": b"Our services are temporarily unavailable",
    "truncated": build_statement()[:700],
    "wrong root": b"<FlexStatementResponse><Status>Warn</Status></FlexStatementResponse>",
    "no statements": b'<FlexQueryResponse queryName="q" type="AF"></FlexQueryResponse>',
    "zero statements": b'<FlexQueryResponse><FlexStatements count="0"/></FlexQueryResponse>',
    "count mismatch": (
        b'<FlexQueryResponse><FlexStatements count="2"><FlexStatement accountId="U1" '
        b'fromDate="20260101" toDate="20260102"/></FlexStatements></FlexQueryResponse>'
    ),
    "missing header": (
        b'<FlexQueryResponse><FlexStatements count="1"><FlexStatement accountId="U1"/>'
        b"</FlexStatements></FlexQueryResponse>"
    ),
    "bad header date": (
        b'<FlexQueryResponse><FlexStatements count="1"><FlexStatement accountId="U1" '
        b'fromDate="2026-13-01" toDate="20260102"/></FlexStatements></FlexQueryResponse>'
    ),
    "billion laughs": (
        b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
        b' <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n'
        b' <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">\n]>\n'
        b"<FlexQueryResponse>&lol2;</FlexQueryResponse>"
    ),
    "external entity": (
        b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><FlexQueryResponse>&x;'
        b"</FlexQueryResponse>"
    ),
    "dtd after comment": b"<!-- hi --><!DOCTYPE r><FlexQueryResponse/>",
    "utf-16 dtd": '\ufeff<!DOCTYPE r [<!ENTITY a "b">]><FlexQueryResponse/>'.encode("utf-16"),
}


@pytest.mark.parametrize("xml", BROKEN.values(), ids=BROKEN.keys())
def test_anything_but_a_complete_statement_raises_statement_error(xml: bytes) -> None:
    with pytest.raises(StatementError) as caught:
        FlexStatement(xml)
    assert isinstance(caught.value, ValueError)
    assert caught.value.__context__ is None or not isinstance(caught.value.__context__, SyntaxError)


def test_a_long_prolog_is_still_checked() -> None:
    comment = b"<!--" + b"x" * 10_000 + b"-->"
    with pytest.raises(StatementError, match="DTD"):
        FlexStatement(comment + b"<!DOCTYPE r><FlexQueryResponse/>")
    assert FlexStatement(comment + build_statement().split(b"\n", 1)[1]).account_id == "U1234567"


def test_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        FlexStatement(123)  # type: ignore[arg-type]


def test_multi_account_report_spans_every_account() -> None:
    statement = FlexStatement(build_statement(accounts=["U111", "U222"]))
    assert statement.account_id == "U111,U222"
    assert len(list(statement.iter("Trade"))) == 6


def test_repr_is_short_and_informative() -> None:
    statement = FlexStatement(build_statement())
    assert repr(statement).startswith(
        "FlexStatement(account_id='U1234567', from_date=2026-03-02, to_date=2026-03-06, size="
    )


def test_every_account_of_a_multi_account_report() -> None:
    document = build_statement(
        accounts=["U111", "U222", "U333"], query_name="Daily", report_type="TCF", period="Last7"
    )
    statement = FlexStatement(document)
    assert (statement.query_name, statement.type) == ("Daily", "TCF")
    assert [s.account_id for s in statement.statements] == ["U111", "U222", "U333"]
    first = statement.statements[0]
    assert (first.from_date, first.to_date, first.period) == (
        date(2026, 3, 2),
        date(2026, 3, 6),
        "Last7",
    )
    assert first.when_generated == datetime(2026, 3, 9, 8, 15, 2)
    assert [t.get("accountId") for t in first.iter("Trade")] == ["U111"] * 3
    assert len(list(statement.iter("Trade"))) == 9  # the top level spans all accounts
    assert "U111" in repr(first)


def test_top_level_dates_span_accounts_with_different_periods() -> None:
    early = build_statement(accounts=["U1"], from_date=date(2026, 1, 5), to_date=date(2026, 1, 9))
    late = build_statement(accounts=["U2"], from_date=date(2026, 2, 2), to_date=date(2026, 2, 6))
    combined = early.replace(b'count="1"', b'count="2"').replace(
        b"</FlexStatements>",
        late.split(b'<FlexStatements count="1">')[1].split(b"</FlexStatements>")[0]
        + b"</FlexStatements>",
    )
    statement = FlexStatement(combined)
    assert statement.account_id == "U1,U2"
    assert (statement.from_date, statement.to_date) == (date(2026, 1, 5), date(2026, 2, 6))


@pytest.mark.parametrize("fmt", ["yyyyMMdd", "yyyy-MM-dd", "MM/dd/yyyy", "MM/dd/yy", "dd-MMM-yy"])
def test_header_dates_in_every_unambiguous_setting(fmt: str) -> None:
    document = build_statement(
        date_format=fmt, from_date=date(2026, 1, 13), to_date=date(2026, 1, 30)
    )
    statement = FlexStatement(document)
    assert (statement.from_date, statement.to_date) == (date(2026, 1, 13), date(2026, 1, 30))


def test_day_order_comes_from_the_whole_document_when_headers_are_ambiguous() -> None:
    rows = [{"tradeDate": date(2026, 3, 24)}]  # 24/03/2026: only dd/MM reads it
    document = build_statement(sections={"T": ("Trade", rows)}, date_format="dd/MM/yyyy")
    statement = FlexStatement(document)
    assert statement.day_first is True
    assert (statement.from_date, statement.to_date) == (date(2026, 3, 2), date(2026, 3, 6))


def test_undecidable_day_order_is_explained_not_guessed() -> None:
    document = build_statement(sections={}, date_format="dd/MM/yyyy")
    statement = FlexStatement(document)  # a valid statement all the same
    assert statement.day_first is None
    with pytest.raises(StatementError, match="day_first"):
        _ = statement.from_date
    assert "from_date=?" in repr(statement)
    assert FlexStatement(document, day_first=True).from_date == date(2026, 3, 2)
    assert FlexStatement(document, day_first=False).from_date == date(2026, 2, 3)


@pytest.mark.parametrize("encoding", ["utf-8", "iso-8859-1", "utf-16"])
def test_declared_encodings_keep_non_ascii_names(encoding: str) -> None:
    text = (
        f'<?xml version="1.0" encoding="{encoding}"?>\n<FlexQueryResponse queryName="Zürich '
        'Konto" type="AF"><FlexStatements count="1"><FlexStatement accountId="U1" '
        'fromDate="20260102" toDate="20260102"><AccountInformation name="Jürg Müller-Ødegård '
        'Łukasz"/></FlexStatement></FlexStatements></FlexQueryResponse>'
    )
    if encoding == "iso-8859-1":  # Latin-1 has no Ł: IB would write a character reference
        text = text.replace("Ł", "&#321;")
    data = text.encode(encoding)
    statement = FlexStatement(data)
    assert statement.xml is data
    assert statement.query_name == "Zürich Konto"
    names = [e.get("name") for e in statement.iter("AccountInformation")]
    assert names == ["Jürg Müller-Ødegård Łukasz"]


def test_from_file_reads_bytes(tmp_path: Path) -> None:
    path = tmp_path / "s.xml"
    path.write_bytes(build_statement())
    assert FlexStatement.from_file(path).account_id == "U1234567"
    assert FlexStatement.from_file(str(path)).xml == path.read_bytes()
