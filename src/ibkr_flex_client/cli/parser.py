"""The command line's grammar: every command, option and help text. Imports no command, so
``--help`` stays fast (the network client loads only for the commands that use it)."""

from __future__ import annotations

import argparse
import ipaddress
import math
import re
from collections.abc import Callable

from .._version import __version__
from .exits import EXIT_CODES_HELP

__all__ = ["STDIN", "TOKEN_VARIABLE", "build_parser"]

PACING_VARIABLE = "IBKR_FLEX_PACING"
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
    _sync(command)
    _readers(command)
    _demo(command)
    _unlock(command)
    _simulator(command)
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
    _client_options(fetch)


def _client_options(parser: argparse.ArgumentParser) -> None:
    """The options of every command that talks to IB (fetch, sync)."""
    parser.add_argument(
        "--token-file", metavar="FILE", help=f"read the token here, not {TOKEN_VARIABLE}"
    )
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S", help="default: 30")
    parser.add_argument("--max-retries", type=int, default=10, metavar="N", help="default: 10")
    parser.add_argument("--backoff-base", type=float, default=10.0, metavar="S", help="default: 10")
    parser.add_argument("--base-url", metavar="URL", help="a proxy, or a simulator in tests")
    _pacing_option(parser)
    parser.add_argument(
        "--lockout-seconds",
        type=float,
        default=3600.0,
        metavar="S",
        help="after IB's 1025 (locked out), send nothing with this token for S seconds, "
        "everywhere its budget is shared (default: 3600); `ibkr-flex unlock` ends it sooner",
    )


def _sync(command: _Command) -> None:
    sync = command(
        "sync",
        "keep queries' whole history in a local SQLite database",
        "Fetch each query's statements from --since to --until (yesterday by default) in "
        "windows of at most 365 days, and store them in the SQLite database --db: the raw "
        "statement of each window, and one table per row tag with IB's attributes as "
        "columns, without duplicates. Without --since a query continues from the day after "
        "its last stored window (its first sync takes the last 365 days). Each window is "
        "committed once fetched: an interrupted sync loses nothing and the next one resumes. "
        f"The token comes from {TOKEN_VARIABLE} or --token-file and is never printed.",
    )
    sync.add_argument(
        "-q", "--query", action="append", metavar="QUERY", help="a Flex Query id (repeatable)"
    )
    sync.add_argument("--db", required=True, metavar="PATH", help="the SQLite database")
    sync.add_argument("--since", metavar="DATE", help="the first date, yyyy-MM-dd or yyyyMMdd")
    sync.add_argument(
        "--until",
        metavar="DATE",
        help="the last date, yyyy-MM-dd or yyyyMMdd, before today (default: yesterday)",
    )
    sync.add_argument(
        "--status",
        action="store_true",
        help="show what each query in --db covers, and any gaps; fetch nothing",
    )
    _client_options(sync)


def _pacing_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pacing",
        metavar="WHERE",
        help=f"where the token's request budget is shared: machine (every process of yours "
        f"on this machine; the default), process (this one only), or a redis:// or "
        f"rediss:// URL (every worker using that Redis); default: ${PACING_VARIABLE}, "
        "else machine",
    )


def _unlock(command: _Command) -> None:
    unlock = command(
        "unlock",
        "clear the token's lock-out once the cause of IB's 1025 is fixed",
        "After IB answers 1025 (too many failed attempts), no request of the token goes, "
        "everywhere its budget is shared, for --lockout-seconds (an hour by default). Once "
        f"you have fixed the cause (usually the token), this ends it sooner. The token comes "
        f"from {TOKEN_VARIABLE} or --token-file; nothing is sent to IB.",
    )
    unlock.add_argument(
        "--token-file", metavar="FILE", help=f"read the token here, not {TOKEN_VARIABLE}"
    )
    _pacing_option(unlock)


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
        "write one tag's rows as CSV or JSON lines (or Parquet, from --db)",
        "Write the rows of one tag, with every attribute seen as a column, streaming, from a "
        f"statement FILE or a sync database (--db; one of the two). The file is read twice. "
        f"{_COPIED} The database is only read, never created or changed, even while a sync "
        "runs: its current rows (the latest version of each), with an @account column, "
        "values as IB wrote them.",
    )
    export.add_argument("file", metavar="FILE", nargs="?", help=_INPUT_HELP)
    export.add_argument(
        "--db", metavar="PATH", help="read the rows from a sync database instead of a FILE"
    )
    export.add_argument("--tag", required=True, help="the row tag, e.g. Trade")
    export.add_argument(
        "--format",
        choices=("csv", "jsonl", "parquet"),
        default="csv",
        help="default: csv. parquet (--db and -o only; every column a string) needs pyarrow: "
        "pip install 'ibkr-flex-client[parquet]'",
    )
    export.add_argument(
        "--all-versions",
        action="store_true",
        help="with --db: also the versions that IB's corrections replaced, with @version "
        "and @current (1 for the latest) columns",
    )
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
        "--format",
        choices=("xml", "csv", "text"),
        default="xml",
        help="the output format of the simulated Flex Query: xml (the default), csv (with "
        "header and trailer records), or text (the same with pipes)",
    )
    demo.add_argument(
        "--sync",
        action="store_true",
        help="sync a simulated account's history since 2023 into a SQLite database instead: "
        "a backfill, an overlapping sync (duplicates, a correction), an incremental one; on "
        "virtual time",
    )
    demo.add_argument(
        "--db",
        metavar="PATH",
        help="with --sync: the database to write and keep (default: a temporary one)",
    )
    demo.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="also save the statement there (atomically, as fetch -o does), to try "
        "inspect, export and models on it",
    )


# --- simulator -----------------------------------------------------------------------------

# RawDescriptionHelpFormatter keeps these lines as written.
_SIMULATOR_DESCRIPTION = """\
Serve a simulated IB Flex Web Service on loopback until stopped, so that several processes,
or programs in any language, are tested against one IB: its per-token limits (1 request a
second, 10 a minute) hold across every client, and a request over them is answered 1018.

The first line on stdout is the base URL, http://127.0.0.1:PORT (flushed at once, for a
parent process to read); a line on stderr says how to use it. Point clients at it:
  ibkr-flex fetch -q 1 --base-url URL      FlexClient(token=..., query_id=..., base_url=URL)
Any token and query id work, except those that fail on purpose (the tokens expired-token,
invalid-token, ...; the queries invalid-query, ...: ibkr_flex_client.testing.TOKEN_CODES
and QUERY_CODES). Every query serves the same generated sample statement (in XML, or in
the CSV layout --format names). After 20 terminal failures a token is locked out
(1025), as at IB.

GET URL/_simulator/requests answers every request so far as JSON, oldest first:
  {"requests": [{"step": "SendRequest", "token_fingerprint": "...", "query": "1",
                 "answer": "reference", "at": 12.3, "params": {...}, "user_agent": "..."},
                ...],
   "answers": {"reference": 2, "1019": 1, "statement": 2, "1018": 1}}
"answer" is "reference", "statement", an IB code ("1018") or "fault:<kind>"; "at" is in
seconds on the simulator's monotonic clock. Tokens appear only as fingerprints
(ibkr_flex_client.testing.fingerprint(token): sha256, 12 hex digits), never in full.

It listens on loopback only: it speaks plain HTTP, serves statements to any token, and
clients send their token in the query string. Ctrl-C, SIGTERM or SIGHUP stop it (answers in
flight are finished first) with exit status 0; a port already in use, or any other failure
to listen, exits 1."""


def _port(text: str) -> int:
    """A TCP port to listen on; 0 for any free one."""
    value = int(text) if text.isascii() and text.isdigit() else -1
    if not 0 <= value <= 65535:  # the highest TCP port
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return value


def _loopback(text: str) -> str:
    """An IPv4 loopback address to listen on; ``localhost`` is 127.0.0.1 (the URL printed
    must be the one clients use: a client follows IB's ``<Url>`` only to its own host)."""
    host = "127.0.0.1" if text.lower() == "localhost" else text
    try:
        loopback = ipaddress.IPv4Address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise argparse.ArgumentTypeError(
            f"expected an IPv4 loopback address such as 127.0.0.1, got {text!r}: the "
            "simulator speaks plain HTTP, and clients send their token in the query string"
        )
    return host


def _simulator(command: _Command) -> None:
    simulator = command(
        "simulator",
        "serve a simulated IB Flex Web Service until stopped, for tests in other processes",
        _SIMULATOR_DESCRIPTION,
    )
    simulator.add_argument(
        "--port",
        type=_port,
        default=0,
        metavar="N",
        help="the TCP port to listen on (default: 0, any free port; the URL names it)",
    )
    simulator.add_argument(
        "--host",
        type=_loopback,
        default="127.0.0.1",
        metavar="ADDRESS",
        help="an IPv4 loopback address to listen on (default: 127.0.0.1; localhost means "
        "127.0.0.1); nothing else, see above. This package's own client speaks plain http "
        "to 127.0.0.1, not to 127.0.0.2 and the like",
    )
    simulator.add_argument(
        "--generation-seconds",
        type=_seconds,
        default=1.0,
        metavar="S",
        help="seconds from SendRequest until the statement is ready; GetStatement is "
        "answered 1019 until then (default: 1)",
    )
    simulator.add_argument(
        "--penalty-seconds",
        type=_seconds,
        default=0.0,
        metavar="S",
        help="after a 1018, refuse every request of that token for S seconds, as IB may "
        "(default: 0)",
    )
    simulator.add_argument(
        "--reference-ttl",
        type=_seconds,
        default=600.0,
        metavar="S",
        help="seconds a reference code stays valid; 1017 after (default: 600)",
    )
    simulator.add_argument(
        "--format",
        choices=("xml", "csv", "csv-descriptors", "csv-plain", "text"),
        default="xml",
        help="the form of the statements served: xml (the default), csv (header and trailer "
        "records), csv-descriptors (with HEADER/DATA too), csv-plain (column headers only), "
        "or text (csv with pipes)",
    )
    simulator.add_argument(
        "--latency",
        type=_seconds,
        default=0.0,
        metavar="S",
        help="delay every answer by S seconds, as a network would (default: 0)",
    )
