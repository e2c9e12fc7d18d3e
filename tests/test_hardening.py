"""What an attacker found on the way in: hostile servers on loopback, odd answers, odd settings.

Each test here failed before the fix it pins (issue 9): bodies read in bounded memory whatever
they inflate to, only FlexError escaping, odd `<Url>`s and ErrorCodes, the 1017 re-send
bound, worst_case_seconds holding for fetches queued behind others, and argument ranges.
"""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ibkr_flex_client import (
    FlexClient,
    FlexError,
    FlexStatement,
    NotReadyError,
    QueryError,
    StatementError,
    Step,
    ThrottledError,
    TransportError,
    UnsafeUrlError,
)
from ibkr_flex_client._body import BYTES_PER_UNIT, ELEMENT_UNITS, MAX_ENVELOPE, MAX_GAP
from ibkr_flex_client._files import open_temp
from ibkr_flex_client.protocol import (
    DEFAULT_BASE_URL,
    IbAnswer,
    Reference,
    Reply,
    Trouble,
    check_statement_url,
    read_get_answer,
    read_send_answer,
)
from ibkr_flex_client.stream import check_statement_file
from ibkr_flex_client.testing import FakeClock, Fault, FlexSimulator, build_statement

from .conftest import DATA, TOKEN

MakeClient = Callable[..., FlexClient]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MiB = 1024 * 1024


def envelope(inner: str) -> bytes:
    return f"<FlexStatementResponse>{inner}</FlexStatementResponse>".encode()


# --- <Url>, ErrorCode and ReferenceCode: what a server writes there ----------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://a..interactivebrokers.com/x",
        f"https://{'a' * 64}.interactivebrokers.com/x",
        "https://.interactivebrokers.com/x",
        "https://-ndcdyn.interactivebrokers.com/x",
        "https://ndcdyn-.interactivebrokers.com/x",
        "https://bücher.interactivebrokers.com/x",
        "https://ndcdyn.interactivebrokers.com/x y",
        "https://ndcdyn.interactivebrokers.com/\x00",
        "https://" + "a." * 130 + "interactivebrokers.com/x",
    ],
)
def test_a_url_whose_host_is_no_dns_name_is_refused(url: str) -> None:
    with pytest.raises(UnsafeUrlError, match="the token was not sent there"):
        check_statement_url(url, DEFAULT_BASE_URL)


def test_the_longest_valid_labels_pass() -> None:
    url = f"https://{'a' * 63}.interactivebrokers.com/AccountManagement/x"
    assert check_statement_url(url, DEFAULT_BASE_URL) == url


def test_an_unsafe_url_echoing_the_token_is_shown_redacted() -> None:
    url = f"https://evil.example/steal?t={TOKEN}"
    with pytest.raises(UnsafeUrlError) as caught:
        check_statement_url(url, DEFAULT_BASE_URL, secret=TOKEN)
    assert TOKEN not in str(caught.value)
    assert "t=***" in str(caught.value)


@pytest.mark.parametrize("code", ["²", "1" * 5000, "-1018", "1e3", "١٠١٨", "10 18", "+1018"])
@pytest.mark.parametrize("read", [read_send_answer, read_get_answer])
def test_an_error_code_that_is_no_number_is_trouble(code: str, read: Any) -> None:
    answer = read(Reply(200, envelope(f"<Status>Fail</Status><ErrorCode>{code}</ErrorCode>")))
    assert isinstance(answer, Trouble)
    assert "not a number" in answer.reason
    assert len(answer.reason) < 120


def test_ib_messages_have_the_token_redacted() -> None:
    body = envelope(
        f"<ErrorCode>1020</ErrorCode><ErrorMessage>bad request t={TOKEN}</ErrorMessage>"
    )
    answer = read_send_answer(Reply(200, body), secret=TOKEN)
    assert answer == IbAnswer(1020, "bad request t=***", 200)


@pytest.mark.parametrize("reference", ["12 34", "&lt;b&gt;", "1" * 65, "ref\u00e9"])
def test_a_reference_code_ib_would_never_write_is_trouble(reference: str) -> None:
    body = envelope(f"<Status>Success</Status><ReferenceCode>{reference}</ReferenceCode>")
    answer = read_send_answer(Reply(200, body))
    assert isinstance(answer, Trouble)
    assert "ReferenceCode" in answer.reason


def test_an_ordinary_reference_code_passes() -> None:
    body = envelope("<Status>Success</Status><ReferenceCode>1234567890</ReferenceCode>")
    assert read_send_answer(Reply(200, body)) == Reference("1234567890", None)


# --- the 1017 re-send stays within max_retries -------------------------------------------


async def test_the_1017_resend_counts_against_the_sendrequest_budget(
    make_client: MakeClient, sim: FlexSimulator
) -> None:
    sim.fail("42", Fault.http_status(503), step=Step.SEND_REQUEST)
    sim.fail("42", Fault.ib_code(1017))
    with pytest.raises(QueryError) as caught:
        await make_client(max_retries=2).fetch()
    assert caught.value.code == 1017
    steps = [r.step for r in sim.requests]
    assert steps == ["SendRequest", "SendRequest", "GetStatement"]


async def test_the_1017_resend_happens_while_the_budget_allows(
    make_client: MakeClient, sim: FlexSimulator
) -> None:
    sim.fail("42", Fault.ib_code(1017))
    statement = await make_client(max_retries=2).fetch()
    assert isinstance(statement, FlexStatement)
    steps = [r.step for r in sim.requests]
    assert steps == ["SendRequest", "GetStatement", "SendRequest", "GetStatement"]


# --- worst_case_seconds holds for fetches queued behind others ---------------------------


async def test_queued_fetches_end_within_worst_case_seconds(
    make_client: MakeClient, clock: FakeClock
) -> None:
    clients = [make_client(query_id=str(n), max_retries=1, timeout=1) for n in range(70)]
    bound = clients[0].worst_case_seconds
    assert bound == 620.0

    async def timed(client: FlexClient) -> tuple[float, BaseException | None]:
        start = clock.now()
        try:
            await client.fetch()
        except FlexError as exc:
            return clock.now() - start, exc
        return clock.now() - start, None

    results = await asyncio.gather(*(timed(c) for c in clients))
    durations = [d for d, _ in results]
    assert max(durations) <= bound
    outcomes = {type(e).__name__ if e else "ok" for _, e in results}
    assert outcomes <= {"ok", "ThrottledError", "NotReadyError"}
    late = [e for _, e in results if isinstance(e, ThrottledError)]
    assert late, "70 fetches at 2 requests each cannot all fit in 620 s of IB's budget"
    assert all("worst_case_seconds" in str(e) and e.code is None for e in late)


async def test_a_lone_fetch_is_not_cut_short_by_the_bound(
    make_client: MakeClient, sim: FlexSimulator
) -> None:
    sim.generation_seconds = 300.0  # polls back off to backoff_base: well within the bound
    with pytest.raises(NotReadyError):
        await make_client(max_retries=5).fetch()
    assert len(sim.answers(Step.GET_STATEMENT)) == 5


# --- arguments to sane, documented ranges ------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"from_date": datetime(2026, 1, 1), "to_date": date(2026, 1, 31)}, "from_date"),
        ({"from_date": date(2026, 1, 1), "to_date": datetime(2026, 1, 31, 12)}, "to_date"),
        ({"base_url": "https://ib.example/?"}, "base_url"),
        ({"base_url": "https://ib.example/#"}, "base_url"),
        ({"base_url": "https://ib.example/a?b=1"}, "base_url"),
        ({"base_url": "https://ib.example /"}, "base_url"),
        ({"base_url": "https://ib.example\\@evil/"}, "base_url"),
        ({"timeout": 1e308}, "timeout"),
        ({"timeout": 601}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"backoff_base": 1e308}, "backoff_base"),
        ({"backoff_base": 0}, "backoff_base"),
        ({"max_retries": 101}, "max_retries"),
        ({"max_retries": 10**18}, "max_retries"),
        ({"max_statement_bytes": 1000}, "max_statement_bytes"),
        ({"max_statement_bytes": 2.5e9}, "max_statement_bytes"),
    ],
)
def test_out_of_range_settings_name_the_argument(options: dict[str, Any], named: str) -> None:
    settings: dict[str, Any] = {"token": TOKEN, "query_id": "1"} | options
    with pytest.raises(ValueError, match=named) as caught:
        FlexClient(**settings)
    assert TOKEN not in str(caught.value)


def test_the_widest_settings_give_a_finite_bound() -> None:
    client = FlexClient(token=TOKEN, query_id="1", max_retries=100, timeout=600, backoff_base=600)
    assert client.worst_case_seconds == 2 * 100 * 6000 + 199 * 600


# --- a hostile server's bodies, read in bounded memory -----------------------------------


class Attack:
    """A loopback server whose two endpoints answer as each test says."""

    def __init__(self) -> None:
        self.send: Handler = self._reference
        self.get: Handler = self._statement
        self.sent: dict[str, int] = {"SendRequest": 0, "GetStatement": 0}
        self.written = 0
        self.base_url = ""

    async def _reference(self, request: web.Request) -> web.StreamResponse:
        url = self.base_url + "/AccountManagement/FlexWebService/GetStatement"
        body = f"<Status>Success</Status><ReferenceCode>123</ReferenceCode><Url>{url}</Url>"
        return web.Response(body=envelope(body))

    async def _statement(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=build_statement())

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        step = request.path.rsplit("/", 1)[-1]
        self.sent[step] += 1
        return await (self.send if step == "SendRequest" else self.get)(request)

    async def stream(
        self, request: web.Request, chunks: AsyncIterator[bytes], encoding: str | None = None
    ) -> web.StreamResponse:
        """Send ``chunks`` as they come (never all in memory); count what got out."""
        response = web.StreamResponse()
        if encoding:
            response.headers["Content-Encoding"] = encoding
        await response.prepare(request)
        try:
            async for chunk in chunks:
                await response.write(chunk)
                self.written += len(chunk)
        except (ConnectionError, RuntimeError):  # the client stopped reading and left
            pass
        return response


@pytest.fixture
async def attack() -> AsyncIterator[Attack]:
    server = Attack()
    app = web.Application()
    app.router.add_get("/AccountManagement/FlexWebService/{step}", server.dispatch)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.base_url = f"http://127.0.0.1:{port}"
    yield server
    await runner.cleanup()


def client_for(attack: Attack, **options: Any) -> FlexClient:
    settings: dict[str, Any] = {
        "token": TOKEN,
        "query_id": "1",
        "base_url": attack.base_url,
        "clock": FakeClock(),
        "timeout": 5,
        "max_retries": 1,
    }
    return FlexClient(**(settings | options))


async def compressed(
    head: bytes, filler: bytes, total: int, coding: str = "gzip"
) -> AsyncIterator[bytes]:
    """``head`` and then ``filler`` up to ``total`` bytes, compressed on the fly."""
    wbits = 16 + zlib.MAX_WBITS if coding == "gzip" else zlib.MAX_WBITS
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    yield packer.compress(head)
    block = filler * (MiB // len(filler))
    for _ in range((total - len(head)) // len(block)):
        if out := packer.compress(block):
            yield out
        await asyncio.sleep(0)
    yield packer.flush()


async def plain(head: bytes, filler: bytes, total: int) -> AsyncIterator[bytes]:
    yield head
    block = filler * (MiB // len(filler))
    for _ in range((total - len(head)) // len(block)):
        yield block


async def peak_while(work: Awaitable[object]) -> tuple[int, BaseException | None]:
    """Peak traced memory (bytes) while ``work`` runs, and what it raised."""
    tracemalloc.start()
    try:
        await work
    except BaseException as exc:  # noqa: BLE001 - returned for the test to judge
        return tracemalloc.get_traced_memory()[1], exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, None


async def test_a_gzip_bomb_envelope_is_read_only_to_the_cap(attack: Attack) -> None:
    async def bomb(request: web.Request) -> web.StreamResponse:
        body = compressed(b"<FlexStatementResponse>", b" ", 256 * MiB)
        return await attack.stream(request, body, "gzip")

    attack.send = bomb
    peak, error = await peak_while(client_for(attack).fetch())
    assert isinstance(error, TransportError)
    assert f"over {MAX_ENVELOPE:,} bytes that is not a statement" in str(error)
    assert peak < 24 * MiB
    assert attack.written < 2 * MiB  # compressed bytes: the read stopped long before the end


async def test_a_deflate_bomb_statement_stops_at_max_statement_bytes(attack: Attack) -> None:
    async def bomb(request: web.Request) -> web.StreamResponse:
        body = compressed(b'<FlexQueryResponse><x a="', b"a", 256 * MiB, "deflate")
        return await attack.stream(request, body, "deflate")

    attack.get = bomb
    client = client_for(attack, max_retries=3, max_statement_bytes=2 * MiB)
    peak, error = await peak_while(client.fetch())
    assert isinstance(error, StatementError)
    assert "larger than max_statement_bytes" in str(error)
    assert attack.sent["GetStatement"] == 1  # not retried: the same statement is as large
    assert peak < 32 * MiB


async def test_a_huge_plain_body_that_is_no_xml_stops_at_once(attack: Attack) -> None:
    async def junk(request: web.Request) -> web.StreamResponse:
        return await attack.stream(request, plain(b"\x00\x01junk", b"\xff", 512 * MiB))

    attack.get = junk
    peak, error = await peak_while(client_for(attack).fetch())
    # Neither XML nor IB's CSV: no statement, and asking again would not change that.
    assert isinstance(error, StatementError)
    assert "binary data" in str(error)
    assert peak < 16 * MiB
    assert attack.written < 64 * MiB


async def test_a_body_in_a_coding_we_did_not_ask_for_is_trouble(attack: Attack) -> None:
    async def brotli(request: web.Request) -> web.StreamResponse:
        assert request.headers["Accept-Encoding"] == "gzip, deflate"
        return web.Response(body=b"\x1b\x03\x00", headers={"Content-Encoding": "br"})

    attack.get = brotli
    with pytest.raises(TransportError, match="content coding 'br'"):
        await client_for(attack).fetch()


async def test_a_gzip_statement_is_fetched_and_downloaded(attack: Attack, tmp_path: Path) -> None:
    async def zipped(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=gzip.compress(build_statement()), headers={"Content-Encoding": "gzip"}
        )

    attack.get = zipped
    statement = await client_for(attack).fetch()
    assert statement.xml == build_statement()
    target = await client_for(attack).download(tmp_path / "s.xml")
    assert target.read_bytes() == build_statement()


async def test_download_writes_nothing_for_an_oversized_envelope(
    attack: Attack, tmp_path: Path
) -> None:
    async def big(request: web.Request) -> web.StreamResponse:
        return await attack.stream(request, plain(b"<FlexStatementResponse>", b" ", 64 * MiB))

    attack.get = big
    with pytest.raises(TransportError, match="not a statement"):
        await client_for(attack).download(tmp_path / "s.xml")
    assert list(tmp_path.iterdir()) == []
    assert attack.written < 16 * MiB


async def test_a_statement_after_a_long_comment_is_fetched_and_downloaded(
    attack: Attack, tmp_path: Path
) -> None:
    document = build_statement().replace(b"?>", b"?><!--" + b"c" * 8000 + b"-->", 1)

    async def commented(request: web.Request) -> web.StreamResponse:
        return web.Response(body=document)

    attack.get = commented
    assert (await client_for(attack).fetch()).xml == document
    target = await client_for(attack).download(tmp_path / "s.xml")
    assert target.read_bytes() == document


async def test_an_unknown_encoding_is_trouble_not_lookuperror(attack: Attack) -> None:
    async def bogus(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b'<?xml version="1.0" encoding="x-bogus"?><FlexQueryResponse/>')

    attack.get = bogus
    with pytest.raises(TransportError, match="not a complete XML document"):
        await client_for(attack).fetch()


async def test_a_statement_with_an_error_status_is_not_saved(
    attack: Attack, tmp_path: Path
) -> None:
    async def failing(request: web.Request) -> web.StreamResponse:
        return web.Response(status=500, body=build_statement())

    attack.get = failing
    with pytest.raises(TransportError, match="HTTP 500"):
        await client_for(attack).download(tmp_path / "s.xml")
    assert list(tmp_path.iterdir()) == []


async def test_an_endless_attribute_is_no_statement_for_fetch_or_download(
    attack: Attack, tmp_path: Path
) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        head = b'<FlexQueryResponse><FlexStatements count="1"><x a="'
        return await attack.stream(request, plain(head, b"a", 256 * MiB))

    attack.get = endless
    peak, error = await peak_while(client_for(attack, max_retries=3).fetch())
    assert isinstance(error, StatementError)
    assert f"more than {MAX_GAP:,} bytes in one attribute, text, comment" in str(error)
    assert peak < 6 * MAX_GAP  # the bytes so far, and the parser's copy of the open token
    with pytest.raises(StatementError, match="bytes in one attribute"):
        await client_for(attack, max_retries=3).download(tmp_path / "s.xml")
    assert list(tmp_path.iterdir()) == []
    assert attack.sent["GetStatement"] == 2  # one each: trying again would not change it


def test_download_judges_headers_as_flex_statement_does(tmp_path: Path) -> None:
    # One header can only be dd/MM, the other only MM/dd: FlexStatement refuses the file.
    document = (
        b'<FlexQueryResponse><FlexStatements count="2">'
        b'<FlexStatement accountId="U1" fromDate="13/01/2026" toDate="13/01/2026"/>'
        b'<FlexStatement accountId="U2" fromDate="01/13/2026" toDate="01/13/2026"/>'
        b"</FlexStatements></FlexQueryResponse>"
    )
    path = tmp_path / "s.xml"
    path.write_bytes(document)
    with pytest.raises(StatementError, match="Flex statement header") as library:
        FlexStatement.from_file(path)
    with pytest.raises(StatementError) as streamed:
        check_statement_file(path)
    assert str(streamed.value) == str(library.value)


async def test_a_statement_of_tiny_elements_is_refused_before_its_tree_fills_memory(
    attack: Attack,
) -> None:
    async def tiny(request: web.Request) -> web.StreamResponse:
        head = b'<FlexQueryResponse><FlexStatements count="1"><Trades>'
        return await attack.stream(request, plain(head, b'<r a="1"/>', 256 * MiB))

    attack.get = tiny
    peak, error = await peak_while(client_for(attack, max_retries=3).fetch())
    assert isinstance(error, StatementError)
    assert "too many elements and attributes for its size" in str(error)
    assert attack.sent["GetStatement"] == 1
    assert peak < 48 * MiB


@pytest.mark.parametrize("path", sorted(DATA.glob("*.xml")), ids=lambda p: p.name)
def test_real_statements_are_far_from_the_density_limit(path: Path) -> None:
    document = path.read_bytes()
    units = ELEMENT_UNITS * document.count(b"<") + document.count(b"=")
    assert len(document) / units > 2 * BYTES_PER_UNIT


def test_the_simulators_statements_pass_the_density_limit() -> None:
    document = build_statement()
    units = ELEMENT_UNITS * document.count(b"<") + document.count(b"=")
    assert len(document) / units > 1.25 * BYTES_PER_UNIT


@pytest.mark.parametrize(
    ("opening", "filler"),
    [(b"<!--", b"-<"), (b"<![CDATA[", b"a<"), (b"<?pi ", b"a<")],
    ids=["comment", "cdata", "pi"],
)
async def test_an_endless_comment_cdata_or_pi_is_refused_by_fetch_and_download(
    attack: Attack, tmp_path: Path, opening: bytes, filler: bytes
) -> None:
    # A "<" now and then inside the token: counting bytes between "<"s would not see it.
    async def endless(request: web.Request) -> web.StreamResponse:
        head = b'<FlexQueryResponse><FlexStatements count="1">' + opening
        return await attack.stream(request, plain(head, filler + b"x" * (MiB - 2), 256 * MiB))

    attack.get = endless
    peak, error = await peak_while(client_for(attack).fetch())
    assert isinstance(error, StatementError)
    assert "bytes in one attribute, text, comment or other token" in str(error)
    assert peak < 6 * MAX_GAP
    with pytest.raises(StatementError, match="bytes in one attribute"):
        await client_for(attack).download(tmp_path / "s.xml")
    assert list(tmp_path.iterdir()) == []


def test_the_part_is_written_through_its_descriptor_never_reopened(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    temp, file = open_temp(tmp_path / "s.xml")
    temp.unlink()
    temp.symlink_to(victim)  # swapped in between creating the part and writing it
    with file:
        file.write(b"<FlexQueryResponse/>")
    assert victim.read_bytes() == b"precious"


async def test_a_content_encoding_echoing_the_token_is_redacted(attack: Attack) -> None:
    token = "AbCdEf+/%=123456789012XYZ"

    async def echo(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"x", headers={"Content-Encoding": f"x-{token}"})

    attack.get = echo
    with pytest.raises(TransportError) as caught:
        await client_for(attack, token=token).fetch()
    assert "content coding" in str(caught.value)
    assert token not in str(caught.value)
    assert token.lower() not in str(caught.value).lower()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"timeout": 1e-300}, "timeout"),
        ({"timeout": 0.05}, "timeout"),
        ({"query_id": "1\n2"}, "query_id"),
        ({"query_id": "7" * 65}, "query_id"),
    ],
)
def test_settings_that_would_only_spend_requests_are_refused(
    options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        FlexClient(**({"token": TOKEN, "query_id": "1"} | options))
