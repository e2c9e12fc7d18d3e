"""Hostile shapes on the streaming readers: one huge attribute, deep nesting, many attributes.

Prints, each against a baseline measured in the same run:

* streaming a statement whose one row holds a 100 MB attribute value, with ``iter_elements``
  and with the push ``StatementCheck`` fed 64 KiB pieces, against ``FlexStatement.from_file``
  on the same file (target: within 2x; expat 2.5, bundled with Python 3.10-3.12, re-scans an
  unfinished token on every feed, so fed naively this is quadratic). The two sides alternate
  (ABAB, three pairs) and the median of the paired ratios is reported;
* the peak memory of streaming 1,000,000 nested elements and 2,000,000 attributes on one
  element (both refused early now), each in a fresh process, against streaming a small
  statement.

    python bench/xml_stream.py        # about half a minute
"""

from __future__ import annotations

import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ibkr_flex_client import FlexStatement, iter_elements
from ibkr_flex_client.stream import StatementCheck
from ibkr_flex_client.testing import build_statement

PAIRS = 3
BIG = 100 * 1000 * 1000
CHUNK = 64 * 1024
STATEMENT = build_statement().decode()
ROW = 'symbol="MSFT"'  # the value made huge


def write_big_attribute(path: Path) -> None:
    head, tail = STATEMENT.split(ROW, 1)
    with path.open("wb") as out:
        out.write(head.encode() + b'symbol="')
        block = b"x" * (1024 * 1024)
        for _ in range(BIG // len(block)):
            out.write(block)
        out.write(b"x" * (BIG % len(block)) + b'"' + tail.encode())


def write_nested(path: Path, levels: int) -> None:
    head, tail = STATEMENT.split("<Trades>", 1)
    path.write_bytes(f"{head}<Trades>{'<a>' * levels}{'</a>' * levels}{tail}".encode())


def write_attributes(path: Path, count: int) -> None:
    head, tail = STATEMENT.split("<Trades>", 1)
    names = " ".join(f'a{i}=""' for i in range(count))
    path.write_bytes(f"{head}<Trades><Extra {names}/>{tail}".encode())


def timed(run: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def streamed(path: Path) -> int:
    return sum(1 for _ in iter_elements(path, "Trade"))


def pushed(path: Path) -> None:
    check = StatementCheck()
    with path.open("rb") as file:
        while piece := file.read(CHUNK):
            check.feed(piece)
    check.close()


def paired(
    ours: Callable[[], object], baseline: Callable[[], object]
) -> tuple[float, float, float]:
    """(median ratio, median ours, median baseline) over PAIRS alternating runs."""
    ratios, mine, theirs = [], [], []
    for _ in range(PAIRS):
        a = timed(ours)
        b = timed(baseline)
        mine.append(a)
        theirs.append(b)
        ratios.append(a / b)
    return statistics.median(ratios), statistics.median(mine), statistics.median(theirs)


MEMORY_PROBE = """
import json, sys
from pathlib import Path
from ibkr_flex_client import StatementError
from ibkr_flex_client.stream import check_statement_file
def rss():  # this process's peak resident set size so far, in MB (Linux's VmHWM)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("needs Linux's /proc/self/status")
before = rss()
try:
    check_statement_file(sys.argv[1])
    outcome = "accepted"
except StatementError as exc:
    outcome = str(exc)
print(json.dumps({"before": before, "peak": rss(), "outcome": outcome}))
"""


def memory(path: Path) -> dict[str, object]:
    result = subprocess.run(  # noqa: S603 - our interpreter, our script
        [sys.executable, "-c", MEMORY_PROBE, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    measured: dict[str, object] = json.loads(result.stdout)
    return measured


def main() -> None:
    print(f"Python {sys.version.split()[0]}, {__import__('pyexpat').EXPAT_VERSION}")
    print()
    with tempfile.TemporaryDirectory() as folder:
        big = Path(folder) / "big-attribute.xml"
        write_big_attribute(big)
        assert [len(e.get("symbol", "")) for e in iter_elements(big, "Trade")][1] == BIG
        print(f"One {BIG / 1e6:.0f} MB attribute value in a statement of {big.stat().st_size:,} B")
        print()
        print("| measure | ours | baseline | ratio (median of pairs) | target |")
        print("|---|---:|---:|---:|---:|")

        def whole() -> object:
            return FlexStatement.from_file(big)

        for label, ours in (
            ("iter_elements", lambda: streamed(big)),
            ("StatementCheck, 64 KiB pieces", lambda: pushed(big)),
        ):
            ratio, mine, theirs = paired(ours, whole)
            print(
                f"| {label} | {mine:.2f} s | {theirs:.2f} s (FlexStatement.from_file) "
                f"| {ratio:.2f}x | 2x |"
            )

        small = Path(folder) / "small.xml"
        small.write_bytes(STATEMENT.encode())
        nested = Path(folder) / "nested.xml"
        write_nested(nested, 1_000_000)
        wide = Path(folder) / "wide.xml"
        write_attributes(wide, 2_000_000)
        baseline = memory(small)
        assert baseline["outcome"] == "accepted"
        print()
        print("| streamed file | peak memory | while reading | outcome |")
        print("|---|---:|---:|---|")
        for label, path in (
            ("small statement (baseline)", small),
            ("1,000,000 nested elements", nested),
            ("2,000,000 attributes on one element", wide),
        ):
            probe = baseline if path is small else memory(path)
            peak, before = float(str(probe["peak"])), float(str(probe["before"]))
            size = path.stat().st_size / 1e6
            print(
                f"| {label}, {size:.1f} MB | {peak:.1f} MB | +{peak - before:.1f} MB "
                f"| {probe['outcome']} |"
            )


if __name__ == "__main__":
    main()
