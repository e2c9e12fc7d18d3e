"""One pacer per token, shared by every request of the process: IB's limits are never hit.

IB allows 1 request per second and 10 per minute **per token**, counting both steps and every
query, and may put a violator in a 10-minute penalty box ("Rate limits" in
``docs/protocol.md``). Every request of every :class:`FlexClient` with the same token (on the
same clock) takes a slot from the same :class:`TokenPacer` first, in the order they asked.

:class:`SlotSchedule` is the pure arithmetic (times in, times out). :class:`TokenPacer` adds
waiting, cancellation, the slow-down after a 1018 and the stop after a 1025.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import hashlib
import itertools
import threading
import weakref
from collections.abc import Callable

from ._clock import Clock
from .errors import LockedOutError
from .protocol import THROTTLED
from .retry import MINUTE, PER_MINUTE, SECOND

__all__ = ["SlotSchedule", "TokenPacer", "pacer_for"]


@dataclasses.dataclass(slots=True)
class SlotSchedule:
    """The slots handed out for one token; pure: the caller passes the time in.

    A slot at time ``t`` is granted only if no other slot lies within ``second`` before it and
    fewer than ``per_minute`` lie within ``minute`` before it. Slots are granted first come,
    first served, so none is ever earlier than one granted before it.
    """

    per_minute: int = PER_MINUTE
    second: float = SECOND
    minute: float = MINUTE
    blocked_until: float = float("-inf")
    _slots: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    _ids: itertools.count[int] = dataclasses.field(default_factory=itertools.count)

    def reserve(self, now: float) -> tuple[float, int]:
        """The earliest time a request may go, and the slot's id (for :meth:`release`)."""
        self._forget(now)
        at = max(now, self.blocked_until)
        if self._slots:
            at = max(at, self._slots[-1][0] + self.second)
            recent = [t for t, _ in self._slots if t > at - self.minute]
            if len(recent) >= self.per_minute:
                at = max(at, recent[-self.per_minute] + self.minute)
        slot = (at, next(self._ids))
        self._slots.append(slot)
        return slot

    def release(self, slot: tuple[float, int], now: float) -> bool:
        """Give back a slot that was not used (its request never went). True if it was held.

        Only a future slot can be given back: one whose time has come may have been used.
        """
        index = bisect.bisect_left(self._slots, slot)
        if index < len(self._slots) and self._slots[index] == slot and slot[0] > now:
            del self._slots[index]
            return True
        return False

    def block(self, until: float) -> None:
        """No slot before ``until`` (IB answered 1018: slow every request of the token down)."""
        self.blocked_until = max(self.blocked_until, until)

    def _forget(self, now: float) -> None:
        # Slots older than the minute window no longer constrain anything.
        cutoff = now - self.minute
        while self._slots and self._slots[0][0] <= cutoff:
            self._slots.pop(0)

    def __len__(self) -> int:
        return len(self._slots)


class TokenPacer:
    """Waits for a token's slots on a :class:`Clock`; stops everyone after a lock-out."""

    def __init__(self, clock: Clock, schedule: SlotSchedule | None = None) -> None:
        self.clock = clock
        self.schedule = schedule if schedule is not None else SlotSchedule()
        self._locked: LockedOutError | None = None
        # One future per sleep in progress, on whichever event loop it runs: a pacer outlives
        # event loops (one asyncio.run() per blocking call) and may serve several threads.
        self._stops: set[asyncio.Future[None]] = set()
        self._mutex = threading.Lock()

    async def acquire(
        self,
        on_wait: Callable[[float, int | None, str], None] | None = None,
        *,
        deadline: float = float("inf"),
        too_late: Callable[[], BaseException] | None = None,
    ) -> None:
        """Wait for this token's next slot. Raises :class:`LockedOutError` after a lock-out.

        ``on_wait(seconds, code, reason)`` is told of each wait before it starts; ``code`` is
        1018 when the wait is a throttle backoff, else None. If the wait is
        cancelled, the slot is given back and nothing else is touched. A slot later than
        ``deadline`` (clock time) is given back at once and ``too_late()`` raised instead.
        """
        while True:
            self._raise_if_locked()
            now = self.clock.now()
            with self._mutex:
                slot = self.schedule.reserve(now)
            if slot[0] > deadline:
                self._release(slot)
                raise too_late() if too_late is not None else TimeoutError("no slot in time")
            wait = slot[0] - now
            if wait > 0:
                if on_wait is not None:
                    if self.schedule.blocked_until >= slot[0]:
                        on_wait(wait, THROTTLED, f"IB {THROTTLED}: the token is slowed down")
                    else:
                        on_wait(wait, None, "pacing")
                try:
                    await self.sleep(wait)
                except BaseException:  # cancelled or locked out: the slot goes unused
                    self._release(slot)
                    raise
            if self.clock.now() >= self.schedule.blocked_until:
                return
            # A 1018 arrived while we waited: give the slot back and queue behind the block.
            self._release(slot)

    def _release(self, slot: tuple[float, int]) -> None:
        with self._mutex:
            self.schedule.release(slot, self.clock.now())

    def slow_down(self, seconds: float) -> None:
        """After a 1018: no request of this token for ``seconds``."""
        with self._mutex:
            self.schedule.block(self.clock.now() + seconds)

    def lock_out(self, error: LockedOutError) -> None:
        """After a 1025: every waiting and future request of this token raises ``error``."""
        with self._mutex:
            if self._locked is not None:
                return
            self._locked = error
            stops = list(self._stops)
        for stop in stops:
            stop.get_loop().call_soon_threadsafe(_wake, stop)

    async def sleep(self, seconds: float) -> None:
        """Sleep on the clock, cut short by a lock-out of this token (which then raises)."""
        self._raise_if_locked()
        stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        with self._mutex:
            self._stops.add(stop)
        try:
            await asyncio.wait({sleeper, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            with self._mutex:
                self._stops.discard(stop)
        self._raise_if_locked()

    def _raise_if_locked(self) -> None:
        if self._locked is not None:
            error = self._locked
            raise LockedOutError(
                str(error), code=error.code, message=error.message, step=error.step
            )


def _wake(stop: asyncio.Future[None]) -> None:
    if not stop.done():
        stop.set_result(None)  # the sleeper sees the lock-out and raises LockedOutError


# One pacer per (clock, token). Keyed by a digest of the token, so this table never holds it;
# the clock is held weakly, so a test's FakeClock takes its pacers with it when it goes.
_PACERS: weakref.WeakKeyDictionary[object, dict[str, TokenPacer]] = weakref.WeakKeyDictionary()


def pacer_for(token: str, clock: Clock) -> TokenPacer:
    """The process-wide pacer of ``token`` on ``clock``, created on first use."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    pacers = _PACERS.setdefault(clock, {})
    pacer = pacers.get(digest)
    if pacer is None:
        pacer = pacers[digest] = TokenPacer(clock)
    return pacer
