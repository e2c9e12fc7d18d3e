"""Big statements: parse speed, streaming speed and memory, typed rows.

Generates a 200,000-trade statement (about 50 MB), the same with slashed dates, and a
400,000-trade one, then prints, each against a baseline measured in the same run:

* ``FlexStatement`` full parse versus ``xml.etree.ElementTree.fromstring`` on the same bytes
  (target: at most 1.1x);
* the same with ``MM/dd/yyyy`` dates, every one of them ambiguous (days 2 to 6 of March), so
  the day order is looked for in the whole document (target: at most 1.2x);
* ``iter_elements`` versus a bare ``iterparse`` loop over the same file (target: 1.2x);
* the streaming reader's peak memory, in a fresh process each, for the file and for the
  double file (target: under 60 MB, and flat when the file doubles), against the same
  process before reading;
* typed rows (``statement.rows``) into a dataclass and into a pydantic model, each versus a
  hand-written loop that fills the same model from ``statement.iter`` with the same
  conversions (dates cached as the reader caches them) (target: at most 1.4x);
* typed rows streamed from the file (``iter_rows``) versus ``iter_elements``;
* the same statement in CSV form (header and trailer records): ``FlexStatement`` full parse
  and ``iter_elements`` streaming, each versus ``csv.DictReader`` reading the same file
  (target: at most 1.5x), and the streaming reader's peak memory for the CSV file and the
  double one (flat).

Timed measures alternate the baseline and ours (ABAB, ROUNDS pairs) and report the medians,
and the median of the paired ratios: load that comes and goes hits both sides alike.

    python bench/statements.py            # a few minutes
    python bench/statements.py 50000      # fewer trades, quicker
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import gc
import importlib.util
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from ibkr_flex_client import (
    FlexStatement,
    iter_elements,
    iter_rows,
    parse_ib_date,
    parse_ib_datetime,
)
from ibkr_flex_client.testing.content import to_csv

ROWS = 200_000
ROUNDS = 5
COMPACT = ("20260302", "20260306")  # yyyyMMdd: from and to
SLASHED = ("03/02/2026", "03/06/2026")  # MM/dd/yyyy, and every date of the file reads both ways


def trade(i: int, day: str) -> str:
    return (
        f'<Trade accountId="U1234567" currency="USD" assetCategory="STK" symbol="S{i % 500}" '
        f'conid="{265598 + i % 500}" tradeID="{600000000 + i}" tradeDate="{day}" '
        f'dateTime="{day};1031{i % 60:02d}" quantity="{(i % 90) + 10}" '
        f'tradePrice="{227 + (i % 100) / 100:.2f}" ibCommission="-1.02" buySell="BUY" '
        'notes="" />\n'
    )


def write_statement(path: Path, rows: int, dates: tuple[str, str] = COMPACT) -> None:
    first, last = dates
    with path.open("w", encoding="utf-8") as out:
        out.write(
            '<FlexQueryResponse queryName="Bench" type="AF">\n<FlexStatements count="1">\n'
            f'<FlexStatement accountId="U1234567" fromDate="{first}" toDate="{last}" '
            f'period="" whenGenerated="{last};081502">\n<Trades>\n'
        )
        for start in range(0, rows, 10_000):
            out.write("".join(trade(i, first) for i in range(start, min(start + 10_000, rows))))
        out.write("</Trades>\n</FlexStatement>\n</FlexStatements>\n</FlexQueryResponse>\n")


@dataclasses.dataclass(frozen=True, slots=True)
class Trade:
    symbol: str
    conid: int
    trade_date: date
    date_time: datetime
    quantity: Decimal
    trade_price: Decimal
    ib_commission: Decimal
    notes: str | None


def pydantic_trade() -> type[Any] | None:
    """The same model in pydantic, if pydantic is installed."""
    if importlib.util.find_spec("pydantic") is None:
        return None
    import pydantic  # noqa: PLC0415 - optional

    class PydanticTrade(pydantic.BaseModel):
        symbol: str
        conid: int
        trade_date: date
        date_time: datetime
        quantity: Decimal
        trade_price: Decimal
        ib_commission: Decimal
        notes: str | None

    return PydanticTrade


def by_hand(statement: FlexStatement, model: Callable[..., object]) -> int:
    """What a user would write without ``rows``: the same conversions, dates cached."""
    day = functools.lru_cache(maxsize=4096)(parse_ib_date)
    moment = functools.lru_cache(maxsize=4096)(parse_ib_datetime)
    count = 0
    for element in statement.iter("Trade"):
        get = element.attrib.get
        model(
            symbol=get("symbol"),
            conid=int(get("conid", "")),
            trade_date=day(get("tradeDate", "")),
            date_time=moment(get("dateTime", "")),
            quantity=Decimal(get("quantity", "")),
            trade_price=Decimal(get("tradePrice", "")),
            ib_commission=Decimal(get("ibCommission", "")),
            notes=get("notes") or None,
        )
        count += 1
    return count


@dataclasses.dataclass(frozen=True, slots=True)
class Measured:
    ours: float  # median seconds
    baseline: float  # median seconds
    ratio: float  # median of the paired ratios ours / baseline


def timed(run: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def paired(
    ours: Callable[[], object], baseline: Callable[[], object], rounds: int = ROUNDS
) -> Measured:
    """Baseline, then ours, ``rounds`` times (ABAB): the medians, and the median of the
    paired ratios, which a disturbed pair cannot swing."""
    mine, theirs, ratios = [], [], []
    for _ in range(rounds):
        theirs.append(timed(baseline))
        mine.append(timed(ours))
        ratios.append(mine[-1] / theirs[-1])
    return Measured(statistics.median(mine), statistics.median(theirs), statistics.median(ratios))


def typed_rows(statement: FlexStatement, model: type[Any], rows: int) -> Measured:
    """``statement.rows`` against :func:`by_hand`, into the same model."""
    assert sum(1 for _ in statement.rows("Trade", model)) == rows
    return paired(
        lambda: sum(1 for _ in statement.rows("Trade", model)), lambda: by_hand(statement, model)
    )


def line(measure: str, measured: Measured, baseline: str, target: str) -> str:
    return (
        f"| {measure} | {measured.ours:.2f} s | {measured.baseline:.2f} s ({baseline}) "
        f"| {measured.ratio:.2f}x | {target} |"
    )


def bare_iterparse(path: Path) -> int:
    count = 0
    for _, element in ET.iterparse(path):
        if element.tag == "Trade":
            count += 1
            element.clear()
    return count


def streamed(path: Path) -> int:
    return sum(1 for _ in iter_elements(path, "Trade"))


MEMORY_PROBE = """
import json, sys
from pathlib import Path
from ibkr_flex_client import iter_elements
def rss():  # this process's peak resident set size so far, in MB (Linux's VmHWM)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("needs Linux's /proc/self/status")
before = rss()
count = 0
if sys.argv[2] == "stream":
    count = sum(1 for _ in iter_elements(sys.argv[1], "Trade"))
print(json.dumps({"before": before, "peak": rss(), "rows": count}))
"""


def dict_reader(text: str) -> int:
    """The baseline for CSV: every record as a dict, as csv.DictReader gives it."""
    return sum(1 for _ in csv.DictReader(io.StringIO(text)))


def dict_reader_file(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as file:
        return sum(1 for _ in csv.DictReader(file))


def memory(path: Path, mode: str) -> dict[str, float]:
    result = subprocess.run(  # noqa: S603 - our interpreter, our script
        [sys.executable, "-c", MEMORY_PROBE, str(path), mode],
        capture_output=True,
        text=True,
        check=True,
    )
    measured: dict[str, float] = json.loads(result.stdout)
    return measured


def main(rows: int = ROWS) -> None:
    with tempfile.TemporaryDirectory() as folder:
        single, double = Path(folder) / "single.xml", Path(folder) / "double.xml"
        slashed = Path(folder) / "slashed.xml"
        write_statement(single, rows)
        write_statement(double, 2 * rows)
        write_statement(slashed, rows, SLASHED)
        data, slashed_data = single.read_bytes(), slashed.read_bytes()
        size = len(data) / 1e6
        print(f"Statement: {rows:,} trades, {size:.1f} MB (and {2 * rows:,} for the memory test)")
        print(f"Each timed line: median of {ROUNDS} alternating pairs (baseline, then ours)")
        print()

        print("| measure | ours | baseline | ratio | target |")
        print("|---|---:|---:|---:|---:|")
        parse = paired(lambda: FlexStatement(data), lambda: ET.fromstring(data))
        print(line("full parse", parse, "ET.fromstring", "1.1x"))
        assert FlexStatement(slashed_data).day_first is None  # nothing decides: all scanned
        parse = paired(
            lambda: FlexStatement(slashed_data),
            lambda: ET.fromstring(slashed_data),
        )
        print(line("full parse, MM/dd/yyyy dates", parse, "ET.fromstring", "1.2x"))

        stream = paired(lambda: streamed(single), lambda: bare_iterparse(single))
        print(line("streaming", stream, "bare iterparse loop", "1.2x"))

        memory_lines("streaming", single, double, rows, "under 60 MB")

        statement = FlexStatement(data)
        models: list[tuple[str, type[Any]]] = [("dataclass", Trade)]
        if (pydantic_model := pydantic_trade()) is not None:
            models.append(("pydantic", pydantic_model))
        for label, model in models:
            print(
                line(
                    f"typed rows, {label}",
                    typed_rows(statement, model, rows),
                    "hand-written loop",
                    "1.4x",
                )
            )
        typed = paired(
            lambda: sum(1 for _ in iter_rows(single, "Trade", Trade)), lambda: streamed(single)
        )
        print(
            f"| typed rows streamed, dataclass | {rows / typed.ours:,.0f} rows/s "
            f"| {rows / typed.baseline:,.0f} elements/s (iter_elements) "
            f"| {typed.ratio:.2f}x | - |"
        )
        csv_tables(Path(folder), data, double.read_bytes(), rows)


def csv_tables(folder: Path, data: bytes, double: bytes, rows: int) -> None:
    """The same statements in CSV form against csv.DictReader over the same files."""
    single_csv, double_csv = folder / "single.csv", folder / "double.csv"
    single_csv.write_bytes(to_csv(data))
    double_csv.write_bytes(to_csv(double))
    csv_data = single_csv.read_bytes()
    text = csv_data.decode()
    assert sum(1 for _ in FlexStatement(csv_data).iter("Trade")) == rows
    parse = paired(lambda: FlexStatement(csv_data), lambda: dict_reader(text))
    print(line("CSV: full parse", parse, "csv.DictReader", "1.5x"))
    stream = paired(lambda: streamed(single_csv), lambda: dict_reader_file(single_csv))
    print(line("CSV: streaming", stream, "csv.DictReader over the file", "1.5x"))
    memory_lines("CSV: streaming", single_csv, double_csv, rows, "flat")


def memory_lines(what: str, single: Path, double: Path, rows: int, target: str) -> None:
    """Peak memory streaming ``single`` and ``double`` (twice the rows), each in a fresh
    process, against the same process not reading."""
    size = single.stat().st_size / 1e6
    idle = memory(single, "idle")
    one, two = memory(single, "stream"), memory(double, "stream")
    assert one["rows"] == rows
    assert two["rows"] == 2 * rows
    for label, probe in ((f"{size:.0f} MB", one), (f"{2 * size:.0f} MB", two)):
        print(
            f"| {what} peak memory, {label} file | {probe['peak']:.1f} MB "
            f"(+{probe['peak'] - probe['before']:.1f} MB while reading) "
            f"| {idle['peak']:.1f} MB (same process, not reading) "
            f"| {probe['peak'] / idle['peak']:.2f}x | {target} |"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else ROWS)
