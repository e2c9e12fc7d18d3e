"""SIGTERM and SIGHUP, taken as Ctrl-C is, so that every cleanup runs before exiting."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from .exits import EXIT_HANGUP, EXIT_TERMINATED

__all__ = ["STOP_SIGNALS", "Signalled", "stop_signals_interrupt"]


class Signalled(KeyboardInterrupt):
    """SIGTERM or SIGHUP, taken as Ctrl-C is: raised where the program stands, so unwinding
    runs every cleanup (a download's temporary file goes, asyncio cancels the other fetches);
    the exit status then says which signal it was."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# Signals that stop us politely, each with its exit status: 128 + the signal's number.
STOP_SIGNALS: dict[int, int] = {signal.SIGTERM: EXIT_TERMINATED}
if hasattr(signal, "SIGHUP"):  # not on Windows
    STOP_SIGNALS[signal.SIGHUP] = EXIT_HANGUP


@contextlib.contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Signalled`.

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
            raise Signalled(signum)

        for signum in STOP_SIGNALS:
            handler = signal.getsignal(signum)
            if handler is signal.SIG_DFL:
                taken[signum] = handler
                signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in taken.items():
            signal.signal(signum, handler)
