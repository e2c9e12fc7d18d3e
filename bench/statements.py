"""Big statements: parse speed, streaming speed and memory, typed rows per second.

Generates a 200,000-trade statement (about 50 MB) and a 400,000-trade one, then prints, each
against a baseline measured in the same run:

* ``FlexStatement`` full parse versus ``xml.etree.ElementTree.fromstring`` on the same bytes
  (target: at most 1.1x);
* ``iter_elements`` versus a bare ``iterparse`` loop over the same file (target: 1.2x);
* the streaming reader's peak memory, in a fresh process each, for the file and for the
  double file (target: under 60 MB, and flat when the file doubles), against the same
  process before reading;
* typed rows per second, from a parsed statement and streamed from the file.

    python bench/statements.py        # about a minute
"""

from __future__ import annotations

import dataclasses
import gc
import json
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from ibkr_flex_client import FlexStatement, iter_elements, iter_rows

ROWS = 200_000
REPEAT = 3


def trade(i: int) -> str:
    return (
        f'<Trade accountId="U1234567" currency="USD" assetCategory="STK" symbol="S{i % 500}" '
        f'conid="{265598 + i % 500}" tradeID="{600000000 + i}" tradeDate="20260302" '
        f'dateTime="20260302;1031{i % 60:02d}" quantity="{(i % 90) + 10}" '
        f'tradePrice="{227 + (i % 100) / 100:.2f}" ibCommission="-1.02" buySell="BUY" '
        'notes="" />\n'
    )


def write_statement(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write(
            '<FlexQueryResponse queryName="Bench" type="AF">\n<FlexStatements count="1">\n'
            '<FlexStatement accountId="U1234567" fromDate="20260302" toDate="20260306" '
            'period="" whenGenerated="20260309;081502">\n<Trades>\n'
        )
        for start in range(0, rows, 10_000):
            out.write("".join(trade(i) for i in range(start, min(start + 10_000, rows))))
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


def best(run: Callable[[], object]) -> float:
    """The fastest of REPEAT runs, in seconds (the least disturbed by other load)."""
    times = []
    for _ in range(REPEAT):
        gc.collect()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


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


def memory(path: Path, mode: str) -> dict[str, float]:
    result = subprocess.run(  # noqa: S603 - our interpreter, our script
        [sys.executable, "-c", MEMORY_PROBE, str(path), mode],
        capture_output=True,
        text=True,
        check=True,
    )
    measured: dict[str, float] = json.loads(result.stdout)
    return measured


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        single, double = Path(folder) / "200k.xml", Path(folder) / "400k.xml"
        write_statement(single, ROWS)
        write_statement(double, 2 * ROWS)
        data = single.read_bytes()
        size = len(data) / 1e6
        print(f"Statement: {ROWS:,} trades, {size:.1f} MB (and {2 * ROWS:,} for the memory test)")
        print()

        baseline = best(lambda: ET.fromstring(data))
        ours = best(lambda: FlexStatement(data))
        print("| measure | ours | baseline | ratio | target |")
        print("|---|---:|---:|---:|---:|")
        print(
            f"| full parse | {ours:.2f} s | {baseline:.2f} s (ET.fromstring) "
            f"| {ours / baseline:.2f}x | 1.1x |"
        )

        baseline = best(lambda: bare_iterparse(single))
        ours = best(lambda: streamed(single))
        print(
            f"| streaming | {ours:.2f} s | {baseline:.2f} s (bare iterparse loop) "
            f"| {ours / baseline:.2f}x | 1.2x |"
        )

        idle = memory(single, "idle")
        one, two = memory(single, "stream"), memory(double, "stream")
        assert one["rows"] == ROWS
        assert two["rows"] == 2 * ROWS
        for label, probe in ((f"{size:.0f} MB", one), (f"{2 * size:.0f} MB", two)):
            print(
                f"| streaming peak memory, {label} file | {probe['peak']:.1f} MB "
                f"(+{probe['peak'] - probe['before']:.1f} MB while reading) "
                f"| {idle['peak']:.1f} MB (same process, not reading) "
                f"| {probe['peak'] / idle['peak']:.2f}x | under 60 MB |"
            )
        statement = FlexStatement(data)
        seconds = best(lambda: sum(1 for _ in statement.rows("Trade", Trade)))
        elements = best(lambda: sum(1 for _ in statement.iter("Trade")))
        print(
            f"| typed rows from a parsed statement | {ROWS / seconds:,.0f} rows/s "
            f"| {ROWS / elements:,.0f} elements/s (iter) | {seconds / elements:.1f}x | - |"
        )
        seconds = best(lambda: sum(1 for _ in iter_rows(single, "Trade", Trade)))
        print(
            f"| typed rows streamed from the file | {ROWS / seconds:,.0f} rows/s "
            f"| {ROWS / best(lambda: streamed(single)):,.0f} elements/s (iter_elements) "
            f"| - | - |"
        )


if __name__ == "__main__":
    main()
