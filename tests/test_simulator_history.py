"""The simulator serving an account's history for any range, as IB answers fd/td and p."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from datetime import date, timedelta

import aiohttp
import pytest

from ibkr_flex_client import FlexClient, FlexStatement, QueryError
from ibkr_flex_client.testing import AccountHistory, Correction, FakeClock, FlexSimulator
from ibkr_flex_client.testing.history import Overrides, Window, read_overrides

MakeClient = Callable[..., FlexClient]
SEND = "/AccountManagement/FlexWebService/SendRequest"
GET = "/AccountManagement/FlexWebService/GetStatement"
ACCOUNT = "U1234567"
OPENED = date(2022, 3, 1)
TODAY = date(2026, 11, 27)  # a Friday: AccountHistory's default


def history(**options: object) -> AccountHistory:
    settings: dict[str, object] = {"accounts": (ACCOUNT,), "opened": {ACCOUNT: OPENED}}
    settings.update(options)
    return AccountHistory(**settings)  # type: ignore[arg-type]


@pytest.fixture
def served(sim: FlexSimulator) -> AccountHistory:
    chosen = history(trades_per_year=500, seed="served")
    sim.add_query("42", history=chosen)
    return chosen


async def fetch(make_client: MakeClient, **options: object) -> FlexStatement:
    return await make_client(**options).fetch()


def rows(statement: FlexStatement, tag: str) -> dict[str, dict[str, str]]:
    """Rows by transactionID, as a store keyed on IB's identifier would hold them."""
    found = {e.get("transactionID", ""): dict(e.attrib) for e in statement.iter(tag)}
    assert len(found) == sum(1 for _ in statement.iter(tag)), "transactionID repeated"
    return found


# --- determinism across windows -------------------------------------------------------------


async def test_overlapping_windows_serve_the_same_rows_with_the_same_identifiers(
    make_client: MakeClient, served: AccountHistory
) -> None:
    first = await fetch(make_client, from_date=date(2025, 1, 6), to_date=date(2025, 3, 31))
    second = await fetch(make_client, from_date=date(2025, 3, 3), to_date=date(2025, 6, 30))
    assert (first.from_date, first.to_date) == (date(2025, 1, 6), date(2025, 3, 31))
    assert (second.from_date, second.to_date) == (date(2025, 3, 3), date(2025, 6, 30))
    for tag in ("Trade", "CashTransaction"):
        early, late = rows(first, tag), rows(second, tag)
        in_overlap = {k for k, row in early.items() if row["reportDate"] >= "20250303"}
        assert in_overlap, tag
        assert {k for k, row in late.items() if row["reportDate"] <= "20250331"} == in_overlap
        assert all(early[k] == late[k] for k in in_overlap)
    # a third, unrelated window holds none of those identifiers
    third = await fetch(make_client, from_date=date(2024, 1, 8), to_date=date(2024, 2, 9))
    assert not set(rows(third, "Trade")) & set(rows(first, "Trade"))


def test_the_same_history_builds_the_same_bytes_and_another_seed_another_history() -> None:
    a, b = history(seed=1), history(seed=1)
    assert a.statement(date(2025, 1, 6), date(2025, 6, 30)) == b.statement(
        date(2025, 1, 6), date(2025, 6, 30)
    )
    other = history(seed=2).statement(date(2025, 1, 6), date(2025, 6, 30))
    assert other != a.statement(date(2025, 1, 6), date(2025, 6, 30))


async def test_rows_are_ib_shaped_on_weekdays_with_realistic_identifiers(
    make_client: MakeClient, served: AccountHistory
) -> None:
    statement = await fetch(make_client, from_date=date(2025, 9, 1), to_date=date(2025, 11, 28))
    trades = list(statement.iter("Trade"))
    assert 80 <= len(trades) <= 160  # about 500 a year
    for trade in trades:
        assert trade.get("accountId") == ACCOUNT
        assert date.fromisoformat(_iso(trade.get("tradeDate", ""))).weekday() < 5
        assert re.fullmatch(r"\d{10}", trade.get("tradeID", ""))
        assert re.fullmatch(r"\d{11}", trade.get("transactionID", ""))
        assert re.fullmatch(r"\d{10}", trade.get("ibOrderID", ""))
        assert re.fullmatch(r"[0-9a-f]{8}\.[0-9a-f]{8}\.01\.01", trade.get("ibExecID", ""))
        assert re.fullmatch(r"\d{8};\d{6}", trade.get("dateTime", ""))
    ids = [t.get("tradeID", "") for t in trades]
    assert ids == sorted(ids)  # IB's identifiers grow with time
    cash = list(statement.iter("CashTransaction"))
    assert {c.get("type") for c in cash} >= {"Broker Interest Received"}
    assert all(re.fullmatch(r"\d{11}", c.get("transactionID", "")) for c in cash)
    (account,) = statement.statements
    element = ET.fromstring(statement.xml).find("FlexStatements/FlexStatement")
    assert element is not None
    info = element.findall("AccountInformation")  # a singleton row, directly in the statement
    assert len(info) == 1
    assert info[0].get("dateOpened") == "20220301"
    positions = list(account.iter("OpenPosition"))
    assert positions
    assert {p.get("reportDate") for p in positions} == {"20251128"}  # a snapshot as of toDate


def _iso(compact: str) -> str:
    return f"{compact[:4]}-{compact[4:6]}-{compact[6:]}"


async def test_several_accounts_each_get_their_own_statement_and_identifiers(
    sim: FlexSimulator, make_client: MakeClient
) -> None:
    sim.add_query("42", history=AccountHistory(accounts=("U1111111", "U2222222"), seed=3))
    statement = await fetch(make_client, from_date=date(2026, 6, 1), to_date=date(2026, 6, 30))
    assert [s.account_id for s in statement.statements] == ["U1111111", "U2222222"]
    one, two = (
        {t.get("tradeID") for t in s.iter("Trade") if t.get("accountId") == s.account_id}
        for s in statement.statements
    )
    assert one
    assert two
    assert not one & two


def test_date_format_follows_the_query_setting() -> None:
    document = history(date_format="yyyy-MM-dd").statement(date(2026, 2, 2), date(2026, 2, 27))
    statement = FlexStatement(document)
    assert (statement.from_date, statement.to_date) == (date(2026, 2, 2), date(2026, 2, 27))
    trade = next(statement.iter("Trade"))
    assert re.fullmatch(r"2026-02-\d\d;\d{6}", trade.get("dateTime", ""))


# --- what IB has no statement for: 1003 -----------------------------------------------------


@pytest.mark.parametrize(
    ("from_date", "to_date"),
    [
        pytest.param(date(2026, 3, 7), date(2026, 3, 13), id="fd-on-saturday"),
        pytest.param(date(2026, 3, 2), date(2026, 3, 8), id="td-on-sunday"),
        pytest.param(date(2026, 11, 2), TODAY, id="td-today-not-final"),
        pytest.param(date(2026, 11, 2), date(2026, 11, 30), id="td-in-the-future"),
        pytest.param(date(2022, 2, 1), date(2022, 3, 31), id="fd-before-opening"),
    ],
)
async def test_unavailable_ranges_answer_1003_at_send_request(
    make_client: MakeClient,
    sim: FlexSimulator,
    served: AccountHistory,
    from_date: date,
    to_date: date,
) -> None:
    with pytest.raises(QueryError) as caught:
        await fetch(make_client, from_date=from_date, to_date=to_date)
    assert caught.value.code == 1003
    assert sim.answers() == ["1003"]  # terminal: never retried, no reference issued
    (record,) = sim.requests
    assert record.step == "SendRequest"
    assert (record.params["fd"], record.params["td"]) == (
        f"{from_date:%Y%m%d}",
        f"{to_date:%Y%m%d}",
    )
    assert served.unavailable(Window(from_date, to_date)) is not None


async def test_the_last_published_day_and_the_opening_day_are_available(
    make_client: MakeClient, served: AccountHistory
) -> None:
    latest = await fetch(make_client, from_date=date(2026, 11, 2), to_date=TODAY - timedelta(1))
    assert latest.to_date == date(2026, 11, 26)
    earliest = await fetch(make_client, from_date=OPENED, to_date=date(2022, 3, 4))
    assert rows(earliest, "Trade")


async def test_any_account_opened_after_fd_makes_the_range_unavailable(
    sim: FlexSimulator, make_client: MakeClient
) -> None:
    both = AccountHistory(
        accounts=("U1111111", "U2222222"),
        opened={"U1111111": date(2020, 1, 2), "U2222222": date(2024, 6, 3)},
    )
    sim.add_query("42", history=both)
    with pytest.raises(QueryError) as caught:
        await fetch(make_client, from_date=date(2024, 5, 6), to_date=date(2024, 6, 28))
    assert caught.value.code == 1003
    statement = await fetch(make_client, from_date=date(2024, 6, 3), to_date=date(2024, 6, 28))
    assert len(statement.statements) == 2


# --- p, and the query's own range --------------------------------------------------------


async def test_period_is_the_last_n_days_ending_yesterday_even_on_a_weekend(
    sim: FlexSimulator, make_client: MakeClient
) -> None:
    monday = date(2026, 11, 30)  # yesterday a Sunday: p is not refused for it
    sim.add_query("42", history=history(today=monday))
    statement = await fetch(make_client, period=30)
    (account,) = statement.statements
    assert (account.from_date, account.to_date) == (date(2026, 10, 31), date(2026, 11, 29))
    assert account.period == "Last30CalendarDays"
    assert sim.requests[0].params["p"] == "30"


async def test_without_overrides_the_query_serves_the_last_business_day(
    sim: FlexSimulator, make_client: MakeClient
) -> None:
    sim.add_query("42", history=history(today=date(2026, 11, 30)))
    (account,) = (await fetch(make_client)).statements
    assert (account.from_date, account.to_date) == (date(2026, 11, 27), date(2026, 11, 27))
    assert account.period == "LastBusinessDay"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def send(
    http: aiohttp.ClientSession, sim: FlexSimulator, clock: FakeClock, **params: str
) -> ET.Element:
    """One SendRequest, spaced out so IB's per-token limits never answer 1018."""
    clock.advance(6.0)
    query = {"t": "T", "q": "42", "v": "3", **params}
    async with http.get(sim.base_url + SEND, params=query) as response:
        return ET.fromstring(await response.read())


async def statement_for(
    http: aiohttp.ClientSession, sim: FlexSimulator, clock: FakeClock, reference: str
) -> FlexStatement:
    clock.advance(6.0)
    query = {"t": "T", "q": reference, "v": "3"}
    async with http.get(sim.base_url + GET, params=query) as response:
        return FlexStatement(await response.read())


@pytest.mark.parametrize("p", ["5", "0", "999", "junk"])
async def test_period_is_silently_ignored_when_fd_and_td_are_sent(
    http: aiohttp.ClientSession,
    sim: FlexSimulator,
    clock: FakeClock,
    served: AccountHistory,
    p: str,
) -> None:
    answer = await send(http, sim, clock, fd="20260105", td="20260227", p=p)
    reference = answer.findtext("ReferenceCode")
    assert reference, ET.tostring(answer)
    (account,) = (await statement_for(http, sim, clock, reference)).statements
    assert (account.from_date, account.to_date) == (date(2026, 1, 5), date(2026, 2, 27))
    assert account.period == ""


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"fd": "20260105"}, id="fd-alone"),
        pytest.param({"td": "20260227"}, id="td-alone"),
        pytest.param({"fd": "20260227", "td": "20260105"}, id="fd-after-td"),
        pytest.param({"fd": "20250106", "td": "20260106"}, id="366-days"),
        pytest.param({"fd": "2026-01-05", "td": "20260227"}, id="not-yyyyMMdd"),
        pytest.param({"fd": "20260231", "td": "20260305"}, id="no-such-day"),
        pytest.param({"p": "0"}, id="p-0"),
        pytest.param({"p": "366"}, id="p-366"),
        pytest.param({"p": "7d"}, id="p-not-a-number"),
    ],
)
async def test_malformed_or_too_long_ranges_answer_1020(
    http: aiohttp.ClientSession,
    sim: FlexSimulator,
    clock: FakeClock,
    served: AccountHistory,
    params: dict[str, str],
) -> None:
    answer = await send(http, sim, clock, **params)
    assert answer.findtext("ErrorCode") == "1020"
    assert sim.answers() == ["1020"]


async def test_365_days_is_the_longest_range(
    http: aiohttp.ClientSession, sim: FlexSimulator, clock: FakeClock, served: AccountHistory
) -> None:
    answer = await send(http, sim, clock, fd="20250106", td="20260105")
    reference = answer.findtext("ReferenceCode")
    assert reference
    statement = await statement_for(http, sim, clock, reference)
    assert (statement.from_date, statement.to_date) == (date(2025, 1, 6), date(2026, 1, 5))


async def test_queries_without_a_history_check_the_parameters_too(
    http: aiohttp.ClientSession, sim: FlexSimulator, clock: FakeClock
) -> None:
    assert (await send(http, sim, clock, fd="20250106", td="20260106")).findtext(
        "ErrorCode"
    ) == "1020"
    assert (await send(http, sim, clock, fd="20260307", td="20260308")).findtext("ReferenceCode")


JAN_5 = date(2026, 1, 5)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, Overrides()),
        ({"fd": "", "td": "", "p": ""}, Overrides()),
        ({"p": "30"}, Overrides(period=30)),
        ({"fd": "20260105", "td": "20260105"}, Overrides(JAN_5, JAN_5)),
        ({"fd": "20260105", "td": "20260106", "p": "x"}, Overrides(JAN_5, date(2026, 1, 6))),
        ({"fromDate": "20260105", "period": "0"}, Overrides()),  # other names: ignored
    ],
)  # fmt: skip
def test_read_overrides(params: dict[str, str], expected: Overrides) -> None:
    assert read_overrides(params) == expected


# --- corrections ------------------------------------------------------------------------


TRADE_DAY = date(2025, 3, 12)
REPORTED = date(2025, 3, 18)


def first_trade_on(statement: FlexStatement, day: date) -> dict[str, str]:
    return next(
        dict(t.attrib)
        for t in statement.iter("Trade")
        if t.get("tradeDate") == f"{day:%Y%m%d}" and t.get("transactionType") == "ExchTrade"
    )


async def test_an_amended_trade_keeps_its_identifiers_in_later_windows(
    sim: FlexSimulator, make_client: MakeClient
) -> None:
    amend = Correction(account=ACCOUNT, trade_date=TRADE_DAY, reported=REPORTED, trade_price="1.5")
    sim.add_query("42", history=history(trades_per_year=1000, corrections=[amend]))
    before = await fetch(make_client, from_date=date(2025, 3, 3), to_date=date(2025, 3, 17))
    after = await fetch(make_client, from_date=date(2025, 3, 10), to_date=date(2025, 3, 18))
    old, new = first_trade_on(before, TRADE_DAY), first_trade_on(after, TRADE_DAY)
    for name in ("tradeID", "transactionID", "ibExecID", "ibOrderID", "quantity"):
        assert old[name] == new[name]
    assert old["tradePrice"] != "1.5"
    assert new["tradePrice"] == "1.5"
    assert float(new["tradeMoney"]) == pytest.approx(1.5 * float(new["quantity"]))
    assert float(new["proceeds"]) == -float(new["tradeMoney"])
    # every other row of the overlap is untouched
    early, late = rows(before, "Trade"), rows(after, "Trade")
    overlap = {k for k, row in late.items() if row["reportDate"] <= "20250317"}
    assert overlap <= set(early)
    assert [k for k in overlap if early[k] != late[k]] == [old["transactionID"]]


async def test_a_cancelled_trade_gets_a_reversing_row_on_the_day_it_is_reported(
    sim: FlexSimulator, make_client: MakeClient
) -> None:
    cancel = Correction(account=ACCOUNT, trade_date=TRADE_DAY, reported=REPORTED, cancel=True)
    sim.add_query("42", history=history(trades_per_year=1000, corrections=[cancel]))
    before = await fetch(make_client, from_date=date(2025, 3, 3), to_date=date(2025, 3, 17))
    after = await fetch(make_client, from_date=date(2025, 3, 10), to_date=date(2025, 3, 20))
    original = first_trade_on(before, TRADE_DAY)
    assert first_trade_on(after, TRADE_DAY) == original  # the original never changes
    assert not [t for t in before.iter("Trade") if t.get("transactionType") == "TradeCancel"]
    (reversal,) = (
        dict(t.attrib) for t in after.iter("Trade") if t.get("transactionType") == "TradeCancel"
    )
    assert reversal["tradeID"] == original["tradeID"]
    assert reversal["transactionID"] != original["transactionID"]
    assert reversal["ibExecID"] == original["ibExecID"][: -len(".01")] + ".02"
    assert reversal["buySell"] == original["buySell"] + " (Ca.)"
    assert reversal["notes"] == "Ca"
    assert float(reversal["quantity"]) == -float(original["quantity"])
    assert float(reversal["netCash"]) == -float(original["netCash"])
    assert (reversal["tradeDate"], reversal["reportDate"]) == ("20250312", "20250318")
    # a later window that no longer holds the trade day still holds the reversal
    later = await fetch(make_client, from_date=date(2025, 3, 18), to_date=date(2025, 3, 18))
    assert reversal["transactionID"] in rows(later, "Trade")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"account": "U9"}, "unknown account"),
        ({"reported": TRADE_DAY}, "after the trade date"),
        ({"index": 999}, "no trade 999"),
        ({"trade_date": date(2025, 3, 15)}, "0 trades"),  # a Saturday
        ({"trade_date": date(2021, 3, 15)}, "0 trades"),  # before the opening
        ({"reported": date(2025, 3, 22)}, "weekday"),
        ({"cancel": False}, "needs trade_price"),
        ({"trade_price": "1"}, "changes no"),
    ],
)
def test_impossible_corrections_are_refused(changes: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {
        "account": ACCOUNT, "trade_date": TRADE_DAY, "reported": REPORTED, "cancel": True,
    }  # fmt: skip
    correction = Correction(**{**settings, **changes})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        history(trades_per_year=1000, corrections=[correction])


def test_one_correction_per_trade() -> None:
    twice = [
        Correction(account=ACCOUNT, trade_date=TRADE_DAY, reported=REPORTED, trade_price="2"),
        Correction(account=ACCOUNT, trade_date=TRADE_DAY, reported=REPORTED, cancel=True),
    ]
    with pytest.raises(ValueError, match="two corrections"):
        history(trades_per_year=1000, corrections=twice)


# --- configuration and scale ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"accounts": ()}, "accounts"),
        ({"accounts": ("U1", "U1")}, "accounts"),
        ({"opened": {"U9": OPENED}}, "opened"),
        ({"trades_per_year": -1}, "trades_per_year"),
        ({"date_format": "yyyy/MM/dd"}, "date format"),
    ],
)
def test_impossible_histories_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        history(**options)


def test_add_query_takes_a_statement_or_a_history_not_both(sim: FlexSimulator) -> None:
    with pytest.raises(ValueError, match="not both"):
        sim.add_query("42", statement=b"<x/>", history=history())


async def test_a_later_statement_replaces_the_history(
    sim: FlexSimulator, make_client: MakeClient, served: AccountHistory
) -> None:
    sim.add_query("42", statement=lambda: served.statement(date(2020, 1, 6), date(2020, 1, 10)))
    statement = await fetch(make_client, from_date=date(2026, 1, 5), to_date=date(2026, 1, 9))
    assert statement.from_date == date(2020, 1, 6)  # served as given, whatever was asked


def test_five_years_of_a_thousand_trades_a_year_in_365_day_windows() -> None:
    """No timing assert (the suite runs on slow machines): this is the scale sync needs,
    about a tenth of a second per window on a laptop."""
    busy = AccountHistory(
        accounts=(ACCOUNT,), opened={ACCOUNT: date(2021, 11, 29)}, trades_per_year=1000
    )
    total = 0
    for year in range(5):
        start = date(2021 + year, 11, 29)
        statement = FlexStatement(busy.statement(start, start + timedelta(days=364)))
        total += sum(1 for _ in statement.iter("Trade"))
    assert 4500 <= total <= 5500
