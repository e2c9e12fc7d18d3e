"""Waiting for a token's budget: one line per token in this process, polls first.

Every request of every fetch of a token (in this process, on one clock, with one pacing
setting) waits in the line of one :class:`TokenPacer`. The line is ordered as
:mod:`.slots` ranks requests (first polls, then polls, then SendRequests, oldest first). Only
its head asks the backend; the backend's answer (now, or "ask again at t") decides among the
heads of every process sharing the budget. The pacer adds the waiting: on the client's
clock, cut short when the line changes, by a deadline, or by a lock-out.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import functools
import itertools
import math
import threading
import uuid
from collections.abc import Callable
from typing import NoReturn

from .._clock import Clock
from ..errors import LockedOutError, Step
from ..protocol import THROTTLED
from .backend import Backend, LocalBackend
from .machine import host_owner
from .slots import (
    Granted,
    Later,
    Locked,
    Rank,
    Why,
    leave,
    lock,
    release,
    slow_down,
    take,
    unlock,
)

__all__ = ["OnWait", "Ticket", "TokenPacer"]

# on_wait(seconds, code, reason): a wait is about to start; code is 1018 for a throttle
# slow-down, else None.
OnWait = Callable[[float, int | None, str], None]

# For the estimate given to a request queued behind others: IB's limits average one
# request every 6 s (10 a minute).
_AVERAGE_GAP = 6.1

_REASONS = {
    Why.PACING: "pacing",
    Why.THROTTLED: f"IB {THROTTLED}: the token is slowed down",
    Why.OTHERS: "pacing: another process of this token goes first",
    Why.REFERENCES: "pacing: waiting for the token's statements in flight to be polled",
}


class Ticket:
    """One fetch's standing with its pacer: the id its reference in flight is counted
    under, and whether that reference has been polled yet (its first poll goes first)."""

    __slots__ = ("id", "polled", "seat_ttl", "sent")

    def __init__(self, seat_ttl: float) -> None:
        self.id = uuid.uuid4().hex
        self.seat_ttl = seat_ttl
        self.polled = True  # no reference yet
        self.sent = False  # a SendRequest of this fetch has gone: it holds a seat

    def resend(self, step: Step) -> bool:
        """A SendRequest retried by a fetch that holds a seat: the budget lets it past the
        limit on references in flight, so in this process's line it goes before new ones
        (else a new SendRequest at the head, refused for references, would hold it back)."""
        return step is Step.SEND_REQUEST and self.sent

    def rank(self, step: Step) -> Rank:
        if step is Step.SEND_REQUEST:
            return Rank.SEND
        return Rank.POLL if self.polled else Rank.FIRST_POLL


@dataclasses.dataclass(eq=False, slots=True)
class _Waiter:
    key: tuple[int, bool, float, int]  # rank, not a resend, since, arrival: the line's order
    loop: asyncio.AbstractEventLoop
    epoch: int  # lock-outs noted before it came
    woken: bool = False
    wake: asyncio.Future[None] | None = None


class TokenPacer:
    """One token's line in this process, in front of its budget's backend.

    Args:
        clock: what waits are slept on.
        backend: where the budget lives (by default this process's memory, on ``clock``).
        owner: how this process is named in a shared state (``host:pid``).
    """

    def __init__(self, clock: Clock, backend: Backend | None = None, *, owner: str = "") -> None:
        self.clock = clock
        self.backend: Backend = backend if backend is not None else LocalBackend(clock.now)
        self._who = f"{owner or host_owner()}/{uuid.uuid4().hex[:12]}"
        self._mutex = threading.Lock()  # one pacer may serve several threads' event loops
        self._line: list[_Waiter] = []
        self._arrivals = itertools.count()
        self._locked: tuple[float, LockedOutError] | None = None  # until (clock), error
        self._lock_epoch = 0
        self._stops: set[asyncio.Future[None]] = set()

    def ticket(self, seat_ttl: float) -> Ticket:
        """A new fetch's ticket; ``seat_ttl`` outlasts any gap between two of its requests."""
        return Ticket(seat_ttl)

    def __len__(self) -> int:
        """Requests waiting in this process's line."""
        with self._mutex:
            return len(self._line)

    async def acquire(
        self,
        ticket: Ticket | None = None,
        step: Step = Step.SEND_REQUEST,
        on_wait: OnWait | None = None,
        *,
        deadline: float = math.inf,
        too_late: Callable[[], BaseException] | None = None,
    ) -> None:
        """Wait until this request of ``ticket``'s fetch may go, and count it.

        Raises :class:`LockedOutError` when the token is locked out (nothing is sent), and
        ``too_late()`` when the request cannot go by ``deadline`` (clock time). Each new
        kind of wait is told to ``on_wait`` before it starts. A cancelled wait takes nothing.
        """
        rank = ticket.rank(step) if ticket is not None else _untracked_rank(step)
        me = self._enter(int(rank), resend=ticket is not None and ticket.resend(step))
        told: set[Why | None] = set()

        def tell(seconds: float, why: Why | None, reason: str) -> None:
            if on_wait is not None and why not in told:
                told.add(why)
                on_wait(seconds, THROTTLED if why is Why.THROTTLED else None, reason)

        try:
            while True:
                self._raise_if_locked_since(me)
                now = self.clock.now()
                _check_deadline(now, deadline, too_late)
                ahead = self._ahead(me)
                if ahead:
                    reason = f"pacing: queued behind {ahead} requests of this token"
                    tell(ahead * _AVERAGE_GAP, None, reason)
                    await self._pause(me, deadline)
                    continue
                decision, backend_now = await self.backend.apply(
                    functools.partial(
                        take,
                        who=self._who,
                        rank=rank,
                        waited=now - me.key[2],
                        seat=ticket.id if ticket is not None else None,
                        seat_ttl=ticket.seat_ttl if ticket is not None else 0.0,
                    )
                )
                if isinstance(decision, Granted):
                    self._forget_lock()  # the budget says there is none (any more)
                    if ticket is not None:
                        ticket.polled = step is not Step.SEND_REQUEST
                        ticket.sent = ticket.sent or step is Step.SEND_REQUEST
                    return
                if isinstance(decision, Locked):
                    self._stop(decision, backend_now)
                await self._wait_for(me, decision, backend_now, deadline, too_late, tell)
        except BaseException:
            await self._give_up_place(me)
            raise
        finally:
            self._leave(me)

    async def _wait_for(
        self,
        me: _Waiter,
        later: Later,
        backend_now: float,
        deadline: float,
        too_late: Callable[[], BaseException] | None,
        tell: Callable[[float, Why | None, str], None],
    ) -> None:
        wait = max(later.at - backend_now, 0.0)
        if later.why in (Why.PACING, Why.THROTTLED):
            if self.clock.now() + wait >= deadline:
                raise _late(too_late)  # the slot itself comes too late
        else:
            wait = min(wait, self.backend.recheck)  # others may change it sooner
        tell(wait, later.why, _REASONS[later.why])
        await self._pause(me, min(self.clock.now() + wait, deadline))

    async def release(self, ticket: Ticket) -> None:
        """A fetch ended: its reference in flight no longer counts."""
        await self.backend.apply(functools.partial(release, seat=ticket.id))
        self._wake_head()

    async def slow_down(self, seconds: float) -> None:
        """After a 1018: no request of this token for ``seconds``, everywhere it is shared."""
        await self.backend.apply(functools.partial(slow_down, seconds=seconds))

    async def lock_out(self, error: LockedOutError, seconds: float) -> None:
        """After a 1025: no request of this token for ``seconds``, everywhere it is shared;
        every waiting request and sleeping fetch here stops at once."""
        until, now = await self.backend.apply(
            functools.partial(lock, seconds=seconds, message=str(error))
        )
        self._note_lock(Locked(until, str(error)), now)

    async def unlock(self) -> bool:
        """Clear a lock-out everywhere the budget is shared. True if there was one."""
        was, _ = await self.backend.apply(unlock)
        self._forget_lock()
        return was

    async def sleep(self, seconds: float) -> None:
        """Sleep on the clock, cut short by a lock-out of this token noted meanwhile (which
        then raises). One noted before is left to the next request's :meth:`acquire`, which
        asks the budget: it may have been cleared elsewhere (``ibkr-flex unlock``)."""
        with self._mutex:
            epoch = self._lock_epoch
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
                noted = self._lock_epoch > epoch
        if noted:
            self._raise_if_locked()

    # --- the line ------------------------------------------------------------------------

    def _enter(self, rank: int, *, resend: bool) -> _Waiter:
        me = _Waiter(
            (rank, not resend, self.clock.now(), next(self._arrivals)),
            asyncio.get_running_loop(),
            self._lock_epoch,
        )
        with self._mutex:
            bisect.insort(self._line, me, key=lambda w: w.key)
        return me

    def _leave(self, me: _Waiter) -> None:
        with self._mutex:
            was_head = bool(self._line) and self._line[0] is me
            with contextlib.suppress(ValueError):
                self._line.remove(me)
        if was_head:
            self._wake_head()

    async def _give_up_place(self, me: _Waiter) -> None:
        """A waiter leaves without its request (cancelled, too late, locked out): if it was
        the process's last, its place in the shared line goes now, not after GRACE."""
        with self._mutex:
            last = self._line == [me]
        if last:
            with contextlib.suppress(Exception):
                await self.backend.apply(functools.partial(leave, who=self._who))

    def _ahead(self, me: _Waiter) -> int:
        with self._mutex:
            return self._line.index(me)

    def _wake_head(self) -> None:
        with self._mutex:
            head = self._line[0] if self._line else None
        if head is not None:
            self._wake(head)

    def _wake(self, waiter: _Waiter) -> None:
        with self._mutex:
            waiter.woken = True
            wake = waiter.wake
        if wake is not None:
            waiter.loop.call_soon_threadsafe(_set, wake)

    async def _pause(self, me: _Waiter, until: float) -> None:
        """Sleep until ``until`` (clock time), or until woken by a change in the line."""
        wake = me.loop.create_future()
        with self._mutex:
            if me.woken:  # a change came since we last looked
                me.woken = False
                return
            me.wake = wake
        waits: set[asyncio.Future[None]] = {wake}
        if math.isfinite(until):
            waits.add(asyncio.ensure_future(self.clock.sleep(max(until - self.clock.now(), 0))))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            with self._mutex:
                me.wake, me.woken = None, False

    # --- lock-outs -----------------------------------------------------------------------

    def _note_lock(self, locked: Locked, backend_now: float) -> LockedOutError:
        """Remember a lock-out seen in the budget and stop everyone here waiting on it."""
        remaining = max(locked.until - backend_now, 0.0)
        error = LockedOutError(
            f"{locked.message} -- the token is locked out for another {remaining:.0f} s "
            f"(lockout_seconds, kept in {self.backend.describe()}) and nothing is sent before "
            "then; fix the cause, then run `ibkr-flex unlock` (or ibkr_flex_client.unlock()) "
            "to clear it sooner",
            code=1025,
        )
        with self._mutex:
            self._locked = (self.clock.now() + remaining, error)
            self._lock_epoch += 1
            waiters = list(self._line)
            stops = list(self._stops)
        for waiter in waiters:
            self._wake(waiter)
        for stop in stops:
            stop.get_loop().call_soon_threadsafe(_set, stop)
        return error

    def _stop(self, locked: Locked, backend_now: float) -> NoReturn:
        raise self._note_lock(locked, backend_now)

    def _forget_lock(self) -> None:
        with self._mutex:
            self._locked = None

    def _current_lock(self) -> LockedOutError | None:
        with self._mutex:
            if self._locked is not None and self.clock.now() >= self._locked[0]:
                self._locked = None  # it has ended
            return self._locked[1] if self._locked is not None else None

    def _raise_if_locked(self) -> None:
        error = self._current_lock()
        if error is not None:
            raise _copy(error)

    def _raise_if_locked_since(self, me: _Waiter) -> None:
        # A lock-out noted while it waited stops it; one noted before it came is asked of
        # the budget again (it may have been cleared by `ibkr-flex unlock` meanwhile).
        if me.epoch < self._lock_epoch:
            self._raise_if_locked()


def _untracked_rank(step: Step) -> Rank:
    return Rank.SEND if step is Step.SEND_REQUEST else Rank.POLL


def _check_deadline(
    now: float, deadline: float, too_late: Callable[[], BaseException] | None
) -> None:
    if now >= deadline:  # a request goes before its deadline, or not at all
        raise _late(too_late)


def _late(too_late: Callable[[], BaseException] | None) -> BaseException:
    return too_late() if too_late is not None else TimeoutError("no slot in time")


def _copy(error: LockedOutError) -> LockedOutError:
    return LockedOutError(str(error), code=error.code, message=error.message, step=error.step)


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
