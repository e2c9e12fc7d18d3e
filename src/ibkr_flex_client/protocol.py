"""IB's Flex Web Service v3 as pure functions: build the two requests, read the answers.

No I/O and no clock here. Every rule cites ``docs/protocol.md`` (the project's copy of what IB's
service does); section names below refer to it.
"""

from __future__ import annotations

import dataclasses
import enum
import platform
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import date
from urllib.parse import quote, urlsplit

from ._version import __version__
from ._xml import XmlRejectedError, parse_xml
from .errors import FlexError, Step, UnsafeUrlError

__all__ = [
    "DEFAULT_BASE_URL",
    "THROTTLED",
    "CodeKind",
    "HttpRequest",
    "IbAnswer",
    "Reference",
    "Reply",
    "Saved",
    "Trouble",
    "check_statement_url",
    "classify",
    "get_statement_request",
    "read_get_answer",
    "read_send_answer",
    "redact",
    "send_request",
    "user_agent",
]

# "The two steps": both endpoints live under this host and path.
DEFAULT_BASE_URL = "https://ndcdyn.interactivebrokers.com"
SEND_PATH = "/AccountManagement/FlexWebService/SendRequest"
GET_PATH = "/AccountManagement/FlexWebService/GetStatement"
# Without v=3 the service falls back to version 2: send it on both steps.
API_VERSION = "3"
# "`<Url>` ... Follow it only when it is https on an `interactivebrokers.com` host."
IB_DOMAIN = "interactivebrokers.com"


class CodeKind(enum.Enum):
    """What an IB error code means for the client ("Error codes" table)."""

    TRANSIENT = "transient"  # retry with backoff
    THROTTLED = "throttled"  # 1018: back off long
    IN_PROGRESS = "in progress"  # 1019: normal, poll again
    AUTH = "auth"  # renew the token
    REQUEST = "request"  # fix the query or request
    REFERENCE = "reference"  # 1017: a fresh SendRequest may help once
    LOCKED_OUT = "locked out"  # 1025: never retry


_CODE_KINDS: Mapping[int, CodeKind] = {
    1001: CodeKind.TRANSIENT,  # statement could not be generated now
    1003: CodeKind.REQUEST,  # statement not available (often weekend/unpublished dates)
    1004: CodeKind.TRANSIENT,  # statement incomplete
    1005: CodeKind.TRANSIENT,  # settlement data not ready
    1006: CodeKind.TRANSIENT,  # FIFO P/L not ready
    1007: CodeKind.TRANSIENT,  # MTM P/L not ready
    1008: CodeKind.TRANSIENT,  # MTM and FIFO P/L not ready
    1009: CodeKind.TRANSIENT,  # server under heavy load
    1010: CodeKind.REQUEST,  # legacy Flex queries unsupported
    1011: CodeKind.AUTH,  # service account inactive
    1012: CodeKind.AUTH,  # token expired
    1013: CodeKind.AUTH,  # IP restriction
    1014: CodeKind.REQUEST,  # query invalid
    1015: CodeKind.AUTH,  # token invalid
    1016: CodeKind.AUTH,  # account invalid
    1017: CodeKind.REFERENCE,  # reference code invalid
    1018: CodeKind.THROTTLED,  # too many requests: 1/s and 10/min per token
    1019: CodeKind.IN_PROGRESS,  # statement generation in progress
    1020: CodeKind.REQUEST,  # invalid request or unable to validate
    1021: CodeKind.TRANSIENT,  # statement could not be retrieved now
    1025: CodeKind.LOCKED_OUT,  # (observed) too many failed attempts
}
# There is no 1002; any code not above is unknown and raised at once with IB's message.

# "Too many requests": the token's 1/s or 10/min limit was hit. The one code every fetch of
# the token must hear about (see pacing.py).
THROTTLED = 1018


def classify(code: int) -> CodeKind | None:
    """The kind of an IB error code, or ``None`` for a code this library does not know."""
    return _CODE_KINDS.get(code)


def user_agent(extra: str | None = None) -> str:
    """The User-Agent IB asks for: technology and version, ``"Python/3.12"`` style."""
    python = ".".join(platform.python_version_tuple()[:2])
    ours = f"ibkr-flex-client/{__version__} Python/{python}"
    return f"{extra} {ours}" if extra else ours


@dataclasses.dataclass(frozen=True, slots=True)
class HttpRequest:
    """One GET to make. ``params`` holds the token: never log it, use :attr:`safe_url`."""

    step: Step
    url: str
    params: Mapping[str, str] = dataclasses.field(repr=False)

    @property
    def safe_url(self) -> str:
        """The URL with every parameter but the token, for logs and messages."""
        shown = "&".join(f"{k}={quote(v)}" for k, v in self.params.items() if k != "t")
        return f"{self.url}?t=***&{shown}"


def send_request(
    *,
    base_url: str,
    token: str,
    query_id: str,
    from_date: date | None = None,
    to_date: date | None = None,
    period: int | None = None,
) -> HttpRequest:
    """Step 1: ``SendRequest?t=TOKEN&q=QUERY_ID&v=3`` with the optional overrides.

    "Optional SendRequest parameters": ``fd``/``td`` as ``yyyyMMdd`` (both together) and ``p``;
    parameters with other names are silently ignored by IB, so only these are ever sent.
    """
    params = {"t": token, "q": query_id, "v": API_VERSION}
    if from_date is not None and to_date is not None:
        params["fd"] = from_date.strftime("%Y%m%d")
        params["td"] = to_date.strftime("%Y%m%d")
    if period is not None:
        params["p"] = str(period)
    return HttpRequest(Step.SEND_REQUEST, base_url.rstrip("/") + SEND_PATH, params)


def get_statement_request(*, url: str, token: str, reference_code: str) -> HttpRequest:
    """Step 2: ``<Url>?t=TOKEN&q=REFERENCE_CODE&v=3``; ``url`` must have passed the URL check."""
    params = {"t": token, "q": reference_code, "v": API_VERSION}
    return HttpRequest(Step.GET_STATEMENT, url, params)


def check_statement_url(url: str, base_url: str) -> str:
    """Return ``url`` (without query or fragment) if the token may be sent there.

    "`<Url>` has pointed at both `ndcdyn` and `gdcdyn`": follow it, but only when it is https on
    an ``interactivebrokers.com`` host on the default port, or on ``base_url``'s own scheme,
    host and port when a custom ``base_url`` is in use (a proxy, a local simulator). Anything
    else raises :class:`UnsafeUrlError` and the token goes nowhere.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is not None and parts.hostname and not parts.username and not parts.password:
        host = parts.hostname.lower()
        on_ib = host == IB_DOMAIN or host.endswith("." + IB_DOMAIN)
        if parts.scheme == "https" and on_ib and port in (None, 443):
            return parts._replace(query="", fragment="").geturl()
        base = urlsplit(base_url)
        if base_url != DEFAULT_BASE_URL and (
            parts.scheme,
            host,
            port,
        ) == (base.scheme, (base.hostname or "").lower(), base.port):
            return parts._replace(query="", fragment="").geturl()
    shown = url if len(url) <= 200 else url[:200] + "..."
    raise UnsafeUrlError(
        f"IB's answer gave a statement URL that is not https on an {IB_DOMAIN} host: "
        f"{shown!r}; the token was not sent there",
        step=Step.SEND_REQUEST,
    )


def redact(text: str, secret: str) -> str:
    """``text`` with every spelling of ``secret`` a URL or a log might hold replaced by ``***``."""
    for form in {secret, quote(secret, safe=""), quote(secret), quote(secret).replace("%20", "+")}:
        if form:
            text = text.replace(form, "***")
    return text


# --- Answers -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer as the driver received it: status and raw body bytes."""

    status: int
    body: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Saved:
    """A statement the driver streamed to a file and checked (``download()``): complete,
    well-formed, a ``FlexQueryResponse``."""

    status: int
    path: str
    size: int


@dataclasses.dataclass(frozen=True, slots=True)
class Trouble:
    """A transient failure that is not an IB code: HTTP, transport or a broken body."""

    reason: str
    http_status: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class IbAnswer:
    """IB's envelope with an ``<ErrorCode>``; ``kind`` is ``None`` for an unknown code."""

    code: int
    message: str
    http_status: int

    @property
    def kind(self) -> CodeKind | None:
        return classify(self.code)


@dataclasses.dataclass(frozen=True, slots=True)
class Reference:
    """SendRequest's success: the reference code and where to fetch the statement."""

    code: str
    url: str | None


_HTML = re.compile(rb"^\s*(<!doctype\s+html|<html)", re.IGNORECASE)


def _describe_bad_body(reply: Reply, problem: str) -> Trouble:
    """Name what came instead of XML: an empty body, or broken XML."""
    if not reply.body.strip():
        return Trouble("an empty body", reply.status)
    return Trouble(f"a body that is not a complete XML document: {problem}", reply.status)


def _text(root: ET.Element, *names: str) -> str | None:
    for name in names:
        found = root.find(name)
        if found is not None:
            return (found.text or "").strip()
    return None


def _read_envelope(reply: Reply, step: Step) -> tuple[ET.Element, IbAnswer | None] | Trouble:
    """Parse a ``FlexStatementResponse``-style answer; non-2xx and broken bodies are Trouble."""
    if _HTML.match(reply.body[:512]):  # maintenance and 404 pages, whatever the status
        return Trouble(f"an HTML page instead of XML (HTTP {reply.status})", reply.status)
    try:
        root = parse_xml(reply.body)
    except XmlRejectedError as exc:
        problem = str(exc)
    else:
        code_text = _text(root, "ErrorCode")
        if code_text:
            if not code_text.isdigit():
                return Trouble(f"an ErrorCode that is not a number: {code_text[:40]!r}")
            message = _text(root, "ErrorMessage") or ""
            return root, IbAnswer(int(code_text), message, reply.status)
        if not 200 <= reply.status < 300:
            return Trouble(f"HTTP {reply.status} from {step}", reply.status)
        return root, None
    if not 200 <= reply.status < 300:
        return Trouble(f"HTTP {reply.status} from {step}", reply.status)
    return _describe_bad_body(reply, problem)


def read_send_answer(reply: Reply) -> Reference | IbAnswer | Trouble:
    """Decipher SendRequest's answer. Branch on ErrorCode, not on Status ("The two steps")."""
    envelope = _read_envelope(reply, Step.SEND_REQUEST)
    if isinstance(envelope, Trouble):
        return envelope
    root, answer = envelope
    if answer is not None:
        return answer
    if root.tag != "FlexStatementResponse":
        return Trouble(f"an unexpected <{root.tag[:40]}> answer to SendRequest", reply.status)
    reference = _text(root, "ReferenceCode")
    if not reference:
        return Trouble("a SendRequest answer without a ReferenceCode", reply.status)
    # IB's sample writes <url>, real answers write <Url>: match either.
    return Reference(reference, _text(root, "Url", "url") or None)


def read_get_answer(reply: Reply) -> ET.Element | IbAnswer | Trouble:
    """Decipher GetStatement's answer: the parsed statement root, an IB code, or Trouble.

    The statement itself is checked by :class:`FlexStatement`; a ``FlexQueryResponse`` root is
    handed back as parsed so the document is parsed once.
    """
    envelope = _read_envelope(reply, Step.GET_STATEMENT)
    if isinstance(envelope, Trouble):
        return envelope
    root, answer = envelope
    if answer is not None:
        return answer
    if root.tag == "FlexQueryResponse":
        return root
    return Trouble(f"an unexpected <{root.tag[:40]}> answer to GetStatement", reply.status)


def answer_error(answer: IbAnswer, step: Step, cls: type[FlexError]) -> FlexError:
    """The error for an IB code: IB's code and message in the text and in the attributes."""
    return cls(
        f"IB error {answer.code} from {step}: {answer.message or '(no message)'}",
        code=answer.code,
        message=answer.message,
        step=step,
        http_status=answer.http_status,
    )
