"""The aiohttp driver: the one place that touches the network, sleeps, and translates errors.

Everything it decides comes from :mod:`.flow`; this module performs the requests and waits the
flow asks for, and turns every aiohttp, asyncio and OS error into a :class:`Trouble` value (never
an exception carrying a URL, which would hold the token).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import socket
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from ._clock import SYSTEM_CLOCK, Clock, busy
from ._files import discard, new_temp, replace
from ._xml import root_name
from .dates import parse_ib_date
from .errors import FlexError, LockedOutError, SaveError, StatementError, Step
from .events import EventKind, FetchEvent, ProgressCallback
from .flow import FetchSettings, Outcome, Result, Wait, fetch_flow, worst_case_seconds
from .pacing import pacer_for
from .protocol import DEFAULT_BASE_URL, THROTTLED, HttpRequest, Reply, Saved, Trouble, redact
from .protocol import user_agent as _user_agent_header
from .retry import attempt_limit
from .statement import FlexStatement
from .stream import check_statement_file

__all__ = ["FlexClient", "fetch_statement"]

logger = logging.getLogger("ibkr_flex_client")

# "fd/td ... at most 365 days"; "p=N ... 1 <= N <= 365" (docs/protocol.md).
MAX_RANGE_DAYS = 365
_COMPACT_DATE = re.compile(r"\d{8}")
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
CHUNK = 64 * 1024
HEAD = 4096  # enough of a body to find its root element
MAX_ENVELOPE = 8 * 1024 * 1024  # a non-statement answer larger than this is not IB's


def _as_date(name: str, value: object) -> date | None:
    if value is None or isinstance(value, date):
        return value
    if isinstance(value, str) and _COMPACT_DATE.fullmatch(value):
        try:
            return parse_ib_date(value)
        except ValueError:
            pass
    raise ValueError(f"{name} must be a datetime.date or a 'yyyyMMdd' string, got {value!r}")


def _check_dates(from_date: object, to_date: object) -> tuple[date | None, date | None]:
    start, end = _as_date("from_date", from_date), _as_date("to_date", to_date)
    if (start is None) != (end is None):
        missing = "to_date" if end is None else "from_date"
        raise ValueError(f"{missing} is required too: IB takes from_date and to_date together")
    if start is not None and end is not None:
        if start > end:
            raise ValueError(f"from_date {start} is after to_date {end}")
        days = (end - start).days + 1
        if days > MAX_RANGE_DAYS:
            raise ValueError(
                f"from_date {start} to to_date {end} spans {days} days; "
                f"IB allows at most {MAX_RANGE_DAYS}"
            )
    return start, end


def _check_period(period: object, *, has_dates: bool) -> None:
    if isinstance(period, bool) or not isinstance(period, int):
        raise ValueError(f"period must be a whole number of days, got {period!r}")
    if not 1 <= period <= MAX_RANGE_DAYS:
        raise ValueError(f"period must be 1 to {MAX_RANGE_DAYS} days, got {period}")
    if has_dates:
        raise ValueError("give period or from_date/to_date, not both")


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value!r}")
    return float(value)


def _check_base_url(base_url: object) -> str:
    if not isinstance(base_url, str):
        raise ValueError(f"base_url must be a URL string, got {base_url!r}")
    try:
        parts = urlsplit(base_url)
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("https", "http")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise ValueError(
            f"base_url must be an http(s) URL with a host and no query, got {base_url!r}"
        )
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
        # The token travels in the query string: plain http only where it cannot leave this host.
        raise ValueError(f"base_url must use https unless it is on loopback, got {base_url!r}")
    return base_url.rstrip("/")


class FlexClient:
    """Downloads one Flex Query's statement through IB's Flex Web Service.

    >>> client = FlexClient(token="…", query_id="123456")        # doctest: +SKIP
    >>> statement = await client.fetch()                           # doctest: +SKIP

    All arguments are keyword-only and checked here: an invalid value or combination raises
    ``ValueError`` naming the argument (and never showing the token).

    Args:
        token: the Flex Web Service token from IB's Account Management. Secret: it appears in
            no log, exception, repr or file.
        query_id: the Flex Query's id.
        max_retries: the most requests each step may make in one fetch; bounds the
            GetStatement polls. At least 1.
        backoff_base: seconds; the first wait after a throttle (1018) or transient failure,
            doubling each time in a row up to 600 s. Also the longest gap between polls.
        from_date, to_date: override the query's dates (``fd``/``td``): a ``date`` or a
            ``"yyyyMMdd"`` string, both or neither, at most 365 days from first to last.
        period: override the query's period with the last N days (``p``), 1 to 365; not
            together with dates.
        timeout: seconds without progress after which one HTTP attempt is abandoned (and
            retried). One attempt lasts at most 10 x ``timeout`` in all.
        user_agent: your application's product token, sent before this library's own
            (``"myapp/2.1 ibkr-flex-client/0.1.0 Python/3.12"``).
        base_url: replaces ``https://ndcdyn.interactivebrokers.com`` (a proxy, or a local
            simulator in tests). Plain http is accepted only on loopback.
        day_first: how the query writes slashed dates, for the statement: ``True`` for
            dd/MM, ``False`` for MM/dd; by default the document decides.
        clock: what the client sleeps on; tests pass ``testing.FakeClock`` to skip real waits.
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
    ) -> None:
        if not isinstance(token, str) or not token:
            raise ValueError("token must be a non-empty string")
        if any(ch.isspace() or not ch.isprintable() for ch in token):
            raise ValueError("token must not contain white space or control characters")
        if isinstance(query_id, bool) or not isinstance(query_id, (str, int)):
            raise ValueError(f"query_id must be a string, got {type(query_id).__name__}")
        query = str(query_id).strip()
        if not query:
            raise ValueError("query_id must be a non-empty string")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 1:
            raise ValueError(f"max_retries must be an integer of at least 1, got {max_retries!r}")
        start, end = _check_dates(from_date, to_date)
        if period is not None:
            _check_period(period, has_dates=start is not None)
        if day_first is not None and not isinstance(day_first, bool):
            raise ValueError(f"day_first must be True, False or None, got {day_first!r}")
        if user_agent is not None and (
            not isinstance(user_agent, str) or not user_agent.isprintable()
        ):
            raise ValueError(f"user_agent must be printable text, got {user_agent!r}")
        self._settings = FetchSettings(
            token=token,
            query_id=query,
            base_url=_check_base_url(base_url),
            max_retries=max_retries,
            backoff_base=_check_positive("backoff_base", backoff_base),
            from_date=start,
            to_date=end,
            period=period,
            day_first=day_first,
        )
        self._timeout = _check_positive("timeout", timeout)
        self._headers = {"User-Agent": _user_agent_header(user_agent or None)}
        self._clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        # Shared with every client of this token on this clock, in this process.
        self._pacer = pacer_for(token, self._clock)

    @property
    def query_id(self) -> str:
        """The Flex Query id this client fetches."""
        return self._settings.query_id

    @property
    def worst_case_seconds(self) -> float:
        """The longest one :meth:`fetch` can take with these settings, in seconds.

        Each step makes at most ``max_retries`` requests of at most 10 x ``timeout`` each, with
        at most ``max(600, backoff_base)`` seconds between two of them. With the defaults:
        ``2·10·300 + 19·600`` = 17,400 s. Typical fetches take seconds.
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

        Always ends by itself, within :attr:`worst_case_seconds`: each step makes at most
        ``max_retries`` requests of at most 10 x ``timeout`` seconds, with at most
        ``max(600, backoff_base)`` seconds between two requests. aiohttp's silent one-time
        re-send of a GET on a dropped connection is switched off on the session used, since
        that re-send would reach IB within the same second (a 1018).
        """
        result = await self._with_session(session, on_event, None)
        assert isinstance(result, FlexStatement)  # noqa: S101 - the flow's contract
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
        memory), is checked to be a complete, well-formed Flex statement (in flat memory),
        flushed to disk, and only then renamed over ``path``: a crash, a cancellation or an
        error never leaves a partial file at ``path``, and an existing file there stays as it
        was until the new one is whole. The file is readable by its owner only (it holds
        account data). Retries, pacing, events and errors are those of :meth:`fetch`;
        a file that cannot be written raises :class:`SaveError`.
        """
        target = Path(path)
        temp = new_temp(target)  # a directory that will not take the file fails here, early
        try:
            result = await self._with_session(session, on_event, temp)
            assert isinstance(result, Saved)  # noqa: S101 - the flow's contract
            replace(temp, target)
        finally:
            discard(temp)
        return target

    async def _with_session(
        self,
        session: aiohttp.ClientSession | None,
        on_event: ProgressCallback | None,
        save_to: Path | None,
    ) -> Result:
        if session is not None:
            if session.closed:
                raise FlexError("the aiohttp session passed to fetch() is closed")
            _no_silent_retry(session)
            return await self._run(session, on_event, save_to)
        async with aiohttp.ClientSession() as own:
            _no_silent_retry(own)
            return await self._run(own, on_event, save_to)

    async def _run(
        self,
        session: aiohttp.ClientSession,
        on_event: ProgressCallback | None,
        save_to: Path | None,
    ) -> Result:
        flow = fetch_flow(self._settings)
        progress = _Progress(self.query_id, self._clock, on_event)
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
                    self._pacer.lock_out(error)  # every fetch of this token stops too
                    raise
                if isinstance(action, Wait):
                    progress.emit(
                        EventKind.WAIT,
                        action.step,
                        wait=action.seconds,
                        code=action.code,
                        detail=action.reason,
                    )
                    if action.code == THROTTLED:  # slow every fetch of this token down
                        self._pacer.slow_down(action.seconds)
                    await self._pacer.sleep(action.seconds)
                    outcome = None
                    continue

                def paced(
                    seconds: float, code: int | None, reason: str, step: Step = action.step
                ) -> None:
                    progress.emit(EventKind.WAIT, step, wait=seconds, code=code, detail=reason)

                await self._pacer.acquire(on_wait=paced)
                progress.attempts[action.step] += 1
                progress.emit(EventKind.REQUEST, action.step, detail=f"GET {action.safe_url}")
                save = save_to if action.step is Step.GET_STATEMENT else None
                outcome = await self._perform(session, action, save)
        finally:
            flow.close()

    async def _perform(
        self, session: aiohttp.ClientSession, request: HttpRequest, save_to: Path | None
    ) -> Outcome:
        """One GET; every network failure becomes a :class:`Trouble` whose text holds no
        token. With ``save_to``, the body streams to that file (see :meth:`download`)."""
        timeout = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=self._timeout, sock_read=self._timeout
        )
        try:
            with busy(self._clock):
                return await asyncio.wait_for(
                    self._exchange(session, request, timeout, save_to),
                    attempt_limit(self._timeout),
                )
        except asyncio.TimeoutError as exc:
            # aiohttp raises its own TimeoutError subclasses for the socket timeouts.
            trouble = _timeout_trouble(exc, self._timeout)
        except aiohttp.ClientResponseError as exc:  # a caller's session with raise_for_status
            trouble = Trouble(f"HTTP {exc.status} from {request.step}", exc.status)
        except aiohttp.ClientConnectorError as exc:
            trouble = _connect_trouble(exc)
        except aiohttp.ServerDisconnectedError:
            trouble = Trouble(f"the server closed the connection during {request.step}")
        except aiohttp.ClientPayloadError:
            trouble = Trouble(f"the {request.step} body was cut short")
        except (aiohttp.ClientError, OSError) as exc:
            trouble = Trouble(f"{type(exc).__name__} during {request.step}: {exc}")
        return Trouble(redact(trouble.reason, self._settings.token), trouble.http_status)

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        request: HttpRequest,
        timeout: aiohttp.ClientTimeout,
        save_to: Path | None,
    ) -> Outcome:
        # No redirects: a 3xx to another host would carry the token there. A 3xx is HTTP
        # trouble like any other non-2xx answer.
        async with session.get(
            request.url,
            params=dict(request.params),
            headers=self._headers,
            allow_redirects=False,
            timeout=timeout,
        ) as response:
            # Bytes, not text: IB's Content-Type charset and the XML declaration may disagree.
            if save_to is None:
                return Reply(response.status, await response.read())
            head, size = await _stream_to_file(response, save_to)
            status = response.status
        if 200 <= status < 300 and root_name(head) == "FlexQueryResponse":
            try:
                await asyncio.to_thread(check_statement_file, save_to)
            except StatementError as exc:
                return Trouble(f"a statement that is {exc}", status)
            return Saved(status, str(save_to), size)
        # An envelope (1019 and friends) or an error page: small, read back for the flow.
        if size > MAX_ENVELOPE:
            return Trouble(f"an unexpected {size:,}-byte answer that is not a statement", status)
        return Reply(status, await asyncio.to_thread(save_to.read_bytes))


async def _stream_to_file(response: aiohttp.ClientResponse, path: Path) -> tuple[bytes, int]:
    """Write the body to ``path`` (truncating it), flushed to disk; returns its first bytes
    and its size. Disk trouble raises :class:`SaveError` (not retried: a full disk stays
    full). Chunk writes are small and go to the page cache, so they do not stall the loop."""
    head, size = b"", 0
    try:
        with path.open("wb") as out:
            async for chunk in response.content.iter_chunked(CHUNK):
                if size < HEAD:
                    head += chunk[: HEAD - size]
                size += len(chunk)
                out.write(chunk)
            out.flush()
            await asyncio.to_thread(os.fsync, out.fileno())
    except OSError as exc:
        reason = f"{exc.strerror or exc} writing {str(path)!r}"
    else:
        return head, size
    raise SaveError(f"cannot save the statement: {reason}")


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


def _timeout_trouble(exc: BaseException, timeout: float) -> Trouble:
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return Trouble(f"no progress for {timeout:g} s (the read or connect stalled)")
    return Trouble(f"the attempt took longer than {attempt_limit(timeout):g} s")


def _connect_trouble(exc: aiohttp.ClientConnectorError) -> Trouble:
    host = f"{exc.host}:{exc.port}"
    if isinstance(exc.os_error, socket.gaierror):
        return Trouble(f"DNS lookup failed for {exc.host}")
    reason = exc.os_error.strerror or type(exc.os_error).__name__
    return Trouble(f"cannot connect to {host}: {reason}")


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
    on_event: ProgressCallback | None = None,
) -> FlexStatement:
    """Fetch a statement, blocking until it arrives: for scripts that are not async.

    >>> statement = fetch_statement(token="…", query_id="123456")   # doctest: +SKIP

    Takes :class:`FlexClient`'s options and ``fetch()``'s ``on_event``, and raises what they
    raise. Calls in several threads at once share the token's pacer.

    Raises:
        RuntimeError: when called inside a running event loop, where blocking would stall
            it: there, ``await FlexClient(...).fetch()`` instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "fetch_statement() blocks, so it cannot run inside a running event loop; "
            "use `await FlexClient(token=..., query_id=...).fetch()` there instead"
        )
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
    )
    return asyncio.run(client.fetch(on_event=on_event))
