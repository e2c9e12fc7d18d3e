"""A fetch's progress on stderr: one live status line on a terminal, plain lines elsewhere.

The live line is redrawn in place (``\\r``), so it must never be wider than the terminal: a
line that wraps cannot be redrawn and smears down the screen. It is cut to the width asked
of the terminal at each redraw (it may be resized), and when every query's state does not
fit, it shows a count of the queries in each state instead. Waits count down between
events: the line is redrawn every tick, not only when something happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import TextIO

from ..events import EventKind, FetchEvent

__all__ = ["Progress", "terminal_columns"]

_SPINNER = "|/-\\"
_FALLBACK_COLUMNS = 80


def terminal_columns(stream: TextIO) -> int:
    """The width of the terminal ``stream`` shows on: ``COLUMNS`` if set (the convention
    :func:`shutil.get_terminal_size` follows), else the terminal's own, else 80."""
    with contextlib.suppress(ValueError):
        columns = int(os.environ.get("COLUMNS", ""))
        if columns > 0:
            return columns
    with contextlib.suppress(AttributeError, OSError, ValueError):  # no fileno, no terminal
        return os.get_terminal_size(stream.fileno()).columns or _FALLBACK_COLUMNS
    return _FALLBACK_COLUMNS


class Progress:
    """Shows a fetch's events; call it with each :class:`FetchEvent`."""

    def __init__(
        self,
        stream: TextIO,
        *,
        live: bool | None = None,
        columns: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._live = stream.isatty() if live is None else live
        self._columns = columns  # None: ask the terminal at each redraw
        self._clock = clock
        self._latest: dict[str, tuple[FetchEvent, float]] = {}  # query: (event, when seen)
        self._started = clock()
        self._ticks = 0
        self._shown = 0  # the length of the line on screen

    def __call__(self, event: FetchEvent) -> None:
        if self._live:
            self._latest[event.query_id] = (event, self._clock())
            self.render()
        else:
            print(f"  {event.describe()}", file=self._stream, flush=True)

    def line(self) -> str:
        """The status line as of now, at most the terminal's width less one column (a
        character in the last column moves some terminals' cursor to the next line)."""
        now = self._clock()
        self._ticks += 1
        lead = f"{_SPINNER[self._ticks % len(_SPINNER)]} {now - self._started:5.1f}s  "
        width = (self._columns or terminal_columns(self._stream)) - 1
        states = [_state(event, now - seen) for event, seen in self._latest.values()]
        line = lead + "  |  ".join(states)
        if len(line) > width and len(states) > 1:
            line = lead + self._counts(now)
        return line if len(line) <= width else line[: max(width - 1, 0)] + "…"

    def _counts(self, now: float) -> str:
        """``6 queries: 2 done, 3 waiting (next in 4.2s), 1 sending``."""
        done = waiting = sending = 0
        soonest: float | None = None
        for event, seen in self._latest.values():
            if event.kind is EventKind.DONE:
                done += 1
            elif event.kind is EventKind.WAIT:
                waiting += 1
                left = _left(event, now - seen)
                soonest = left if soonest is None else min(soonest, left)
            else:
                sending += 1
        parts = [f"{done} done"] if done else []
        if waiting:
            parts.append(f"{waiting} waiting (next in {soonest or 0:.1f}s)")
        if sending:
            parts.append(f"{sending} sending")
        return f"{len(self._latest)} queries: {', '.join(parts)}"

    def render(self) -> None:
        if not self._live or not self._latest:
            return
        line = self.line()
        self._stream.write(f"\r{line.ljust(self._shown)}")
        self._stream.flush()
        self._shown = len(line)

    def finish(self) -> None:
        """Clear the live line: what follows starts on a clean line."""
        if self._live and self._shown:
            self._stream.write("\r" + " " * self._shown + "\r")
            self._stream.flush()
            self._shown = 0

    @contextlib.asynccontextmanager
    async def ticking(self, interval: float = 0.1) -> AsyncIterator[Progress]:
        """Redraw the live line while waiting: elapsed time moves on, waits count down."""

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


def _left(event: FetchEvent, since: float) -> float:
    """The seconds still to wait, ``since`` seconds after the WAIT event."""
    return max((event.wait or 0.0) - since, 0.0)


def _budget(detail: str | None) -> str:
    """Why a wait is for the token's budget, if it is: ``" (queued behind 3 requests of this
    token)"``, ``" (another process of this token goes first)"``, ``" (pacing)"``."""
    if not detail or not detail.startswith("pacing"):
        return ""
    return f" ({detail.removeprefix('pacing: ')})"


def _state(event: FetchEvent, since: float) -> str:
    """One query's state, ``since`` seconds after its latest event."""
    if event.kind is EventKind.WAIT:
        after = f" (after IB {event.code})" if event.code else _budget(event.detail)
        left = _left(event, since)
        return f"{event.query_id}: {event.step} #{event.attempt + 1} in {left:.1f}s{after}"
    if event.kind is EventKind.DONE:
        return f"{event.query_id}: done ({event.size or 0:,} bytes)"
    return f"{event.query_id}: {event.step} #{event.attempt} sent"
