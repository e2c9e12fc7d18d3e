"""Typed rows: every annotation type, IB's empty markers, errors that name the culprit."""

from __future__ import annotations

import dataclasses
import enum
import pickle
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest

from ibkr_flex_client import FlexStatement, RowError, StatementError
from ibkr_flex_client.testing import build_statement

from .conftest import DATA


class Side(enum.Enum):
    BUY = "BUY"
    SELL = "SELL"


def statement_of(*rows: dict[str, str], date_format: str = "yyyyMMdd") -> FlexStatement:
    return FlexStatement(
        build_statement(sections={"Trades": ("Trade", list(rows))}, date_format=date_format)
    )


@dataclasses.dataclass(frozen=True)
class Trade:
    symbol: str
    quantity: Decimal
    trade_date: date
    date_time: datetime
    buy_sell: Side
    count: int
    price: float
    is_api: bool
    notes: str | None
    commission: Decimal | None = None
    exchange: str = "?"


FULL = {
    "symbol": "AAPL",
    "quantity": "1,234.5",
    "tradeDate": "20260302",
    "dateTime": "20260302;103100",
    "buySell": "BUY",
    "count": "12,000",
    "price": "227.48",
    "isAPI": "Y",
    "notes": "",
    "commission": "-1.00",
    "unknownNewIbAttribute": "whatever",
}


def test_every_annotation_type_converts() -> None:
    (trade,) = statement_of(FULL).rows("Trade", Trade)
    assert trade == Trade(
        symbol="AAPL",
        quantity=Decimal("1234.5"),
        trade_date=date(2026, 3, 2),
        date_time=datetime(2026, 3, 2, 10, 31),
        buy_sell=Side.BUY,
        count=12000,
        price=227.48,
        is_api=True,
        notes=None,
        commission=Decimal("-1.00"),
        exchange="?",
    )


@pytest.mark.parametrize("marker", ["", "-", "--", "N/A", " N/A "])
def test_empty_markers_become_none_for_optional_fields(marker: str) -> None:
    (trade,) = statement_of({**FULL, "notes": marker, "commission": marker}).rows("Trade", Trade)
    assert trade.notes is None
    assert trade.commission is None


def test_multi_is_empty_for_optional_dates() -> None:
    @dataclasses.dataclass
    class Lot:
        open_date_time: datetime | None
        holding_period_date_time: date | None

    row = {"openDateTime": "MULTI", "holdingPeriodDateTime": "MULTI"}
    (lot,) = statement_of(row).rows("Trade", Lot)
    assert lot == Lot(None, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Y", True), ("N", False), ("Yes", True), ("No", False), ("true", True), ("FALSE", False)],
)
def test_booleans_in_ibs_spellings(text: str, expected: bool) -> None:
    @dataclasses.dataclass
    class Row:
        flag: bool

    (row,) = statement_of({"flag": text}).rows("Trade", Row)
    assert row.flag is expected


class Category(enum.Enum):
    STOCK = "STK"
    OPTION = "OPT"


def test_enums_by_value_then_by_name() -> None:
    @dataclasses.dataclass
    class Row:
        asset_category: Category

    rows = statement_of({"assetCategory": "STK"}, {"assetCategory": "option"}).rows("Trade", Row)
    assert [r.asset_category for r in rows] == [Category.STOCK, Category.OPTION]


def test_names_match_exactly_case_folded_or_by_explicit_alias() -> None:
    @dataclasses.dataclass
    class Row:
        security_id: str  # securityID at IB
        conid: int
        description: str = dataclasses.field(metadata={"ib": "issuerCountryCode"})

    (row,) = statement_of({"securityID": "US0", "conid": "5", "issuerCountryCode": "CH"}).rows(
        "Trade", Row
    )
    assert row == Row("US0", 5, "CH")


def test_dates_follow_the_documents_format() -> None:
    @dataclasses.dataclass
    class Row:
        trade_date: date
        date_time: datetime

    row_values = {"tradeDate": date(2026, 3, 4), "dateTime": datetime(2026, 3, 4, 9, 30)}
    document = build_statement(
        sections={"Trades": ("Trade", [row_values])}, date_format="dd/MM/yyyy"
    )
    # The header (02/03/2026 - 06/03/2026) is ambiguous; the document's 13th..31st days are
    # not there either; only the explicit setting decides.
    statement = FlexStatement(document, day_first=True)
    (row,) = statement.rows("Trade", Row)
    assert row == Row(date(2026, 3, 4), datetime(2026, 3, 4, 9, 30))


@pytest.mark.parametrize(
    ("change", "attribute", "value", "why"),
    [
        ({"quantity": "abc"}, "quantity", "abc", "is not a valid Decimal"),
        ({"quantity": ""}, "quantity", "", "is not a valid Decimal"),
        ({"count": "1.5"}, "count", "1.5", "is not a valid int"),
        ({"count": "1,23"}, "count", "1,23", "is not a valid int"),
        ({"tradeDate": "20261301"}, "tradeDate", "20261301", "is not a valid date"),
        ({"tradeDate": "MULTI"}, "tradeDate", "MULTI", "is not a valid date"),
        ({"buySell": "SELL (Ca.)"}, "buySell", "SELL (Ca.)", "is not a valid Side"),
        ({"isAPI": "maybe"}, "isAPI", "maybe", "is not a valid bool"),
        ({"price": "0.0 ()"}, "price", "0.0 ()", "is not a valid float"),
        ({"quantity": "NaN"}, "quantity", "NaN", "is not a valid Decimal"),
    ],
)
def test_unconvertible_values_name_tag_attribute_and_value(
    change: dict[str, str], attribute: str, value: str, why: str
) -> None:
    with pytest.raises(RowError) as caught:
        list(statement_of({**FULL, **change}).rows("Trade", Trade))
    error = caught.value
    assert (error.tag, error.attribute, error.value, error.model) == (
        "Trade",
        attribute,
        value,
        "Trade",
    )
    assert f"<Trade> attribute {attribute!r} value {value!r} {why}" in str(error)
    assert isinstance(error, StatementError)
    assert error.__context__ is None  # no parser or int() traceback riding along
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301
    assert (copy.tag, copy.attribute, copy.value) == (error.tag, error.attribute, error.value)


def test_a_missing_required_attribute_is_named() -> None:
    row = {k: v for k, v in FULL.items() if k != "tradeDate"}
    with pytest.raises(RowError, match=r"<Trade> attribute 'trade_date' is missing") as caught:
        list(statement_of(row).rows("Trade", Trade))
    assert caught.value.value is None


def test_a_missing_optional_attribute_is_none_or_its_default() -> None:
    row = {k: v for k, v in FULL.items() if k not in ("notes", "commission", "exchange")}
    (trade,) = statement_of(row).rows("Trade", Trade)
    assert (trade.notes, trade.commission, trade.exchange) == (None, None, "?")


def test_a_model_naming_an_unresolvable_type_fails_clearly() -> None:
    class Local(enum.Enum):
        A = "A"

    @dataclasses.dataclass
    class Row:
        kind: Local

    with pytest.raises(TypeError, match="cannot resolve the annotations of Row"):
        statement_of(FULL).rows("Trade", Row)


def test_unsupported_models_and_types_fail_at_once() -> None:
    class Plain:
        symbol: str

    @dataclasses.dataclass
    class Odd:
        values: list[str]

    statement = statement_of(FULL)
    with pytest.raises(TypeError, match="not a dataclass or a pydantic model"):
        statement.rows("Trade", Plain)
    with pytest.raises(TypeError, match="unsupported field type"):
        statement.rows("Trade", Odd)


def test_rows_on_real_samples_with_odd_values() -> None:
    @dataclasses.dataclass
    class Order:
        symbol: str
        quantity: Decimal
        trade_date: date
        date_time: datetime
        ib_commission: Decimal
        orig_trade_date: date | None
        exch_order_id: str | None

    statement = FlexStatement.from_file(DATA / "activity-orders-odd-values.xml")
    trades = list(statement.rows("Trade", Order))
    assert trades[0].symbol == "KMI"
    assert trades[0].quantity == Decimal(100)
    assert trades[0].date_time == datetime(2021, 8, 19, 16, 20)
    assert trades[0].orig_trade_date is None
    assert trades[0].exch_order_id is None  # IB's "N/A"


def test_zone_suffixed_times_become_aware() -> None:
    @dataclasses.dataclass
    class Summary:
        report_date: date

    statement = FlexStatement.from_file(DATA / "activity-zone-suffix-times.xml")
    (account,) = statement.statements
    assert account.when_generated.utcoffset() == timedelta(hours=-4)
    dates = [s.report_date for s in statement.rows("EquitySummaryByReportDateInBase", Summary)]
    assert dates[0] == date(2025, 4, 24)


def test_pydantic_models_with_aliases_and_validators() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Position(pydantic.BaseModel):  # type: ignore[misc, name-defined]
        symbol: str
        position: Decimal
        mark: Decimal = pydantic.Field(alias="markPrice")
        report_date: date
        side: str | None = None

        @pydantic.field_validator("symbol")  # type: ignore[untyped-decorator]
        @classmethod
        def upper(cls, value: str) -> str:
            if value != value.upper():
                raise ValueError("symbols are upper case")
            return value

    statement = FlexStatement(build_statement())
    positions = list(statement.rows("OpenPosition", Position))
    assert [(p.symbol, p.position, p.mark) for p in positions] == [
        ("AAPL", Decimal(110), Decimal("228.02")),
        ("SAP", Decimal(20), Decimal("231.4")),
    ]
    assert positions[0].report_date == date(2026, 3, 6)
    row = {"symbol": "aapl", "position": "1", "markPrice": "2", "reportDate": "20260302"}
    bad = FlexStatement(build_statement(sections={"X": ("Pos", [row])}))
    with pytest.raises(RowError, match="does not fit Position"):
        list(bad.rows("Pos", Position))
