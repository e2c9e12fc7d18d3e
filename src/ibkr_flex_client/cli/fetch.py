"""``ibkr-flex fetch``: statements from IB's Flex Web Service, to files or to stdout.

The one command, with ``demo``, that needs the network client: this module is imported only
when it runs, so the other commands start without loading aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import aiohttp

from .._files import check_target
from ..client import FlexClient
from .exits import EXIT_CONFIG, EXIT_OK, EXIT_SAVE, EXIT_USAGE, Exit, exit_code, report
from .output import STDOUT, writing
from .parser import TOKEN_VARIABLE
from .progress import Progress

__all__ = ["OPTIONS", "as_options", "main", "make_directories", "plan_targets", "read_token", "run"]

_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# Directories fetch creates hold account data: readable by their owner only (umask may
# narrow it further, never widen it). Existing directories are left as they are.
DIRECTORY_MODE = 0o700

# FlexClient's arguments as this command spells them: settings.py names the argument in the
# ValueError it raises, and the user should read the option they typed.
OPTIONS = {
    "query_id": "--query",
    "from_date": "--from-date",
    "to_date": "--to-date",
    "period": "--period",
    "timeout": "--timeout",
    "max_retries": "--max-retries",
    "backoff_base": "--backoff-base",
    "base_url": "--base-url",
    "pacing": "--pacing",
    "lockout_seconds": "--lockout-seconds",
}
# An argument's name, not inside a quoted value that the message repeats (a --base-url).
_ARGUMENT = re.compile(r"""'[^']*'|"[^"]*"|\b(""" + "|".join(OPTIONS) + r")\b")


def as_options(error: ValueError) -> str:
    """settings.py's message with each argument named as its option."""
    return _ARGUMENT.sub(lambda m: OPTIONS[m[1]] if m[1] else m[0], str(error))


def read_token(args: argparse.Namespace) -> str:
    """The token from --token-file or IBKR_FLEX_TOKEN; never echoed anywhere."""
    if args.token_file is not None:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise Exit(EXIT_CONFIG, f"cannot read --token-file: {exc.strerror or exc}") from None
        if not token:
            raise Exit(EXIT_CONFIG, f"--token-file {args.token_file!r} is empty")
        return token
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if not token:
        raise Exit(EXIT_CONFIG, f"no token: set {TOKEN_VARIABLE} or pass --token-file FILE")
    return token


def plan_targets(queries: list[str], output: str | None) -> list[Path | None]:
    """Where each query's statement goes: stdout (None), the file, or DIR/QUERY.xml.

    With several queries, ``output`` is a directory: an existing one, or one to create. With
    one, it is a directory if it exists as one or ends in ``/``, else a file. Creates nothing:
    see :func:`make_directories`."""
    if output is None:
        if len(queries) > 1:
            raise Exit(EXIT_USAGE, "several queries need -o DIR (stdout takes one statement)")
        return [None]
    path = Path(output)
    try:
        is_dir = path.is_dir()
    except OSError:  # a name too long, say: check_target() explains later
        is_dir = False
    several = len(queries) > 1
    if is_dir or output.endswith(("/", os.sep)) or (several and not os.path.lexists(output)):
        for query in queries:
            if not _SAFE_NAME.fullmatch(query):
                raise Exit(EXIT_USAGE, f"query id {query!r} cannot name a file in {output!r}")
        return [path / f"{query}.xml" for query in queries]
    if several:
        raise Exit(EXIT_USAGE, f"several queries need -o DIR, and {output!r} is a file")
    return [path]


def make_directories(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each with :data:`DIRECTORY_MODE`
    (``Path.mkdir(parents=True)`` would give the parents the default mode)."""
    missing = []
    for one in (directory, *directory.parents):
        if os.path.lexists(one):
            break
        missing.append(one)
    for one in reversed(missing):
        _make_directory(one)


def _make_directory(directory: Path) -> None:
    try:
        directory.mkdir(mode=DIRECTORY_MODE)
    except FileExistsError:
        pass  # made meanwhile, by another fetch: check_target() judges it
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise Exit(EXIT_SAVE, f"cannot create directory {str(directory)!r}: {reason}") from None


def _clients(token: str, queries: list[str], args: argparse.Namespace) -> list[FlexClient]:
    options: dict[str, Any] = {
        "from_date": args.from_date,
        "to_date": args.to_date,
        "period": args.period,
        "timeout": args.timeout,
        "max_retries": args.max_retries,
        "backoff_base": args.backoff_base,
        "pacing": args.pacing,
        "lockout_seconds": args.lockout_seconds,
    }
    if args.base_url:
        options["base_url"] = args.base_url
    try:
        return [FlexClient(token=token, query_id=q, **options) for q in queries]
    except ValueError as exc:
        raise Exit(EXIT_USAGE, as_options(exc)) from None


async def run(args: argparse.Namespace, out: BinaryIO, err: TextIO) -> int:
    """Fetch every query; statements to their targets, progress and errors to ``err``."""
    queries: list[str] = list(dict.fromkeys(args.query))
    targets = plan_targets(queries, args.output)
    clients = _clients(read_token(args), queries, args)
    for target in targets:  # before the first request: a bad path costs no request
        if target is not None:
            make_directories(target.parent)
            check_target(target)
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
    with writing(STDOUT):
        for xml in statements.values():
            out.write(xml if isinstance(xml, bytes) else xml.encode())
        out.flush()
    if err.isatty() or args.verbose:
        _list_written(err, [t for t, r in zip(targets, results, strict=True) if r is None and t])
    failures = [(q, r) for q, r in zip(queries, results, strict=True) if r is not None]
    for query, failure in failures:
        if not isinstance(failure, Exception):
            raise failure  # KeyboardInterrupt, SystemExit: not ours to report
        report(err, failure, args.verbose, prefix=f"query {query}: ")
    return exit_code(failures[0][1]) if failures else EXIT_OK


def _list_written(err: TextIO, written: list[Path]) -> None:
    """One line per file written, in the order of the queries."""
    for path in written:
        try:
            size = f" ({path.stat().st_size:,} bytes)"
        except OSError:
            size = ""
        print(f"ibkr-flex: wrote {path}{size}", file=err)


def main(args: argparse.Namespace, out: BinaryIO, err: TextIO) -> int:
    """:func:`run` in its own event loop."""
    return asyncio.run(run(args, out, err))
