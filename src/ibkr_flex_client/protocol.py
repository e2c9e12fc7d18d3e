"""IB's Flex Web Service v3 as pure functions: build the two requests, read the answers.

No I/O and no clock here. Every rule cites ``docs/protocol.md`` (the project's copy of what IB's
service does); section names below refer to it.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import ipaddress
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
    "TroubleKind",
    "check_statement_url",
    "classify",
    "from_server",
    "get_statement_request",
    "http_trouble",
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
        """The URL with every parameter but the token, for logs and messages. The URL itself
        may come from IB's ``<Url>``, so it is redacted too."""
        shown = "&".join(f"{k}={quote(v)}" for k, v in self.params.items() if k != "t")
        return from_server(f"{self.url}?t=***&{shown}", self.params.get("t", ""))


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


# RFC 1035 host names: labels of 1 to 63 letters, digits and hyphens, not starting or ending
# with a hyphen, 253 characters in all. IB's hosts are plain ASCII names; anything else (an
# empty label, a 64-character one, an IDN) is not IB, and would only fail later in IDNA.
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_MAX_HOST = 253


def _is_host_name(host: str) -> bool:
    if not host or len(host) > _MAX_HOST or not host.isascii():
        return False
    return all(_LABEL.fullmatch(label) for label in host.removesuffix(".").split("."))


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_statement_url(url: str, base_url: str, *, secret: str = "") -> str:
    """Return ``url`` (without query or fragment) if the token may be sent there.

    "`<Url>` has pointed at both `ndcdyn` and `gdcdyn`": follow it, but only when it is https on
    an ``interactivebrokers.com`` host on the default port, or on ``base_url``'s own scheme,
    host and port when a custom ``base_url`` is in use (a proxy, a local simulator). The URL
    must be printable ASCII and its host a well-formed DNS name (or, for ``base_url``'s host,
    an IP literal). Anything else raises :class:`UnsafeUrlError` and the token goes nowhere;
    the message shows the URL with ``secret`` (the token, should IB's answer echo it) redacted.
    """
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (
        parts is not None
        and parts.hostname
        and text.isascii()
        and text.isprintable()
        and not any(ch.isspace() for ch in text)
        and not parts.username
        and not parts.password
    ):
        host = parts.hostname.lower()
        on_ib = host == IB_DOMAIN or host.endswith("." + IB_DOMAIN)
        if parts.scheme == "https" and on_ib and port in (None, 443) and _is_host_name(host):
            return parts._replace(query="", fragment="").geturl()
        base = urlsplit(base_url)
        if (
            base_url != DEFAULT_BASE_URL
            and (parts.scheme, host, port)
            == (base.scheme, (base.hostname or "").lower(), base.port)
            and (_is_host_name(host) or _is_ip_literal(host))
        ):
            return parts._replace(query="", fragment="").geturl()
    raise UnsafeUrlError(
        f"IB's answer gave a statement URL that is not https on an {IB_DOMAIN} host: "
        f"{from_server(url, secret, limit=200)!r}; the token was not sent there",
        step=Step.SEND_REQUEST,
    )


# A secret this long does not occur in prose by chance: it is redacted wherever it stands.
# A shorter one (no real token is that short) only where it stands alone, so that a
# one-letter "token" cannot eat the words of a server's message.
_DISTINCT = 8


def _hex_byte(byte: int) -> str:
    """A pattern for ``%XX`` with either case of hex digit (servers write both)."""
    return "%" + "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in f"{byte:02x}")


@functools.lru_cache(maxsize=16)
def _secret_pattern(secret: str) -> re.Pattern[str]:
    """Every spelling of ``secret`` a URL, a log or an echoing server may hold: each character
    as itself, percent-encoded in either case, or percent-encoded twice."""
    parts = []
    for char in secret:
        encoded = char.encode("utf-8")
        once = "".join(_hex_byte(b) for b in encoded)
        twice = "".join("%25" + _hex_byte(b)[1:] for b in encoded)
        plus = "|\\+" if char == " " else ""
        parts.append(f"(?:{re.escape(char)}|{once}|{twice}{plus})")
    body = "".join(parts)
    if len(secret) < _DISTINCT:
        body = f"(?<![A-Za-z0-9]){body}(?![A-Za-z0-9])"
    return re.compile(body)


def redact(text: str, secret: str) -> str:
    """``text`` with every spelling of ``secret`` replaced by ``***``: as itself, or
    percent-encoded (once or twice, upper- or lower-case hex).

    For text from outside only (a server's answer, an exception of aiohttp's): our own words
    never hold the token and never pass through here. A secret shorter than eight
    characters is taken only where it stands alone, so that it cannot eat words either.
    """
    if not secret:
        return text
    return _secret_pattern(secret).sub("***", text)


def from_server(text: str, secret: str, *, limit: int = 1000) -> str:
    """A piece of server-supplied text made fit for a message, an event or a log: the
    token redacted (a server may echo ``t=``), then cut to ``limit`` characters."""
    text = redact(text, secret)
    return text if len(text) <= limit else text[:limit] + "..."


# --- Answers -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer as the driver received it: status and body bytes (decompressed).

    ``root`` is the document already parsed, when the driver parsed the body as it arrived
    (a statement); then it is not parsed again.
    """

    status: int
    body: bytes
    root: ET.Element | None = dataclasses.field(default=None, compare=False, repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Saved:
    """A statement the driver streamed to a file and checked (``download()``): complete,
    well-formed, a ``FlexQueryResponse``."""

    status: int
    path: str
    size: int


class TroubleKind(enum.Enum):
    """What a :class:`Trouble` says about the host it came from ("Hosts move"): the three
    that mean "this host is gone, try IB's other one" and everything else."""

    DNS = "dns"  # the host name did not resolve
    CONNECT = "connect"  # it resolved, but no connection: refused, unreachable, timed out
    NOT_FOUND = "not found"  # HTTP 404 that is not IB's envelope (IB's is an HTML page)
    OTHER = "other"  # a 5xx, a drop, a stall, a broken body, TLS: not a moved host


@dataclasses.dataclass(frozen=True, slots=True)
class Trouble:
    """A transient failure that is not an IB code: HTTP, transport or a broken body.

    ``kind`` is set where the failure is recognised: by the driver for network errors, by
    the answer readers below for a 404.
    """

    reason: str
    http_status: int | None = None
    kind: TroubleKind = TroubleKind.OTHER


# "Hosts move": a path that moved answers IB's HTML 404 page.
_NOT_FOUND = 404


def http_trouble(reason: str, status: int) -> Trouble:
    """Trouble for an HTTP answer that is not IB's: a 404 is :attr:`TroubleKind.NOT_FOUND`."""
    kind = TroubleKind.NOT_FOUND if status == _NOT_FOUND else TroubleKind.OTHER
    return Trouble(reason, status, kind)


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
# IB's codes are four digits; ASCII digits only ('²' is a digit to str.isdigit, not to int()),
# and few of them: a 5,000-digit "code" is garbage, not a code.
_ERROR_CODE = re.compile(r"[0-9]{1,9}")
# IB's reference codes are short digit strings. It goes back out in the GetStatement URL, so
# anything that could not be one (spaces, markup, a megabyte of text) is refused.
_REFERENCE = re.compile(r"[A-Za-z0-9._-]{1,64}")


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


def _read_envelope(
    reply: Reply, step: Step, secret: str
) -> tuple[ET.Element, IbAnswer | None] | Trouble:
    """Parse a ``FlexStatementResponse``-style answer; non-2xx and broken bodies are Trouble.
    Every piece of the answer's text that reaches a message has ``secret`` redacted."""
    if _HTML.match(reply.body[:512]):  # maintenance and 404 pages, whatever the status
        return http_trouble(f"an HTML page instead of XML (HTTP {reply.status})", reply.status)
    if reply.root is not None:
        root = reply.root
    else:
        try:
            root = parse_xml(reply.body)
        except XmlRejectedError as exc:
            if not 200 <= reply.status < 300:
                return http_trouble(f"HTTP {reply.status} from {step}", reply.status)
            return _describe_bad_body(reply, from_server(str(exc), secret))
    code_text = _text(root, "ErrorCode")
    if code_text:
        if not _ERROR_CODE.fullmatch(code_text):
            shown = from_server(code_text, secret, limit=40)
            return Trouble(f"an ErrorCode that is not a number: {shown!r}", reply.status)
        message = from_server(_text(root, "ErrorMessage") or "", secret)
        return root, IbAnswer(int(code_text), message, reply.status)
    if not 200 <= reply.status < 300:
        return http_trouble(f"HTTP {reply.status} from {step}", reply.status)
    return root, None


def _unexpected(root: ET.Element, step: Step, status: int, secret: str) -> Trouble:
    tag = from_server(root.tag, secret, limit=40)
    return Trouble(f"an unexpected <{tag}> answer to {step}", status)


def read_send_answer(reply: Reply, *, secret: str = "") -> Reference | IbAnswer | Trouble:
    """Decipher SendRequest's answer. Branch on ErrorCode, not on Status ("The two steps").

    ``secret`` (the token) is redacted from every piece of the answer that reaches a message:
    a server may echo the request back.
    """
    envelope = _read_envelope(reply, Step.SEND_REQUEST, secret)
    if isinstance(envelope, Trouble):
        return envelope
    root, answer = envelope
    if answer is not None:
        return answer
    if root.tag != "FlexStatementResponse":
        return _unexpected(root, Step.SEND_REQUEST, reply.status, secret)
    reference = _text(root, "ReferenceCode")
    if not reference:
        return Trouble("a SendRequest answer without a ReferenceCode", reply.status)
    if not _REFERENCE.fullmatch(reference):
        shown = from_server(reference, secret, limit=40)
        return Trouble(f"a ReferenceCode that is not one: {shown!r}", reply.status)
    # IB's sample writes <url>, real answers write <Url>: match either.
    return Reference(reference, _text(root, "Url", "url") or None)


def read_get_answer(reply: Reply, *, secret: str = "") -> ET.Element | IbAnswer | Trouble:
    """Decipher GetStatement's answer: the parsed statement root, an IB code, or Trouble.

    The statement itself is checked by :class:`FlexStatement`; a ``FlexQueryResponse`` root is
    handed back as parsed so the document is parsed once. ``secret`` as for
    :func:`read_send_answer`.
    """
    envelope = _read_envelope(reply, Step.GET_STATEMENT, secret)
    if isinstance(envelope, Trouble):
        return envelope
    root, answer = envelope
    if answer is not None:
        return answer
    if root.tag == "FlexQueryResponse":
        return root
    return _unexpected(root, Step.GET_STATEMENT, reply.status, secret)


def answer_error(answer: IbAnswer, step: Step, cls: type[FlexError]) -> FlexError:
    """The error for an IB code: IB's code and message in the text and in the attributes."""
    return cls(
        f"IB error {answer.code} from {step}: {answer.message or '(no message)'}",
        code=answer.code,
        message=answer.message,
        step=step,
        http_status=answer.http_status,
    )
