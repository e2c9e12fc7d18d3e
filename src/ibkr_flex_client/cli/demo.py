"""``ibkr-flex demo``: a fetch from the built-in simulator of IB's service, over loopback.

Imported only when it runs: it loads the network client and the simulator (aiohttp).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterator
from typing import TextIO

from ..client import FlexClient
from ..dates import parse_ib_date
from ..statement import FlexStatement
from ..testing.content import build_statement
from ..testing.simulator import FlexSimulator
from .exits import EXIT_OK
from .output import Sink
from .progress import Progress

__all__ = ["main", "summarize"]


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


async def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
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
            if args.output:
                saved = await client.download(args.output, on_event=progress)
                statement = FlexStatement.from_file(saved)
            else:
                statement = await client.fetch(on_event=progress)
        requests = len(simulator.requests)
        print(
            f"Statement received: {len(statement.xml):,} bytes after {requests} requests "
            f"({', '.join(simulator.answers())})",
            file=err,
        )
        if args.output:
            print(f"ibkr-flex: wrote {args.output} ({len(statement.xml):,} bytes)", file=err)
    sink = Sink(out)
    for line in summarize(statement):
        sink.write(line + "\n")
    sink.flush()
    return EXIT_OK


def main(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """:func:`run` in its own event loop."""
    return asyncio.run(run(args, out, err))
