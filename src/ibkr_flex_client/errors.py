"""Every error :meth:`FlexClient.fetch` can raise, arranged by what the caller should do next.

::

    FlexError                      .code .message .step .http_status
    ├── TokenError                 renew the token       1011 1012 1013 1015 1016
    ├── QueryError                 fix the query/request 1003 1010 1014 1017 1020
    ├── TemporaryError             try again later: retries ran out
    │   ├── ThrottledError         1018 kept coming (too many requests for this token)
    │   ├── NotReadyError          1019 kept coming (statement still being generated)
    │   ├── ServiceUnavailableError  1001 1004-1009 1021 kept coming
    │   └── TransportError         HTTP trouble: refused, dropped, DNS, timeout, 5xx,
    │                              HTML or empty or truncated body
    ├── LockedOutError             1025: too many failed attempts; stop using the token
    ├── PacingError                the token's shared budget (state file, Redis) is out of
    │                              reach: nothing was sent
    ├── UnsafeUrlError             IB's answer pointed the token at a host we do not trust
    ├── UnknownCodeError           IB answered with a code this library does not know
    ├── SaveError                  download(): the statement could not be written to disk
    ├── StoreError                 sync: the database cannot be used
    │   └── StoreBusyError         another sync of the database is running: try later
    └── StatementError             bytes that are not a complete, well-formed Flex statement
        └── RowError               a row that does not fit the model given to rows()

The class says what to do; the attributes carry the data (IB's code and message, which of
the two steps failed, the HTTP status). Messages never contain the token. Codes and their
meaning are in ``docs/protocol.md`` (a copy of the project's IB protocol reference).
"""

from __future__ import annotations

import enum

__all__ = [
    "FlexError",
    "LockedOutError",
    "NotReadyError",
    "PacingError",
    "QueryError",
    "SaveError",
    "ServiceUnavailableError",
    "StatementError",
    "Step",
    "StoreBusyError",
    "StoreError",
    "TemporaryError",
    "ThrottledError",
    "TokenError",
    "TransportError",
    "UnknownCodeError",
    "UnsafeUrlError",
]


class Step(str, enum.Enum):
    """The two requests of the Flex Web Service, named as IB names their endpoints."""

    SEND_REQUEST = "SendRequest"
    GET_STATEMENT = "GetStatement"

    def __str__(self) -> str:
        return self.value


class FlexError(Exception):
    """Root of every error this library raises from a fetch.

    Attributes:
        code: IB's error code when IB gave one, else ``None``.
        message: IB's own error message, verbatim, when IB gave one, else ``None``.
        step: the request that failed (:class:`Step`), or ``None`` when no request was involved.
        http_status: the HTTP status of the last answer, when there was one.
    """

    def __init__(
        self,
        text: str,
        *,
        code: int | None = None,
        message: str | None = None,
        step: Step | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(text)
        self.code = code
        self.message = message
        self.step = step
        self.http_status = http_status

    def __reduce__(self) -> tuple[object, ...]:
        # Keep the keyword attributes through pickling (multiprocessing, task queues).
        return (
            _rebuild,
            (type(self), str(self), self.code, self.message, self.step, self.http_status),
        )


def _rebuild(
    cls: type[FlexError],
    text: str,
    code: int | None,
    message: str | None,
    step: Step | None,
    http_status: int | None,
) -> FlexError:
    return cls(text, code=code, message=message, step=step, http_status=http_status)


class TokenError(FlexError):
    """The token cannot be used (expired, invalid, IP-restricted, service inactive): renew it."""


class QueryError(FlexError):
    """IB rejected the query or the request (bad query id, unavailable dates): fix it."""


class TemporaryError(FlexError):
    """A transient failure outlived the retry budget: try again later."""


class ThrottledError(TemporaryError):
    """IB kept answering 1018, too many requests for this token."""


class NotReadyError(TemporaryError):
    """IB was still generating the statement (1019) when the polls ran out."""


class ServiceUnavailableError(TemporaryError):
    """IB kept answering with a transient code (1001, 1004-1009, 1021)."""


class TransportError(TemporaryError):
    """The HTTP exchange failed: no connection, a stall, a non-2xx status or a broken body."""


class LockedOutError(FlexError):
    """IB answered 1025 (too many failed attempts). Stop: every retry prolongs the lock-out."""


class PacingError(FlexError):
    """The token's shared budget could not be used: the state directory or file cannot be
    written, or the Redis server cannot be reached. No request was sent: going on without
    the budget others share could draw IB's throttle, so there is no silent fallback."""


class UnsafeUrlError(FlexError):
    """IB's answer named a download URL off IB's hosts; the token was not sent there."""


class UnknownCodeError(FlexError):
    """IB answered with an error code this library does not know; IB's message is kept."""


class SaveError(FlexError):
    """``download()`` could not write the statement file (no such directory, disk full,
    no permission). Nothing partial is left at the target path."""


class StoreError(FlexError):
    """A sync's database cannot be used: not a sync database, from a newer version of this
    library, unwritable, or busy with another sync. Nothing stored is lost."""


class StoreBusyError(StoreError):
    """Another sync of the same database is running; this one did nothing. Try again when
    it has finished."""


class StatementError(FlexError, ValueError):
    """The bytes are not a complete, well-formed Flex statement (or are hostile XML)."""
