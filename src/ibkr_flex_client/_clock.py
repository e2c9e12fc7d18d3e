"""Time, injected: the client sleeps and reads the time only through a :class:`Clock`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from contextlib import AbstractContextManager
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock", "busy"]


class Clock(Protocol):
    """What the client needs of time. Tests pass ``ibkr_flex_client.testing.FakeClock``."""

    def now(self) -> float:
        """Monotonic seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...


def busy(clock: Clock) -> AbstractContextManager[object]:
    """The clock's ``busy()`` hold if it has one (virtual clocks do), else nothing.

    A virtual clock must not jump while an HTTP exchange is in flight, or the request would
    reach the other side at a later virtual time than it was sent.
    """
    hold = getattr(clock, "busy", None)
    return hold() if callable(hold) else contextlib.nullcontext()


class SystemClock:
    """Real time: :func:`time.monotonic` and :func:`asyncio.sleep`."""

    __slots__ = ("__weakref__",)

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


# The one real clock: clients on real time share it, and so share their tokens' pacers.
SYSTEM_CLOCK = SystemClock()
