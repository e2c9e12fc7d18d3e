"""``ibkr-flex simulator``: one simulated IB Flex Web Service, shared by every process.

Serves :class:`~ibkr_flex_client.testing.FlexSimulator` on loopback, on real time, until
stopped, so that several processes (or programs in other languages) are tested against one
IB that enforces its per-token limits across all of them, answering 1018 to a request over
them (``docs/protocol.md``, "Rate limits")::

    $ ibkr-flex simulator --port 0
    http://127.0.0.1:40123

The base URL is the first line on stdout, flushed as soon as the server listens: a parent
process reads one line, then points its clients at it (``--base-url URL``,
``FlexClient(base_url=URL)``). A line on stderr says as much to a person.

From outside the process, ``GET URL/_simulator/requests``
(:data:`~ibkr_flex_client.testing.simulator.REQUESTS_PATH`) answers every request so far
as JSON: ``{"requests": [...], "answers": {"1018": 2, ...}}``, each record with the fields
of :class:`~ibkr_flex_client.testing.RequestRecord`; tokens appear only as fingerprints.

Loopback only, always: the simulator speaks plain HTTP, serves statements to any token, and
clients send their token in the query string. A stop (Ctrl-C, SIGTERM, SIGHUP) is this
command's normal end: the server closes and the exit status is 0. A port already in use, or
any other failure to listen, exits 1 (:data:`.exits.EXIT_ERROR`).

While it serves, the event loop takes the stop signals (:func:`_stop_signals`) rather than
:mod:`.signals`' handlers, which raise wherever the program stands: raised inside one of
aiohttp's tasks, the interrupt would be logged with a traceback ("Task exception was never
retrieved") instead of stopping quietly. As there, an ignored signal stays ignored (nohup).

Imported only when it runs: it loads the simulator (aiohttp).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import signal
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from .._clock import SystemClock
from ..testing.content import build_statement, to_csv
from ..testing.simulator import REQUESTS_PATH, FlexSimulator
from .exits import EXIT_ERROR, EXIT_OK, Exit
from .signals import STOP_SIGNALS, Signalled

__all__ = ["main", "serve"]

# Ctrl-C, and the signals that stop the other commands as Ctrl-C does.
_STOPS = (signal.SIGINT, *STOP_SIGNALS)


async def serve(simulator: FlexSimulator, *, host: str, port: int, out: TextIO, err: TextIO) -> int:
    """Start ``simulator``, print its URL (stdout) and how to use it (stderr), and serve
    until a stop signal; returns the signal's number, once the server has closed."""
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[int] = loop.create_future()

    def stop(signum: int) -> None:
        if not stopped.done():  # a second signal must not cut the closing short
            stopped.set_result(signum)

    with _stop_signals(loop, stop):
        try:
            url = await simulator.start()
        except OSError as error:
            await simulator.close()
            raise Exit(EXIT_ERROR, _cannot_listen(host, port, error)) from error
        try:
            # First, alone and flushed: the line a parent process waits for.
            print(url, file=out, flush=True)
            print(
                f"ibkr-flex: simulated IB Flex Web Service at {url}: point clients at it "
                f"with --base-url {url} (Python: base_url={url!r}); every request so far, "
                f"as JSON: {url}{REQUESTS_PATH}. Ctrl-C to stop.",
                file=err,
                flush=True,
            )
            return await stopped
        finally:
            # Answers in flight are finished first: each at most --latency away.
            closing = asyncio.ensure_future(simulator.close())
            if not (await asyncio.wait({closing}, timeout=1.0))[0]:
                print(
                    "ibkr-flex: stopping: finishing the answers in flight (at most "
                    f"{simulator.latency:g} seconds away)",
                    file=err,
                    flush=True,
                )
            await closing


@contextlib.contextmanager
def _stop_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[int], None]) -> Iterator[None]:
    """Within the block, each stop signal calls ``stop(signum)`` from the event loop, at a
    safe point; on leaving, the handlers before are back.

    An ignored signal stays ignored. Where the loop cannot take a signal (Windows, a thread
    other than the main one), its handler is left alone: Ctrl-C then raises
    :exc:`KeyboardInterrupt` (SIGTERM and SIGHUP :class:`.signals.Signalled`), which
    :func:`main` takes as a stop too.
    """
    taken: dict[int, Any] = {}
    for signum in _STOPS:
        before = signal.getsignal(signum)
        if before is signal.SIG_IGN:
            continue
        try:
            loop.add_signal_handler(signum, stop, signum)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        taken[signum] = before
    try:
        yield
    finally:
        for signum, before in taken.items():
            loop.remove_signal_handler(signum)  # which leaves the default, not `before`
            if before is not None:  # None: a handler not set from Python, left as it was
                signal.signal(signum, before)


def _cannot_listen(host: str, port: int, error: OSError) -> str:
    where = f"cannot listen on {host}:{port}"
    if error.errno == errno.EADDRINUSE:
        return (
            f"{where}: the port is already in use (another simulator?); choose another "
            "--port, or --port 0 for any free one"
        )
    reason = os.strerror(error.errno) if error.errno else str(error)
    return f"{where}: {reason[:1].lower()}{reason[1:]}"


# --format: (CSV layout, delimiter) of the statements served.
_FORMATS = {
    "csv": ("trailers", ","),
    "csv-descriptors": ("trailers+descriptors", ","),
    "csv-plain": ("plain", ","),
    "text": ("trailers", "|"),
}


def main(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Serve until stopped; 0 once a stop signal has closed the server."""
    statement = None
    if args.format != "xml":  # every query answers in that CSV layout (text: pipes)
        layout, delimiter = _FORMATS[args.format]
        statement = to_csv(build_statement(), layout=layout, delimiter=delimiter)
    simulator = FlexSimulator(
        statement=statement,
        clock=SystemClock(),
        generation_seconds=args.generation_seconds,
        penalty_seconds=args.penalty_seconds,
        reference_ttl=args.reference_ttl,
        latency=args.latency,
        host=args.host,
        port=args.port,
    )
    try:
        signum = asyncio.run(serve(simulator, host=args.host, port=args.port, out=out, err=err))
    except KeyboardInterrupt as interrupt:  # a signal the event loop could not take
        signum = interrupt.signum if isinstance(interrupt, Signalled) else signal.SIGINT
    count = len(simulator.requests)
    print(
        f"ibkr-flex: simulator stopped ({signal.Signals(signum).name}) after {count} "
        f"request{'' if count == 1 else 's'}",
        file=err,
    )
    return EXIT_OK
