"""A virtual clock for tests: sleeps return at once, in deadline order, and time jumps."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import threading
from collections.abc import Iterator

__all__ = ["FakeClock"]


class FakeClock:
    """Virtual time that jumps straight to the next sleeper's deadline.

    Pass the same instance to :class:`~ibkr_flex_client.FlexClient` (``clock=``) and to
    :class:`~ibkr_flex_client.testing.FlexSimulator`: a fetch that backs off for ten minutes
    then takes milliseconds, and the simulator's rate limits and generation times follow the
    same virtual time. Sleepers wake in deadline order. Time jumps only after the event loop
    has run ``settle`` turns and then had ``idle`` real seconds to run everything that is not
    asleep, and never
    while an HTTP exchange is in flight (the client marks each with :meth:`busy`), so a
    request reaches the simulator at the virtual time it was sent.

    ``now()`` may be read from any thread; ``sleep()`` belongs to one event loop at a time.

    Attributes:
        slept: every wait asked for, in order, for assertions on the schedule.
    """

    def __init__(self, start: float = 1_000.0, *, idle: float = 0.001, settle: int = 50) -> None:
        self._now = start
        self._idle = idle
        self._settle = settle
        self._lock = threading.Lock()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._jumper: asyncio.Task[None] | None = None
        self._busy = 0
        self.slept: list[float] = []

    def now(self) -> float:
        """The virtual time in seconds."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by hand (sleepers whose deadline passes wake on the next jump)."""
        with self._lock:
            self._now += seconds

    @property
    def held(self) -> bool:
        """True while a :meth:`busy` block runs (an HTTP exchange of a client on this clock)."""
        with self._lock:
            return self._busy > 0

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Hold time still while the block runs (the client wraps each HTTP exchange)."""
        with self._lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of virtual time; returns as soon as time has jumped past them."""
        self.slept.append(seconds)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            deadline = self._now + max(seconds, 0.0)
        heapq.heappush(self._sleepers, (deadline, next(self._order), future))
        if self._jumper is None or self._jumper.done():
            self._jumper = loop.create_task(self._jump())
        await future

    async def _jump(self) -> None:
        while self._sleepers:
            # Let the tasks woken last time run on to their next wait: a sleep, an HTTP
            # exchange (held busy), or their end. These are loop turns, not real time, so
            # a loaded machine cannot make the clock jump ahead of them.
            for _ in range(self._settle):
                await asyncio.sleep(0)
            # Real time: let sockets and threads that are not asleep make progress first.
            await asyncio.sleep(self._idle)
            if not self._sleepers:
                break
            with self._lock:
                if self._busy:
                    continue
            deadline = self._sleepers[0][0]
            with self._lock:
                self._now = max(self._now, deadline)
                now = self._now
            while self._sleepers and self._sleepers[0][0] <= now:
                _, _, future = heapq.heappop(self._sleepers)
                if not future.done():  # a cancelled sleeper is simply dropped
                    future.set_result(None)

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now():.3f})"
