"""IB's CSV names and their XML equivalents: section codes to tags, column headers to
attribute names ("Output formats other than XML" in ``docs/protocol.md``).

A section code or a column header this module cannot map keeps its CSV name: the data still
reaches the user, under the name IB gave it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

__all__ = [
    "COLUMNS",
    "KNOWN_HEADERS",
    "SECTIONS",
    "SECTION_COLUMNS",
    "attribute_name",
    "section_tags",
]

# Section code -> (XML container, row tag).
SECTIONS: Mapping[str, tuple[str, str]] = {
    "ACCT": ("AccountInformation", "AccountInformation"),
    "TRNT": ("Trades", "Trade"),
    "CTRN": ("CashTransactions", "CashTransaction"),
    "CRTT": ("CashReport", "CashReportCurrency"),
    "STFU": ("StmtFunds", "StatementOfFundsLine"),
    "POST": ("OpenPositions", "OpenPosition"),
    "CORP": ("CorporateActions", "CorporateAction"),
    "RATE": ("ConversionRates", "ConversionRate"),
    "EQUT": ("EquitySummaryInBase", "EquitySummaryByReportDateInBase"),
    "TRFR": ("Transfers", "Transfer"),
    "CNAV": ("ChangeInNAV", "ChangeInNAV"),
    "MTMP": ("MTMPerformanceSummaryInBase", "MTMPerformanceSummaryUnderlying"),
    "FXTR": ("FxTransactions", "FxTransaction"),
    "IACC": ("InterestAccruals", "InterestAccrualsCurrency"),
}

# CSV column header -> XML attribute, where lower-casing the leading capitals is not it.
COLUMNS: Mapping[str, str] = {
    "ClientAccountID": "accountId",
    "AccountID": "accountId",
    "AccountAlias": "acctAlias",
    "CurrencyPrimary": "currency",
    "AssetClass": "assetCategory",
    "Buy/Sell": "buySell",
    "Open/CloseIndicator": "openCloseIndicator",
    "Notes/Codes": "notes",
    "Date/Time": "dateTime",
    "Put/Call": "putCall",
    "CostBasis": "cost",
    "AccruedInterest": "accruedInt",
    "ExchOrderID": "exchOrderId",
    "RealizedP/L": "realizedPL",
    "Deposit/Withdrawals": "depositWithdrawals",
    "FXTranslationGain/Loss": "fxTranslationGainLoss",
    "871mWithholding": "withholding871m",
    "WithholdingTaxCollected": "withholdingCollectedTax",
    "StartingCashCollateralSLB": "slbStartingCashCollateral",
    "NetSecuritiesLentActivitySLB": "slbNetSecuritiesLentActivity",
    "EndingCashCollateralSLB": "slbEndingCashCollateral",
    "NetCashBalanceSLB": "slbNetCash",
    "NetSettledCashBalanceSLB": "slbNetSettledCash",
}
# Per section code, where a column means another attribute there.
SECTION_COLUMNS: Mapping[str, Mapping[str, str]] = {"POST": {"Quantity": "position"}}

# Column headers seen in every kind of section: a record holding one of them, and only
# names, is a row of column headers.
KNOWN_HEADERS = frozenset(
    {
        *COLUMNS,
        "Symbol",
        "Description",
        "Conid",
        "Quantity",
        "Amount",
        "Position",
        "ReportDate",
        "TradeDate",
        "Date",
        "Type",
        "TransactionID",
        "TradeID",
        "ISIN",
        "Currency",
    }
)

# A section without a code (a layout without line descriptors): told by columns of its own;
# the first whose columns are all there, else "Rows".
_BY_COLUMNS: Sequence[tuple[frozenset[str], tuple[str, str]]] = (
    (frozenset({"buySell"}), ("Trades", "Trade")),
    (frozenset({"markPrice"}), ("OpenPositions", "OpenPosition")),
    (frozenset({"startingCash", "endingCash"}), ("CashReport", "CashReportCurrency")),
    (frozenset({"activityDescription", "balance"}), ("StmtFunds", "StatementOfFundsLine")),
    (frozenset({"actionDescription"}), ("CorporateActions", "CorporateAction")),
    (frozenset({"amount", "type"}), ("CashTransactions", "CashTransaction")),
    (frozenset({"dateOpened"}), ("AccountInformation", "AccountInformation")),
)
_LEADING_CAPITALS = re.compile(r"^([A-Z]+)(?=[A-Z][a-z]|$)|^([A-Z])")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def attribute_name(header: str, code: str = "") -> str:
    """The XML attribute for a CSV column header (of section ``code``): ``TradePrice`` ->
    ``tradePrice``, ``IBCommission`` -> ``ibCommission``, ``ISIN`` -> ``isin``, the exceptions
    in :data:`COLUMNS` and :data:`SECTION_COLUMNS`; a header that is no name (``Code (1)``)
    stays as it is."""
    header = header.strip().lstrip("\ufeff")
    mapped = SECTION_COLUMNS.get(code.upper(), {}).get(header) or COLUMNS.get(header)
    if mapped is not None:
        return mapped
    if not _IDENTIFIER.match(header):
        return header
    return _LEADING_CAPITALS.sub(lambda m: (m.group(1) or m.group(2)).lower(), header, count=1)


def section_tags(code: str, columns: Sequence[str]) -> tuple[str, str]:
    """The XML container and row tag of a section: by its code, else by its columns, else
    the code itself (or ``Rows``)."""
    if code:
        return SECTIONS.get(code.upper(), (code, code))
    present = set(columns)
    for needed, tags in _BY_COLUMNS:
        if needed <= present:
            return tags
    return ("Rows", "Row")
