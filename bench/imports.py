"""What importing the package costs: start-up time and memory over a bare interpreter.

Each case runs in a fresh interpreter, paired with a baseline run of ``python -c pass``; the
pairs alternate their order (ABAB, then BABA) so drift in the machine's load falls on both
sides. Reported: the median of the paired differences (case minus its baseline) in wall time
and in peak resident memory, with the interquartile range of the time differences.

    python bench/imports.py              # about 15 seconds
    python bench/imports.py --rounds 60  # steadier figures

Unix only (peak memory comes from ``os.wait4``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CASES = (
    "import ibkr_flex_client",
    "from ibkr_flex_client import FlexStatement",
    "from ibkr_flex_client import FlexClient",
)
BASELINE = "pass"


def run(code: str) -> tuple[float, int]:
    """Wall seconds and peak resident bytes of ``python -c code`` in a fresh process."""
    started = time.perf_counter()
    process = subprocess.Popen(  # noqa: S603 - our interpreter, our code
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if process.returncode != 0:
        raise SystemExit(f"{code!r} failed with exit status {process.returncode}")
    # ru_maxrss is in kilobytes on Linux, in bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return elapsed, usage.ru_maxrss * scale


def measure(code: str, rounds: int) -> tuple[list[float], list[int]]:
    """Paired differences (case minus baseline) over ``rounds`` pairs, alternating order."""
    times: list[float] = []
    memory: list[int] = []
    for i in range(rounds):
        if i % 2 == 0:
            base, case = run(BASELINE), run(code)
        else:
            case, base = run(code), run(BASELINE)
        times.append(case[0] - base[0])
        memory.append(case[1] - base[1])
    return times, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=30, help="pairs per case (default 30)")
    rounds = parser.parse_args().rounds
    for code in (BASELINE, *CASES):  # warm the bytecode caches and the file system
        run(code)
    base_time = statistics.median(run(BASELINE)[0] for _ in range(5))
    base_rss = statistics.median(run(BASELINE)[1] for _ in range(5))
    print(f"Python {sys.version.split()[0]}, {rounds} ABAB pairs per case")
    print(f"baseline `python -c pass`: {base_time * 1000:.1f} ms, {base_rss / 2**20:.1f} MB peak")
    print()
    print(f"{'case':<45} {'+time (median)':>15} {'IQR':>18} {'+peak RSS':>10}")
    for code in CASES:
        times, memory = measure(code, rounds)
        q1, _, q3 = statistics.quantiles(times, n=4)
        spread = f"{q1 * 1000:.1f}..{q3 * 1000:.1f} ms"
        print(
            f"{code:<45} {statistics.median(times) * 1000:>12.1f} ms {spread:>18}"
            f" {statistics.median(memory) / 2**20:>7.1f} MB"
        )


if __name__ == "__main__":
    main()
