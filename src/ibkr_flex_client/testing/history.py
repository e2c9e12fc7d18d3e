"""An account's whole history for the simulator: any date range, the same rows every time.

:class:`AccountHistory` answers "what would IB's Activity statement for these dates hold?"
without storing anything: each account's rows of one day come from a random generator seeded
with ``(seed, account, day)``, so a day gives the same rows, with the same IB-style
identifiers, in whatever window it is fetched. Tests of code that fetches history in windows
(``fd``/``td``) and stores it get realistic, overlapping, re-fetchable data offline.

IB's rules for the optional SendRequest parameters (``docs/protocol.md``, "Optional
SendRequest parameters") are here too, as plain functions the simulator calls: which
parameters make a bad request (1020) and which ranges IB has no statement for (1003).
Nothing here imports aiohttp.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from .content import format_ib_date

__all__ = [
    "MAX_RANGE_DAYS",
    "AccountHistory",
    "Correction",
    "Overrides",
    "Window",
    "read_overrides",
]

# "fd/td ... at most 365 days"; "p=N ... 1 <= N <= 365" (docs/protocol.md).
MAX_RANGE_DAYS = 365
_COMPACT_DATE = re.compile(r"\d{8}")
_FIRST_DAY = date(1990, 1, 1)  # identifiers count days from here; earlier days hold nothing
_MAX_ACCOUNTS = 16  # one identifier slot per account
_MAX_PER_DAY = 1000  # one identifier slot per row of a day
_SATURDAY = 5
_CENT = Decimal("0.01")
_EPOCH = datetime(1970, 1, 1)
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclasses.dataclass(frozen=True, slots=True)
class _Instrument:
    symbol: str
    description: str
    conid: str
    isin: str
    exchange: str
    currency: str
    base_price: float
    phase: float
    dividend: Decimal  # per share, paid now and then


# symbol, conid, ISIN, listing exchange, currency, rough price, dividend per share, name.
_TABLE = """
AAPL 265598    US0378331005 NASDAQ USD 190 0.25 APPLE INC
MSFT 272093    US5949181045 NASDAQ USD 380 0.83 MICROSOFT CORP
SPY  756733    US78462F1030 ARCA   USD 520 1.74 SPDR S&P 500 ETF TRUST
AMZN 3691937   US0231351067 NASDAQ USD 175 0    AMAZON.COM INC
NVDA 4815747   US67066G1040 NASDAQ USD 120 0.01 NVIDIA CORP
IBM  8314      US4592001014 NYSE   USD 185 1.67 INTL BUSINESS MACHINES CORP
QQQ  320227571 US46090E1038 NASDAQ USD 440 0.68 INVESCO QQQ TRUST SERIES 1
SAP  14204     DE0007164600 IBIS   EUR 210 2.35 SAP SE
"""
_INSTRUMENTS = tuple(
    _Instrument(symbol, name, conid, isin, exchange, currency, float(price), 0.8 * n, Decimal(dps))
    for n, (symbol, conid, isin, exchange, currency, price, dps, name) in enumerate(
        line.split(maxsplit=7) for line in _TABLE.strip().splitlines()
    )
)
_VENUES = ("ISLAND", "ARCA", "NYSE", "BATS", "IEX", "DARK", "EDGX")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Correction:
    """A trade IB re-issues later: amended in place, or cancelled by a row of its own.

    The trade is the ``index``-th (from 0, in time order) of ``account``'s trades on
    ``trade_date``. From ``reported`` on, IB's statements tell the new story:

    - an amendment (``trade_price`` and/or ``attributes``): every statement whose range holds
      ``trade_date`` and ends on or after ``reported`` shows the same row, with the same
      ``tradeID``, ``transactionID`` and ``ibExecID``, but the new price (``tradeMoney``,
      ``proceeds`` and ``netCash`` follow it) and the attributes given. Earlier statements
      show the original.
    - a cancellation (``cancel=True``): the original row never changes; a statement whose
      range holds ``reported`` (a weekday) also holds, on that day, a ``TradeCancel`` row
      reversing it: the same ``tradeID`` and ``ibOrderID``, ``buySell`` ``"BUY (Ca.)"`` or
      ``"SELL (Ca.)"``, quantity and amounts negated, ``notes="Ca"``, ``reportDate``
      ``reported``, a ``transactionID`` and ``ibExecID`` of its own, and
      ``origTransactionID`` naming the cancelled trade's.
    """

    account: str
    trade_date: date
    reported: date
    index: int = 0
    trade_price: Decimal | str | None = None
    attributes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    cancel: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Overrides:
    """SendRequest's optional parameters, read and checked: ``fd``/``td`` or ``p``, or none."""

    from_date: date | None = None
    to_date: date | None = None
    period: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """The days a statement covers, as its ``<FlexStatement>`` header will say.

    ``explicit`` is true for a range sent as ``fd``/``td``: only those can be unavailable.
    ``period`` is the header's ``period`` attribute (``""`` for an explicit range).
    """

    from_date: date
    to_date: date
    period: str = ""
    explicit: bool = True


def read_overrides(params: Mapping[str, str]) -> Overrides:
    """SendRequest's ``fd``, ``td`` and ``p`` as IB reads them; ``ValueError`` means 1020.

    "Optional SendRequest parameters": ``fd`` and ``td`` as ``yyyyMMdd``, both together, in
    order, at most 365 days from first to last; ``p`` from 1 to 365, silently ignored
    (whatever its value) when ``fd``/``td`` are sent too. An empty value counts as absent.
    IB's table names no code for a malformed range; 1020 ("invalid request or unable to
    validate request") is the one for a request the caller must fix, where 1003 ("statement
    not available") is about the data.
    """
    fd, td, p = params.get("fd", ""), params.get("td", ""), params.get("p", "")
    if fd or td:
        if not (fd and td):
            raise ValueError("fd and td go together")
        start, end = _compact_date("fd", fd), _compact_date("td", td)
        _check_range(start, end)
        return Overrides(from_date=start, to_date=end)
    if p:
        if not (p.isascii() and p.isdigit() and 1 <= int(p) <= MAX_RANGE_DAYS):
            raise ValueError(f"p must be 1 to {MAX_RANGE_DAYS}, got {p!r}")
        return Overrides(period=int(p))
    return Overrides()


def _compact_date(name: str, text: str) -> date:
    if _COMPACT_DATE.fullmatch(text):
        try:
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError:
            pass
    raise ValueError(f"{name} must be a yyyyMMdd date, got {text!r}")


def _check_range(start: date, end: date) -> None:
    if start > end:
        raise ValueError(f"from {start} is after to {end}")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise ValueError(f"{start} to {end} is more than {MAX_RANGE_DAYS} days")


def _weekday(day: date) -> bool:
    return day.weekday() < _SATURDAY


def _next_weekday(day: date) -> date:
    day += timedelta(days=1)
    while not _weekday(day):
        day += timedelta(days=1)
    return day


def _money(value: Decimal) -> Decimal:
    return value.quantize(_CENT)


def _num(value: Decimal | int) -> str:
    """A number as IB writes it: no exponent, no trailing zeros (``2274.8``, ``-1``)."""
    if isinstance(value, int):
        return str(value)
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 30:  # beyond this, the normal approximation is close enough
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _price(instrument: _Instrument, day: date) -> float:
    """A smooth, deterministic price path: the same for a day, whoever asks."""
    n = day.toordinal()
    wave = 0.2 * math.sin(n / 61.0 + instrument.phase) + 0.04 * math.sin(
        n / 7.3 + 3 * instrument.phase
    )
    return instrument.base_price * (1.0 + wave)


def _fx_rate(currency: str, day: date) -> Decimal:
    if currency == "USD":
        return Decimal(1)
    return Decimal(f"{1.08 + 0.04 * math.sin(day.toordinal() / 90.0):.5f}")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AccountHistory:
    """Years of an account's activity, served for any range by :class:`FlexSimulator`.

    >>> history = AccountHistory(accounts=("U1234567",), opened={"U1234567": date(2022, 1, 3)})
    >>> sim.add_query("42", history=history)                        # doctest: +SKIP

    Each weekday from the account's opening to the day before ``today`` holds about
    ``trades_per_year / 261`` trades (``<Trades>``), now and then a dividend with its
    withholding tax, the month's broker interest or a deposit (``<CashTransactions>``). A
    statement also carries ``<AccountInformation>`` and ``<OpenPositions>`` (a snapshot as of
    its ``toDate``, a smooth function of that date that does not reconcile with the trades).
    Days are weekdays; holidays are not modelled.

    Identifiers depend only on the account's place in ``accounts``, the day and the row's
    place in that day, so they are the same in every window: ``tradeID`` (10 digits),
    ``transactionID`` (11), ``ibOrderID`` (10) and ``ibExecID`` (``"0d5f3a21.65f1a2b3.01.01"``:
    a serial, then the execution's Unix time, in hex).

    Args:
        accounts: one ``<FlexStatement>`` each, in this order (at most 16).
        opened: an opening date per account (accounts left out have none): no rows before
            it, and an ``fd`` before it is answered 1003.
        trades_per_year: the average, per account.
        seed: another seed, another history.
        today: the service's today. Ranges ending on or after it are not published yet
            (1003); ``p`` counts back from it. Fixed, so tests are deterministic.
        corrections: trades IB re-issues later (:class:`Correction`).
        date_format: how dates are written, one of ``content.DATE_FORMATS``.
        query_name: the ``queryName`` of the document.
    """

    accounts: Sequence[str] = ("U1234567",)
    opened: Mapping[str, date] = dataclasses.field(default_factory=dict)
    trades_per_year: int = 250
    seed: int | str = 0
    today: date = date(2026, 11, 27)
    corrections: Sequence[Correction] = ()
    date_format: str = "yyyyMMdd"
    query_name: str = "Activity"
    _amends: dict[tuple[str, date, int], Correction] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _cancels: dict[tuple[str, date], list[Correction]] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        accounts = (self.accounts,) if isinstance(self.accounts, str) else tuple(self.accounts)
        object.__setattr__(self, "accounts", accounts)
        object.__setattr__(self, "opened", dict(self.opened))
        object.__setattr__(self, "corrections", tuple(self.corrections))
        if not accounts or len(set(accounts)) != len(accounts) or len(accounts) > _MAX_ACCOUNTS:
            raise ValueError(f"accounts must be 1 to {_MAX_ACCOUNTS} distinct ids, got {accounts}")
        if unknown := set(self.opened) - set(accounts):
            raise ValueError(f"opened names accounts not in accounts: {sorted(unknown)}")
        if not 0 <= self.trades_per_year <= 100 * 261:
            raise ValueError(f"trades_per_year must be 0 to 26100, got {self.trades_per_year}")
        format_ib_date(self.today, self.date_format)  # rejects an unknown format up front
        for correction in self.corrections:
            self._add_correction(correction)

    def _add_correction(self, correction: Correction) -> None:
        key = (correction.account, correction.trade_date, correction.index)
        if correction.account not in self.accounts:
            raise ValueError(f"correction for unknown account {correction.account!r}")
        if key in self._amends or any(
            (c.trade_date, c.index) == key[1:]
            for cancels in self._cancels.values()
            for c in cancels
            if c.account == correction.account
        ):
            raise ValueError(f"two corrections of trade {correction.index} on {key[1]}")
        if correction.reported <= correction.trade_date:
            raise ValueError("a correction is reported after the trade date")
        opened = self.opened.get(correction.account, _FIRST_DAY)
        served = opened <= correction.trade_date < self.today
        count = len(self._trades(correction.account, correction.trade_date)) if served else 0
        if not 0 <= correction.index < count:
            raise ValueError(
                f"{correction.account} has {count} trades on {correction.trade_date}, "
                f"no trade {correction.index}"
            )
        if correction.cancel:
            if correction.trade_price is not None or correction.attributes:
                raise ValueError("a cancellation changes no attributes")
            if not _weekday(correction.reported):
                raise ValueError(
                    f"a cancellation is reported on a weekday, not {correction.reported}"
                )
            self._cancels.setdefault((correction.account, correction.reported), []).append(
                correction
            )
        else:
            if correction.trade_price is None and not correction.attributes:
                raise ValueError("an amendment needs trade_price or attributes")
            self._amends[key] = correction

    # --- IB's rules for ranges ----------------------------------------------------------------

    def window(self, overrides: Overrides | None = None) -> Window:
        """The range SendRequest's ``overrides`` ask for, counted from :attr:`today`.

        ``fd``/``td`` as given; ``p=N`` the N days ending yesterday (header period
        ``LastNCalendarDays``); none, the query's own range: the last business day.
        """
        overrides = overrides or Overrides()
        if overrides.from_date is not None and overrides.to_date is not None:
            _check_range(overrides.from_date, overrides.to_date)
            return Window(overrides.from_date, overrides.to_date)
        end = self.today - timedelta(days=1)
        if overrides.period is not None:
            if not 1 <= overrides.period <= MAX_RANGE_DAYS:
                raise ValueError(f"period must be 1 to {MAX_RANGE_DAYS}, got {overrides.period}")
            start = self.today - timedelta(days=overrides.period)
            return Window(start, end, f"Last{overrides.period}CalendarDays", explicit=False)
        while not _weekday(end):
            end -= timedelta(days=1)
        return Window(end, end, "LastBusinessDay", explicit=False)

    def unavailable(self, window: Window) -> str | None:
        """Why IB would answer 1003 ("statement not available") for ``window``, or ``None``.

        Observed ("Optional SendRequest parameters"): ends on a Saturday or Sunday, or not
        yet published (today has no finalised data). And, reportedly, dates before an account
        existed: ``fd`` before the opening of any account of the query. Only an explicit
        ``fd``/``td`` range is refused; ``p`` and the query's own range always answer.
        """
        if not window.explicit:
            return None
        for name, day in (("fd", window.from_date), ("td", window.to_date)):
            if not _weekday(day):
                return f"{name} {day} falls on a {day:%A}"
        if window.to_date >= self.today:
            return f"td {window.to_date} is not published yet (today is {self.today})"
        for account in self.accounts:
            opened = self.opened.get(account)
            if opened is not None and window.from_date < opened:
                return f"fd {window.from_date} is before {account} opened on {opened}"
        return None

    # --- the statement ------------------------------------------------------------------------

    def statement(self, from_date: date, to_date: date, *, period: str = "") -> bytes:
        """The ``<FlexQueryResponse>`` for ``from_date`` to ``to_date``, as UTF-8 bytes.

        Built the same way every time; days on or after :attr:`today` hold no rows.
        """
        if from_date > to_date:
            raise ValueError(f"from_date {from_date} is after to_date {to_date}")
        header = {
            "fromDate": self._date(from_date),
            "toDate": self._date(to_date),
            "period": period,
            "whenGenerated": self._datetime(datetime.combine(self.today, time(5, 12, 37))),
        }
        # Written by hand, laid out as ElementTree's indent() lays out build_statement's
        # documents: ElementTree's own writer would take most of the time here.
        lines = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f"<FlexQueryResponse {_attributes({'queryName': self.query_name, 'type': 'AF'})}>",
            f'  <FlexStatements count="{len(self.accounts)}">',
        ]
        for account in self.accounts:
            lines.append(f"    <FlexStatement {_attributes({'accountId': account, **header})}>")
            info = _attributes(self._account_information(account))
            lines.append(f"      <AccountInformation {info} />")
            days = list(self._days(account, from_date, to_date))
            trades = (row for day in days for row in self._trade_rows(account, day, to_date))
            cash = (row for day in days for row in self._cash(account, day))
            _section(lines, "Trades", "Trade", trades)
            _section(lines, "CashTransactions", "CashTransaction", cash)
            _section(lines, "OpenPositions", "OpenPosition", self._positions(account, to_date))
            lines.append("    </FlexStatement>")
        lines += ["  </FlexStatements>", "</FlexQueryResponse>", ""]
        return "\n".join(lines).encode()

    def _days(self, account: str, from_date: date, to_date: date) -> Iterator[date]:
        first = max(from_date, self.opened.get(account, _FIRST_DAY), _FIRST_DAY)
        last = min(to_date, self.today - timedelta(days=1))
        day = first
        while day <= last:
            if _weekday(day):
                yield day
            day += timedelta(days=1)

    def _date(self, day: date) -> str:
        return format_ib_date(day, self.date_format)

    def _datetime(self, moment: datetime) -> str:
        return f"{format_ib_date(moment.date(), self.date_format)};{moment:%H%M%S}"

    def _serial(self, account: str, day: date, index: int) -> int:
        """Unique per account, day and row of the day: the root of every identifier."""
        slot = self.accounts.index(account)
        return ((day - _FIRST_DAY).days * _MAX_ACCOUNTS + slot) * _MAX_PER_DAY + index

    def _account_information(self, account: str) -> dict[str, str]:
        opened = self.opened.get(account)
        info = {
            "accountId": account, "acctAlias": "", "model": "", "currency": "USD",
            "name": f"Simulated Holder {account[-4:]}", "accountType": "Individual",
            "customerType": "Individual", "accountCapabilities": "Margin",
            "tradingPermissions": "Stocks,Options,Forex", "ibEntity": "IBLLC-US",
            "primaryEmail": f"{account.lower()}@example.com",
        }  # fmt: skip
        if opened is not None:
            info["dateOpened"] = self._date(opened)
            info["dateFunded"] = self._date(_next_weekday(opened))
        return info

    def _trades(self, account: str, day: date) -> list[dict[str, str]]:
        """``account``'s trades of ``day`` as first reported, in time order."""
        if not _weekday(day) or day < _FIRST_DAY:
            return []
        rng = random.Random(f"{self.seed}:{account}:{day.isoformat()}")  # noqa: S311
        count = min(_poisson(rng, self.trades_per_year / 261), _MAX_PER_DAY - 1)
        seconds = sorted(rng.randrange(34_200, 57_600) for _ in range(count))  # 9:30-16:00
        day_text, settle = self._date(day), self._date(_next_weekday(day))
        rows = []
        for index, second in enumerate(seconds):
            instrument = rng.choice(_INSTRUMENTS)
            buy = rng.random() < 0.55
            quantity = rng.choice((1, 5, 10, 20, 25, 50, 100, 200)) * (1 if buy else -1)
            close = Decimal(f"{_price(instrument, day):.2f}")
            price = _money(close * Decimal(f"{1 + rng.uniform(-0.006, 0.006):.5f}"))
            money = price * quantity
            commission = -max(Decimal(1), _money(Decimal("0.005") * abs(quantity)))
            pnl = (
                Decimal(0)
                if buy
                else _money(abs(money) * Decimal(f"{rng.uniform(-0.08, 0.12):.4f}"))
            )
            executed = datetime.combine(day, time()) + timedelta(seconds=second)
            serial = self._serial(account, day, index)
            rows.append({
                "accountId": account, "acctAlias": "", "currency": instrument.currency,
                "fxRateToBase": _num(_fx_rate(instrument.currency, day)), "assetCategory": "STK",
                "symbol": instrument.symbol, "description": instrument.description,
                "conid": instrument.conid, "securityID": instrument.isin,
                "securityIDType": "ISIN", "isin": instrument.isin,
                "listingExchange": instrument.exchange, "multiplier": "1",
                "reportDate": day_text, "dateTime": self._datetime(executed),
                "tradeDate": day_text, "settleDateTarget": settle,
                "transactionType": "ExchTrade", "exchange": rng.choice(_VENUES),
                "quantity": _num(quantity), "tradePrice": _num(price),
                "tradeMoney": _num(money), "proceeds": _num(-money), "taxes": "0",
                "ibCommission": _num(commission), "ibCommissionCurrency": instrument.currency,
                "netCash": _num(-money + commission), "closePrice": _num(close),
                "openCloseIndicator": "O" if buy else "C",
                "notes": "P" if rng.random() < 0.05 else "", "fifoPnlRealized": _num(pnl),
                "buySell": "BUY" if buy else "SELL",
                "orderTime": self._datetime(executed - timedelta(seconds=rng.randrange(1, 90))),
                "orderType": "LMT" if rng.random() < 0.7 else "MKT",
                "ibOrderID": str(3_000_000_000 + serial),
                "transactionID": str(20_000_000_000 + serial * 4),
                "ibExecID": f"{serial:08x}.{int((executed - _EPOCH).total_seconds()):08x}.01.01",
                "tradeID": str(1_000_000_000 + serial), "levelOfDetail": "EXECUTION",
            })  # fmt: skip
        return rows

    def _trade_rows(self, account: str, day: date, as_of: date) -> list[dict[str, str]]:
        """The day's trades as a statement ending ``as_of`` shows them: amendments reported
        by then applied, and the cancellations reported that day appended."""
        rows = self._trades(account, day)
        for index, row in enumerate(rows):
            amend = self._amends.get((account, day, index))
            if amend is not None and amend.reported <= as_of:
                rows[index] = _amended(row, amend)
        for cancel in self._cancels.get((account, day), ()):
            original = self._trades(account, cancel.trade_date)[cancel.index]
            rows.append(self._cancel_row(original, cancel))
        return rows

    def _cancel_row(self, original: dict[str, str], cancel: Correction) -> dict[str, str]:
        serial = self._serial(cancel.account, cancel.trade_date, cancel.index)
        row = dict(original)
        for name in (
            "quantity",
            "tradeMoney",
            "proceeds",
            "ibCommission",
            "netCash",
            "fifoPnlRealized",
        ):
            row[name] = _num(-Decimal(original[name]))
        row.update(
            transactionType="TradeCancel",
            buySell=f"{original['buySell']} (Ca.)",
            notes="Ca",
            reportDate=self._date(cancel.reported),
            transactionID=str(20_000_000_000 + serial * 4 + 2),
            origTransactionID=original["transactionID"],
            ibExecID=original["ibExecID"].removesuffix(".01") + ".02",
        )
        return row

    def _cash(self, account: str, day: date) -> list[dict[str, str]]:
        """``account``'s cash transactions of ``day``: dividends, interest, deposits."""
        rng = random.Random(f"{self.seed}:{account}:{day.isoformat()}:cash")  # noqa: S311
        paid = datetime.combine(day, time(20, 20))
        entries: list[tuple[_Instrument | None, str, str, Decimal]] = []
        if rng.random() < 0.05:
            instrument = rng.choice(_INSTRUMENTS)
            if instrument.dividend:
                shares = rng.choice((10, 25, 50, 100, 200, 400))
                gross = _money(instrument.dividend * shares)
                per_share = f"{instrument.currency} {_num(instrument.dividend)} PER SHARE"
                what = f"{instrument.symbol}({instrument.isin}) CASH DIVIDEND {per_share}"
                entries.append((instrument, "Dividends", f"{what} (Ordinary Dividend)", gross))
                entries.append(
                    (
                        instrument,
                        "Withholding Tax",
                        f"{what} - US TAX",
                        -_money(gross * Decimal("0.15")),
                    )
                )
        previous = day - timedelta(days=1 if day.weekday() else 3)
        if previous.month != day.month:  # the month's first weekday: last month's interest
            amount = _money(Decimal(f"{rng.uniform(0.5, 60):.2f}"))
            month = f"{_MONTHS[previous.month - 1]}-{previous.year}"
            entries.append(
                (None, "Broker Interest Received", f"USD CREDIT INT FOR {month}", amount)
            )
        if rng.random() < 0.01:
            amount = Decimal(rng.choice((1000, 2500, 5000, 10_000, 20_000)))
            entries.append(
                (None, "Deposits/Withdrawals", "CASH RECEIPTS / ELECTRONIC FUND TRANSFERS", amount)
            )
        rows = []
        for index, (paying, kind, description, amount) in enumerate(entries):
            currency = paying.currency if paying is not None else "USD"
            rows.append({
                "accountId": account, "acctAlias": "", "currency": currency,
                "fxRateToBase": _num(_fx_rate(currency, day)),
                "assetCategory": "STK" if paying is not None else "",
                "symbol": paying.symbol if paying is not None else "",
                "description": description,
                "conid": paying.conid if paying is not None else "",
                "isin": paying.isin if paying is not None else "",
                "dateTime": self._datetime(paid), "settleDate": self._date(day),
                "reportDate": self._date(day), "amount": _num(amount), "type": kind,
                "tradeID": "", "code": "", "levelOfDetail": "DETAIL",
                "transactionID": str(20_000_000_000 + self._serial(account, day, index) * 4 + 1),
            })  # fmt: skip
        return rows

    def _positions(self, account: str, day: date) -> list[dict[str, str]]:
        """Open positions at the end of ``day``: a smooth function of the date, no RNG."""
        opened = self.opened.get(account)
        if (opened is not None and day < opened) or day < _FIRST_DAY:
            return []
        n = day.toordinal()
        salt = sum(map(ord, f"{self.seed}:{account}"))
        rows = []
        for instrument in _INSTRUMENTS:
            phase = instrument.phase + salt % 97
            if math.sin(n / 97.0 + 5 * phase) < -0.3:  # not held for a while
                continue
            quantity = 10 * round(10 + 8 * math.sin(n / 41.0 + phase))
            if quantity == 0:
                continue
            mark = Decimal(f"{_price(instrument, day):.2f}")
            cost_price = Decimal(f"{_price(instrument, day - timedelta(days=120)):.4f}")
            value = _money(mark * quantity)
            cost = _money(cost_price * quantity)
            rows.append({
                "accountId": account, "acctAlias": "", "currency": instrument.currency,
                "fxRateToBase": _num(_fx_rate(instrument.currency, day)), "assetCategory": "STK",
                "symbol": instrument.symbol, "description": instrument.description,
                "conid": instrument.conid, "isin": instrument.isin,
                "listingExchange": instrument.exchange, "multiplier": "1",
                "reportDate": self._date(day), "position": _num(quantity),
                "markPrice": _num(mark), "positionValue": _num(value),
                "openPrice": _num(cost_price), "costBasisPrice": _num(cost_price),
                "costBasisMoney": _num(cost), "fifoPnlUnrealized": _num(value - cost),
                "side": "Long", "levelOfDetail": "SUMMARY",
            })  # fmt: skip
        return rows


def _escape(value: str) -> str:
    # str.replace beats str.translate fivefold on values this short
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
        .replace("\t", "&#9;")
    )


def _attributes(row: Mapping[str, str]) -> str:
    return " ".join(f'{name}="{_escape(value)}"' for name, value in row.items())


def _section(lines: list[str], section: str, tag: str, rows: Iterable[Mapping[str, str]]) -> None:
    """A section container and its rows; an empty section is ``<Trades />``, as IB writes it."""
    written = [f"        <{tag} {_attributes(row)} />" for row in rows]
    if written:
        lines += [f"      <{section}>", *written, f"      </{section}>"]
    else:
        lines.append(f"      <{section} />")


def _amended(row: dict[str, str], amend: Correction) -> dict[str, str]:
    row = dict(row)
    if amend.trade_price is not None:
        price = Decimal(amend.trade_price)
        money = price * Decimal(row["quantity"])
        row["tradePrice"] = _num(price)
        row["tradeMoney"] = _num(money)
        row["proceeds"] = _num(-money)
        row["netCash"] = _num(-money + Decimal(row["ibCommission"]))
    row.update(amend.attributes)
    return row
