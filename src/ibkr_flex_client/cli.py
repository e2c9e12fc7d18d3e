"""``ibkr-flex``: the command line (also ``python -m ibkr_flex_client``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TextIO

from ._version import __version__
from .client import FlexClient
from .dates import parse_ib_date
from .errors import FlexError
from .events import EventKind, FetchEvent
from .statement import FlexStatement
from .testing.content import build_statement
from .testing.simulator import FlexSimulator

__all__ = ["main"]

EXIT_OK = 0
EXIT_USAGE = 2  # argparse's own code for bad arguments
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell convention

_SPINNER = "|/-\\"


class Progress:
    """Shows a fetch's events: one live status line on a terminal, plain lines elsewhere."""

    def __init__(self, stream: TextIO, *, live: bool | None = None) -> None:
        self._stream = stream
        self._live = stream.isatty() if live is None else live
        self._status: dict[str, str] = {}
        self._started = time.monotonic()
        self._ticks = 0
        self._width = 0

    def __call__(self, event: FetchEvent) -> None:
        if self._live:
            self._status[event.query_id] = _short(event)
            self.render()
        else:
            print(f"  {event.describe()}", file=self._stream, flush=True)

    def render(self) -> None:
        if not self._live or not self._status:
            return
        self._ticks += 1
        elapsed = time.monotonic() - self._started
        spinner = _SPINNER[self._ticks % len(_SPINNER)]
        line = f"{spinner} {elapsed:5.1f}s  " + "  |  ".join(self._status.values())
        padded = line.ljust(self._width)
        self._width = len(line)
        self._stream.write(f"\r{padded}")
        self._stream.flush()

    def finish(self) -> None:
        if self._live and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()

    @contextlib.asynccontextmanager
    async def ticking(self, interval: float = 0.1) -> AsyncIterator[Progress]:
        """Refresh the live line while waiting, so elapsed time keeps moving."""

        async def tick() -> None:
            while True:
                await asyncio.sleep(interval)
                self.render()

        task = asyncio.create_task(tick()) if self._live else None
        try:
            yield self
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.finish()


def _short(event: FetchEvent) -> str:
    if event.kind is EventKind.WAIT:
        after = f" (after IB {event.code})" if event.code else ""
        return f"{event.query_id}: {event.step} #{event.attempt + 1} in {event.wait:.1f}s{after}"
    if event.kind is EventKind.DONE:
        return f"{event.query_id}: done ({event.size} bytes)"
    return f"{event.query_id}: {event.step} #{event.attempt} sent"


def _day(text: str | None) -> str:
    try:
        return parse_ib_date(text or "").isoformat()
    except ValueError:
        return text or "?"


def summarize(statement: FlexStatement) -> Iterator[str]:
    """Lines describing a statement: type, query, accounts and periods, sections and rows."""
    root = next(statement.iter("FlexQueryResponse"))
    yield f"Report {root.get('queryName', '?')!r} (type {root.get('type', '?')})"
    sections: dict[str, int] = {}
    yield "Accounts:"
    for one in statement.iter("FlexStatement"):
        yield (
            f"  {one.get('accountId', '?'):<12} {_day(one.get('fromDate'))} to "
            f"{_day(one.get('toDate'))}"
        )
        for section in one:
            sections[section.tag] = sections.get(section.tag, 0) + len(section)
    width = max((len(name) for name in sections), default=7)
    yield f"{'Section':<{width}}  rows"
    for name, rows in sections.items():
        yield f"{name:<{width}}  {rows:>4}"


async def _demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    accounts = ["U1234567", "U7654321"]
    document = build_statement(accounts=accounts, query_name="Demo activity")
    simulator = FlexSimulator(
        generation_seconds=args.generation_seconds, latency=args.latency, statement=document
    )
    async with simulator:
        print(
            f"Simulated IB Flex Web Service on {simulator.base_url} "
            "(no IB account, no network needed)",
            file=err,
        )
        client = FlexClient(token="demo-token", query_id="123456", base_url=simulator.base_url)  # noqa: S106
        progress = Progress(err)
        print("Fetching query 123456 ...", file=err, flush=True)
        async with progress.ticking():
            statement = await client.fetch(on_event=progress)
        requests = len(simulator.requests)
        print(
            f"Statement received: {len(statement.xml):,} bytes after {requests} requests "
            f"({', '.join(simulator.answers())})",
            file=err,
        )
    for line in summarize(statement):
        print(line, file=out)
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ibkr-flex",
        description="Download Interactive Brokers Flex Query reports.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = commands.add_parser(
        "demo",
        help="fetch a report from a built-in simulator of IB's service (no account needed)",
        description="Start a simulated IB Flex Web Service on loopback, fetch a statement "
        "from it through the real client, and summarize the statement.",
    )
    demo.add_argument(
        "--generation-seconds",
        type=float,
        default=2.5,
        metavar="S",
        help="how long the simulated statement takes to generate (default: 2.5)",
    )
    demo.add_argument(
        "--latency",
        type=float,
        default=0.15,
        metavar="S",
        help="simulated network latency per answer, in seconds (default: 0.15)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            return asyncio.run(_demo(args, sys.stdout, sys.stderr))
    except FlexError as error:
        print(f"ibkr-flex: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ibkr-flex: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_USAGE
