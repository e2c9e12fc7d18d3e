"""The aiohttp driver: the one place that touches the network, sleeps, and translates errors.

Everything it decides comes from :mod:`.flow`; this module performs the requests and waits the
flow asks for, and turns every aiohttp, asyncio and OS error into a :class:`Trouble` value (never
an exception carrying a URL, which would hold the token).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from ._body import read_body
from ._clock import SYSTEM_CLOCK, Clock, busy
from ._files import check_target, discard, replace
from ._inflate import ACCEPT_ENCODING
from .errors import FlexError, LockedOutError, Step, ThrottledError
from .events import EventKind, FetchEvent, ProgressCallback
from .flow import Outcome, Result, Wait, fetch_flow, worst_case_seconds
from .pacing import Ticket, pacer_for
from .protocol import (
    DEFAULT_BASE_URL,
    THROTTLED,
    HttpRequest,
    Saved,
    Trouble,
    TroubleKind,
    http_trouble,
    redact,
)
from .protocol import user_agent as _user_agent_header
from .retry import MAX_BACKOFF, attempt_limit
from .settings import DEFAULT_LOCKOUT, check_settings
from .statement import FlexStatement

__all__ = ["DEFAULT_MAX_STATEMENT_BYTES", "FlexClient", "download_statement", "fetch_statement"]

logger = logging.getLogger("ibkr_flex_client")

CHUNK = 64 * 1024
# fetch() holds the statement, and its parsed tree, in memory: the tree of a real statement
# takes about 6 times its size (more for a hostile one of tiny elements), so 128 MiB (about
# half a million trades) already means some 800 MB. Past it fetch() refuses the statement;
# download() streams to disk in flat memory and has no cap.
DEFAULT_MAX_STATEMENT_BYTES = 128 * 1024 * 1024

T = TypeVar("T")


class FlexClient:
    """Downloads one Flex Query's statement through IB's Flex Web Service.

    >>> client = FlexClient(token="…", query_id="123456")        # doctest: +SKIP
    >>> statement = await client.fetch()                           # doctest: +SKIP

    All arguments are keyword-only and checked here: an invalid value or combination raises
    ``ValueError`` naming the argument (and never showing the token).

    Args:
        token: the Flex Web Service token from IB's Account Management. Secret: it appears in
            no log, exception, repr or file, even when a server echoes it back.
        query_id: the Flex Query's id.
        max_retries: the most requests each step may make in one fetch, 1 to 100; bounds the
            GetStatement polls.
        backoff_base: seconds, more than 0 and at most 600; the first wait after a throttle
            (1018) or transient failure, doubling each time in a row up to 600 s. Also the
            longest gap between polls.
        from_date, to_date: override the query's dates (``fd``/``td``): a ``date`` (not a
            ``datetime``) or a ``"yyyyMMdd"`` string, both or neither, at most 365 days from
            first to last.
        period: override the query's period with the last N days (``p``), 1 to 365; not
            together with dates.
        timeout: seconds without progress after which one HTTP attempt is abandoned (and
            retried), more than 0 and at most 600. One attempt lasts at most 10 x ``timeout``.
        user_agent: your application's product token, sent before this library's own
            (``"myapp/2.1 ibkr-flex-client/0.2.0 Python/3.12"``).
        base_url: replaces ``https://ndcdyn.interactivebrokers.com`` (a proxy, or a local
            simulator in tests): http(s), a host, an optional path, nothing else. Plain http
            is accepted only on loopback. On either of IB's two hosts (ndcdyn, gdcdyn), a
            request failing DNS or connection, or answered by an HTML 404, is tried next on
            the other; never on any other host, and never when this names another server.
        day_first: how the query writes slashed dates, for the statement: ``True`` for
            dd/MM, ``False`` for MM/dd; by default the document decides.
        clock: what the client sleeps on; tests pass ``testing.FakeClock`` to skip real waits.
        max_statement_bytes: the largest statement :meth:`fetch` holds in memory (it is
            parsed as it arrives); a larger one raises :class:`StatementError`. At least
            1 MiB, or ``None`` for no limit; by default 128 MiB (the parsed tree takes about six
            times the statement's size). :meth:`download` streams to disk and has no limit.
        pacing: where the token's request budget (IB's 1 per second and 10 per minute, the
            slow-down after 1018, the lock-out after 1025) is shared: ``"machine"`` (every
            process of yours on this machine, through a locked state file per token in
            ``IBKR_FLEX_STATE_DIR``, by default the user cache directory), ``"process"``
            (this process only), or a ``redis://`` / ``rediss://`` URL (every worker using
            that Redis; needs ``ibkr-flex-client[redis]``). By default ``IBKR_FLEX_PACING``,
            else ``"machine"``. With a virtual ``clock`` the budget is the process's own.
        lockout_seconds: after IB answers 1025 (too many failed attempts), no request of
            the token goes, anywhere its budget is shared, for this long: 1 hour by default,
            more than 0 and at most a week. ``ibkr-flex unlock`` (or :func:`unlock`) clears it
            sooner once the cause is fixed.
    """

    def __init__(
        self,
        *,
        token: str,
        query_id: str | int,
        max_retries: int = 10,
        backoff_base: float = 10.0,
        from_date: date | str | None = None,
        to_date: date | str | None = None,
        period: int | None = None,
        timeout: float = 30.0,
        user_agent: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        day_first: bool | None = None,
        clock: Clock | None = None,
        max_statement_bytes: int | None = DEFAULT_MAX_STATEMENT_BYTES,
        pacing: str | None = None,
        lockout_seconds: float = DEFAULT_LOCKOUT,
    ) -> None:
        checked = check_settings(
            token=token,
            query_id=query_id,
            max_retries=max_retries,
            backoff_base=backoff_base,
            from_date=from_date,
            to_date=to_date,
            period=period,
            timeout=timeout,
            user_agent=user_agent,
            base_url=base_url,
            day_first=day_first,
            max_statement_bytes=max_statement_bytes,
            pacing=pacing,
            lockout_seconds=lockout_seconds,
        )
        self._settings = checked.fetch
        self._lockout_seconds = checked.lockout_seconds
        self._timeout = checked.timeout
        self._max_statement = checked.max_statement_bytes
        self._headers = {
            "User-Agent": _user_agent_header(checked.user_agent),
            # Only what _inflate decodes, in bounded pieces (aiohttp would inflate whole).
            "Accept-Encoding": ACCEPT_ENCODING,
        }
        self._clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        # Shared with every client of this token on this clock in this process, and through
        # the pacing backend with every process (or worker) sharing the token's budget.
        self._pacer = pacer_for(token, self._clock, checked.pacing)

    @property
    def query_id(self) -> str:
        """The Flex Query id this client fetches."""
        return self._settings.query_id

    @property
    def worst_case_seconds(self) -> float:
        """The longest one :meth:`fetch` or :meth:`download` takes with these settings.

        Each step makes at most ``max_retries`` requests of at most 10 x ``timeout`` each, with
        at most 600 seconds between two of them. With the defaults: ``2·10·300 + 19·600`` =
        17,400 s. Typical fetches take seconds. The bound holds however many other fetches
        share the token: time spent queueing for the token's requests counts against it, and
        a fetch that could not end within it gives up at once with :class:`ThrottledError`.
        """
        return worst_case_seconds(
            max_retries=self._settings.max_retries,
            backoff_base=self._settings.backoff_base,
            timeout=self._timeout,
        )

    def __repr__(self) -> str:
        s = self._settings
        return (
            f"FlexClient(query_id={s.query_id!r}, base_url={s.base_url!r}, "
            f"max_retries={s.max_retries}, backoff_base={s.backoff_base}, "
            f"timeout={self._timeout})"
        )

    async def fetch(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        on_event: ProgressCallback | None = None,
    ) -> FlexStatement:
        """Run SendRequest, poll GetStatement, and return the checked statement.

        Args:
            session: the ``aiohttp.ClientSession`` to use; it is left open. Without one, the
                client opens its own and closes it before returning.
            on_event: called with a :class:`FetchEvent` before each request, before each
                wait and when the statement arrives, for progress displays. The same events
                are logged. An exception it raises is logged and ignored.

        Returns:
            The :class:`FlexStatement`: always a complete, well-formed ``FlexQueryResponse``.

        Raises:
            FlexError: a subclass saying what to do next (see :mod:`ibkr_flex_client.errors`).
                Nothing else escapes, except ``asyncio.CancelledError`` when cancelled.

        Always ends by itself, within :attr:`worst_case_seconds`. Every answer is read in
        bounded memory: envelopes are capped at 1 MiB (after decompression), and the
        statement is parsed as it arrives, up to ``max_statement_bytes``. aiohttp's silent
        one-time re-send of a GET on a dropped connection is switched off on the session
        used, since that re-send would reach IB within the same second (a 1018).
        """
        result = await self._guarded(self._with_session(session, on_event, None))
        if not isinstance(result, FlexStatement):  # the flow's contract
            raise FlexError(f"internal error: fetch() ended with {type(result).__name__}")
        return result

    async def download(
        self,
        path: str | os.PathLike[str],
        session: aiohttp.ClientSession | None = None,
        *,
        on_event: ProgressCallback | None = None,
    ) -> Path:
        """Fetch the statement straight to a file, however large; returns ``path``.

        The GetStatement body streams to a temporary file beside ``path`` (never into
        memory), created only when the statement starts to arrive, and is checked as it
        arrives to be a complete, well-formed Flex statement (in flat memory); then it is
        flushed to disk and only then renamed over ``path``: a crash, a cancellation or an
        error never leaves a partial file at ``path``, and an existing file there stays as it
        was until the new one is whole. A temporary file left by a killed process is removed
        by the next download into that directory. The file is readable by its owner only (it
        holds account data). Retries, pacing, events and errors are those of :meth:`fetch`;
        a file that cannot be written raises :class:`SaveError`, and a target that cannot
        be written (a directory, a missing or read-only parent) raises it before any request.
        """
        target = Path(path)
        check_target(target)  # fails before any request is spent
        result = await self._guarded(self._with_session(session, on_event, target))
        if not isinstance(result, Saved):  # the flow's contract
            raise FlexError(f"internal error: download() ended with {type(result).__name__}")
        temp = Path(result.path)
        try:
            replace(temp, target)
        finally:
            discard(temp)
        return target

    async def _guarded(self, work: Awaitable[T]) -> T:
        """The one translation point: whatever fails anywhere in a fetch leaves as a
        :class:`FlexError` (or ``CancelledError``); a foreign exception's text is redacted
        and its chain dropped, since it may quote the request's URL."""
        try:
            return await work
        except FlexError:
            raise
        except Exception as exc:  # noqa: BLE001 - the documented promise: only FlexError
            reason = redact(f"{type(exc).__name__}: {exc}", self._settings.token)
        raise FlexError(f"unexpected failure during the fetch: {reason}")

    async def _with_session(
        self,
        session: aiohttp.ClientSession | None,
        on_event: ProgressCallback | None,
        save_as: Path | None,
    ) -> Result:
        if session is not None:
            if session.closed:
                raise FlexError("the aiohttp session passed to fetch() is closed")
            _no_silent_retry(session)
            return await self._run(session, on_event, save_as)
        async with aiohttp.ClientSession() as own:
            _no_silent_retry(own)
            return await self._run(own, on_event, save_as)

    async def _run(
        self,
        session: aiohttp.ClientSession,
        on_event: ProgressCallback | None,
        save_as: Path | None,
    ) -> Result:
        flow = fetch_flow(self._settings)
        progress = _Progress(self.query_id, self._clock, on_event)
        # Every request must be able to run its whole attempt before the fetch's bound.
        last_start = progress.started + self.worst_case_seconds - attempt_limit(self._timeout)
        # The fetch's reference counts against the token's references in flight until it
        # ends; if this process dies, it is dropped after the longest gap between two of
        # the fetch's requests.
        ticket = self._pacer.ticket(attempt_limit(self._timeout) + self._longest_wait + 60.0)
        outcome: Outcome | None = None
        try:
            while True:
                try:
                    action = flow.send(outcome)
                except StopIteration as done:
                    result: Result = done.value
                    size = len(result.xml) if isinstance(result, FlexStatement) else result.size
                    progress.emit(EventKind.DONE, Step.GET_STATEMENT, size=size)
                    return result
                except LockedOutError as error:
                    # Every fetch of this token, wherever its budget is shared, stops too.
                    await self._lock_out(error)
                    raise
                if isinstance(action, Wait):
                    if self._clock.now() + action.seconds > last_start:
                        raise self._too_late(action.step)
                    progress.emit(
                        EventKind.WAIT,
                        action.step,
                        wait=action.seconds,
                        code=action.code,
                        detail=action.reason,
                    )
                    if action.code == THROTTLED:  # slow every fetch of this token down
                        await self._pacer.slow_down(action.seconds)
                    await self._pacer.sleep(action.seconds)
                    outcome = None
                    continue

                step = action.step

                def paced(seconds: float, code: int | None, reason: str, step: Step = step) -> None:
                    progress.emit(EventKind.WAIT, step, wait=seconds, code=code, detail=reason)

                def too_late(step: Step = step) -> ThrottledError:
                    return self._too_late(step)

                await self._pacer.acquire(
                    ticket, step, paced, deadline=last_start, too_late=too_late
                )
                progress.attempts[action.step] += 1
                progress.emit(EventKind.REQUEST, action.step, detail=f"GET {action.safe_url}")
                outcome = await self._perform(session, action, save_as)
        finally:
            flow.close()
            await self._release(ticket)

    async def _lock_out(self, error: LockedOutError) -> None:
        """Keep IB's 1025 in the token's budget; the 1025 itself is what the caller must see,
        even if the budget cannot be reached to keep it."""
        try:
            await self._pacer.lock_out(error, self._lockout_seconds)
        except FlexError as failure:
            logger.warning("the lock-out could not be kept for other processes: %s", failure)

    async def _release(self, ticket: Ticket) -> None:
        """The fetch's reference stops counting; if the budget cannot be reached now, it
        expires by itself (the fetch's own outcome matters more than this bookkeeping)."""
        try:
            # Shielded: a cancellation arriving now still lets the release finish.
            await asyncio.shield(self._pacer.release(ticket))
        except FlexError:
            logger.debug("the token's budget could not be told that a fetch ended")

    @property
    def _longest_wait(self) -> float:
        return max(MAX_BACKOFF, self._settings.backoff_base)

    def _too_late(self, step: Step) -> ThrottledError:
        # Only time spent queueing behind other fetches of the token can push a fetch past
        # its own bound: the flow's waits and attempts fit in it by construction.
        return ThrottledError(
            f"gave up: this fetch cannot end within its limit of {self.worst_case_seconds:g} s "
            "(worst_case_seconds), the token's requests being taken by other fetches; "
            "try again later, or fetch fewer queries of this token at once",
            step=step,
        )

    async def _perform(
        self, session: aiohttp.ClientSession, request: HttpRequest, save_as: Path | None
    ) -> Outcome:
        """One GET; every network failure becomes a :class:`Trouble` whose text holds no
        token, and whose ``kind`` says whether the host seems gone (DNS, no connection, a
        404: the flow then fails over to IB's other host). With ``save_as``, a statement
        streams to a file beside it (see :meth:`download`)."""
        timeout = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=self._timeout, sock_read=self._timeout
        )
        token = self._settings.token
        try:
            with busy(self._clock):
                return await _within(
                    self._exchange(session, request, timeout, save_as),
                    attempt_limit(self._timeout),
                )
        except asyncio.TimeoutError as exc:
            # aiohttp raises its own TimeoutError subclasses for the socket timeouts.
            return _timeout_trouble(exc, self._timeout)
        except aiohttp.ClientResponseError as exc:  # a caller's session with raise_for_status
            return http_trouble(f"HTTP {exc.status} from {request.step}", exc.status)
        except aiohttp.ClientConnectorError as exc:
            return _connect_trouble(exc, token)
        except aiohttp.ServerDisconnectedError:
            return Trouble(f"the server closed the connection during {request.step}")
        except aiohttp.ClientPayloadError:
            return Trouble(f"the {request.step} body was cut short")
        except (aiohttp.ClientError, OSError) as exc:
            # Foreign text that may quote the URL: redacted, and only that part.
            return Trouble(f"{type(exc).__name__} during {request.step}: {redact(str(exc), token)}")

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        request: HttpRequest,
        timeout: aiohttp.ClientTimeout,
        save_as: Path | None,
    ) -> Outcome:
        # No redirects: a 3xx to another host would carry the token there. A 3xx is HTTP
        # trouble like any other non-2xx answer. The body comes raw (auto_decompress off)
        # and is inflated in bounded pieces by read_body.
        async with session.get(
            request.url,
            params=dict(request.params),
            headers=self._headers,
            allow_redirects=False,
            timeout=timeout,
            auto_decompress=False,
        ) as response:
            return await read_body(
                response.content.iter_chunked(CHUNK),
                status=response.status,
                step=request.step,
                content_encoding=response.headers.get("Content-Encoding"),
                save_as=save_as,
                max_statement_bytes=self._max_statement,
                secret=self._settings.token,
            )


class _Progress:
    """One fetch's events: numbered per step, timed from the start, logged and handed on."""

    def __init__(self, query_id: str, clock: Clock, on_event: ProgressCallback | None) -> None:
        self.query_id = query_id
        self.clock = clock
        self.on_event = on_event
        self.started = clock.now()
        self.attempts = dict.fromkeys(Step, 0)

    def emit(
        self,
        kind: EventKind,
        step: Step,
        *,
        wait: float | None = None,
        code: int | None = None,
        detail: str | None = None,
        size: int | None = None,
    ) -> None:
        event = FetchEvent(
            kind,
            self.query_id,
            step,
            self.attempts[step],
            self.clock.now() - self.started,
            wait=wait,
            code=code,
            detail=detail,
            size=size,
        )
        level = logging.DEBUG if kind is EventKind.REQUEST else logging.INFO
        if logger.isEnabledFor(level):
            logger.log(level, "%s", event.describe())
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:  # a progress display must not abort the fetch
            logger.exception("query %s: the on_event callback raised", self.query_id)


def _no_silent_retry(session: aiohttp.ClientSession) -> None:
    """Stop aiohttp from re-sending a GET by itself when the connection drops.

    aiohttp (3.10 and later) repeats an idempotent request once, at once, when the server
    closes the connection. At IB that second request lands within milliseconds of the first:
    a sure 1018 that counts against the token, and invisible to our pacing. There is no public
    switch, so the session's private flag is cleared where it exists; our own retry policy
    decides when to try again. The session otherwise behaves as before.
    """
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False


async def _within(work: Awaitable[T], seconds: float) -> T:
    """``work``'s result, or ``asyncio.TimeoutError`` after ``seconds`` (work cancelled).

    Not ``asyncio.wait_for``: before Python 3.12 it can swallow a cancellation of the caller
    that arrives as ``work`` completes, and a cancelled fetch would go on. Here a cancel of
    the caller always cancels ``work`` and propagates.
    """
    task = asyncio.ensure_future(work)
    task.add_done_callback(_retrieve)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except BaseException:
        task.cancel()  # the caller was cancelled: so is the work, and the cancel goes on
        raise
    if not done:
        task.cancel()
        await asyncio.wait({task})  # let it unwind; a cancel of ours still propagates
        raise asyncio.TimeoutError
    return task.result()


def _retrieve(task: asyncio.Future[Any]) -> None:
    # A cancelled caller leaves the work to end on its own: its failure is no one's news.
    if not task.cancelled():
        task.exception()


def _timeout_trouble(exc: BaseException, timeout: float) -> Trouble:
    if isinstance(exc, aiohttp.ServerTimeoutError):
        # A connect that timed out is a host out of reach, like a refused one; a read that
        # stalled is not. aiohttp 3.9 does not tell them apart: both are OTHER there.
        kind = TroubleKind.CONNECT if _is_connect_timeout(exc) else TroubleKind.OTHER
        return Trouble(f"no progress for {timeout:g} s (the read or connect stalled)", kind=kind)
    return Trouble(f"the attempt took longer than {attempt_limit(timeout):g} s")


def _connect_trouble(exc: aiohttp.ClientConnectorError, token: str) -> Trouble:
    host = redact(f"{exc.host}:{exc.port}", token)
    if _is_dns_failure(exc):
        return Trouble(f"DNS lookup failed for {redact(exc.host, token)}", kind=TroubleKind.DNS)
    reason = exc.os_error.strerror or type(exc.os_error).__name__
    # A TLS failure (ClientSSLError is a ClientConnectorError) reached the host: not gone.
    kind = TroubleKind.OTHER if isinstance(exc, aiohttp.ClientSSLError) else TroubleKind.CONNECT
    return Trouble(f"cannot connect to {host}: {reason}", kind=kind)


def fetch_statement(
    *,
    token: str,
    query_id: str | int,
    max_retries: int = 10,
    backoff_base: float = 10.0,
    from_date: date | str | None = None,
    to_date: date | str | None = None,
    period: int | None = None,
    timeout: float = 30.0,
    user_agent: str | None = None,
    base_url: str = DEFAULT_BASE_URL,
    day_first: bool | None = None,
    clock: Clock | None = None,
    max_statement_bytes: int | None = DEFAULT_MAX_STATEMENT_BYTES,
    pacing: str | None = None,
    lockout_seconds: float = DEFAULT_LOCKOUT,
    on_event: ProgressCallback | None = None,
) -> FlexStatement:
    """Fetch a statement, blocking until it arrives: for scripts that are not async.

    >>> statement = fetch_statement(token="…", query_id="123456")   # doctest: +SKIP

    Takes every :class:`FlexClient` option (``clock=`` too: in tests, the simulator's
    ``FakeClock``) and :meth:`FlexClient.fetch`'s ``on_event``, and raises what they raise.
    Calls in several threads at once share the token's pacer (and, with ``pacing=``, its
    budget with other processes).

    Raises:
        RuntimeError: when called inside a running event loop, where blocking would stall
            it: there, ``await FlexClient(...).fetch()`` instead.
    """
    _refuse_running_loop("fetch_statement()", "fetch()")
    client = FlexClient(
        token=token,
        query_id=query_id,
        max_retries=max_retries,
        backoff_base=backoff_base,
        from_date=from_date,
        to_date=to_date,
        period=period,
        timeout=timeout,
        user_agent=user_agent,
        base_url=base_url,
        day_first=day_first,
        clock=clock,
        max_statement_bytes=max_statement_bytes,
        pacing=pacing,
        lockout_seconds=lockout_seconds,
    )
    return asyncio.run(client.fetch(on_event=on_event))


def download_statement(
    path: str | os.PathLike[str],
    *,
    token: str,
    query_id: str | int,
    max_retries: int = 10,
    backoff_base: float = 10.0,
    from_date: date | str | None = None,
    to_date: date | str | None = None,
    period: int | None = None,
    timeout: float = 30.0,
    user_agent: str | None = None,
    base_url: str = DEFAULT_BASE_URL,
    day_first: bool | None = None,
    clock: Clock | None = None,
    max_statement_bytes: int | None = DEFAULT_MAX_STATEMENT_BYTES,
    pacing: str | None = None,
    lockout_seconds: float = DEFAULT_LOCKOUT,
    on_event: ProgressCallback | None = None,
) -> Path:
    """Download a statement to ``path``, blocking until it is saved: for scripts.

    >>> download_statement("statement.xml", token="…", query_id="123456")  # doctest: +SKIP

    The blocking form of :meth:`FlexClient.download`: the statement streams to disk in flat
    memory, however large, and ``path`` is replaced only by a complete, checked statement.
    Takes every :class:`FlexClient` option and ``on_event``, and raises what they raise (a
    target that cannot be written raises :class:`SaveError` before any request).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        RuntimeError: when called inside a running event loop, where blocking would stall
            it: there, ``await FlexClient(...).download(path)`` instead.
    """
    _refuse_running_loop("download_statement()", "download(path)")
    client = FlexClient(
        token=token,
        query_id=query_id,
        max_retries=max_retries,
        backoff_base=backoff_base,
        from_date=from_date,
        to_date=to_date,
        period=period,
        timeout=timeout,
        user_agent=user_agent,
        base_url=base_url,
        day_first=day_first,
        clock=clock,
        max_statement_bytes=max_statement_bytes,
        pacing=pacing,
        lockout_seconds=lockout_seconds,
    )
    return asyncio.run(client.download(path, on_event=on_event))


def _refuse_running_loop(function: str, method: str) -> None:
    """Raise before anything starts if an event loop runs in this thread: blocking there
    would stall it (and ``asyncio.run`` cannot nest)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"{function} blocks, so it cannot run inside a running event loop; "
        f"use `await FlexClient(token=..., query_id=...).{method}` there instead"
    )


# aiohttp 3.11 and later raise ClientConnectorDNSError for a failed lookup, and 3.10 and later
# ConnectionTimeoutError for a connect that timed out; the project supports aiohttp 3.9, where
# neither exists, so they are looked up by name.
_DNS_ERROR: type[aiohttp.ClientConnectorError] | None = getattr(
    aiohttp, "ClientConnectorDNSError", None
)
_CONNECT_TIMEOUT: type[aiohttp.ServerTimeoutError] | None = getattr(
    aiohttp, "ConnectionTimeoutError", None
)


def _is_dns_failure(exc: aiohttp.ClientConnectorError) -> bool:
    """Whether the host name did not resolve: aiohttp's own class where it has one, else
    (aiohttp 3.9, 3.10) the resolver's ``socket.gaierror`` inside the connector error."""
    return isinstance(exc.os_error, socket.gaierror) or (
        _DNS_ERROR is not None and isinstance(exc, _DNS_ERROR)
    )


def _is_connect_timeout(exc: aiohttp.ServerTimeoutError) -> bool:
    return _CONNECT_TIMEOUT is not None and isinstance(exc, _CONNECT_TIMEOUT)
