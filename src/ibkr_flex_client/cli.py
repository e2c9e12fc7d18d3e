"""``ibkr-flex``: the command line (also ``python -m ibkr_flex_client``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO, TextIO

import aiohttp

from ._files import atomic_output, check_target
from ._version import __version__
from .client import FlexClient
from .dates import parse_ib_date
from .errors import (
    LockedOutError,
    QueryError,
    SaveError,
    StatementError,
    TemporaryError,
    TokenError,
    UnknownCodeError,
    UnsafeUrlError,
)
from .events import EventKind, FetchEvent
from .inspection import export_rows, infer_model
from .inspection import summarize as summarize_file
from .statement import FlexStatement
from .testing.content import build_statement
from .testing.simulator import FlexSimulator

__all__ = ["main"]

# Exit statuses, one per kind of failure (listed in EXIT_CODES_HELP and the README).
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2  # argparse's own code for bad arguments
EXIT_TOKEN = 3
EXIT_QUERY = 4
EXIT_LOCKED_OUT = 5
EXIT_UNTRUSTED = 6
EXIT_STATEMENT = 7
EXIT_SAVE = 8
EXIT_NO_INPUT = 66  # sysexits.h EX_NOINPUT
EXIT_TEMPORARY = 75  # sysexits.h EX_TEMPFAIL: schedulers know to try again later
EXIT_CONFIG = 78  # sysexits.h EX_CONFIG
EXIT_HANGUP = 129  # 128 + SIGHUP: the terminal went away
EXIT_INTERRUPTED = 130  # 128 + SIGINT (Ctrl-C), the shell convention
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE
EXIT_TERMINATED = 143  # 128 + SIGTERM: kill, systemd, docker stop, a scheduler's timeout

TOKEN_VARIABLE = "IBKR_FLEX_TOKEN"  # noqa: S105 - the variable's name, not a token

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


# --- fetch ---------------------------------------------------------------------------------

_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _token(args: argparse.Namespace) -> str:
    """The token from --token-file or IBKR_FLEX_TOKEN; never echoed anywhere."""
    if args.token_file is not None:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise _Exit(EXIT_CONFIG, f"cannot read --token-file: {exc.strerror or exc}") from None
        if not token:
            raise _Exit(EXIT_CONFIG, f"--token-file {args.token_file!r} is empty")
        return token
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if not token:
        raise _Exit(EXIT_CONFIG, f"no token: set {TOKEN_VARIABLE} or pass --token-file FILE")
    return token


def _targets(queries: list[str], output: str | None) -> list[Path | None]:
    """Where each query's statement goes: stdout (None), the file, or DIR/QUERY.xml."""
    if output is None:
        if len(queries) > 1:
            raise _Exit(EXIT_USAGE, "several queries need -o DIR (stdout takes one statement)")
        return [None]
    path = Path(output)
    try:
        is_dir = path.is_dir()
    except OSError:  # a name too long, say: check_target() below explains
        is_dir = False
    if is_dir or output.endswith(("/", os.sep)):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _Exit(EXIT_SAVE, f"cannot create {output!r}: {exc.strerror or exc}") from None
        for query in queries:
            if not _SAFE_NAME.fullmatch(query):
                raise _Exit(EXIT_USAGE, f"query id {query!r} cannot name a file in {output!r}")
        targets = [path / f"{query}.xml" for query in queries]
    elif len(queries) > 1:
        raise _Exit(EXIT_USAGE, f"several queries need -o DIR, and {output!r} is a file")
    else:
        targets = [path]
    for target in targets:  # before the first request: a bad path costs no request
        check_target(target)
    return list(targets)


async def _fetch(args: argparse.Namespace, out: BinaryIO, err: TextIO) -> int:
    queries: list[str] = list(dict.fromkeys(args.query))
    targets = _targets(queries, args.output)
    token = _token(args)
    options: dict[str, Any] = {
        "from_date": args.from_date,
        "to_date": args.to_date,
        "period": args.period,
        "timeout": args.timeout,
        "max_retries": args.max_retries,
        "backoff_base": args.backoff_base,
    }
    if args.base_url:
        options["base_url"] = args.base_url
    try:
        clients = [FlexClient(token=token, query_id=q, **options) for q in queries]
    except ValueError as exc:
        raise _Exit(EXIT_USAGE, str(exc)) from None
    progress = Progress(err) if err.isatty() else None
    statements: dict[str, bytes | str] = {}

    async def one(client: FlexClient, target: Path | None) -> None:
        if target is not None:
            await client.download(target, session, on_event=progress)
        else:
            statements[client.query_id] = (await client.fetch(session, on_event=progress)).xml

    async with aiohttp.ClientSession() as session:
        ticking = progress.ticking() if progress is not None else contextlib.nullcontext()
        async with ticking:
            results = await asyncio.gather(
                *(one(c, t) for c, t in zip(clients, targets, strict=True)),
                return_exceptions=True,
            )
    for xml in statements.values():
        out.write(xml if isinstance(xml, bytes) else xml.encode())
    out.flush()
    failures = [(q, r) for q, r in zip(queries, results, strict=True) if r is not None]
    for query, failure in failures:
        if not isinstance(failure, Exception):
            raise failure  # KeyboardInterrupt, SystemExit: not ours to report
        _report(err, failure, args.verbose, prefix=f"query {query}: ")
    return exit_code(failures[0][1]) if failures else EXIT_OK


# --- inspect, export, models --------------------------------------------------------------


def _input(path: str) -> Path:
    file = Path(path)
    if not file.is_file():
        raise _Exit(EXIT_NO_INPUT, f"no such file: {path!r}")
    return file


def _inspect(args: argparse.Namespace, out: TextIO) -> int:
    summary = summarize_file(_input(args.file))
    if args.json:
        json.dump(summary.as_json(), out, indent=2, ensure_ascii=False)
        out.write("\n")
        return EXIT_OK
    out.write(f"Report {summary.query_name!r} (type {summary.type})\n\n")
    table = [("ACCOUNT", "FROM", "TO", "PERIOD", "GENERATED")]
    table += [
        (a.account_id, a.from_date, a.to_date, a.period or "-", a.when_generated)
        for a in summary.accounts
    ]
    out.writelines(line + "\n" for line in _aligned(table))
    out.write("\n")
    rows = [("TAG", "ROWS", "ATTRIBUTES")]
    rows += [
        ("  " * (t.depth - 3) + t.tag, str(t.rows), ", ".join(t.attributes) or "-")
        for t in summary.tags.values()
    ]
    out.writelines(line + "\n" for line in _aligned(rows, right={1}))
    return EXIT_OK


def _aligned(rows: Sequence[Sequence[str]], right: set[int] | None = None) -> Iterator[str]:
    """Columns padded to their widest cell; the last column is left as it is."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if right and i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row[:-1])
        ]
        yield "  ".join([*cells, row[-1]]).rstrip()


def _no_rows(file: Path, tag: str) -> _Exit:
    tags = [t.tag for t in summarize_file(file).tags.values() if t.attributes]
    return _Exit(EXIT_ERROR, f"no <{tag}> rows in {str(file)!r}; tags with rows: {', '.join(tags)}")


def _export(args: argparse.Namespace, out: TextIO) -> int:
    file = _input(args.file)
    if args.output is None:
        if export_rows(file, args.tag, out, args.format) == 0:
            raise _no_rows(file, args.tag)
        return EXIT_OK
    with atomic_output(Path(args.output)) as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        count = export_rows(file, args.tag, text, args.format)
        text.flush()
        text.detach()
        if count == 0:
            raise _no_rows(file, args.tag)  # nothing is written: the output stays as it was
    return EXIT_OK


def _models(args: argparse.Namespace, out: TextIO) -> int:
    file = _input(args.file)
    try:
        source = infer_model(file, args.tag, args.style)
    except ValueError:
        raise _no_rows(file, args.tag) from None
    out.write(source)
    return EXIT_OK


# --- the command line ----------------------------------------------------------------------

EXIT_CODES_HELP = """exit codes:
  0    success
  1    other error
  2    usage: bad arguments or options
  3    the token cannot be used (expired, invalid, IP-restricted): renew it (IB 1011-1016)
  4    IB rejected the query or request: fix it (IB 1003, 1010, 1014, 1017, 1020)
  5    locked out by IB (1025): stop using the token for a while
  6    IB's answer was untrusted or unknown (a foreign download URL, an unknown code)
  7    the file or answer is not a complete Flex statement
  8    the output could not be written
  66   the input file does not exist
  75   temporary failure (throttled, still generating, IB or network down): retry later
  78   no token: set IBKR_FLEX_TOKEN or pass --token-file
  129  interrupted by SIGHUP (128 + 1, the shell's convention)
  130  interrupted (Ctrl-C: SIGINT)
  143  interrupted by SIGTERM (128 + 15)
"""


def _date(text: str) -> str:
    if not re.fullmatch(r"\d{8}", text):
        raise argparse.ArgumentTypeError(f"expected yyyyMMdd, got {text!r}")
    return text


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", help="log every step and show tracebacks"
    )
    parser = argparse.ArgumentParser(
        prog="ibkr-flex",
        description="Download Interactive Brokers Flex Query reports, and look into them.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=summary,
            description=description,
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[common],
        )

    fetch = command(
        "fetch",
        "download statements from IB's Flex Web Service",
        f"Fetch one or more Flex Queries' statements. The token comes from {TOKEN_VARIABLE} "
        "or --token-file and is never printed. Several queries run at once, paced to stay "
        "within IB's limits for the token. Files are written atomically; without -o the "
        "statement goes to stdout. Progress shows on stderr when it is a terminal.",
    )
    fetch.add_argument(
        "-q", "--query", action="append", required=True, metavar="QUERY", help="a Flex Query id"
    )
    fetch.add_argument(
        "-o", "--output", metavar="FILE_OR_DIR", help="a file (one query) or a directory"
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

    inspect = command(
        "inspect",
        "show what a statement file holds",
        "Print the report's type, query name, accounts and periods, then every tag with its "
        "row count and attribute names. Reads the file as a stream.",
    )
    inspect.add_argument("file", metavar="FILE")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")

    export = command(
        "export",
        "write one tag's rows as CSV or JSON lines",
        "Write the rows of one tag, with every attribute seen as a column, streaming.",
    )
    export.add_argument("file", metavar="FILE")
    export.add_argument("--tag", required=True, help="the row tag, e.g. Trade")
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    export.add_argument("-o", "--output", metavar="FILE", help="default: stdout")

    models = command(
        "models",
        "print a model class for one tag's rows",
        "Print a dataclass (or pydantic model) for one tag, each field typed from the values "
        "in the file, ready for statement.rows().",
    )
    models.add_argument("file", metavar="FILE")
    models.add_argument("--tag", required=True, help="the row tag, e.g. Trade")
    models.add_argument("--style", choices=("dataclass", "pydantic"), default="dataclass")

    demo = command(
        "demo",
        "fetch a report from a built-in simulator of IB's service (no account needed)",
        "Start a simulated IB Flex Web Service on loopback, fetch a statement from it "
        "through the real client, and summarize the statement.",
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


class _Signalled(KeyboardInterrupt):
    """SIGTERM or SIGHUP, taken as Ctrl-C is: raised where the program stands, so unwinding
    runs every cleanup (a download's temporary file goes, asyncio cancels the other fetches);
    the exit status then says which signal it was."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# Signals that stop us politely, each with its exit status: 128 + the signal's number.
_STOP_SIGNALS: dict[int, int] = {signal.SIGTERM: EXIT_TERMINATED}
if hasattr(signal, "SIGHUP"):  # not on Windows
    _STOP_SIGNALS[signal.SIGHUP] = EXIT_HANGUP


@contextlib.contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`_Signalled`.

    Their default action ends the process on the spot, as ``kill -9`` does, leaving a
    download's temporary file behind. A signal whose handler is not the default is left
    alone: an ignored SIGHUP (``nohup``) stays ignored, a host program's handler stays. Only
    the main thread can set handlers; elsewhere (an embedding program's thread) nothing
    changes.
    """
    taken: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def stop(signum: int, frame: FrameType | None) -> None:
            for one in taken:  # a second signal must not cut the cleanup short
                signal.signal(one, signal.SIG_IGN)
            raise _Signalled(signum)

        for signum in _STOP_SIGNALS:
            handler = signal.getsignal(signum)
            if handler is signal.SIG_DFL:
                taken[signum] = handler
                signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in taken.items():
            signal.signal(signum, handler)


class _Exit(Exception):  # noqa: N818 - a way out, not an error of the library's
    """Leave with this exit status and one line on stderr."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_EXIT_BY_CLASS: list[tuple[type[BaseException], int]] = [
    (TokenError, EXIT_TOKEN),
    (QueryError, EXIT_QUERY),
    (LockedOutError, EXIT_LOCKED_OUT),
    (TemporaryError, EXIT_TEMPORARY),
    (UnsafeUrlError, EXIT_UNTRUSTED),
    (UnknownCodeError, EXIT_UNTRUSTED),
    (StatementError, EXIT_STATEMENT),
    (SaveError, EXIT_SAVE),
]


def exit_code(error: BaseException) -> int:
    """The documented exit status for an error."""
    if isinstance(error, _Exit):
        return error.status
    return next((code for cls, code in _EXIT_BY_CLASS if isinstance(error, cls)), EXIT_ERROR)


def _report(err: TextIO, error: BaseException, verbose: bool, prefix: str = "") -> None:
    if verbose and not isinstance(error, _Exit):
        traceback.print_exception(type(error), error, error.__traceback__, file=err)
    print(f"ibkr-flex: error: {prefix}{error}", file=err)


def _run(args: argparse.Namespace) -> int:
    if args.command == "fetch":
        return asyncio.run(_fetch(args, sys.stdout.buffer, sys.stderr))
    if args.command == "inspect":
        return _inspect(args, sys.stdout)
    if args.command == "export":
        return _export(args, sys.stdout)
    if args.command == "models":
        return _models(args, sys.stdout)
    return asyncio.run(_demo(args, sys.stdout, sys.stderr))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    try:
        with _stop_signals_interrupt():
            return _run(args)
    except _Signalled as stop:
        print(f"ibkr-flex: interrupted ({signal.Signals(stop.signum).name})", file=sys.stderr)
        return _STOP_SIGNALS[stop.signum]
    except KeyboardInterrupt:
        print("ibkr-flex: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as error:  # noqa: BLE001 - one readable line; the traceback with --verbose
        _report(sys.stderr, error, args.verbose)
        return exit_code(error)
