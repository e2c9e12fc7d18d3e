"""``ibkr-flex``: the command line (also ``python -m ibkr_flex_client``).

One module per command (:mod:`.fetch`, :mod:`.sync`, :mod:`.inspect`, :mod:`.export`,
:mod:`.models`, :mod:`.demo`, :mod:`.simulator`, :mod:`.unlock`), imported only when that
command runs: ``--help`` and the commands that read files start without loading the network
client (aiohttp). :mod:`.parser` holds the grammar, :mod:`.exits` the exit statuses,
:mod:`.progress` the live progress line, :mod:`.inputs` and :mod:`.output` what the commands
read and write.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from .exits import (
    EXIT_BROKEN_PIPE,
    EXIT_CODES_HELP,
    EXIT_CONFIG,
    EXIT_ERROR,
    EXIT_HANGUP,
    EXIT_INTERRUPTED,
    EXIT_LOCKED_OUT,
    EXIT_NO_INPUT,
    EXIT_OK,
    EXIT_QUERY,
    EXIT_SAVE,
    EXIT_STATEMENT,
    EXIT_TEMPORARY,
    EXIT_TERMINATED,
    EXIT_TOKEN,
    EXIT_UNTRUSTED,
    EXIT_USAGE,
    exit_code,
    report,
)
from .output import STDOUT, OutputError, silence_stdout
from .parser import build_parser
from .signals import STOP_SIGNALS, Signalled, stop_signals_interrupt

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_CODES_HELP",
    "EXIT_CONFIG",
    "EXIT_ERROR",
    "EXIT_HANGUP",
    "EXIT_INTERRUPTED",
    "EXIT_LOCKED_OUT",
    "EXIT_NO_INPUT",
    "EXIT_OK",
    "EXIT_QUERY",
    "EXIT_SAVE",
    "EXIT_STATEMENT",
    "EXIT_TEMPORARY",
    "EXIT_TERMINATED",
    "EXIT_TOKEN",
    "EXIT_UNTRUSTED",
    "EXIT_USAGE",
    "exit_code",
    "main",
]


def _run(args: argparse.Namespace) -> int:
    """Import the command's module, and run it."""
    # Imported here, not above: each command loads only what it needs (see the docstring).
    command = args.command
    if command == "fetch":
        from . import fetch  # noqa: PLC0415

        return fetch.main(args, sys.stdout.buffer, sys.stderr)
    if command == "sync":
        from . import sync  # noqa: PLC0415

        return sync.main(args, sys.stdout, sys.stderr)
    if command == "demo":
        from . import demo  # noqa: PLC0415

        return demo.main(args, sys.stdout, sys.stderr)
    if command == "unlock":
        from . import unlock  # noqa: PLC0415

        return unlock.main(args, sys.stdout, sys.stderr)
    if command == "simulator":
        from . import simulator  # noqa: PLC0415

        return simulator.main(args, sys.stdout, sys.stderr)
    if command == "inspect":
        from . import inspect  # noqa: PLC0415

        return inspect.main(args, sys.stdout)
    if command == "export":
        from . import export  # noqa: PLC0415

        return export.main(args, sys.stdout)
    from . import models  # noqa: PLC0415

    return models.main(args, sys.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    try:
        with stop_signals_interrupt():
            return _run(args)
    except Signalled as stop:
        print(f"ibkr-flex: interrupted ({signal.Signals(stop.signum).name})", file=sys.stderr)
        return STOP_SIGNALS[stop.signum]
    except KeyboardInterrupt:
        print("ibkr-flex: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as command-line tools do.
        silence_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as error:  # noqa: BLE001 - one readable line; the traceback with --verbose
        if isinstance(error, OutputError) and error.name == STDOUT:
            silence_stdout()  # what stdout still buffers would fail again at exit
        report(sys.stderr, error, args.verbose)
        return exit_code(error)
