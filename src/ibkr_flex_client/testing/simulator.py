"""A simulated IB Flex Web Service on loopback, faithful to ``docs/protocol.md``.

It answers SendRequest and GetStatement as IB does (envelopes, codes, the ``<Url>`` to follow),
enforces IB's per-token limits with 1018, answers 1019 until a statement's generation time has
passed, knows tokens and queries that fail with each terminal code, and can be scripted to fail
a query's requests with any IB code or HTTP fault. It reads SendRequest's optional ``fd``,
``td`` and ``p`` as IB does (a bad combination is 1020), and a query given an
:class:`AccountHistory` serves any requested range of it, answering 1003 for ranges IB has no
statement for. It records every request, and shows the records as JSON at
:data:`REQUESTS_PATH` to other processes (``ibkr-flex simulator``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import random
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType

from aiohttp import web

from .._clock import Clock, SystemClock
from ..errors import Step
from ..protocol import GET_PATH, SEND_PATH
from .clock import FakeClock
from .content import build_statement
from .faults import (
    IB_MESSAGES,
    QUERY_CODES,
    TOKEN_CODES,
    Fault,
    FaultKind,
    RequestRecord,
    fingerprint,
)
from .history import AccountHistory, Window, read_overrides

__all__ = [
    "IB_MESSAGES",
    "QUERY_CODES",
    "REQUESTS_PATH",
    "TOKEN_CODES",
    "Fault",
    "FaultKind",
    "FlexSimulator",
    "RequestRecord",
    "fingerprint",
]

_MAINTENANCE_PAGE = (
    b"<!DOCTYPE html><html><head><title>Interactive Brokers</title></head><body>"
    b"<h1>Our services are temporarily unavailable</h1><p>Please try again later.</p>"
    b"</body></html>"
)
_NOT_FOUND_PAGE = b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>"
# Not IB's: the simulator's own read-only window on FlexSimulator.requests, for processes
# that share one simulator (``ibkr-flex simulator``), whatever their language. Tokens appear
# only as fingerprints; the records themselves never hold a token.
REQUESTS_PATH = "/_simulator/requests"
_XML = "text/xml"
_CHARSET = "ISO-8859-1"  # what IB declares, whatever the document says ("The two steps")
# Our words, not IB's: the answer to a client on another clock (require_shared_clock). Its
# plain words survive the client's token redaction, which takes short tokens as whole words.
_OFF_CLOCK_MESSAGE = (
    "FlexSimulator: this request came from a client that is not on the simulator's FakeClock, "
    "so IB's limits and generation times would hold it back in real time. Pass the same "
    "FakeClock to the client as clock= (under pytest: clock=flex_clock; FlexClient, "
    "fetch_statement and download_statement all take it)."
)


@dataclasses.dataclass(slots=True)
class _Query:
    statement: bytes | Callable[[], bytes] | None = None
    history: AccountHistory | None = None
    generation_seconds: float | None = None
    faults: dict[Step, collections.deque[Fault]] = dataclasses.field(
        default_factory=lambda: {step: collections.deque() for step in Step}
    )


@dataclasses.dataclass(slots=True)
class _Reference:
    query_id: str
    token: str
    ready_at: float
    expires_at: float
    window: Window | None = None  # the range asked for, for a query with a history


class FlexSimulator:
    """IB's Flex Web Service on ``127.0.0.1``, for tests and demos.

    >>> async with FlexSimulator() as sim:                          # doctest: +SKIP
    ...     client = FlexClient(token="any", query_id="42", base_url=sim.base_url)
    ...     statement = await client.fetch()

    Any token and query id work unless configured otherwise: tokens in :data:`TOKEN_CODES`
    and :attr:`token_codes` and queries in :data:`QUERY_CODES` and :attr:`query_codes` fail
    with their code. Every query serves :func:`build_statement`'s default report unless
    :meth:`add_query` says otherwise.

    Args:
        clock: the time the limits and generation times follow. Share a
            :class:`FakeClock` with the client to test without real waiting.
        generation_seconds: how long after SendRequest GetStatement answers 1019.
        statement: the document every query serves by default (bytes or a factory).
        per_second, per_minute: IB's per-token limits (1 and 10); a request over either
            is answered 1018. ``enforce_limits=False`` turns them off.
        penalty_seconds: after a 1018, every request of that token is refused for this long
            (IB "may" do so for 10 minutes); 0 by default.
        lockout_after: terminal failures of one token after which it is locked out (1025).
        reference_ttl: seconds a reference code stays valid (IB caches for minutes); 1017 after.
        latency: real seconds each answer is delayed, for demos.
        require_shared_clock: answer only clients on ``clock``, a :class:`FakeClock`: a
            request that arrives while no exchange holds the clock (:meth:`FakeClock.busy`,
            which the client holds around each request) comes from a client sleeping on
            another clock, and is answered at once with a terminal 1020 whose message says
            to pass ``clock=``. Otherwise IB's limits, on virtual time that such a client
            never moves, would throttle it for minutes of real backoff. The
            ``flex_simulator`` fixture turns it on; requests from other HTTP clients are
            refused too, so it is off by default.
        ssl_context: serve https with this server-side context instead of plain http;
            :attr:`base_url` is then ``https://127.0.0.1:PORT``. For tests of IB's own host
            names: give the client's session a resolver that maps them to this port and an
            SSL context that trusts the certificate (``trustme`` makes one for both names).
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        generation_seconds: float = 1.0,
        statement: bytes | Callable[[], bytes] | None = None,
        enforce_limits: bool = True,
        per_second: int = 1,
        per_minute: int = 10,
        penalty_seconds: float = 0.0,
        lockout_after: int | None = 20,
        reference_ttl: float = 600.0,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        require_shared_clock: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        if require_shared_clock and not isinstance(self.clock, FakeClock):
            raise ValueError(
                "require_shared_clock=True needs clock= to be a FakeClock, shared with the client"
            )
        self.require_shared_clock = require_shared_clock
        self.generation_seconds = generation_seconds
        self.statement = statement
        self.enforce_limits = enforce_limits
        self.per_second = per_second
        self.per_minute = per_minute
        self.penalty_seconds = penalty_seconds
        self.lockout_after = lockout_after
        self.reference_ttl = reference_ttl
        self.latency = latency
        self.token_codes: dict[str, int] = dict(TOKEN_CODES)
        self.query_codes: dict[str, int] = dict(QUERY_CODES)
        self.requests: list[RequestRecord] = []
        self._host = host
        self._port = port
        self._ssl_context = ssl_context
        self._queries: dict[str, _Query] = {}
        self._references: dict[str, _Reference] = {}
        self._recent: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )
        self._penalty_until: dict[str, float] = {}
        self._failures: collections.Counter[str] = collections.Counter()
        self._codes = (str(n) for n in itertools.count(random.randrange(10**9, 9 * 10**9)))  # noqa: S311
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self.base_url = ""

    # --- configuration ---------------------------------------------------------------------

    def add_query(
        self,
        query_id: str,
        *,
        statement: bytes | Callable[[], bytes] | None = None,
        generation_seconds: float | None = None,
        history: AccountHistory | None = None,
    ) -> None:
        """Serve ``statement`` for ``query_id``, ready ``generation_seconds`` after SendRequest.

        With ``history`` instead, serve the range each SendRequest asks for (``fd``/``td``,
        ``p``, or by default the last business day before ``history.today``) from that
        :class:`AccountHistory`, and answer 1003 at SendRequest where IB has no statement
        (:meth:`AccountHistory.unavailable`: ends on a weekend, not yet published, before an
        account's opening). Each replaces the other.
        """
        if statement is not None and history is not None:
            raise ValueError("give statement or history, not both")
        query = self._queries.setdefault(str(query_id), _Query())
        if statement is not None:
            query.statement, query.history = statement, None
        if history is not None:
            query.statement, query.history = None, history
        if generation_seconds is not None:
            query.generation_seconds = generation_seconds

    def fail(
        self, query_id: str, *faults: Fault, times: int = 1, step: Step = Step.GET_STATEMENT
    ) -> None:
        """Make the next requests of ``step`` for ``query_id`` fail, in order.

        Each fault is used by one request; ``times`` repeats the whole sequence.
        ``Fault.foreign_url()`` always applies to SendRequest.
        """
        query = self._queries.setdefault(str(query_id), _Query())
        for _ in range(times):
            for fault in faults:
                target = Step.SEND_REQUEST if fault.kind is FaultKind.FOREIGN_URL else step
                query.faults[target].append(fault)

    def answers(self, step: Step | str | None = None) -> list[str]:
        """The answers recorded so far, optionally for one step only."""
        return [r.answer for r in self.requests if step is None or r.step == str(step)]

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> str:
        """Listen on a free loopback port; returns :attr:`base_url`."""
        app = web.Application()
        app.router.add_get(SEND_PATH, self._send_request)
        app.router.add_get(GET_PATH, self._get_statement)
        # Retired URLs, answered as IB answers them since about May 2026.
        app.router.add_get(
            "/Universal/servlet/FlexStatementService.SendRequest", self._legacy_servlet
        )
        app.router.add_get(
            "/AccountManagement/FlexWebService/FlexStatementService.SendRequest",
            self._not_found,
        )
        app.router.add_get(REQUESTS_PATH, self._requests)
        self._closing = asyncio.Event()
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, ssl_context=self._ssl_context)
        await site.start()
        server = site._server  # the one way to learn the bound port
        assert isinstance(server, asyncio.base_events.Server)  # noqa: S101
        port = server.sockets[0].getsockname()[1]
        scheme = "http" if self._ssl_context is None else "https"
        self.base_url = f"{scheme}://{self._host}:{port}"
        return self.base_url

    async def close(self) -> None:
        """Stop listening; requests left hanging are released."""
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FlexSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @contextlib.contextmanager
    def serve_in_thread(self) -> Iterator[FlexSimulator]:
        """Run the simulator on its own event loop in a background thread.

        For synchronous code and for tests whose event loop the simulator should not share
        (the ``flex_simulator`` pytest fixture uses it). Configure it from any thread; a
        shared :class:`FakeClock` is read, never slept on, by the simulator.

        >>> with FlexSimulator().serve_in_thread() as sim:             # doctest: +SKIP
        ...     statement = fetch_statement(token="t", query_id="1", base_url=sim.base_url)
        """
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        thread = threading.Thread(
            target=_run_loop, args=(loop, ready), name="FlexSimulator", daemon=True
        )
        thread.start()
        ready.wait()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=30)
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.close(), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            loop.close()

    # --- the two steps ---------------------------------------------------------------------

    async def _send_request(self, request: web.Request) -> web.StreamResponse:
        token, query_id = request.query.get("t", ""), request.query.get("q", "")
        if self._off_clock():
            return await self._off_clock_answer(request, Step.SEND_REQUEST, token, query_id)
        refusal = self._admit(token)
        if refusal is None and (not token or not query_id):
            refusal = 1020
        if refusal is None:
            refusal = self.token_codes.get(token) or self.query_codes.get(query_id)
        window = None
        if refusal is None:
            refusal, window = self._requested_window(query_id, request.query)
        if refusal is not None:
            return await self._refuse(request, Step.SEND_REQUEST, token, query_id, refusal)
        fault = self._next_fault(query_id, Step.SEND_REQUEST)
        if fault is not None and fault.kind is not FaultKind.FOREIGN_URL:
            return await self._fault(request, Step.SEND_REQUEST, token, query_id, fault)
        now = self.clock.now()
        code = next(self._codes)
        query = self._queries.get(query_id)
        generation = (
            query.generation_seconds
            if query is not None and query.generation_seconds is not None
            else self.generation_seconds
        )
        self._references[code] = _Reference(
            query_id, token, now + generation, now + self.reference_ttl, window
        )
        url = fault.url if fault is not None and fault.url else self.base_url + GET_PATH
        body = _envelope(
            "Success", f"<ReferenceCode>{code}</ReferenceCode>\n<Url>{_escape(url)}</Url>"
        )
        self._record(request, Step.SEND_REQUEST, token, query_id, "reference")
        return await self._answer(web.Response(body=body, content_type=_XML, charset=_CHARSET))

    async def _get_statement(self, request: web.Request) -> web.StreamResponse:
        token, code = request.query.get("t", ""), request.query.get("q", "")
        if self._off_clock():
            return await self._off_clock_answer(request, Step.GET_STATEMENT, token, code)
        refusal = self._admit(token)
        reference = self._references.get(code)
        now = self.clock.now()
        if refusal is None and (not token or not code):
            refusal = 1020
        if refusal is None:
            refusal = self.token_codes.get(token)
        if refusal is None and (
            reference is None or reference.token != token or now >= reference.expires_at
        ):
            refusal = 1017
        if refusal is not None or reference is None:
            return await self._refuse(request, Step.GET_STATEMENT, token, code, refusal or 1017)
        fault = self._next_fault(reference.query_id, Step.GET_STATEMENT)
        if fault is not None:
            return await self._fault(request, Step.GET_STATEMENT, token, code, fault)
        if now < reference.ready_at:
            return await self._refuse(request, Step.GET_STATEMENT, token, code, 1019)
        self._record(request, Step.GET_STATEMENT, token, code, "statement")
        body = self._statement_for(reference.query_id, reference.window)
        return await self._answer(web.Response(body=body, content_type=_XML, charset=_CHARSET))

    async def _legacy_servlet(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("t", "")
        return await self._refuse(request, Step.SEND_REQUEST, token, "", 1001)

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        self._record(request, Step.SEND_REQUEST, request.query.get("t", ""), "", "http:404")
        return web.Response(status=404, body=_NOT_FOUND_PAGE, content_type="text/html")

    async def _requests(self, request: web.Request) -> web.StreamResponse:
        """``GET`` :data:`REQUESTS_PATH`: :attr:`requests` as JSON, for other processes.

        ``{"requests": [...], "answers": {...}}``: each record's fields as
        :class:`RequestRecord` names them (``token_fingerprint``, never the token; ``at`` in
        seconds on the simulator's clock), oldest first, and how many times each answer was
        given (``"1018": 3``). Neither recorded nor limited: it is not IB's.
        """
        records = list(self.requests)
        return web.json_response(
            {
                "requests": [dataclasses.asdict(record) for record in records],
                "answers": dict(collections.Counter(record.answer for record in records)),
            }
        )

    # --- rules -----------------------------------------------------------------------------

    def _admit(self, token: str) -> int | None:
        """IB's limits ("Rate limits"): 1018 over 1/s or 10/min per token, 1025 when locked."""
        if self.lockout_after is not None and self._failures[token] >= self.lockout_after:
            return 1025
        if not self.enforce_limits:
            return None
        now = self.clock.now()
        recent = self._recent[token]
        while recent and recent[0] <= now - 60.0:
            recent.popleft()
        over = (
            now < self._penalty_until.get(token, float("-inf"))
            or sum(1 for t in recent if t > now - 1.0) >= self.per_second
            or len(recent) >= self.per_minute
        )
        recent.append(now)  # refused requests count too: IB sees every one
        if over:
            if self.penalty_seconds:
                self._penalty_until[token] = now + self.penalty_seconds
            return 1018
        return None

    def _off_clock(self) -> bool:
        """A request while no exchange holds the shared clock: the client sleeps elsewhere."""
        clock = self.clock
        return self.require_shared_clock and isinstance(clock, FakeClock) and not clock.held

    def _next_fault(self, query_id: str, step: Step) -> Fault | None:
        query = self._queries.get(query_id)
        if query is None or not query.faults[step]:
            return None
        return query.faults[step].popleft()

    def _requested_window(
        self, query_id: str, params: Mapping[str, str]
    ) -> tuple[int | None, Window | None]:
        """SendRequest's ``fd``/``td``/``p`` ("Optional SendRequest parameters"): 1020 for a
        malformed or over-long range, whatever the query; for a query with a history, the
        window asked for, or 1003 when IB would have no statement for it.

        The protocol notes do not say which step answers 1003 for such a range; the range is
        known at SendRequest, so it is answered there, as for :data:`QUERY_CODES`.
        """
        try:
            overrides = read_overrides(params)
        except ValueError:
            return 1020, None
        query = self._queries.get(query_id)
        if query is None or query.history is None:
            return None, None
        window = query.history.window(overrides)
        if query.history.unavailable(window) is not None:
            return 1003, None
        return None, window

    def _statement_for(self, query_id: str, window: Window | None = None) -> bytes:
        query = self._queries.get(query_id)
        if query is not None and query.history is not None:
            window = window or query.history.window()
            return query.history.statement(window.from_date, window.to_date, period=window.period)
        content = query.statement if query is not None and query.statement else self.statement
        if content is None:
            return build_statement()
        return content() if callable(content) else content

    # --- answers ---------------------------------------------------------------------------

    async def _refuse(
        self, request: web.Request, step: Step, token: str, query: str, code: int
    ) -> web.StreamResponse:
        if code not in (1018, 1019) and 1000 < code < 2000 and code not in _TRANSIENT:
            self._failures[token] += 1
        status = "Warn" if code == 1019 else "Fail"
        body = _envelope(
            status,
            f"<ErrorCode>{code}</ErrorCode>\n"
            f"<ErrorMessage>{_escape(IB_MESSAGES.get(code, 'Unknown error.'))}</ErrorMessage>",
        )
        self._record(request, step, token, query, str(code))
        return await self._answer(web.Response(body=body, content_type=_XML, charset=_CHARSET))

    async def _off_clock_answer(
        self, request: web.Request, step: Step, token: str, query: str
    ) -> web.StreamResponse:
        # 1020 ("invalid request") is terminal: the fetch stops with a QueryError carrying
        # the message. Not counted towards a lock-out: the simulator's refusal, not IB's.
        body = _envelope(
            "Fail",
            f"<ErrorCode>1020</ErrorCode>\n<ErrorMessage>{_escape(_OFF_CLOCK_MESSAGE)}</ErrorMessage>",
        )
        self._record(request, step, token, query, "1020")
        return await self._answer(web.Response(body=body, content_type=_XML, charset=_CHARSET))

    async def _fault(
        self, request: web.Request, step: Step, token: str, query: str, fault: Fault
    ) -> web.StreamResponse:
        if fault.kind is FaultKind.IB_CODE:
            return await self._refuse(request, step, token, query, fault.code or 1001)
        self._record(request, step, token, query, f"fault:{fault.kind.value}")
        if fault.kind is FaultKind.HTTP_STATUS:
            return web.Response(
                status=fault.status, body=_MAINTENANCE_PAGE, content_type="text/html"
            )
        if fault.kind is FaultKind.REDIRECT:
            return web.Response(status=fault.status, headers={"Location": fault.url or "/"})
        if fault.kind is FaultKind.HTML:
            return web.Response(body=_MAINTENANCE_PAGE, content_type="text/html")
        if fault.kind is FaultKind.EMPTY:
            return web.Response(body=b"", content_type=_XML)
        if fault.kind is FaultKind.HANG:
            assert self._closing is not None  # noqa: S101 - set by start()
            await self._closing.wait()
        if fault.kind is FaultKind.TRUNCATE:
            reference = self._references.get(query)
            body = (
                self._statement_for(reference.query_id, reference.window)
                if reference is not None
                else self._statement_for(query)
            )
            response = web.StreamResponse(headers={"Content-Type": f"{_XML}; charset={_CHARSET}"})
            response.content_length = len(body)
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
        _drop(request)
        return web.Response(status=503)  # never reaches the client: the connection is gone

    async def _answer(self, response: web.Response) -> web.Response:
        if self.latency:
            await asyncio.sleep(self.latency)
        return response

    def _record(
        self, request: web.Request, step: Step, token: str, query: str, answer: str
    ) -> None:
        self.requests.append(
            RequestRecord(
                step=str(step),
                token_fingerprint=fingerprint(token),
                query=query,
                answer=answer,
                at=self.clock.now(),
                params={k: v for k, v in request.query.items() if k != "t"},
                user_agent=request.headers.get("User-Agent", ""),
            )
        )


_TRANSIENT = frozenset({1001, 1004, 1005, 1006, 1007, 1008, 1009, 1021, 1025})


def _run_loop(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()


def _drop(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _envelope(status: str, inner: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<FlexStatementResponse timestamp="26 November, 2026 04:07 AM EST">\n'
        f"<Status>{status}</Status>\n{inner}\n</FlexStatementResponse>\n"
    ).encode()
