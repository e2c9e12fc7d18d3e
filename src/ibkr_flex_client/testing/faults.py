"""What the simulated IB says, and how it is scripted to fail: plain values, no server.

IB's wording for each code, the tokens and queries that fail with each terminal code, the
faults a test can script, and the record of a request received. Importable without aiohttp;
:mod:`.simulator` serves them.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from collections.abc import Mapping

from ..protocol import GET_PATH

__all__ = [
    "IB_MESSAGES",
    "QUERY_CODES",
    "TOKEN_CODES",
    "Fault",
    "FaultKind",
    "RequestRecord",
    "fingerprint",
]

# IB's own wording for each code (its error-code page); 1025 is observed, not documented.
IB_MESSAGES: Mapping[int, str] = {
    1001: "Statement could not be generated at this time. Please try again shortly.",
    1003: "Statement is not available.",
    1004: "Statement is incomplete at this time. Please try again shortly.",
    1005: "Settlement data is not ready at this time. Please try again shortly.",
    1006: "FIFO P/L data is not ready at this time. Please try again shortly.",
    1007: "MTM P/L data is not ready at this time. Please try again shortly.",
    1008: "MTM and FIFO P/L data is not ready at this time. Please try again shortly.",
    1009: "The server is under heavy load. Statement could not be generated at this time. "
    "Please try again shortly.",
    1010: "Legacy Flex Queries are no longer supported. Please convert over to Activity Flex.",
    1011: "Service account is inactive.",
    1012: "Token has expired.",
    1013: "IP restriction.",
    1014: "Query is invalid.",
    1015: "Token is invalid.",
    1016: "Account in invalid.",
    1017: "Reference code is invalid.",
    1018: "Too many requests have been made from this token. Please try again shortly.",
    1019: "Statement generation in progress. Please try again shortly.",
    1020: "Invalid request or unable to validate request.",
    1021: "Statement could not be retrieved at this time. Please try again shortly.",
    1025: "Too many failed attempts. Please try again later.",
}

# Tokens the simulator knows to fail, with the terminal code each one gets.
TOKEN_CODES: Mapping[str, int] = {
    "inactive-token": 1011,
    "expired-token": 1012,
    "ip-restricted-token": 1013,
    "invalid-token": 1015,
    "invalid-account-token": 1016,
    "locked-out-token": 1025,
}
# Query ids the simulator knows to fail, with the code each one gets at SendRequest.
QUERY_CODES: Mapping[str, int] = {
    "unavailable-query": 1003,
    "legacy-query": 1010,
    "invalid-query": 1014,
    "bad-request-query": 1020,
}


def fingerprint(token: str) -> str:
    """A short, one-way name for a token, safe to record and print."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class FaultKind(enum.Enum):
    """What a scripted fault does to one request."""

    IB_CODE = "ib code"  # IB's envelope with this error code
    HTTP_STATUS = "http status"  # a bare HTTP error status, IB's maintenance page as body
    HTML = "html"  # an HTML page with status 200 instead of XML
    EMPTY = "empty"  # status 200 and an empty body
    DROP = "drop"  # the connection is closed without an answer
    HANG = "hang"  # no answer until the client gives up (or the simulator closes)
    TRUNCATE = "truncate"  # half the body, then the connection closes
    FOREIGN_URL = "foreign url"  # SendRequest succeeds but points <Url> at another host
    REDIRECT = "redirect"  # a 302 to another URL (a client must not carry the token there)


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    """One scripted failure; build them with the class methods."""

    kind: FaultKind
    code: int | None = None
    status: int = 200
    url: str | None = None

    @classmethod
    def ib_code(cls, code: int) -> Fault:
        """IB's envelope with ``code`` (``Warn`` for 1019, ``Fail`` otherwise)."""
        return cls(FaultKind.IB_CODE, code=code)

    @classmethod
    def http_status(cls, status: int = 503) -> Fault:
        """An HTTP error status with IB's maintenance page."""
        return cls(FaultKind.HTTP_STATUS, status=status)

    @classmethod
    def html(cls) -> Fault:
        """An HTML page with status 200 where XML belongs."""
        return cls(FaultKind.HTML)

    @classmethod
    def empty(cls) -> Fault:
        """Status 200 with an empty body."""
        return cls(FaultKind.EMPTY)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without answering."""
        return cls(FaultKind.DROP)

    @classmethod
    def hang(cls) -> Fault:
        """Never answer: the client's timeout must end the attempt."""
        return cls(FaultKind.HANG)

    @classmethod
    def truncated(cls) -> Fault:
        """Announce the full length, send half the body, close the connection."""
        return cls(FaultKind.TRUNCATE)

    @classmethod
    def redirect(cls, url: str = "https://flex.example.net/steal") -> Fault:
        """Answer 302 with ``Location: url``."""
        return cls(FaultKind.REDIRECT, status=302, url=url)

    @classmethod
    def foreign_url(cls, url: str = "https://flex.example.net" + GET_PATH) -> Fault:
        """SendRequest succeeds, but its ``<Url>`` points off IB's hosts (SendRequest only)."""
        return cls(FaultKind.FOREIGN_URL, url=url)


@dataclasses.dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the simulator received, and what it answered.

    ``answer`` is ``"reference"``, ``"statement"``, an IB code as text (``"1019"``), or
    ``"fault:<kind>"``. ``params`` holds every parameter but the token.
    """

    step: str
    token_fingerprint: str
    query: str
    answer: str
    at: float
    params: Mapping[str, str]
    user_agent: str
