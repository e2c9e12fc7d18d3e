"""parse_ib_date over every format a Flex query can emit."""

from __future__ import annotations

from datetime import date

import pytest

from ibkr_flex_client import parse_ib_date
from ibkr_flex_client.dates import infer_day_first
from ibkr_flex_client.testing import DATE_FORMATS, format_ib_date

CASES = [
    ("20260315", date(2026, 3, 15)),
    ("2026-03-15", date(2026, 3, 15)),
    ("03/15/2026", date(2026, 3, 15)),
    ("03/15/26", date(2026, 3, 15)),
    ("15/03/2026", date(2026, 3, 15)),
    ("15/03/26", date(2026, 3, 15)),
    ("15-Mar-26", date(2026, 3, 15)),
    ("15-MAR-26", date(2026, 3, 15)),
    (" 20260315 ", date(2026, 3, 15)),
    ("20240229", date(2024, 2, 29)),
    ("31-Dec-99", date(1999, 12, 31)),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_every_format_parses(text: str, expected: date) -> None:
    assert parse_ib_date(text) == expected


@pytest.mark.parametrize("fmt", DATE_FORMATS)
@pytest.mark.parametrize("day", [date(2026, 1, 31), date(2026, 12, 5), date(2024, 2, 29)])
def test_round_trip_of_each_format_with_its_setting(fmt: str, day: date) -> None:
    day_first = fmt.startswith("dd/")
    assert parse_ib_date(format_ib_date(day, fmt), day_first=day_first) == day


def test_ambiguous_slashed_dates_need_a_setting() -> None:
    with pytest.raises(ValueError, match=r"ambiguous IB date: '03/04/2026'"):
        parse_ib_date("03/04/2026")
    assert parse_ib_date("03/04/2026", day_first=True) == date(2026, 4, 3)
    assert parse_ib_date("03/04/2026", day_first=False) == date(2026, 3, 4)
    assert parse_ib_date("04/04/2026") == date(2026, 4, 4)  # both readings agree


BAD = [
    "",
    "2026315",
    "20261315",
    "20260230",
    "2026-02-30",
    "13/13/2026",
    "15-Foo-26",
    "MULTI",
    "N/A",
    "2026/03/15",
    "20260315;101500",
]


@pytest.mark.parametrize("text", BAD)
def test_bad_input_raises_value_error_naming_the_value(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text).replace("/", "/")[1:-1] or "''"):
        parse_ib_date(text)


def test_non_string_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="20260315"):
        parse_ib_date(20260315)  # type: ignore[arg-type]


def test_day_order_is_inferred_from_the_whole_document() -> None:
    assert infer_day_first(["03/04/2026", "25/04/2026"]) is True
    assert infer_day_first(["03/04/2026", "04/25/2026;101500"]) is False
    assert infer_day_first(["03/04/2026", "20260101"]) is None
    with pytest.raises(ValueError, match="disagree"):
        infer_day_first(["25/04/2026", "04/25/2026"])
