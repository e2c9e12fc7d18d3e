"""The one interface every budget backend offers the pacer, and the in-process backend.

A backend holds one token's :class:`~.slots.TokenState` where everyone who shares the budget
can reach it (this process's memory, a locked file, a Redis key) and runs a change on it
atomically: :meth:`Backend.apply` reads the state, calls ``change(state, now)`` with the
backend's own time, stores the result and returns what the change returned, with that time.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Protocol, TypeVar

from .slots import TokenState

__all__ = ["Backend", "LocalBackend"]

R = TypeVar("R")


class Backend(Protocol):
    """Where a token's budget lives. Every method raises only ``PacingError`` (a
    :class:`~ibkr_flex_client.FlexError`) when the budget cannot be reached."""

    #: Seconds a waiter may sleep before looking at the state again when something outside
    #: this process may have changed it (another process's request, a reference polled):
    #: ``inf`` when nothing outside the process shares the state.
    recheck: float

    async def apply(self, change: Callable[[TokenState, float], R]) -> tuple[R, float]:
        """Run ``change(state, now)`` atomically; return its result and ``now``."""
        ...

    def describe(self) -> str:
        """Where the budget lives, for messages (never a secret)."""
        ...


class LocalBackend:
    """The budget of this process only (``pacing="process"``), on the client's clock."""

    recheck = math.inf

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._state = TokenState()
        self._mutex = threading.Lock()  # a pacer may serve several threads

    async def apply(self, change: Callable[[TokenState, float], R]) -> tuple[R, float]:
        with self._mutex:
            now = self._now()
            return change(self._state, now), now

    def describe(self) -> str:
        return "this process"
