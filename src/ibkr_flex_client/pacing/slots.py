"""A token's budget as pure arithmetic: a state and the time in, a decision out.

IB allows 1 request per second and 10 per minute **per token**, across every process and
machine that uses it; it answers 1018 to a violator and may put it in a penalty box, and after
too many failed attempts it locks the token out (1025) ("Rate limits" and "Error codes" in
``docs/protocol.md``). Everything that shares a token's budget (one process, every process of
a machine, every worker behind one Redis) keeps one :class:`TokenState` and changes it only
through the functions here, atomically (the backend's job). No clock, no I/O, no asyncio.

The rules, in the order :func:`take` applies them:

* **Locked out** after a 1025 until ``locked_until``: nothing goes.
* **Slots**: a request may go now if none went within :data:`SECOND` and fewer than
  :data:`PER_MINUTE` within :data:`MINUTE`, and no 1018 slow-down is running.
* **Bounded references**: a SendRequest creates a reference code that must be polled before
  it expires (IB does not say when; poll within a minute, says ``docs/protocol.md``). A new
  SendRequest goes only while fewer than :data:`MAX_AWAITING` references wait for their first
  poll and fewer than :data:`MAX_IN_FLIGHT` are unfinished, token-wide.
* **Fair order**: of everyone waiting for the slot, first polls go first, then other polls,
  then SendRequests, oldest first. Each process (or worker) waits in line through its
  :class:`Demand`; a demand whose owner does not come back in time (:data:`GRACE`) is dropped.

Times are seconds on the backend's clock (one clock for everyone who shares the state).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from typing import Any

from ..retry import MAX_BACKOFF, MINUTE, PER_MINUTE, SECOND

__all__ = [
    "GRACE",
    "MAX_AWAITING",
    "MAX_IN_FLIGHT",
    "MAX_LOCKOUT",
    "Demand",
    "Granted",
    "Later",
    "Locked",
    "Mark",
    "Rank",
    "Seat",
    "TokenState",
    "Why",
    "expires_in",
    "forget",
    "full_minute",
    "lock",
    "release",
    "shift",
    "slow_down",
    "take",
    "unlock",
]

# With polls first, the k-th reference waiting for its first poll gets it within k slots of
# the next free one: at most ~51 s away when the minute is full (10 slots 1.1 s apart, the
# first leaving after 61 s), so two keep every first poll within 60 s of its SendRequest.
MAX_AWAITING = 2
# Unfinished references (polled at least once, statement not yet in): each asks for a poll
# every few seconds while IB generates; more than this would only queue behind each other.
MAX_IN_FLIGHT = 4
# A waiter told to come back at t that has not come back by t + GRACE has gone (killed, or
# stuck): its place in line is dropped so that it cannot hold everyone else up.
GRACE = 3.0
# The longest lock-out kept (lockout_seconds' maximum): a week.
MAX_LOCKOUT = 7 * 24 * 3600.0
# A state holding more than this is not one we wrote (see TokenState.from_json).
_MAX_ENTRIES = 4096
_MAX_MESSAGE = 2000
NEVER = -math.inf


class Rank(enum.IntEnum):
    """Who goes first when a slot comes free: lower first."""

    FIRST_POLL = 0  # a reference's first GetStatement: it must come within a minute
    POLL = 1  # a later GetStatement of a statement IB is still generating
    SEND = 2  # a SendRequest: a new reference, only when the others are served


class Why(str, enum.Enum):
    """Why a request must wait."""

    PACING = "pacing"  # the 1-per-second / 10-per-minute slots
    THROTTLED = "throttled"  # a 1018 slow-down
    OTHERS = "others"  # a request of another process or worker goes first
    REFERENCES = "references"  # too many references in flight: wait for them to be polled


@dataclasses.dataclass(slots=True)
class Demand:
    """One waiter's place in line: its best request's rank, since when it waits, and when
    it said it would come back (it is dropped GRACE seconds after)."""

    rank: int
    since: float
    due: float
    owner: str
    seat: bool = False  # its request belongs to a fetch already holding a reference


@dataclasses.dataclass(slots=True)
class Seat:
    """One fetch's reference in flight: when its SendRequest went, whether it has been polled
    since, and when it is dropped if its fetch never says it ended (a killed process)."""

    issued: float
    polled: bool
    expires: float
    owner: str


@dataclasses.dataclass(frozen=True, slots=True)
class Mark:
    """When the state was last written, on two clocks: the time its times are in (the wall
    clock) and a steady clock of the machine (since ``boot``, which names the boot). The
    next writer on the same boot sees by how much the wall clock was stepped meanwhile."""

    boot: str
    steady: float
    wall: float


@dataclasses.dataclass(slots=True)
class TokenState:
    """Everything shared about one token's budget. Changed only by this module's functions."""

    sent: list[float] = dataclasses.field(default_factory=list)
    blocked_until: float = NEVER
    locked_until: float = NEVER
    locked_message: str = ""
    seats: dict[str, Seat] = dataclasses.field(default_factory=dict)
    demands: dict[str, Demand] = dataclasses.field(default_factory=dict)
    # How long the lock-out was set for: a clock put back cannot make it last longer.
    locked_for: float = 0.0
    # Written by a backend that can tell its clock was stepped (see Mark); else None.
    mark: Mark | None = None

    def to_json(self) -> bytes:
        """Compact JSON (``-inf`` as null)."""
        return json.dumps(
            {
                "v": 1,
                "sent": self.sent,
                "blocked_until": _finite_or_none(self.blocked_until),
                "locked_until": _finite_or_none(self.locked_until),
                "locked_message": self.locked_message,
                "seats": {k: dataclasses.astuple(s) for k, s in self.seats.items()},
                "demands": {k: dataclasses.astuple(d) for k, d in self.demands.items()},
                "locked_for": self.locked_for,
                "mark": dataclasses.astuple(self.mark) if self.mark is not None else None,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> TokenState:
        """The state written by :meth:`to_json`; ``ValueError`` for anything else (a corrupt
        or foreign file), never a state that could let a burst through."""
        try:
            raw = _version_1(json.loads(data))
            sent = [_time(t) for t in _sized(raw["sent"], list)]
            seats = {
                _key(k): Seat(_time(i), _flag(p), _time(e), _text(o))
                for k, (i, p, e, o) in _sized(raw["seats"], dict).items()
            }
            demands = {
                _key(k): Demand(_rank(r), _time(s), _time(d), _text(o), _flag(h))
                for k, (r, s, d, o, h) in _sized(raw["demands"], dict).items()
            }
            mark = raw.get("mark")
            return cls(
                locked_for=_time(raw.get("locked_for", MAX_LOCKOUT)),
                mark=None if mark is None else Mark(_key(mark[0]), _time(mark[1]), _time(mark[2])),
                sent=sorted(sent),
                blocked_until=_optional_time(raw["blocked_until"]),
                locked_until=_optional_time(raw["locked_until"]),
                locked_message=_text(raw["locked_message"]),
                seats=seats,
                demands=demands,
            )
        except (KeyError, TypeError, ValueError, RecursionError) as exc:
            raise ValueError(f"corrupt token state: {type(exc).__name__}") from None


@dataclasses.dataclass(frozen=True, slots=True)
class Granted:
    """The request may go now; it has been counted."""


@dataclasses.dataclass(frozen=True, slots=True)
class Later:
    """Not now: ask again at ``at`` (sooner if something changes), for the reason ``why``."""

    at: float
    why: Why


@dataclasses.dataclass(frozen=True, slots=True)
class Locked:
    """The token is locked out (1025) until ``until``; ``message`` says by what."""

    until: float
    message: str


Decision = Granted | Later | Locked


def full_minute(now: float) -> TokenState:
    """The state to assume when the real one cannot be read: this minute's slots all used,
    so the next request waits a full minute (never a burst)."""
    return TokenState(sent=[now] * PER_MINUTE)


def forget(state: TokenState, now: float) -> None:
    """Drop what no longer constrains anything, and pull back times that lie further ahead
    than this module ever sets them (a clock that was put back): never a longer wait than
    the rules give, never a shorter one."""
    state.sent = [min(t, now) for t in state.sent if t > now - MINUTE][-PER_MINUTE:]
    state.blocked_until = min(state.blocked_until, now + MAX_BACKOFF)
    state.locked_until = min(state.locked_until, now + min(state.locked_for, MAX_LOCKOUT))
    if state.locked_until <= now:
        state.locked_until, state.locked_message = NEVER, ""
    state.seats = {k: s for k, s in state.seats.items() if s.expires > now}
    state.demands = {k: d for k, d in state.demands.items() if d.due + GRACE > now}
    for demand in state.demands.values():
        demand.due = min(demand.due, now + MAX_BACKOFF)


def next_slot(state: TokenState, now: float) -> float:
    """The earliest time a request may go: the slots and any 1018 slow-down."""
    at = max(now, state.blocked_until)
    if state.sent:
        at = max(at, state.sent[-1] + SECOND)
        if len(state.sent) >= PER_MINUTE:
            at = max(at, state.sent[-PER_MINUTE] + MINUTE)
    return at


def take(
    state: TokenState,
    now: float,
    *,
    who: str,
    rank: Rank,
    waited: float = 0.0,
    seat: str | None = None,
    seat_ttl: float = MINUTE,
) -> Decision:
    """Take a slot for ``who`` (one waiter: a process's line for this token) now, or say when
    to ask again.

    Args:
        who: the waiter's id; its :class:`Demand` keeps its place in line between asks.
        rank: the request's :class:`Rank`.
        waited: how long the request has waited already (its place among equal ranks).
        seat: the fetch's id, to count its reference in flight (None: not counted).
        seat_ttl: seconds after this request that the fetch's reference is dropped if the
            fetch never reports its end (longer than any gap between two of its requests).
    """
    forget(state, now)
    owner = who.rpartition("/")[0]
    if state.locked_until > now:
        state.demands.pop(who, None)
        return Locked(state.locked_until, state.locked_message)
    held = seat is not None and seat in state.seats
    if rank is Rank.SEND and not held and not _may_issue(state):
        state.demands.pop(who, None)
        soonest = min((s.expires for s in state.seats.values()), default=now + SECOND)
        return Later(soonest, Why.REFERENCES)
    at = next_slot(state, now)
    mine = Demand(int(rank), now - max(waited, 0.0), at, owner, held)
    previous = state.demands.get(who)
    if previous is not None and previous.rank == mine.rank:
        mine.since = min(mine.since, previous.since)  # keep its place in line
    state.demands[who] = mine
    if at > now:
        why = Why.THROTTLED if state.blocked_until >= at else Why.PACING
        return Later(at, why)
    ahead = [d for k, d in state.demands.items() if k != who and _outranks(d, mine, state)]
    if ahead:
        first = min(ahead, key=lambda d: d.due)
        return Later(min(max(first.due, now) + GRACE, now + SECOND), Why.OTHERS)
    del state.demands[who]
    state.sent.append(now)
    if seat is not None:
        expires = now + max(seat_ttl, SECOND)
        if rank is Rank.SEND:
            state.seats[seat] = Seat(now, False, expires, owner)
        else:
            old = state.seats.get(seat)
            issued = old.issued if old is not None else now
            state.seats[seat] = Seat(issued, True, expires, owner)
    return Granted()


def _may_issue(state: TokenState) -> bool:
    awaiting = sum(1 for s in state.seats.values() if not s.polled)
    return awaiting < MAX_AWAITING and len(state.seats) < MAX_IN_FLIGHT


def _outranks(other: Demand, mine: Demand, state: TokenState) -> bool:
    if other.rank == Rank.SEND and not other.seat and not _may_issue(state):
        return False  # it cannot go now either
    return (other.rank, other.since) < (mine.rank, mine.since)


def release(state: TokenState, now: float, *, seat: str) -> None:
    """A fetch ended: its reference no longer counts."""
    forget(state, now)
    state.seats.pop(seat, None)


def leave(state: TokenState, now: float, *, who: str) -> None:
    """A waiter gave up (cancelled, or too late): its place in line goes."""
    forget(state, now)
    state.demands.pop(who, None)


def slow_down(state: TokenState, now: float, *, seconds: float) -> None:
    """After a 1018: no request of the token for ``seconds`` (at most IB's 10-minute box)."""
    forget(state, now)
    state.blocked_until = max(state.blocked_until, now + min(seconds, MAX_BACKOFF))


def lock(state: TokenState, now: float, *, seconds: float, message: str) -> float:
    """After a 1025: nothing of the token goes for ``seconds``; returns the end."""
    forget(state, now)
    until = now + min(max(seconds, 0.0), MAX_LOCKOUT)
    if until > state.locked_until:
        state.locked_until, state.locked_message = until, message[:_MAX_MESSAGE]
        state.locked_for = until - now
    return state.locked_until


def unlock(state: TokenState, now: float) -> bool:
    """Clear a lock-out (the user fixed its cause). True if there was one."""
    forget(state, now)
    was = state.locked_until > now
    state.locked_until, state.locked_message = NEVER, ""
    return was


def shift(state: TokenState, seconds: float) -> None:
    """Move every time in the state by ``seconds``: the wall clock they are in was stepped
    by that much (so a step forward lets no burst through, a step back stretches no wait)."""
    state.sent = [t + seconds for t in state.sent]
    state.blocked_until += seconds
    state.locked_until += seconds
    for seat in state.seats.values():
        seat.issued += seconds
        seat.expires += seconds
    for demand in state.demands.values():
        demand.since += seconds
        demand.due += seconds


def forget_owners(state: TokenState, dead: set[str]) -> None:
    """Drop the seats and places in line of owners known to be gone (a killed process)."""
    if dead:
        state.seats = {k: s for k, s in state.seats.items() if s.owner not in dead}
        state.demands = {k: d for k, d in state.demands.items() if d.owner not in dead}


def owners(state: TokenState) -> set[str]:
    """Every owner named in the state."""
    return {s.owner for s in state.seats.values()} | {d.owner for d in state.demands.values()}


def expires_in(state: TokenState, now: float) -> float:
    """Seconds after which nothing in the state constrains anything (so it may be deleted)."""
    ends = [now]
    if state.sent:
        ends.append(state.sent[-1] + MINUTE)
    ends += [state.blocked_until, state.locked_until]
    ends += [s.expires for s in state.seats.values()]
    ends += [d.due + GRACE for d in state.demands.values()]
    return max(ends) - now


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _version_1(raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict) or raw.get("v") != 1:
        raise ValueError("not a version-1 token state")
    return raw


def _sized(value: object, kind: type[list[Any]] | type[dict[str, Any]]) -> Any:  # noqa: ANN401
    if not isinstance(value, kind) or len(value) > _MAX_ENTRIES:
        raise ValueError(f"expected a {kind.__name__} of at most {_MAX_ENTRIES}")
    return value


def _time(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("a time must be a finite number")
    return float(value)


def _optional_time(value: object) -> float:
    return NEVER if value is None else _time(value)


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str) or len(value) > _MAX_MESSAGE:
        raise ValueError("expected a short string")
    return value


def _key(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 200:
        raise ValueError("expected an id")
    return value


def _rank(value: object) -> int:
    if isinstance(value, bool) or value not in (0, 1, 2):
        raise ValueError("expected a rank")
    return int(value)
