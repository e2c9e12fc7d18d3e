"""Adversarial tests of Flex statements in CSV or text form.

Every test not marked PASSING shows a broken promise: it fails today and passes once fixed.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from ibkr_flex_client import (
    FlexClient,
    FlexStatement,
    StatementError,
    TransportError,
    iter_elements,
)
from ibkr_flex_client.stream import check_statement_file
from ibkr_flex_client.sync import sync_history
from ibkr_flex_client.testing import FakeClock, FlexSimulator, build_statement
from ibkr_flex_client.testing.content import CSV_LAYOUTS, to_csv

from .conftest import TOKEN

XML = build_statement(accounts=("U1111111", "U2222222"))
BOF = '"BOF","U1","Q","2","20260302","20260306","20260309;081502","100","100"\n'
TRADE_HEADER = '"ClientAccountID","Symbol","Quantity","Buy/Sell"\n'
MAX_RECORD = 8 * 1024 * 1024


def trades(statement: FlexStatement) -> list[dict[str, str]]:
    return [dict(e.attrib) for e in statement.iter("Trade")]


def trailers(*sections: str) -> str:
    return BOF + '"BOA","U1"\n' + "".join(sections) + '"EOA","U1"\n"EOF"\n'


# --- truncation ----------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["descriptors", "plain"])
def test_a_quoted_record_cut_after_a_delimiter_is_refused(layout: str) -> None:
    # A user meets a trade whose last value is silently emptied: IB quotes every value, so
    # a bare empty last field with no line end can only be a cut. (_csv.CsvStream.close)
    document = to_csv(XML, layout=layout)
    lines = document.splitlines(keepends=True)
    row = lines[1].rstrip(b"\n")
    cut = lines[0] + row[: row.rfind(b'","') + 2]
    with pytest.raises(StatementError, match="CSV"):
        FlexStatement(cut)
    with pytest.raises(StatementError):
        list(iter_elements(io.BytesIO(cut), "Trade"))


@pytest.mark.parametrize("layout", ["descriptors", "plain"])
def test_a_bare_record_cut_inside_its_last_value_is_refused(layout: str) -> None:
    # Without EOF, the only mark of a cut mid-record is the missing line end: today the
    # truncated value ("227.4" for "227.48") is returned as complete. (_csv.CsvStream.close)
    document = to_csv(XML, layout=layout, quote_all=False)
    lines = document.splitlines(keepends=True)
    n = next(i for i, line in enumerate(lines) if i and len(line.rsplit(b",", 1)[-1]) > 3)
    cut = b"".join(lines[:n]) + lines[n][:-2]
    with pytest.raises(StatementError, match="CSV"):
        FlexStatement(cut)


def test_rows_after_eof_are_refused() -> None:
    # Data appended after EOF (a second file glued on, or an attacker's rows) is read as a
    # trade of a new account: the hot path in _csv.CsvStream._record skips the _done check.
    document = trailers(
        '"BOS","TRNT","Trades"\n', TRADE_HEADER, '"U1","AAPL","1","BUY"\n', '"EOS","TRNT","1"\n'
    )
    with pytest.raises(StatementError, match="after EOF"):
        FlexStatement(document + '"U9","EVIL","9","BUY"\n')


# --- EOS counts ----------------------------------------------------------------------------

EMPTY_CASH = '"BOS","CTRN","Cash"\n"ClientAccountID","Amount","Type"\n"EOS","CTRN","{n}","0"\n'
ONE_TRADE = '"BOS","TRNT","Trades"\n' + TRADE_HEADER + '"U1","AAPL","1","BUY"\n'


def test_an_empty_section_after_one_with_rows_is_a_statement() -> None:
    # A valid file refused: "EOS says 0 rows, 1 were read" - the count of the previous
    # section is never reset at BOS (_csv.CsvStream._trailer: BOS should set _rows = 0).
    document = trailers(ONE_TRADE, '"EOS","TRNT","1","0"\n', EMPTY_CASH.format(n=0))
    assert trades(FlexStatement(document)) == [
        {"accountId": "U1", "symbol": "AAPL", "quantity": "1", "buySell": "BUY"}
    ]


def test_an_eos_counting_rows_of_a_section_that_has_none_is_refused() -> None:
    # The same stale count lets a section that lost its one row pass as complete.
    document = trailers(ONE_TRADE, '"EOS","TRNT","1","0"\n', EMPTY_CASH.format(n=1))
    with pytest.raises(StatementError, match="EOS says 1 rows, 0 were read"):
        FlexStatement(document)


@pytest.mark.parametrize("eos", ['"EOS","TRNT","abc","0"\n', '"EOS","TRNT"\n', '"EOS"\n'])
def test_an_eos_without_a_count_to_check_is_refused(eos: str) -> None:
    # IB always writes the count; without it nothing is checked (_csv._check_count skips it).
    with pytest.raises(StatementError, match="CSV"):
        FlexStatement(trailers(ONE_TRADE, eos))


# --- reading ---------------------------------------------------------------------------------


def test_the_plain_layout_reads_a_repeated_header_row_as_a_header() -> None:
    # Two accounts each with only trades: the second header row, equal to the columns in use,
    # becomes a trade of an account named "ClientAccountID" (_csv._looks_like_header returns
    # False when the names equal the current columns).
    document = TRADE_HEADER + '"U1","AAPL","1","BUY"\n' + TRADE_HEADER + '"U2","MSFT","2","SELL"\n'
    statement = FlexStatement(document)
    assert [s.account_id for s in statement.statements] == ["U1", "U2"]
    assert [t["symbol"] for t in trades(statement)] == ["AAPL", "MSFT"]


def test_two_headers_that_map_to_one_attribute_lose_no_value() -> None:
    # CurrencyPrimary and Currency both become "currency": one value silently overwrites the
    # other (_csv.CsvStream._row: dict(zip(...)) with duplicate names).
    document = '"ClientAccountID","CurrencyPrimary","Currency","Symbol","Buy/Sell"\n'
    document += '"U1","EUR","USD","AAPL","BUY"\n'
    try:
        (row,) = trades(FlexStatement(document))
    except StatementError:
        return  # refusing the clash is a fix too
    assert {"EUR", "USD"} <= set(row.values())


@pytest.mark.parametrize("odd", ["\u2028", "\x0c", "\x85", "\x1e"])
def test_a_bare_value_holding_a_unicode_line_break_is_one_value(odd: str) -> None:
    # A valid file refused ("3 values under 4 column headers"): str.splitlines also splits at
    # U+2028, form feed, NEL... which CSV does not (_csv.CsvStream._split: split at \n, \r only).
    document = f"ClientAccountID,Symbol,Buy/Sell,Description\nU1,AAPL,BUY,a{odd}b\n"
    (row,) = trades(FlexStatement(document))
    assert row["description"] == f"a{odd}b"


def test_corporate_actions_in_the_plain_layout_are_not_cash_transactions() -> None:
    # Without section codes, any section with an Amount column becomes CashTransactions:
    # a stock split shows up in rows("CashTransaction") (_csv_names._BY_COLUMN).
    document = (
        '"ClientAccountID","CurrencyPrimary","Symbol","Description","ActionDescription",'
        '"Amount","Proceeds","Value","Quantity","Type","TransactionID"\n'
        '"U1","USD","AAPL","AAPL SPLIT 4 FOR 1","AAPL SPLIT","0","0","0","300","FS","123"\n'
    )
    statement = FlexStatement(document)
    assert list(statement.iter("CashTransaction")) == []


def test_interleaved_accounts_stream_each_run_of_an_account_as_its_own_header() -> None:
    # Accounts A, B, A without BOA: FlexStatement joins them into two statements; the
    # streaming readers cannot look ahead, so they give one <FlexStatement> per run of an
    # account (A, B, A), as the README says, every row under its own account.
    document = (
        TRADE_HEADER + '"U1","AAPL","1","BUY"\n"U2","MSFT","2","SELL"\n"U1","IBM","3","BUY"\n'
    ).encode()
    whole = [s.account_id for s in FlexStatement(document).statements]
    streamed = [e.get("accountId") for e in iter_elements(io.BytesIO(document), "FlexStatement")]
    assert whole == ["U1", "U2"]
    assert streamed == ["U1", "U2", "U1"]
    rows = [
        (t.get("accountId"), t.get("symbol")) for t in iter_elements(io.BytesIO(document), "Trade")
    ]
    assert rows == [("U1", "AAPL"), ("U2", "MSFT"), ("U1", "IBM")]


def test_ibs_msg_note_on_the_first_line_is_read() -> None:
    # _record skips IB's MSG note, but _FIRST does not know MSG: a statement starting with
    # it is taken for (broken) XML and refused (_csv._FIRST).
    document = '"MSG","Realized P/L is not ready"\n' + TRADE_HEADER + '"U1","AAPL","1","BUY"\n'
    assert [t["symbol"] for t in trades(FlexStatement(document))] == ["AAPL"]


class _Endless:
    """A record without a line end, 1 MB per read, failing the test past 3 * MAX_RECORD."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def read(self, _size: int = -1) -> bytes:
        if self.read_bytes == 0:
            self.read_bytes = 1
            return TRADE_HEADER.encode() + b'"U1","'
        self.read_bytes += 1 << 20
        assert self.read_bytes < 3 * MAX_RECORD, "kept reading one record into memory"
        return b"x" * (1 << 20)


def test_a_huge_record_without_a_line_end_is_refused_while_streaming() -> None:
    # iter_elements keeps a record without a line end whole, re-splitting it at every chunk
    # (quadratic) and never checks _MAX_RECORD (_csv.CsvStream._split checks only _pending).
    with pytest.raises(StatementError, match="record over"):
        list(iter_elements(_Endless(), "Trade"))  # type: ignore[arg-type]


# --- through the client -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        f"HEADER,TRNT,ClientAccountID,Symbol\nDATA,{TOKEN},U1,AAPL\n".encode(),
        trailers(ONE_TRADE, f'"EOS","{TOKEN}","1"\n').encode(),
    ],
    ids=["data-code", "eos-code"],
)
async def test_the_token_is_never_in_a_csv_error(
    sim: FlexSimulator, make_client: Callable[..., FlexClient], body: bytes
) -> None:
    # Server text reaches the message unscrubbed (section codes in _csv.CsvStream._descriptor
    # and _check_count); the XML path passes such text through from_server(..., secret).
    sim.add_query("42", statement=body)
    with pytest.raises((StatementError, TransportError)) as caught:
        await make_client(max_retries=2).fetch()
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [
        (TRADE_HEADER + '"U1","Nestl\xe9","1","BUY"\n').encode("latin-1"),
        (TRADE_HEADER + '"U1","' + "x" * (MAX_RECORD + 10)).encode(),
    ],
    ids=["latin-1", "record-over-max"],
)
async def test_a_csv_answer_we_cannot_read_fails_at_once(
    sim: FlexSimulator, make_client: Callable[..., FlexClient], body: bytes
) -> None:
    # Not UTF-8, or a record "not one of IB's": the same bytes every time, yet asked for
    # ten times and reported as a TransportError (_body._csv_statement: only setting errors
    # are fatal).
    sim.add_query("42", statement=body)
    with pytest.raises(StatementError):
        await make_client().fetch()
    assert sim.answers().count("statement") == 1


async def test_a_csv_of_tiny_records_is_refused_before_its_tree_fills_memory(
    sim: FlexSimulator, make_client: Callable[..., FlexClient]
) -> None:
    # 2 bytes a record become a ~400-byte element: ~190x the body (XML is refused past 13x,
    # _body._mind_the_density); at the default max_statement_bytes, ~25 GB. Nothing bounds
    # the CSV form (_body.take: density is minded for form "xml" only).
    sim.add_query("42", statement=b'"ClientAccountID","Symbol"\n' + b",\n" * 100_000)
    with pytest.raises(StatementError):
        await make_client().fetch()


async def test_sync_of_a_csv_query_without_header_records_names_the_setting(
    sim: FlexSimulator, clock: FakeClock, tmp_path: Path
) -> None:
    # The user is told the statement "covers .." and asked whether the query ignores date
    # overrides: the setting to change is 'Include header and trailer records'.
    sim.add_query("1", statement=to_csv(build_statement(accounts=("U1",)), layout="descriptors"))
    with pytest.raises(StatementError, match="header and trailer records"):
        await sync_history(
            tmp_path / "h.db",
            token=TOKEN,
            query_ids=["1"],
            today=date(2026, 3, 10),
            base_url=sim.base_url,
            clock=clock,
            since="2026-03-02",
        )


# --- PASSING: important, not covered elsewhere -----------------------------------------------


@pytest.mark.parametrize("quote_all", [True, False], ids=["quoted", "bare"])
@pytest.mark.parametrize("layout", ["trailers", "trailers+descriptors"])
def test_passing_a_trailer_layout_cut_at_any_byte_is_refused(layout: str, quote_all: bool) -> None:
    # PASSING: every byte, not only line boundaries (the last line end after EOF aside).
    document = to_csv(XML, layout=layout, quote_all=quote_all)
    for n in range(1, len(document) - 1):
        with pytest.raises(StatementError):
            FlexStatement(document[:n])


@pytest.mark.parametrize("layout", CSV_LAYOUTS)
@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_passing_tiny_chunks_with_bom_crlf_and_quoted_line_breaks_read_as_whole(
    layout: str, size: int
) -> None:
    # PASSING: chunks split mid-UTF-8 character, mid-quote and between CR and LF.
    rows = [
        {"accountId": "U1", "symbol": "NESN", "description": d, "quantity": "1", "buySell": "B"}
        for d in ("Nestlé, “x”", "a\r\nb", "c\rd", 'say "hi"', "€\n")
    ]
    sections = {"Trades": ("Trade", rows)}
    document = to_csv(build_statement(accounts=("U1",), sections=sections), layout=layout)
    document = b"\xef\xbb\xbf" + document.replace(b'"\n', b'"\r\n')

    class Chunks:
        offset = 0

        def read(self, _n: int = -1) -> bytes:
            piece = document[self.offset : self.offset + size]
            self.offset += size
            return piece

    streamed = [dict(e.attrib) for e in iter_elements(Chunks(), "Trade")]  # type: ignore[arg-type]
    assert streamed == trades(FlexStatement(document)) == rows


@pytest.mark.parametrize("layout", CSV_LAYOUTS)
async def test_passing_a_cut_csv_download_leaves_no_file(
    sim: FlexSimulator, make_client: Callable[..., FlexClient], layout: str, tmp_path: Path
) -> None:
    # PASSING: download() of a CSV cut mid-quote raises and leaves nothing behind.
    sim.add_query("42", statement=to_csv(XML, layout=layout)[:-9])
    with pytest.raises(TransportError, match="CSV"):
        await make_client(max_retries=1).download(tmp_path / "s.csv")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(StatementError):
        check_statement_file(io.BytesIO(to_csv(XML, layout=layout)[:-9]))
