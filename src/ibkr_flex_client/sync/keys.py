"""What identifies a row of each tag, so that a row stored twice is one row.

Where IB gives a row an identifier of its own, the row is keyed on it, within its account
and tag, with the qualifiers IB repeats an identifier across (``levelOfDetail``: a SUMMARY
row copies a DETAIL row's ``transactionID``; an OpenPosition's SUMMARY and LOT rows share a
``conid``). A row keyed so that comes again with other values is a **correction**: stored as
the next version, the old one kept. Any other row is keyed on all its attributes and its
place among identical rows of its statement (two fills can be identical to the cent): it can
come again as a duplicate, never as a correction, since any change makes it another row.

What we know of IB's identifiers (``docs/sync.md`` has the sources):

* ``transactionID`` is unique per detail row and per tag. A cancelled trade keeps its row;
  the cancellation is a new row with a new ``transactionID`` (``origTransactionID`` names
  the one it cancels, ``notes`` holds ``Ca``), and a re-booked trade another one again,
  sharing the old ``tradeID``: so ``tradeID`` is no key.
* ``Order`` rows have no ``transactionID``; one per ``ibOrderID`` and trade date.
* Snapshots (``OpenPosition``, ``EquitySummaryByReportDateInBase``, ``ConversionRate``,
  ``SecurityInfo``, ``AccountInformation``) are keyed on what they describe as of their
  report date: a later statement for the same date corrects them.
* Summary rows without an identifier (``accountId="-"``), ``Lot`` rows (whose
  ``transactionID`` is the opening trade's) and period totals (``CashReportCurrency``, …):
  all attributes.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..dates import parse_ib_date

__all__ = ["KEYS", "row_key"]

# tag -> (identifiers that must all be present and non-empty, qualifiers added as found).
KEYS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Trade": (("transactionID",), ("levelOfDetail",)),
    "CashTransaction": (("transactionID",), ("levelOfDetail",)),
    "CorporateAction": (("transactionID",), ("levelOfDetail",)),
    "StatementOfFundsLine": (("transactionID",), ("levelOfDetail", "currency")),
    "TransactionTax": (("transactionID", "taxDescription"), ("levelOfDetail",)),
    "Transfer": (("transactionID",), ("levelOfDetail",)),
    "TradeTransfer": (("transactionID",), ("levelOfDetail",)),
    "UnsettledTransfer": (("transactionID",), ()),
    "CFDCharge": (("transactionID",), ()),
    "TradeConfirm": (("transactionID",), ()),
    "Order": (("ibOrderID", "tradeDate"), ("levelOfDetail",)),
    "Lot": ((), ()),  # its transactionID is the opening trade's: all attributes
    "OpenPosition": (("reportDate", "conid"), ("levelOfDetail", "originatingTransactionID")),
    "EquitySummaryByReportDateInBase": (("reportDate",), ()),
    "ConversionRate": (("reportDate", "fromCurrency", "toCurrency"), ()),
    "SecurityInfo": (("conid",), ()),
    "AccountInformation": (("accountId",), ()),
}
# Identifying attributes that are dates: keyed as ISO dates, whatever the query's format.
_DATES = frozenset({"reportDate", "tradeDate"})
# Any other tag: keyed on transactionID where it has one.
_DEFAULT: tuple[tuple[str, ...], tuple[str, ...]] = (("transactionID",), ("levelOfDetail",))


def row_key(
    tag: str,
    account: str,
    attributes: Mapping[str, str],
    digest: str,
    occurrence: int,
    day_first: bool | None = None,
) -> str:
    """The row's key: ``account|id:<values>`` from IB's identifiers (dates among them as ISO
    dates, so that a query's date format changed since keeps its keys), else
    ``account|all:<digest>#<occurrence>`` (``digest`` of all its attributes, ``occurrence``
    its place among identical rows of its statement)."""
    required, qualifiers = KEYS.get(tag, _DEFAULT)
    values = [attributes.get(name, "") for name in required]
    if required and all(values) and attributes.get("accountId") != "-":
        named = [(n, v) for n, v in zip(required, values, strict=True)]
        named += [(n, attributes[n]) for n in qualifiers if attributes.get(n)]
        return f"{account}|id:" + "|".join(f"{n}={_as_key(n, v, day_first)}" for n, v in named)
    return f"{account}|all:{digest}#{occurrence}"


def _as_key(name: str, value: str, day_first: bool | None) -> str:
    if name not in _DATES:
        return value
    try:
        return parse_ib_date(value, day_first=day_first).isoformat()
    except ValueError:
        return value  # MULTI, or a day order nothing decides: as written
