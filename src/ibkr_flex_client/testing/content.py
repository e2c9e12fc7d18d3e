"""Flex statements to serve from the simulator: realistic by default, configurable throughout."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

__all__ = [
    "CSV_LAYOUTS",
    "DATE_FORMATS",
    "build_statement",
    "csv_header",
    "default_sections",
    "format_ib_date",
    "to_csv",
]

# The seven date formats a Flex query can be configured to emit (docs/protocol.md, "Formats").
DATE_FORMATS: Mapping[str, str] = {
    "yyyyMMdd": "%Y%m%d",
    "yyyy-MM-dd": "%Y-%m-%d",
    "MM/dd/yyyy": "%m/%d/%Y",
    "MM/dd/yy": "%m/%d/%y",
    "dd/MM/yyyy": "%d/%m/%Y",
    "dd/MM/yy": "%d/%m/%y",
    "dd-MMM-yy": "%d-%b-%y",
}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

Value = str | int | float | Decimal | date | datetime | None
Rows = Sequence[Mapping[str, Value]]


def format_ib_date(value: date, date_format: str = "yyyyMMdd") -> str:
    """``value`` written the way a query set to ``date_format`` writes it."""
    if date_format == "dd-MMM-yy":  # month names in English whatever the locale
        return f"{value.day:02d}-{_MONTHS[value.month - 1]}-{value.year % 100:02d}"
    try:
        return value.strftime(DATE_FORMATS[date_format])
    except KeyError:
        raise ValueError(f"unknown IB date format {date_format!r}") from None


def _text(value: Value, date_format: str) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):  # IB's default date-time form: date;HHmmss
        return f"{format_ib_date(value.date(), date_format)};{value:%H%M%S}"
    if isinstance(value, date):
        return format_ib_date(value, date_format)
    return str(value)


def default_sections(account_id: str, report_date: date) -> dict[str, tuple[str, Rows]]:
    """A small, realistic activity report: trades, open positions and a cash report."""
    day = report_date

    def at(hour: int, minute: int) -> datetime:
        return datetime.combine(day, datetime.min.time()) + timedelta(hours=hour, minutes=minute)

    trades: Rows = [
        {
            "accountId": account_id, "currency": "USD", "assetCategory": "STK",
            "symbol": "AAPL", "description": "APPLE INC", "conid": "265598",
            "isin": "US0378331005", "tradeID": "600000001", "reportDate": day,
            "dateTime": at(10, 31),
            "tradeDate": day, "settleDateTarget": day + timedelta(days=1),
            "quantity": "10", "tradePrice": "227.48", "tradeMoney": "2274.8",
            "proceeds": "-2274.8", "ibCommission": "-1", "ibCommissionCurrency": "USD",
            "netCash": "-2275.8", "buySell": "BUY", "openCloseIndicator": "O",
            "notes": "", "exchange": "NASDAQ", "fifoPnlRealized": "0",
        },
        {
            "accountId": account_id, "currency": "USD", "assetCategory": "STK",
            "symbol": "MSFT", "description": "MICROSOFT CORP", "conid": "272093",
            "isin": "US5949181045", "tradeID": "600000002", "reportDate": day,
            "dateTime": at(14, 2),
            "tradeDate": day, "settleDateTarget": day + timedelta(days=1),
            "quantity": "-5", "tradePrice": "415.1", "tradeMoney": "-2075.5",
            "proceeds": "2075.5", "ibCommission": "-1.02", "ibCommissionCurrency": "USD",
            "netCash": "2074.48", "buySell": "SELL", "openCloseIndicator": "C",
            "notes": "P", "exchange": "ARCA", "fifoPnlRealized": "212.35",
        },
        {
            "accountId": account_id, "currency": "USD", "assetCategory": "OPT",
            "symbol": "SPY   260417C00560000", "description": "SPY 17APR26 560 C",
            "conid": "731822390", "isin": "", "tradeID": "600000003", "reportDate": day,
            "dateTime": at(15, 45),
            "tradeDate": day, "settleDateTarget": day + timedelta(days=1),
            "quantity": "1", "tradePrice": "4.35", "tradeMoney": "435",
            "proceeds": "-435", "ibCommission": "-0.65", "ibCommissionCurrency": "USD",
            "netCash": "-435.65", "buySell": "BUY", "openCloseIndicator": "O",
            "notes": "", "exchange": "CBOE", "fifoPnlRealized": "0",
        },
    ]  # fmt: skip
    positions: Rows = [
        {
            "accountId": account_id, "currency": "USD", "assetCategory": "STK",
            "symbol": "AAPL", "position": "110", "markPrice": "228.02",
            "positionValue": "25082.2", "costBasisMoney": "21870.5", "reportDate": day,
            "side": "Long",
        },
        {
            "accountId": account_id, "currency": "EUR", "assetCategory": "STK",
            "symbol": "SAP", "position": "20", "markPrice": "231.4",
            "positionValue": "4628", "costBasisMoney": "3977.1", "reportDate": day,
            "side": "Long",
        },
    ]  # fmt: skip
    cash: Rows = [
        {
            "accountId": account_id, "currency": "BASE_SUMMARY", "startingCash": "10512.33",
            "commissions": "-2.67", "dividends": "0", "endingCash": "9875.36",
            "fromDate": day, "toDate": day,
        },
    ]  # fmt: skip
    return {
        "Trades": ("Trade", trades),
        "OpenPositions": ("OpenPosition", positions),
        "CashReport": ("CashReportCurrency", cash),
    }


def build_statement(
    *,
    accounts: Sequence[str] = ("U1234567",),
    from_date: date = date(2026, 3, 2),
    to_date: date = date(2026, 3, 6),
    sections: Mapping[str, tuple[str, Rows]] | None = None,
    date_format: str = "yyyyMMdd",
    query_name: str = "Activity",
    report_type: str = "AF",
    when_generated: datetime = datetime(2026, 3, 9, 8, 15, 2),
    period: str = "",
) -> bytes:
    """A ``<FlexQueryResponse>`` document as IB writes it, as UTF-8 bytes.

    Args:
        accounts: one ``<FlexStatement>`` per account, in order.
        sections: ``{container: (row_tag, rows)}``, each row a mapping of attribute to value;
            ``date`` and ``datetime`` values are written in ``date_format``. ``None`` gives
            :func:`default_sections` for each account.
        date_format: one of :data:`DATE_FORMATS`; the header dates follow it too, as at IB.
        report_type: ``"AF"`` (activity) or ``"TCF"`` (trade confirmation).
    """
    format_ib_date(from_date, date_format)  # rejects an unknown format up front
    root = ET.Element("FlexQueryResponse", queryName=query_name, type=report_type)
    container = ET.SubElement(root, "FlexStatements", count=str(len(accounts)))
    for account in accounts:
        statement = ET.SubElement(
            container,
            "FlexStatement",
            accountId=account,
            fromDate=format_ib_date(from_date, date_format),
            toDate=format_ib_date(to_date, date_format),
            period=period,
            whenGenerated=_text(when_generated, date_format),
        )
        chosen = default_sections(account, to_date) if sections is None else sections
        for section, (row_tag, rows) in chosen.items():
            holder = ET.SubElement(statement, section)
            for row in rows:
                ET.SubElement(holder, row_tag, {k: _text(v, date_format) for k, v in row.items()})
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


# --- the same statements in CSV form -------------------------------------------------------

#: The layouts of a Flex Query's CSV output (``docs/protocol.md``): header and trailer
#: records (BOF ... EOF), section code and line descriptor (HEADER/DATA), both, or neither.
CSV_LAYOUTS = ("trailers", "descriptors", "trailers+descriptors", "plain")

_CSV_HEADERS = {
    "accountId": "ClientAccountID",
    "acctAlias": "AccountAlias",
    "currency": "CurrencyPrimary",
    "assetCategory": "AssetClass",
    "buySell": "Buy/Sell",
    "putCall": "Put/Call",
    "openCloseIndicator": "Open/CloseIndicator",
    "notes": "Notes/Codes",
    "dateTime": "Date/Time",
    "ibCommission": "IBCommission",
    "ibCommissionCurrency": "IBCommissionCurrency",
    "ibExecID": "IBExecID",
    "ibOrderID": "IBOrderID",
    "fxRateToBase": "FXRateToBase",
    "isin": "ISIN",
    "cusip": "CUSIP",
}


def csv_header(attribute: str) -> str:
    """The CSV column header IB writes for an XML attribute."""
    return _CSV_HEADERS.get(attribute) or attribute[:1].upper() + attribute[1:]


def to_csv(
    document: bytes,
    *,
    layout: str = "trailers",
    delimiter: str = ",",
    quote_all: bool = True,
    column_headers: bool = True,
) -> bytes:
    """The statement ``document`` (XML, as :func:`build_statement` writes it) in one of IB's
    CSV layouts (:data:`CSV_LAYOUTS`): what the same query set to CSV delivers. Section
    codes come from the containers' names (``Trades`` is ``TRNT``); a container without a
    known code keeps its name. ``delimiter`` ``"|"`` or ``"\\t"`` gives IB's text output."""
    if layout not in CSV_LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; one of {', '.join(CSV_LAYOUTS)}")
    import csv  # noqa: PLC0415 - only here
    import io  # noqa: PLC0415

    from .._csv_names import SECTIONS  # noqa: PLC0415

    codes = {container: code for code, (container, _) in SECTIONS.items()}
    root = ET.fromstring(document)
    out = io.StringIO()
    if quote_all:
        writer = csv.writer(out, delimiter=delimiter, quoting=csv.QUOTE_ALL, lineterminator="\n")
    else:
        writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    trailers = layout.startswith("trailers")
    descriptors = layout.endswith("descriptors")
    statements = root.findall("FlexStatements/FlexStatement")
    if trailers and statements:
        first = statements[0]
        sections = len([s for s in first if len(s)])
        writer.writerow(["BOF", first.get("accountId", ""), root.get("queryName", ""),
                         str(sections), first.get("fromDate", ""), first.get("toDate", ""),
                         first.get("whenGenerated", ""), "100", "100"])  # fmt: skip
    for statement in statements:
        account = statement.get("accountId", "")
        if trailers:
            writer.writerow(["BOA", account])
        for section in statement:
            code = codes.get(section.tag, section.tag)
            _csv_section(writer, section, code, trailers, descriptors, column_headers)
        if trailers:
            writer.writerow(["EOA", account])
    if trailers:
        writer.writerow(["EOF"])
    return out.getvalue().encode()


def _csv_section(
    writer: Any,  # noqa: ANN401 - csv's writer has no public type
    section: ET.Element,
    code: str,
    trailers: bool,
    descriptors: bool,
    column_headers: bool,
) -> None:
    rows = [row for row in section if row.attrib]
    if not rows:
        return
    names = list(dict.fromkeys(name for row in rows for name in row.attrib))
    lead = [code] if descriptors else []
    if trailers:
        writer.writerow(["BOS", code, section.tag])
    if column_headers:
        header = [csv_header(name) for name in names]
        writer.writerow((["HEADER", *lead] if descriptors else []) + header)
    for row in rows:
        values = [row.get(name, "") for name in names]
        writer.writerow((["DATA", *lead] if descriptors else []) + values)
    if trailers:
        writer.writerow(["EOS", code, str(len(rows)), "0"])
