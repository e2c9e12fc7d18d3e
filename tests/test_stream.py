"""Streaming over statement files, and downloads straight to disk."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import stat
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from ibkr_flex_client import (
    FetchEvent,
    FlexClient,
    FlexStatement,
    SaveError,
    StatementError,
    TransportError,
    iter_elements,
    iter_rows,
)
from ibkr_flex_client.stream import check_statement_file
from ibkr_flex_client.testing import Fault, FlexSimulator, build_statement

from .conftest import DATA
from .test_statement import BROKEN, SAMPLES

MakeClient = Callable[..., FlexClient]


@pytest.mark.parametrize("name", SAMPLES)
@pytest.mark.parametrize("tag", ["Trade", "OpenPosition", "StatementOfFundsLine", "Order"])
def test_streamed_elements_equal_the_parsed_ones(name: str, tag: str) -> None:
    path = DATA / name
    parsed = [dict(e.attrib) for e in FlexStatement.from_file(path).iter(tag)]
    streamed = [dict(e.attrib) for e in iter_elements(path, tag)]
    assert streamed == parsed


def test_a_container_comes_with_its_whole_subtree() -> None:
    (trades,) = iter_elements(io.BytesIO(build_statement()), "Trades")
    assert [t.get("symbol") for t in trades] == ["AAPL", "MSFT", "SPY   260417C00560000"]


def test_elements_are_detached_so_memory_stays_flat(tmp_path: Path) -> None:
    rows = [{"symbol": f"S{i}", "quantity": str(i)} for i in range(2000)]
    path = tmp_path / "many.xml"
    path.write_bytes(build_statement(sections={"Trades": ("Trade", rows)}))
    seen = list(iter_elements(path, "Trade"))
    assert len(seen) == 2000
    # Nothing links a handed-over row back to the tree, so the tree never grows with rows.
    assert all(len(row) == 0 for row in seen)


@dataclasses.dataclass
class Position:
    symbol: str
    position: Decimal
    mark_price: Decimal


def test_typed_rows_from_a_file_object() -> None:
    positions = list(iter_rows(io.BytesIO(build_statement()), "OpenPosition", Position))
    assert positions == [
        Position("AAPL", Decimal(110), Decimal("228.02")),
        Position("SAP", Decimal(20), Decimal("231.4")),
    ]


def test_streamed_rows_take_day_order_from_the_headers(tmp_path: Path) -> None:
    @dataclasses.dataclass
    class Row:
        trade_date: str

    document = build_statement(
        date_format="dd/MM/yyyy", to_date=__import__("datetime").date(2026, 3, 20)
    )
    rows = list(iter_rows(io.BytesIO(document), "Trade", Row))
    assert rows[0].trade_date == "20/03/2026"


@pytest.mark.parametrize("xml", BROKEN.values(), ids=BROKEN.keys())
def test_broken_and_hostile_files_raise_statement_error(xml: bytes) -> None:
    with pytest.raises(StatementError):
        check_statement_file(io.BytesIO(xml))


def test_a_truncated_file_raises_after_the_rows_before_the_cut() -> None:
    document = build_statement()
    cut = document[: document.index(b"<OpenPositions")]
    rows = iter_elements(io.BytesIO(cut), "Trade")
    assert [next(rows).get("symbol") for _ in range(3)] == [
        "AAPL",
        "MSFT",
        "SPY   260417C00560000",
    ]
    with pytest.raises(StatementError, match="not well-formed"):
        next(rows)


def test_a_dtd_is_refused_before_any_row() -> None:
    hostile = b'<!DOCTYPE r [<!ENTITY x "y">]>' + build_statement().split(b"?>", 1)[1]
    with pytest.raises(StatementError, match="DTD"):
        next(iter_elements(io.BytesIO(hostile), "Trade"))


# --- download --------------------------------------------------------------------------------


async def test_download_writes_the_statement_and_returns_the_path(
    make_client: MakeClient, sim: FlexSimulator, tmp_path: Path
) -> None:
    sim.add_query("42", generation_seconds=3.0)
    events: list[FetchEvent] = []
    target = tmp_path / "report.xml"
    result = await make_client().download(target, on_event=events.append)
    assert result == target
    assert target.read_bytes() == build_statement()
    assert FlexStatement.from_file(target).account_id == "U1234567"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # account data: owner only
    assert [p.name for p in tmp_path.iterdir()] == ["report.xml"]  # no temp file left
    assert events[-1].size == len(build_statement())
    assert "1019" in sim.answers()  # envelopes were read back from the streamed body


async def test_an_interrupted_download_never_leaves_a_partial_file(
    make_client: MakeClient, sim: FlexSimulator, tmp_path: Path
) -> None:
    target = tmp_path / "report.xml"
    target.write_bytes(b"yesterday's report")
    sim.fail("42", Fault.truncated(), Fault.drop(), Fault.hang())
    seen_during: list[bytes] = []

    def watch(event: FetchEvent) -> None:
        seen_during.append(target.read_bytes())

    await make_client(timeout=0.2).download(target, on_event=watch)
    assert set(seen_during) == {b"yesterday's report"}  # untouched until the new one was whole
    assert target.read_bytes() == build_statement()
    assert [p.name for p in tmp_path.iterdir()] == ["report.xml"]


async def test_a_failed_download_leaves_the_old_file_and_no_temp(
    make_client: MakeClient, sim: FlexSimulator, tmp_path: Path
) -> None:
    target = tmp_path / "report.xml"
    target.write_bytes(b"old")
    sim.fail("42", Fault.truncated(), times=3)
    with pytest.raises(TransportError, match="cut short"):
        await make_client(max_retries=3).download(target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.xml"]


async def test_a_cancelled_download_leaves_nothing(
    make_client: MakeClient, sim: FlexSimulator, tmp_path: Path
) -> None:
    sim.fail("42", Fault.hang())
    polling = asyncio.Event()

    def on_event(event: FetchEvent) -> None:
        if event.step == "GetStatement" and event.kind == "request":
            polling.set()

    task = asyncio.ensure_future(
        make_client(timeout=5).download(tmp_path / "r.xml", on_event=on_event)
    )
    await polling.wait()
    await asyncio.sleep(0.05)  # the poll is in flight, its body being written
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert list(tmp_path.iterdir()) == []


async def test_well_formed_but_incomplete_downloads_are_retried(
    make_client: MakeClient, sim: FlexSimulator, tmp_path: Path
) -> None:
    incomplete = build_statement().replace(b'count="1"', b'count="2"')
    calls = iter([incomplete, build_statement()])
    sim.add_query("42", statement=lambda: next(calls))
    target = await make_client().download(tmp_path / "r.xml")
    assert target.read_bytes() == build_statement()


async def test_unwritable_target_is_a_save_error(
    make_client: MakeClient, sim: FlexSimulator, tmp_path: Path
) -> None:
    with pytest.raises(SaveError, match="no-such-dir"):
        await make_client().download(tmp_path / "no-such-dir" / "r.xml")
    assert sim.requests == []  # found before a single request was spent
    with pytest.raises(SaveError, match="is a directory"):
        await make_client().download(tmp_path)
    assert sim.requests == []
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(SaveError):
            await make_client().download(locked / "r.xml")


def test_a_dtd_behind_a_long_comment_is_still_found() -> None:
    comment = b"<!-- <FlexQueryResponse> " + b"x" * 200_000 + b" -->"
    hostile = comment + b'<!DOCTYPE r [<!ENTITY x "y">]><FlexQueryResponse>&x;</FlexQueryResponse>'
    with pytest.raises(StatementError, match="DTD"):
        next(iter_elements(io.BytesIO(hostile), "Trade"))
    endless = b"<!--" + b"x" * (2 * 1024 * 1024)
    with pytest.raises(StatementError, match="no root element"):
        next(iter_elements(io.BytesIO(endless), "Trade"))
