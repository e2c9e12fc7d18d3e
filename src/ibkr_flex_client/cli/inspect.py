"""``ibkr-flex inspect``: what a statement file holds, as aligned tables or JSON."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from typing import TextIO

from ..inspection import Summary, summarize
from .exits import EXIT_OK
from .inputs import explained, open_input
from .output import Sink

__all__ = ["main", "render"]


def main(args: argparse.Namespace, out: TextIO) -> int:
    with open_input(args.file) as source, explained(source):
        summary = summarize(source.stream)
    sink = Sink(out)
    sink.write(render(summary, as_json=args.json))
    sink.flush()
    return EXIT_OK


def render(summary: Summary, *, as_json: bool) -> str:
    """The summary as the command prints it."""
    if as_json:
        return json.dumps(summary.as_json(), indent=2, ensure_ascii=False) + "\n"
    lines = [f"Report {summary.query_name!r} (type {summary.type})", ""]
    table = [("ACCOUNT", "FROM", "TO", "PERIOD", "GENERATED")]
    table += [
        (a.account_id, a.from_date, a.to_date, a.period or "-", a.when_generated)
        for a in summary.accounts
    ]
    lines += _aligned(table)
    lines.append("")
    rows = [("TAG", "ROWS", "ATTRIBUTES")]
    rows += [
        ("  " * (t.depth - 3) + t.tag, str(t.rows), ", ".join(t.attributes) or "-")
        for t in summary.tags.values()
    ]
    lines += _aligned(rows, right={1})
    return "".join(line + "\n" for line in lines)


def _aligned(rows: Sequence[Sequence[str]], right: set[int] | None = None) -> Iterator[str]:
    """Columns padded to their widest cell; the last column is left as it is."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if right and i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row[:-1])
        ]
        yield "  ".join([*cells, row[-1]]).rstrip()
