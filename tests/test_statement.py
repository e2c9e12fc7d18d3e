"""FlexStatement: the documented attributes, the real samples, and what it refuses."""

from __future__ import annotations

from datetime import date

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
