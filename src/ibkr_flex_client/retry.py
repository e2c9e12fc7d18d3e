"""When to try again and when to give up: pure functions of counts and settings.

The rules, from ``docs/protocol.md`` ("Error codes", "Rate limits"):

* 1019 (generation in progress) is normal: poll again on a gentle schedule, capped at
  ``backoff_base``. A small statement is ready in about a second.
* 1018 (too many requests) means the token's 1-per-second / 10-per-minute limit was hit. Back
  off exponentially from ``backoff_base``; IB's penalty box lasts 10 minutes, so no single wait
  is longer than :data:`MAX_BACKOFF`.
* Transient IB codes and HTTP trouble back off the same way.
* Token, request and lock-out codes, and unknown codes, are never retried: retrying a failed
  request is what earns 1025 (too many failed attempts).
* DNS failing for every host a fetch may use, for two minutes without a break, means no
  network: the flow gives up then ("Hosts", :func:`.hosts.no_network`), before this budget.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import (
    FlexError,
    LockedOutError,
    NotReadyError,
    QueryError,
    ServiceUnavailableError,
    Step,
    ThrottledError,
    TokenError,
    TransportError,
    UnknownCodeError,
)
from .protocol import CodeKind, IbAnswer, Trouble, answer_error

__all__ = [
    "MAX_BACKOFF",
    "attempt_limit",
    "backoff_delay",
    "decide",
    "poll_delay",
    "window_wait",
]

# IB's penalty box lasts 10 minutes ("Rate limits"): a longer single wait gains nothing.
MAX_BACKOFF = 600.0

# Seconds between polls while IB answers 1019; after these, backoff_base (the cap). Dense for
# the first ten seconds (a small statement is ready in about a second, most within ten), then
# every backoff_base: with the default of 10 s, polls go at about 1, 2, 4, 6, 8, 10, 20 and
# 30 s, which with the SendRequest is 9 requests, all one fetch may use in a minute
# (OWN_PER_MINUTE). A denser start would leave the rest of the first minute silent.
POLL_SCHEDULE = (1.0, 2.0, 2.0, 2.0, 2.0)

# IB's documented limits per token ("Rate limits"): 1 request per second, 10 per minute. Our
# spacing is a little wider: a request's arrival at IB can lag its departure by network
# jitter, and two requests sent exactly 1.000 s apart may arrive 0.990 s apart.
PER_MINUTE = 10
SECOND = 1.1
MINUTE = 61.0

# IB allows 10 requests per 60 s per token ("Rate limits"). One fetch keeps to 9 of them in
# any 60 s, so a long generation never spends the token's whole minute on its own polls.
OWN_PER_MINUTE = 9
WINDOW = 60.0

# One HTTP attempt may make no progress for `timeout` seconds; in total it may last this many
# timeouts, so a server trickling bytes cannot hold a fetch forever.
ATTEMPT_LIMIT_FACTOR = 10


def poll_delay(polls_answered_in_progress: int, backoff_base: float) -> float:
    """Seconds to wait before the next poll after that many 1019 answers (the first is 1)."""
    index = max(polls_answered_in_progress, 1) - 1
    scheduled = POLL_SCHEDULE[min(index, len(POLL_SCHEDULE) - 1)]
    if index >= len(POLL_SCHEDULE):
        scheduled = backoff_base
    return min(scheduled, backoff_base)


def window_wait(desired: float, now: float, sent: Sequence[float]) -> float:
    """At least ``desired`` seconds, and long enough that a request sent after the wait is
    at most the :data:`OWN_PER_MINUTE`-th in any :data:`WINDOW` of ``sent`` (ascending times
    of the fetch's earlier requests on its own timeline, ``now`` included)."""
    recent = [t for t in sent if t > now + desired - WINDOW]
    if len(recent) >= OWN_PER_MINUTE:  # wait until the oldest that must leave has left
        return max(desired, recent[-OWN_PER_MINUTE] + WINDOW - now)
    return desired


def backoff_delay(failures_in_a_row: int, backoff_base: float) -> float:
    """Exponential backoff: ``backoff_base * 2**(n-1)`` for the n-th failure in a row, capped."""
    exponent = max(failures_in_a_row, 1) - 1
    cap = max(MAX_BACKOFF, backoff_base)
    # Compare exponents, not values: 2**exponent overflows a float long before the cap matters.
    if exponent >= 64:
        return cap
    return min(backoff_base * 2.0**exponent, cap)


def attempt_limit(timeout: float) -> float:
    """The most one HTTP attempt may take in total, whatever progress it makes."""
    return timeout * ATTEMPT_LIMIT_FACTOR


_TERMINAL: dict[CodeKind, type[FlexError]] = {
    CodeKind.AUTH: TokenError,
    CodeKind.REQUEST: QueryError,
    CodeKind.REFERENCE: QueryError,
    CodeKind.LOCKED_OUT: LockedOutError,
}
_EXHAUSTED: dict[CodeKind, type[FlexError]] = {
    CodeKind.THROTTLED: ThrottledError,
    CodeKind.IN_PROGRESS: NotReadyError,
    CodeKind.TRANSIENT: ServiceUnavailableError,
}


def decide(
    answer: IbAnswer | Trouble,
    *,
    step: Step,
    attempts: int,
    max_attempts: int,
    failures_in_a_row: int,
    in_progress: int,
    backoff_base: float,
) -> float | FlexError:
    """The retry-or-give-up decision after a request that did not succeed.

    Args:
        answer: IB's error answer, or the trouble that came instead of one.
        step: which request it answered.
        attempts: requests of this step made so far, this one included.
        max_attempts: the step's budget (``max_retries``).
        failures_in_a_row: throttle/transient failures in a row, this one included.
        in_progress: 1019 answers for the current reference code, this one included.
        backoff_base: the client's setting.

    Returns:
        The seconds to wait before trying again, or the error to raise.
    """
    if isinstance(answer, IbAnswer):
        kind = answer.kind
        if kind is None:
            return answer_error(answer, step, UnknownCodeError)
        if kind in _TERMINAL:
            return answer_error(answer, step, _TERMINAL[kind])
        if attempts >= max_attempts:
            error = answer_error(answer, step, _EXHAUSTED[kind])
            error.args = (f"gave up after {attempts} {step} requests; last answer: {error}",)
            return error
        if kind is CodeKind.IN_PROGRESS:
            return poll_delay(in_progress, backoff_base)
        return backoff_delay(failures_in_a_row, backoff_base)
    if attempts >= max_attempts:
        return TransportError(
            f"gave up after {attempts} {step} requests; last: {answer.reason}",
            step=step,
            http_status=answer.http_status,
        )
    return backoff_delay(failures_in_a_row, backoff_base)
