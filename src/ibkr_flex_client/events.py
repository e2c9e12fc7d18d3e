"""Progress of a fetch, as values: the same events go to the log and to a caller's callback."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable

from .errors import Step

__all__ = ["EventKind", "FetchEvent", "ProgressCallback"]


class EventKind(str, enum.Enum):
    """What happened."""

    REQUEST = "request"  # a request is about to be sent
    WAIT = "wait"  # the fetch sleeps before its next request (code/detail say why)
    DONE = "done"  # the statement arrived

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True, slots=True)
class FetchEvent:
    """One step of a fetch's progress. Holds no token.

    Attributes:
        kind: what happened.
        query_id: the query being fetched.
        step: the request concerned.
        attempt: requests of that step made so far in this fetch (the current one included;
            for ``WAIT``, the ones before the wait).
        elapsed: seconds since the fetch started.
        wait: for ``WAIT``, the seconds about to be slept.
        code: IB's error code, when the event is about one.
        detail: a human-readable reason (IB's message, the HTTP trouble, why we wait).
        size: for ``DONE``, the statement's size in bytes.
    """

    kind: EventKind
    query_id: str
    step: Step
    attempt: int
    elapsed: float
    wait: float | None = None
    code: int | None = None
    detail: str | None = None
    size: int | None = None

    def describe(self) -> str:
        """One line for people, e.g. ``query 7 GetStatement: waiting 1.5 s before #3 (...)``."""
        head = f"query {self.query_id} {self.step} #{self.attempt}"
        if self.kind is EventKind.WAIT:
            return (
                f"query {self.query_id} {self.step}: waiting {self.wait:.1f} s "
                f"before #{self.attempt + 1} ({self.detail})"
            )
        if self.kind is EventKind.DONE:
            return f"{head}: statement received ({self.size} bytes, {self.elapsed:.1f} s)"
        return f"{head}: {self.detail or self.kind}"


ProgressCallback = Callable[[FetchEvent], None]
