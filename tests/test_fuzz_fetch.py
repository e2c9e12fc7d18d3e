"""Whatever a server answers, only ``FlexError`` leaves ``fetch()`` and ``download()``.

Hypothesis draws both steps' answers byte for byte: the status, the headers (odd charsets, every
Content-Encoding with bodies that are validly compressed, truncated, or not compressed at all,
a Content-Length that is right, short or long, chunking that is right or broken), the body
(arbitrary bytes, IB envelopes with hostile ``ErrorCode``, ``ErrorMessage`` and ``<Url>``
values, odd XML declarations, DTDs, truncated or odd statements) and the connection (closed
before the headers or mid-body, reset, garbage instead of HTTP). The server is a raw asyncio
server on 127.0.0.1, started once for the module in its own thread: ``aiohttp.web`` cannot
lie about lengths, break chunking or send a body that its headers misdescribe.

For every example: the call returns a statement (or a path holding a complete one) or raises
a ``FlexError``; the token shows nowhere (exception chain, traceback text, log records, progress
events); ``download()`` leaves no temporary file and nothing partial at the target. The client
runs on a ``FakeClock``, so backoff takes no real time; a resolver stands in for DNS so that no
name ever leaves this machine (see :class:`LoopbackDns`).

Below the properties, plain regression tests pin each failure the fuzzing found.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import logging
import re
import socket
import struct
import tempfile
import threading
import traceback
import zlib
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import quote, quote_plus, unquote
from xml.sax.saxutils import escape

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ibkr_flex_client import (
    FetchEvent,
    FlexClient,
    FlexError,
    FlexStatement,
    ServiceUnavailableError,
    TransportError,
    UnsafeUrlError,
)
from ibkr_flex_client.testing import IB_MESSAGES, FakeClock, build_statement

from .support import chain

# Characters URL-encoding changes, so every spelling of the token can be hunted for.
TOKEN = "Sec+ret/Tok=en%7e"
IB_DOMAIN = "interactivebrokers.com"
T = TypeVar("T")
SEND_PATH = b"/AccountManagement/FlexWebService/SendRequest"
GET_STATEMENT = "{{SELF}}/AccountManagement/FlexWebService/GetStatement"

# Fixed budgets: the whole module runs in well under 15 s when nothing fails.
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CANCEL = settings(FUZZ, max_examples=100)

# --- What the server answers -------------------------------------------------------------

Compression = Literal["none", "gzip", "zlib", "raw", "gzip-cut", "zlib-cut", "raw-cut"]
Framing = Literal[
    "length", "short", "long", "none", "chunked", "chunked-cut", "chunked-garbage", "both", "dup"
]
Connection = Literal["normal", "no-headers", "mid-body", "reset", "garbage"]


@dataclasses.dataclass(frozen=True, slots=True)
class TextBody:
    """A document as text, encoded by the server after it fills in the placeholders.

    Placeholders: ``{{T}}`` the token as the server received it, decoded; ``{{TQ}}`` as it
    came on the wire (URL-encoded); ``{{TL}}`` the same with lower-case escapes; ``{{SELF}}``
    the server's base URL; ``{{PORT}}`` its port.
    """

    text: str
    codec: str = "utf-8"


Body = bytes | TextBody


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer, described down to the bytes on the wire."""

    body: Body = b""
    status: int = 200
    reason: bytes = b"OK"
    content_type: bytes | None = b"text/xml;charset=ISO-8859-1"
    content_encoding: bytes | None = None
    compression: Compression = "none"
    framing: Framing = "length"
    connection: Connection = "normal"
    close_header: bool = True
    extra_headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Script:
    """The answers to each step's requests, in order; the last one repeats."""

    send: tuple[Answer, ...]
    get: tuple[Answer, ...] = (Answer(),)
    max_retries: int = 2


def _fill(body: Body, token_wire: str, base_url: str, port: int) -> bytes:
    lower = re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), token_wire)
    marks = {
        "{{T}}": unquote(token_wire),
        "{{TQ}}": token_wire,
        "{{TL}}": lower,
        "{{SELF}}": base_url,
        "{{PORT}}": str(port),
    }
    if isinstance(body, TextBody):
        text = body.text
        for mark, value in marks.items():
            text = text.replace(mark, value)
        return text.encode(body.codec, errors="xmlcharrefreplace")
    for mark, value in marks.items():
        body = body.replace(mark.encode(), value.encode())
    return body


def _compress(data: bytes, how: Compression) -> bytes:
    if how == "none":
        return data
    kind = how.removesuffix("-cut")
    if kind == "gzip":
        packed = gzip.compress(data, mtime=0)
    elif kind == "zlib":
        packed = zlib.compress(data)
    else:
        deflate = zlib.compressobj(wbits=-15)
        packed = deflate.compress(data) + deflate.flush()
    return packed[: len(packed) // 2] if how.endswith("-cut") else packed


def _frame(data: bytes, how: Framing) -> tuple[list[bytes], bytes]:
    """The framing headers and the payload as sent."""
    size = len(data)
    chunked = (b"%x\r\n" % size + data + b"\r\n" if data else b"") + b"0\r\n\r\n"
    te = b"Transfer-Encoding: chunked"
    if how == "length":
        return [b"Content-Length: %d" % size], data
    if how == "short":
        return [b"Content-Length: %d" % (size - max(1, size // 3) if size else 0)], data
    if how == "long":
        return [b"Content-Length: %d" % (size + 1000)], data
    if how == "none":
        return [], data
    if how == "chunked":
        return [te], chunked
    if how == "chunked-cut":
        return [te], b"%x\r\n" % (size + 100) + data
    if how == "chunked-garbage":
        return [te], b"zz;\r\n" + data + b"\r\n0\r\n\r\n"
    if how == "both":
        return [b"Content-Length: %d" % size, te], chunked
    return [b"Content-Length: %d" % size, b"Content-Length: %d" % (size + 1)], data


def render(answer: Answer, token_wire: str, base_url: str, port: int) -> tuple[bytes, bytes]:
    """The head (status line and headers) and the payload of ``answer``."""
    data = _compress(_fill(answer.body, token_wire, base_url, port), answer.compression)
    framing, payload = _frame(data, answer.framing)
    reason = _fill(answer.reason, token_wire, base_url, port)
    lines = [b"HTTP/1.1 %d %s" % (answer.status, reason)]
    if answer.content_type is not None:
        lines.append(b"Content-Type: " + answer.content_type)
    if answer.content_encoding is not None:
        lines.append(b"Content-Encoding: " + answer.content_encoding)
    lines += framing
    if answer.close_header:
        lines.append(b"Connection: close")
    lines += [
        name + b": " + _fill(value, token_wire, base_url, port)
        for name, value in answer.extra_headers
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n", payload


class HostileServer:
    """Answers each request as the current :class:`Script` says, then closes the connection.

    Runs on its own event loop in a thread, so every example can run its client with
    ``asyncio.run`` and cancel it freely. A second port (``sink``) accepts and closes at once:
    it is where :class:`LoopbackDns` sends IB's names, so a TLS connection there fails fast.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._lock = threading.Lock()
        self._script = Script(send=(Answer(),))
        self._served = {"send": 0, "get": 0}
        self._servers: list[asyncio.Server] = []
        self.port = 0
        self.sink = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        main = self._call(asyncio.start_server(self._handle, "127.0.0.1", 0))
        sink = self._call(asyncio.start_server(self._refuse, "127.0.0.1", 0))
        self._servers = [main, sink]
        self.port = main.sockets[0].getsockname()[1]
        self.sink = sink.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            for server in self._servers:
                server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(s.wait_closed() for s in self._servers)), 5)

        self._call(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _call(self, coroutine: Coroutine[object, object, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def play(self, script: Script) -> None:
        with self._lock:
            self._script = script
            self._served = {"send": 0, "get": 0}

    def _next(self, path: bytes) -> Answer:
        step = "send" if path.endswith(SEND_PATH) else "get"
        with self._lock:
            answers = self._script.send if step == "send" else self._script.get
            index = min(self._served[step], len(answers) - 1)
            self._served[step] += 1
        return answers[index]

    async def _refuse(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            target = head.split(b"\r\n", 1)[0].split(b" ")[1]
            path, _, query = target.partition(b"?")
            token_wire = next(
                (p[2:].decode() for p in query.split(b"&") if p.startswith(b"t=")), ""
            )
            answer = self._next(path)
            await self._answer(writer, answer, token_wire)
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            asyncio.TimeoutError,
            OSError,
            IndexError,
            UnicodeDecodeError,
        ):
            pass  # the client went away first, or did not speak HTTP
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, answer: Answer, token: str) -> None:
        if answer.connection == "no-headers":
            return
        head, payload = render(answer, token, self.base_url, self.port)
        if answer.connection == "garbage":  # the body alone, where HTTP belongs
            writer.write(payload)
        elif answer.connection in ("mid-body", "reset"):
            writer.write(head + payload[: len(payload) // 2])
        else:
            writer.write(head + payload)
        await writer.drain()
        if answer.connection == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()


class LoopbackDns(AbstractResolver):
    """Stands in for DNS; no name leaves this machine.

    Names under ``interactivebrokers.com`` "resolve" to the server's sink port, which closes
    each connection at once: the client goes as far as it would with real DNS (TLS setup
    included, where a bad host name is encoded) and then fails as against a broken server.
    Any other name fails as unknown and is recorded: the token must never be sent there.
    """

    def __init__(self, sink: int) -> None:
        self.sink = sink
        self.foreign: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        name = host.lower().rstrip(".")
        if name == IB_DOMAIN or name.endswith("." + IB_DOMAIN):
            return [
                ResolveResult(
                    hostname=host,
                    host="127.0.0.1",
                    port=self.sink,
                    family=socket.AF_INET,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
            ]
        self.foreign.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def close(self) -> None:
        return None


# --- Running one fetch and looking at everything it left -------------------------------


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def captured_logs() -> Iterator[list[logging.LogRecord]]:
    """Every record of every logger, at every level, while the block runs."""
    handler, root = _Records(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@dataclasses.dataclass(slots=True)
class Observed:
    """What one call did: its result or error, and every trace it left."""

    result: object = None
    error: BaseException | None = None
    cancel_delivered: bool = False
    records: list[logging.LogRecord] = dataclasses.field(default_factory=list)
    events: list[FetchEvent] = dataclasses.field(default_factory=list)
    foreign_hosts: list[str] = dataclasses.field(default_factory=list)
    leftovers: list[str] = dataclasses.field(default_factory=list)
    saved: bytes | None = None


async def _call_client(
    server: HostileServer,
    observed: Observed,
    *,
    target: Path | None,
    token: str,
    max_retries: int,
    cancel_after: float | None,
) -> None:
    client = FlexClient(
        token=token,
        query_id="42",
        base_url=server.base_url,
        max_retries=max_retries,
        timeout=2.0,
        clock=FakeClock(),
    )
    dns = LoopbackDns(server.sink)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=dns)) as session:
        on_event = observed.events.append
        task = asyncio.ensure_future(
            client.fetch(session, on_event=on_event)
            if target is None
            else client.download(target, session, on_event=on_event)
        )
        if cancel_after is not None:
            await asyncio.sleep(cancel_after)
            observed.cancel_delivered = task.cancel()
        await asyncio.wait({task})
    observed.foreign_hosts = dns.foreign
    if task.cancelled():
        observed.error = asyncio.CancelledError()
    elif (error := task.exception()) is not None:
        observed.error = error
    else:
        observed.result = task.result()


def run(
    server: HostileServer,
    script: Script,
    *,
    download: bool = False,
    token: str = TOKEN,
    cancel_after: float | None = None,
) -> Observed:
    """Play ``script`` and make one ``fetch()`` (or ``download()``) against it."""
    server.play(script)
    observed = Observed()
    with tempfile.TemporaryDirectory() as folder, captured_logs() as records:
        target = Path(folder) / "statement.xml"
        asyncio.run(
            _call_client(
                server,
                observed,
                target=target if download else None,
                token=token,
                max_retries=script.max_retries,
                cancel_after=cancel_after,
            )
        )
        observed.records = list(records)
        observed.leftovers = sorted(p.name for p in Path(folder).iterdir() if p != target)
        if target.exists():
            observed.saved = target.read_bytes()
    return observed


def where(error: BaseException) -> str:
    """Where ``error`` was raised, and the last frame of this library it passed through."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "(no traceback)"
    ours = [f for f in frames if "ibkr_flex_client" in f.filename]
    raised = f"{frames[-1].filename}:{frames[-1].lineno}"
    via = f", via {ours[-1].filename}:{ours[-1].lineno}" if ours and ours[-1] != frames[-1] else ""
    return raised + via


def describe(error: BaseException | None) -> str:
    if error is None:
        return "no error"
    return f"{type(error).__module__}.{type(error).__qualname__}: {error!r} at {where(error)}"


def error_texts(error: BaseException) -> Iterator[tuple[str, str]]:
    """Every text an exception shows, as (where, text)."""
    yield "traceback", "".join(traceback.format_exception(error))
    for link in chain(error):
        name = type(link).__name__
        yield f"str({name})", str(link)
        yield f"repr({name})", repr(link)
        yield f"{name}.args", repr(link.args)
        yield f"vars({name})", repr(getattr(link, "__dict__", {}))
        yield f"{name}.__notes__", repr(getattr(link, "__notes__", []))


def texts(observed: Observed, *, min_level: int = logging.DEBUG) -> Iterator[tuple[str, str]]:
    if observed.error is not None:
        yield from error_texts(observed.error)
    for record in observed.records:
        if record.levelno < min_level:
            continue
        yield f"log {record.name}", record.getMessage()
        yield f"log {record.name} args", repr(record.args)
        if record.exc_info and record.exc_info[1] is not None:
            yield (
                f"log {record.name} exc_info",
                "".join(traceback.format_exception(record.exc_info[1])),
            )
    for event in observed.events:
        yield "FetchEvent", repr(event)
        yield "FetchEvent.describe()", event.describe()


def spellings(token: str) -> set[str]:
    return {
        token,
        quote(token),
        quote(token, safe=""),
        quote_plus(token),
        token.replace("+", " "),
    }


def leaks(text: str, token: str = TOKEN) -> bool:
    lowered = text.lower()
    return any(s.lower() in lowered for s in spellings(token)) or token in unquote(text)


def assert_hidden(observed: Observed, *, min_level: int = logging.DEBUG) -> None:
    shown = [place for place, text in texts(observed, min_level=min_level) if leaks(text)]
    assert not shown, f"the token shows in {sorted(set(shown))}; error: {describe(observed.error)}"


def assert_only_flex_error(observed: Observed) -> None:
    error = observed.error
    assert error is None or isinstance(error, FlexError), describe(error)
    assert not observed.foreign_hosts, f"the client looked up {observed.foreign_hosts}"


def assert_statement(data: bytes) -> None:
    try:
        FlexStatement(data)
    except Exception as exc:  # noqa: BLE001 - any failure to read it means it is not whole
        pytest.fail(f"the saved file is not a complete statement: {describe(exc)}")


def assert_download_left_nothing_partial(observed: Observed) -> None:
    assert not observed.leftovers, f"left behind: {observed.leftovers}"
    if observed.error is None and not observed.cancel_delivered:
        assert isinstance(observed.result, Path)
    if observed.saved is not None:
        assert_statement(observed.saved)
    elif observed.error is None and isinstance(observed.result, Path):
        pytest.fail("download() returned but the target does not exist")


# --- Strategies --------------------------------------------------------------------------

STATEMENT = build_statement()
STATEMENT_TEXT = STATEMENT.decode("utf-8")
STATEMENT_BODY = STATEMENT_TEXT.split("\n", 1)[1]  # without its XML declaration

# (declaration, codec the document is really written in)
DECLARATIONS = [
    ("", "utf-8"),
    ('<?xml version="1.0" encoding="UTF-8"?>\n', "utf-8"),
    ('<?xml version="1.0" encoding="ISO-8859-1"?>\n', "latin-1"),
    ('<?xml version="1.0" encoding="ISO-8859-1"?>\n', "utf-8-sig"),
    ('<?xml version="1.0" encoding="utf-16"?>\n', "utf-16"),
    ('<?xml version="1.0" encoding="utf-16"?>\n', "utf-16-le"),
    ('<?xml version="1.0" encoding="utf-16"?>\n', "utf-8"),
    ('<?xml version="1.0" encoding="x-bogus"?>\n', "utf-8"),
    ('<?xml version="1.0" encoding="utf-7"?>\n', "utf-8"),
    ('<?xml version="1.0" encoding="idna"?>\n', "utf-8"),
    ('<?xml version="1.0" encoding="rot13"?>\n', "utf-8"),
    ('<?xml version="1.0" encoding=""?>\n', "utf-8"),
    ('<?xml version="1.1" standalone="maybe"?>\n', "utf-8"),
]
declarations = st.sampled_from(DECLARATIONS)

IB_CODES = [str(code) for code in sorted(IB_MESSAGES)]
ODD_CODES = [
    "1002",
    "1099",
    "0",
    "²",
    "٣",
    "1" * 5000,
    "9" * 50,
    "-1",
    "-1019",
    "+1019",
    " 1019 ",
    "1_019",
    "1e3",
    "0x3FB",
    "",
    "{{T}}",
    "1019{{T}}",
]
error_codes = st.one_of(
    st.sampled_from(IB_CODES),
    st.sampled_from(ODD_CODES),
    st.integers(-(10**30), 10**30).map(str),
    st.text(max_size=12),
)
MESSAGES = [
    *IB_MESSAGES.values(),
    "",
    "Token {{T}} is invalid.",
    "t={{TQ}}",
    "token={{TL}}",
    "{{T}}",
    "x" * 20_000,
]
messages = st.one_of(st.sampled_from(MESSAGES), st.text(max_size=40))

IB_GET = "https://ndcdyn.interactivebrokers.com/AccountManagement/FlexWebService/GetStatement"
URLS = [
    "",
    " ",
    GET_STATEMENT,
    "{{SELF}}",
    "{{SELF}}/",
    "{{SELF}}/x?y=1#z",
    "{{SELF}}/{{T}}/GetStatement",
    "{{SELF}}/é/%00/%zz",
    "/AccountManagement/FlexWebService/GetStatement",
    "GetStatement",
    "//ndcdyn.interactivebrokers.com/x",
    IB_GET,
    IB_GET.replace("ndcdyn", "gdcdyn"),
    IB_GET + "?t={{T}}#{{T}}",
    "HTTPS://NDCDYN.INTERACTIVEBROKERS.COM/x",
    "https://a..interactivebrokers.com/x",
    "https://" + "a" * 64 + ".interactivebrokers.com/x",
    "https://" + "a." * 120 + "interactivebrokers.com/x",
    "https://.interactivebrokers.com/x",
    "https://ndcdyn.interactivebrokers.com./x",
    "https://ñ.interactivebrokers.com/x",
    "https://bücher.interactivebrokers.com/x",
    "https://xn--zz.interactivebrokers.com/x",
    "https://xn--.interactivebrokers.com/x",
    "https://x\uff0e.interactivebrokers.com/x",
    "https://e\u200bvil.interactivebrokers.com/x",
    "https://evil.example\u3002interactivebrokers.com/x",
    "https://interactivebrokers.com.evil.example/x",
    "https://user:pw@ndcdyn.interactivebrokers.com/x",
    "https://ndcdyn.interactivebrokers.com@evil.example/x",
    "https://ndcdyn.interactivebrokers.com\\@evil.example/x",
    "https://ndcdyn.interactivebrokers.com:443/x",
    "https://ndcdyn.interactivebrokers.com:8443/x",
    "https://ndcdyn.interactivebrokers.com:99999/x",
    "https://ndcdyn.interactivebrokers.com:-1/x",
    "https://ndcdyn.interactivebrokers.com:x/x",
    "http://ndcdyn.interactivebrokers.com/x",
    "ftp://ndcdyn.interactivebrokers.com/x",
    "javascript:alert(1)",
    "file:///etc/passwd",
    "https://127.0.0.1/x",
    "https://[::1]/x",
    "http://127.0.0.1:{{PORT}}/x",
    "http://localhost:{{PORT}}/x",
    "https://ndcdyn.interactivebrokers.com/" + "a" * 100_000,
    "https://ndcdyn.interactivebrokers.com/x\r\nX-Injected: 1",
    "https://{{T}}.interactivebrokers.com/x",
    "https://evil.example/{{T}}",
    "https://evil.example/?t={{TQ}}",
]
_schemes = st.sampled_from(["https", "http", "HTTPS", "ftp", ""])
_userinfo = st.sampled_from(["", "", "u@", "u:p@", "{{T}}@"])
_hosts = st.sampled_from(
    [
        "ndcdyn.interactivebrokers.com",
        IB_DOMAIN,
        "a..interactivebrokers.com",
        "ñ.interactivebrokers.com",
        "evil.example",
        "127.0.0.1",
        "localhost",
        "",
    ]
)
_ports = st.sampled_from(["", "", ":443", ":0", ":65536", ":{{PORT}}", ":x"])
_paths = st.sampled_from(["", "/", "/AccountManagement/FlexWebService/GetStatement", "/{{T}}"])
urls = st.one_of(
    st.sampled_from(URLS),
    st.builds("{}://{}{}{}{}".format, _schemes, _userinfo, _hosts, _ports, _paths),
    st.text(max_size=30),
)


def _xml(text: str, *, escaped: bool) -> str:
    return escape(text) if escaped else text


@st.composite
def envelopes(draw: st.DrawFn) -> TextBody:
    """IB's ``<FlexStatementResponse>`` envelope with any of its parts, hostile or not."""
    declaration, codec = draw(declarations)
    escaped = draw(st.booleans()) or draw(st.booleans())
    root = draw(st.sampled_from(["FlexStatementResponse"] * 3 + ["FlexQueryResponse", "Other"]))
    parts = [f"<Status>{draw(st.sampled_from(['Success', 'Warn', 'Fail', '']))}</Status>"]
    if draw(st.booleans()):
        parts.append(f"<ErrorCode>{_xml(draw(error_codes), escaped=escaped)}</ErrorCode>")
        parts.append(f"<ErrorMessage>{_xml(draw(messages), escaped=escaped)}</ErrorMessage>")
    if draw(st.booleans()):
        reference = draw(st.sampled_from(["1234567890", "", " ", "{{T}}", "a b&c", "9" * 5000]))
        parts.append(f"<ReferenceCode>{_xml(reference, escaped=True)}</ReferenceCode>")
        tag = draw(st.sampled_from(["Url", "url", "URL"]))
        parts.append(f"<{tag}>{_xml(draw(urls), escaped=escaped)}</{tag}>")
    text = f'{declaration}<{root} timestamp="26 March, 2026 10:15 AM EDT">{"".join(parts)}</{root}>'
    return TextBody(text, codec)


@st.composite
def references(draw: st.DrawFn) -> TextBody:
    """A SendRequest success, pointing (mostly) at the server itself."""
    ours = st.sampled_from(["", GET_STATEMENT, GET_STATEMENT])
    url = draw(st.one_of(ours, ours, urls))
    code = draw(st.sampled_from(["1234567890"] * 4 + ["{{T}}", "{{TQ}}", "x" * 5000, "é&<"]))
    tag = draw(st.sampled_from(["Url", "url"]))
    return TextBody(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<FlexStatementResponse timestamp="26 March, 2026 10:15 AM EDT">'
        f"<Status>Success</Status><ReferenceCode>{escape(code)}</ReferenceCode>"
        f"<{tag}>{escape(url)}</{tag}></FlexStatementResponse>"
    )


def ib_code(code: int) -> TextBody:
    status = "Warn" if code == 1019 else "Fail"
    return TextBody(
        "<FlexStatementResponse><Status>"
        f"{status}</Status><ErrorCode>{code}</ErrorCode>"
        f"<ErrorMessage>{IB_MESSAGES[code]}</ErrorMessage></FlexStatementResponse>"
    )


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    "<FlexQueryResponse>&lol3;</FlexQueryResponse>"
)
HOSTILE_DOCUMENTS: list[Body] = [
    TextBody(BILLION_LAUGHS),
    TextBody(
        '<?xml version="1.0"?><!DOCTYPE FlexQueryResponse '
        '[<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        + STATEMENT_BODY.replace('queryName="Activity"', 'queryName="&x;"')
    ),
    TextBody('<!DOCTYPE FlexQueryResponse SYSTEM "http://127.0.0.1:9/x.dtd">' + STATEMENT_BODY),
    TextBody("<!--" + "c" * 5000 + "-->" + "<!DOCTYPE x [<!ENTITY a 'b'>]>" + STATEMENT_BODY),
    TextBody(STATEMENT_BODY.replace('queryName="Activity"', 'queryName="&undefined;"')),
    b"<!DOCTYPE html><html><body><h1>Our services are temporarily unavailable</h1></html>",
    b"<html><body>404</body></html>",
    b"",
    b"   \r\n",
    STATEMENT + b"<trailing/>",
    STATEMENT + b"\x00\xff garbage",
    STATEMENT.replace(b'count="1"', b'count="2"'),
    STATEMENT.replace(b'count="1"', b'count="x"'),
    STATEMENT.replace(b'accountId="U1234567" fromDate', b"fromDate", 1),
    STATEMENT.replace(b'fromDate="20260302"', b'fromDate="2026-02-30"', 1),
    STATEMENT.replace(b"FlexStatements", b"FlexStatementz"),
]


@st.composite
def statements(draw: st.DrawFn) -> Body:
    """GetStatement bodies: the statement whole, cut, re-declared, or with a long prolog."""
    kind = draw(st.sampled_from(["whole"] * 4 + ["cut", "declared", "comment", "hostile"]))
    if kind == "whole":
        return STATEMENT
    if kind == "cut":
        return STATEMENT[: draw(st.integers(0, len(STATEMENT) - 1))]
    if kind == "declared":
        declaration, codec = draw(declarations)
        return TextBody(declaration + STATEMENT_BODY, codec)
    if kind == "comment":
        size = draw(st.sampled_from([10, 4100, 70_000, 1_100_000]))
        return TextBody('<?xml version="1.0"?>\n<!--' + " " * size + "-->\n" + STATEMENT_BODY)
    return draw(st.sampled_from(HOSTILE_DOCUMENTS))


anything: st.SearchStrategy[Body] = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=60).map(TextBody),
    envelopes(),
    st.sampled_from(HOSTILE_DOCUMENTS),
)
send_bodies: st.SearchStrategy[Body] = st.one_of(
    references(), references(), references(), envelopes(), anything
)
get_bodies: st.SearchStrategy[Body] = st.one_of(
    statements(),
    statements(),
    statements(),
    st.sampled_from([ib_code(1019), ib_code(1001), ib_code(1018), ib_code(1017)]),
    envelopes(),
    anything,
)

STATUSES = [200, 200, 201, 204, 206, 299, 301, 302, 304, 307, 308, 400, 401, 403, 404, 418]
STATUSES += [429, 500, 502, 503, 504, 599, 100, 101, 103, 600, 999]
CONTENT_TYPES = [
    None,
    b"text/xml;charset=ISO-8859-1",
    b"text/xml; charset=utf-8",
    b"text/xml; charset=x-bogus",
    b"text/xml; charset=utf-16",
    b"text/html",
    b"application/octet-stream",
    b'text/xml; charset="',
    b"\xff\xfe",
    b"",
]
# (Content-Encoding header, what the body really is)
CODINGS: list[tuple[bytes | None, Compression]] = [
    (None, "none"),
    (b"gzip", "gzip"),
    (b"deflate", "zlib"),
    (b"deflate", "raw"),
    (b"gzip", "gzip-cut"),
    (b"deflate", "zlib-cut"),
    (b"deflate", "raw-cut"),
    (b"gzip", "none"),
    (b"deflate", "none"),
    (b"br", "none"),
    (b"br", "gzip"),
    (b"zstd", "none"),
    (b"identity", "none"),
    (b"identity", "gzip"),
    (None, "gzip"),
    (b"x-garbage", "none"),
    (b"gzip, gzip", "gzip"),
    (b"GZIP", "gzip"),
    (b"gzip, deflate", "gzip"),
    (b"", "none"),
]
FRAMINGS: list[Framing] = [
    "length",
    "short",
    "long",
    "none",
    "chunked",
    "chunked-cut",
    "chunked-garbage",
    "both",
    "dup",
]
CONNECTIONS: list[Connection] = ["normal", "no-headers", "mid-body", "reset", "garbage"]
EXTRA_HEADERS = [
    (b"Location", b"https://evil.example/steal"),
    (b"Location", b"{{SELF}}/AccountManagement/FlexWebService/GetStatement"),
    (b"Location", b"{{SELF}}/?t={{TQ}}"),
    (b"X-Odd", b"\xff\xfe\x80"),
    (b"Set-Cookie", b"t={{T}}; Path=/"),
    (b"Retry-After", b"-1"),
    (b"Content-Disposition", b"attachment; filename=../../x"),
]


@st.composite
def answers(draw: st.DrawFn, bodies: st.SearchStrategy[Body]) -> Answer:
    body = draw(bodies)
    if draw(st.integers(0, 2)) < 2:
        return Answer(body=body)  # a plain, well-framed 200 (what failures shrink towards)
    encoding, compression = draw(st.sampled_from(CODINGS))
    return Answer(
        body=body,
        status=draw(st.sampled_from(STATUSES)),
        reason=draw(st.sampled_from([b"OK", b"", b"{{T}}", b"Service Unavailable"])),
        content_type=draw(st.sampled_from(CONTENT_TYPES)),
        content_encoding=encoding,
        compression=compression,
        framing=draw(st.sampled_from(FRAMINGS)),
        connection=draw(st.sampled_from(["normal", "normal", *CONNECTIONS])),
        close_header=draw(st.booleans()),
        extra_headers=tuple(draw(st.lists(st.sampled_from(EXTRA_HEADERS), max_size=2))),
    )


@st.composite
def scripts(draw: st.DrawFn) -> Script:
    retries = draw(st.integers(1, 3))
    return Script(
        send=tuple(draw(st.lists(answers(send_bodies), min_size=1, max_size=retries))),
        get=tuple(draw(st.lists(answers(get_bodies), min_size=1, max_size=retries))),
        max_retries=retries,
    )


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    hostile = HostileServer()
    hostile.start()
    yield hostile
    hostile.stop()


# --- The properties ----------------------------------------------------------------------


@FUZZ
@given(script=scripts())
def test_fetch_raises_nothing_but_flex_error_and_never_shows_the_token(
    server: HostileServer, script: Script
) -> None:
    observed = run(server, script)
    assert_only_flex_error(observed)
    if observed.error is None:
        assert isinstance(observed.result, FlexStatement)
    assert_hidden(observed)


@FUZZ
@given(script=scripts())
def test_download_raises_nothing_but_flex_error_and_leaves_nothing_partial(
    server: HostileServer, script: Script
) -> None:
    observed = run(server, script, download=True)
    assert_only_flex_error(observed)
    assert_download_left_nothing_partial(observed)
    assert_hidden(observed)


@CANCEL
@given(script=scripts(), delay=st.floats(0.0, 0.03), download=st.booleans())
def test_cancelling_at_any_moment_raises_cancelled_error_and_leaves_nothing(
    server: HostileServer, script: Script, delay: float, download: bool
) -> None:
    observed = run(server, script, download=download, cancel_after=delay)
    error = observed.error
    assert error is None or isinstance(error, (FlexError, asyncio.CancelledError)), describe(error)
    if observed.cancel_delivered:  # cancelled while running: the cancellation must propagate
        assert isinstance(error, asyncio.CancelledError), describe(error)
    if download:
        assert_download_left_nothing_partial(observed)
    assert_hidden(observed)


# --- Regressions -------------------------------------------------------------------------


def reference(url: str) -> Answer:
    return Answer(
        body=TextBody(
            "<FlexStatementResponse><Status>Success</Status>"
            f"<ReferenceCode>1234567890</ReferenceCode><Url>{escape(url)}</Url>"
            "</FlexStatementResponse>"
        )
    )


def error_envelope(code: str, message: str) -> Answer:
    return Answer(
        body=TextBody(
            "<FlexStatementResponse><Status>Fail</Status>"
            f"<ErrorCode>{escape(code)}</ErrorCode>"
            f"<ErrorMessage>{escape(message)}</ErrorMessage></FlexStatementResponse>"
        )
    )


def assert_flex_error(observed: Observed) -> FlexError:
    assert isinstance(observed.error, FlexError), describe(observed.error)
    return observed.error


@pytest.mark.parametrize(
    "url",
    [
        "https://a..interactivebrokers.com/x",
        "https://" + "a" * 64 + ".interactivebrokers.com/x",
    ],
    ids=["empty-label", "64-character-label"],
)
@pytest.mark.parametrize("download", [False, True], ids=["fetch", "download"])
def test_a_statement_url_with_a_bad_dns_label_is_a_flex_error(
    server: HostileServer, url: str, download: bool
) -> None:
    observed = run(
        server, Script(send=(reference(url),), get=(Answer(STATEMENT),)), download=download
    )
    assert_flex_error(observed)
    assert not observed.leftovers


@pytest.mark.parametrize("code", ["²", "1" * 5000], ids=["superscript-two", "5000-digits"])
@pytest.mark.parametrize("step", ["SendRequest", "GetStatement"])
def test_an_error_code_that_is_no_usable_number_is_a_flex_error(
    server: HostileServer, code: str, step: str
) -> None:
    odd = error_envelope(code, "Statement generation in progress.")
    script = (
        Script(send=(odd,))
        if step == "SendRequest"
        else Script(send=(reference(GET_STATEMENT),), get=(odd,))
    )
    error = assert_flex_error(run(server, script))
    assert len(str(error)) < 1000  # 5,000 digits are not echoed back whole


@pytest.mark.parametrize(
    "reflected", ["{{T}}", "{{TQ}}", "{{TL}}"], ids=["plain", "url", "url-lower"]
)
@pytest.mark.parametrize("code", ["1001", "1015", "1099"], ids=["transient", "token", "unknown"])
def test_a_token_reflected_in_the_error_message_is_hidden_everywhere(
    server: HostileServer, reflected: str, code: str
) -> None:
    observed = run(server, Script(send=(error_envelope(code, f"Token {reflected} rejected."),)))
    error = assert_flex_error(observed)
    assert not leaks(str(error))
    assert not leaks(repr(error.args))
    assert not leaks(error.message or "")
    assert not leaks("".join(traceback.format_exception(error)))
    for record in observed.records:
        if record.levelno >= logging.INFO:
            assert not leaks(record.getMessage()), record.getMessage()
    for event in observed.events:
        assert not leaks(event.detail or ""), event.detail
    assert "rejected" in str(error)  # IB's message itself is still there


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/{{T}}",
        "https://evil.example/GetStatement?t={{TQ}}",
        "https://{{T}}.interactivebrokers.com/GetStatement",
        "https://{{T}}@evil.example/GetStatement",
    ],
    ids=["path", "query", "host", "userinfo"],
)
def test_a_token_reflected_in_a_refused_url_is_not_in_unsafe_url_error(
    server: HostileServer, url: str
) -> None:
    observed = run(server, Script(send=(reference(url),)))
    assert isinstance(observed.error, UnsafeUrlError), describe(observed.error)
    assert_hidden(observed)


def test_a_token_reflected_in_a_followed_url_is_not_in_events_or_logs(
    server: HostileServer,
) -> None:
    # The server itself, so the URL is followed; its path repeats the token.
    script = Script(
        send=(reference("{{SELF}}/{{T}}/GetStatement"),),
        get=(Answer(b"maintenance", status=503),),
    )
    observed = run(server, script)
    assert isinstance(observed.error, TransportError), describe(observed.error)
    assert_hidden(observed)


def test_a_token_reflected_as_the_reference_code_is_not_in_events_or_logs(
    server: HostileServer,
) -> None:
    envelope = (
        "<FlexStatementResponse><Status>Success</Status><ReferenceCode>{{T}}</ReferenceCode>"
        f"<Url>{GET_STATEMENT}</Url></FlexStatementResponse>"
    )
    observed = run(server, Script(send=(Answer(TextBody(envelope)),), get=(Answer(STATEMENT),)))
    assert_only_flex_error(observed)  # following it or refusing it: either way, never shown
    assert_hidden(observed)


def test_a_token_reflected_in_the_error_code_is_hidden(server: HostileServer) -> None:
    observed = run(server, Script(send=(error_envelope("{{T}}", "no"),)))
    assert_flex_error(observed)
    assert_hidden(observed)


@pytest.mark.parametrize("encoding", ["x-bogus", "utf-7", "idna"])
@pytest.mark.parametrize("where", ["SendRequest", "GetStatement", "GetStatement-download"])
def test_an_xml_declaration_naming_an_odd_encoding_is_a_flex_error(
    server: HostileServer, encoding: str, where: str
) -> None:
    declaration = f'<?xml version="1.0" encoding="{encoding}"?>\n'
    if where == "SendRequest":
        envelope = reference(GET_STATEMENT).body
        assert isinstance(envelope, TextBody)
        script = Script(send=(Answer(TextBody(declaration + envelope.text)),))
    else:
        odd = Answer(TextBody(declaration + STATEMENT_BODY))
        script = Script(send=(reference(GET_STATEMENT),), get=(odd,))
    observed = run(server, script, download=where.endswith("download"))
    assert_flex_error(observed)
    assert not observed.leftovers


@pytest.mark.parametrize("size", [4100, 70_000])
def test_a_statement_with_a_long_leading_comment_downloads(
    server: HostileServer, size: int
) -> None:
    # Longer than the first 4 KiB, where the driver looks for the root element.
    document = TextBody('<?xml version="1.0"?>\n<!--' + " " * size + "-->\n" + STATEMENT_BODY)
    script = Script(send=(reference(GET_STATEMENT),), get=(Answer(document),))
    observed = run(server, script, download=True)
    assert observed.error is None, describe(observed.error)
    assert observed.saved is not None
    assert_statement(observed.saved)
    assert not observed.leftovers


@pytest.mark.parametrize("connection", ["no-headers", "mid-body", "reset"])
def test_a_one_letter_token_does_not_garble_our_messages(
    server: HostileServer, connection: Connection
) -> None:
    script = Script(send=(Answer(STATEMENT, connection=connection),), max_retries=1)
    error = assert_flex_error(run(server, script, token="t"))
    assert "***" not in str(error), str(error)
    assert "SendRequest" in str(error)
    if connection == "no-headers":
        assert "the server closed the connection" in str(error)


def test_a_one_letter_token_leaves_ib_messages_intact(server: HostileServer) -> None:
    message = IB_MESSAGES[1001]
    observed = run(server, Script(send=(error_envelope("1001", message),)), token="t")
    assert isinstance(observed.error, ServiceUnavailableError), describe(observed.error)
    assert observed.error.message == message
    assert message in str(observed.error)
    assert any(message in (event.detail or "") for event in observed.events)
