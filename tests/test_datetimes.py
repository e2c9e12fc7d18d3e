"""parse_ib_datetime over every date-time form a Flex query can emit."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from ibkr_flex_client import parse_ib_datetime
from ibkr_flex_client.dates import ZONE_NAMES
from ibkr_flex_client.testing import DATE_FORMATS, format_ib_date

DAY = date(2026, 3, 27)
SEPARATORS = [";", ",", " ", ""]
TIMES = {"HHmmss": "101500", "HH:mm:ss": "10:15:00"}


@pytest.mark.parametrize("date_format", DATE_FORMATS)
@pytest.mark.parametrize("separator", SEPARATORS)
@pytest.mark.parametrize("time_format", TIMES)
def test_every_date_separator_and_time_combination(
    date_format: str, separator: str, time_format: str
) -> None:
    text = f"{format_ib_date(DAY, date_format)}{separator}{TIMES[time_format]}"
    day_first = date_format.startswith("dd/")
    assert parse_ib_datetime(text, day_first=day_first) == datetime(2026, 3, 27, 10, 15)


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("2025-04-26;13:34:28 EDT", -4),
        ("2026-01-15;10:19:55 EST", -5),
        ("2026-01-15 20:41:57 AEDT", 11),
        ("2026-07-15 20:41:57 AEST", 10),
        ("20260115;10:19:55 GMT", 0),
        ("20260715;10:19:55 BST", 1),
        ("20260115;10:19:55 CET", 1),
        ("20260115;10:19:55 HKT", 8),
        ("20260115;10:19:55 utc", 0),
    ],
)
def test_zone_names_give_aware_times_at_the_named_offset(text: str, offset: float) -> None:
    moment = parse_ib_datetime(text)
    assert moment.utcoffset() == timedelta(hours=offset)


def test_zone_names_map_to_real_time_zones() -> None:
    moment = parse_ib_datetime("2026-03-07;10:00:00 EST")
    assert str(moment.tzinfo) == "America/New_York"
    # Real zone rules: a day later across the DST change is UTC-4.
    assert (moment + timedelta(days=2)).utcoffset() == timedelta(hours=-4)


def test_an_abbreviation_at_odds_with_the_calendar_keeps_its_own_offset() -> None:
    moment = parse_ib_datetime("2026-07-15;10:19:55 EST")  # EST in July: trust the text
    assert moment.utcoffset() == timedelta(hours=-5)


def test_every_listed_zone_parses() -> None:
    for name, (_, hours) in ZONE_NAMES.items():
        assert parse_ib_datetime(f"20260115;120000 {name}").utcoffset() is not None
        del hours


def test_naive_unless_a_zone_or_tz_is_given() -> None:
    assert parse_ib_datetime("20260327;101500").tzinfo is None
    eastern = timezone(timedelta(hours=-4))
    assert parse_ib_datetime("20260327;101500", tz=eastern).tzinfo is eastern


def test_ambiguous_dates_need_a_setting_here_too() -> None:
    with pytest.raises(ValueError, match="ambiguous"):
        parse_ib_datetime("03/04/2026;101500")
    assert parse_ib_datetime("03/04/2026;101500", day_first=True).month == 4


BAD = [
    "",
    "20260327",
    "20260327;1015",
    "20260327;251500",
    "20260327;10:61:00",
    "20260327;101500 XYZ",
    "2026032;101500",
    "MULTI",
    "20260327T101500",
    "20260327;;101500",
]


@pytest.mark.parametrize("text", BAD)
def test_bad_input_raises_value_error_naming_the_value(text: str) -> None:
    with pytest.raises(ValueError, match="IB date") as caught:
        parse_ib_datetime(text)
    assert repr(text) in str(caught.value) or text == ""
