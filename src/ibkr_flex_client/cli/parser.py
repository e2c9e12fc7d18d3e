"""The command line's grammar: every command, option and help text. Imports no command, so
``--help`` stays fast (the network client loads only for ``fetch`` and ``demo``)."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

from .._version import __version__
from .exits import EXIT_CODES_HELP

__all__ = ["STDIN", "TOKEN_VARIABLE", "build_parser"]

TOKEN_VARIABLE = "IBKR_FLEX_TOKEN"  # noqa: S105 - the variable's name, not a token
STDIN = "-"  # a FILE argument of "-": standard input

# build_parser()'s command(): name, summary, description -> the command's parser.
_Command = Callable[[str, str, str], argparse.ArgumentParser]

# Reading a file more than once needs a file: what cannot be read again is copied first.
_COPIED = (
    "Standard input and gzip-compressed files are first copied (as XML) to a temporary file "
    "readable by you only, removed afterwards."
)
_INPUT_HELP = (
    "a Flex statement in XML, or gzip-compressed XML (known by its first bytes, whatever "
    "the name); - for standard input"
)


def _date(text: str) -> str:
    if not re.fullmatch(r"\d{8}", text):
        raise argparse.ArgumentTypeError(f"expected yyyyMMdd, got {text!r}")
    return text


def _seconds(text: str) -> float:
    """A duration for the simulator: 0 or more, finite."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more seconds, got {text!r}")
    return value


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Options taken before the command and after it (``ibkr-flex -v fetch`` and ``ibkr-flex
    fetch -v``). After it, the default is SUPPRESS: a command's parser would otherwise set
    its own default over the value given before the command."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="log every step, list the files written, and show tracebacks",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``ibkr-flex``."""
    parser = argparse.ArgumentParser(
        prog="ibkr-flex",
        description="Download Interactive Brokers Flex Query reports, and look into them.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(parser, top=True)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=summary,
            description=description,
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _global_options(sub, top=False)
        return sub

    _fetch(command)
    _readers(command)
    _demo(command)
    return parser


def _fetch(command: _Command) -> None:
    fetch = command(
        "fetch",
        "download statements from IB's Flex Web Service",
        f"Fetch one or more Flex Queries' statements. The token comes from {TOKEN_VARIABLE} "
        "or --token-file and is never printed. Several queries run at once, paced to stay "
        "within IB's limits for the token. Files are written atomically, readable by their "
        "owner only; without -o the statement goes to stdout. On a terminal, stderr shows "
        "progress and then each file written.",
    )
    fetch.add_argument(
        "-q", "--query", action="append", required=True, metavar="QUERY", help="a Flex Query id"
    )
    fetch.add_argument(
        "-o",
        "--output",
        metavar="FILE_OR_DIR",
        help="one query: a file (missing directories are created); several queries, an "
        "existing directory or a name ending in /: a directory (created if missing), "
        "one QUERY.xml each. Directories created are private to you (mode 0700)",
    )
    fetch.add_argument("--from-date", type=_date, metavar="yyyyMMdd", help="override the dates")
    fetch.add_argument("--to-date", type=_date, metavar="yyyyMMdd", help="with --from-date")
    fetch.add_argument("--period", type=int, metavar="DAYS", help="the last DAYS days (1-365)")
    fetch.add_argument(
        "--token-file", metavar="FILE", help=f"read the token here, not {TOKEN_VARIABLE}"
    )
    fetch.add_argument("--timeout", type=float, default=30.0, metavar="S", help="default: 30")
    fetch.add_argument("--max-retries", type=int, default=10, metavar="N", help="default: 10")
    fetch.add_argument("--backoff-base", type=float, default=10.0, metavar="S", help="default: 10")
    fetch.add_argument("--base-url", metavar="URL", help="a proxy, or a simulator in tests")


def _readers(command: _Command) -> None:
    inspect = command(
        "inspect",
        "show what a statement file holds",
        "Print the report's type, query name, accounts and periods, then every tag with its "
        "row count and attribute names. Reads the file as a stream.",
    )
    inspect.add_argument("file", metavar="FILE", help=_INPUT_HELP)
    inspect.add_argument("--json", action="store_true", help="machine-readable output")

    export = command(
        "export",
        "write one tag's rows as CSV or JSON lines",
        "Write the rows of one tag, with every attribute seen as a column, streaming. The "
        f"file is read twice. {_COPIED}",
    )
    export.add_argument("file", metavar="FILE", help=_INPUT_HELP)
    export.add_argument("--tag", required=True, help="the row tag, e.g. Trade")
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    export.add_argument("-o", "--output", metavar="FILE", help="default: stdout")

    models = command(
        "models",
        "print a model class for one tag's rows",
        "Print a dataclass (or pydantic model) for one tag, each field typed from the values "
        f"in the file, ready for statement.rows(). {_COPIED}",
    )
    models.add_argument("file", metavar="FILE", help=_INPUT_HELP)
    models.add_argument("--tag", required=True, help="the row tag, e.g. Trade")
    models.add_argument("--style", choices=("dataclass", "pydantic"), default="dataclass")


def _demo(command: _Command) -> None:
    demo = command(
        "demo",
        "fetch a report from a built-in simulator of IB's service (no account needed)",
        "Start a simulated IB Flex Web Service on loopback, fetch a statement from it "
        "through the real client, and summarize the statement.",
    )
    demo.add_argument(
        "--generation-seconds",
        type=_seconds,
        default=2.5,
        metavar="S",
        help="how long the simulated statement takes to generate (default: 2.5)",
    )
    demo.add_argument(
        "--latency",
        type=_seconds,
        default=0.15,
        metavar="S",
        help="simulated network latency per answer, in seconds (default: 0.15)",
    )
    demo.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="also save the statement there (atomically, as fetch -o does), to try "
        "inspect, export and models on it",
    )
