"""One fetch as a pure state machine: it says what to do, a driver does it.

:func:`fetch_flow` is a generator. It yields an :class:`HttpRequest` (the driver answers with
the :class:`Reply` it got, or the :class:`Trouble` that came instead) or a :class:`Wait` (the
driver sleeps and sends ``None``). It returns the :class:`FlexStatement`, or raises a
:class:`FlexError`. No clock, no sockets: tests drive it with canned answers.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Generator
from datetime import date

from .errors import FlexError, QueryError, Step, TransportError
from .hosts import (
    HOST_MEMORY,
    HostMemory,
    Route,
    host_of,
    no_network,
    no_network_reason,
    plan_route,
)
from .protocol import (
    GET_PATH,
    CodeKind,
    HttpRequest,
    IbAnswer,
    Reference,
    Reply,
    Saved,
    Trouble,
    TroubleKind,
    answer_error,
    check_statement_url,
    from_server,
    get_statement_request,
    read_get_answer,
    read_send_answer,
    send_request,
)
from .retry import MAX_BACKOFF, SECOND, attempt_limit, decide, window_wait
from .statement import FlexStatement

__all__ = ["FetchSettings", "Wait", "fetch_flow", "worst_case_seconds"]

# Two requests of one token less than a second apart break IB's 1-per-second limit; SECOND
# carries a margin for network jitter, the same one the token's pacer keeps.
MIN_SPACING = SECOND


@dataclasses.dataclass(frozen=True, slots=True)
class FetchSettings:
    """What one fetch needs; validated by :class:`FlexClient`. The token never shows in repr."""

    token: str = dataclasses.field(repr=False)
    query_id: str
    base_url: str
    max_retries: int
    backoff_base: float
    from_date: date | None = None
    to_date: date | None = None
    period: int | None = None
    day_first: bool | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Wait:
    """Sleep this long before the next request; the fields say why, for progress reports."""

    seconds: float
    step: Step
    reason: str
    code: int | None = None


Action = HttpRequest | Wait
Outcome = Reply | Trouble | Saved
Result = FlexStatement | Saved


@dataclasses.dataclass(slots=True)
class _Tally:
    """Requests made per step in this fetch, throttle/transient failures in a row, the
    fetch's own timeline (the sum of its waits) with the time of each request on it, and the
    DNS failures in a row: of which hosts, how many, since when on the timeline."""

    sends: int = 0
    polls: int = 0
    failures_in_a_row: int = 0
    timeline: float = 0.0
    sent: list[float] = dataclasses.field(default_factory=list)
    dns_failed: set[str] = dataclasses.field(default_factory=set)
    dns_failures: int = 0
    dns_since: float = 0.0

    def request(self, request: HttpRequest) -> HttpRequest:
        self.sent.append(self.timeline)
        return request

    def heard(self, request: HttpRequest, answer: object) -> None:
        """Note how ``request`` ended: a DNS failure extends the run, anything else ends it
        (the name resolved, so there is a network)."""
        if isinstance(answer, Trouble) and answer.kind is TroubleKind.DNS:
            if not self.dns_failures:
                self.dns_since = self.timeline
            self.dns_failed.add(host_of(request.url))
            self.dns_failures += 1
        else:
            self.dns_failed.clear()
            self.dns_failures = 0

    def wait(self, wait: Wait) -> Wait:
        """The wait, lengthened if needed to keep this fetch within its own per-minute share.

        Requests take time too, so real gaps are at least the planned ones: the window holds
        on the real timeline whenever it holds on this one.
        """
        seconds = window_wait(wait.seconds, self.timeline, self.sent)
        self.timeline += seconds
        if seconds == wait.seconds:
            return wait
        return dataclasses.replace(wait, seconds=seconds, reason=f"{wait.reason}; pacing")


def fetch_flow(
    settings: FetchSettings, *, hosts: HostMemory | None = None
) -> Generator[Action, Outcome | None, Result]:
    """SendRequest, then poll GetStatement, retrying as :func:`retry.decide` says.

    Each step may make ``max_retries`` requests per fetch. A 1017 (reference code invalid)
    from GetStatement is met once with a fresh SendRequest ("a fresh SendRequest may help
    once"); a second one is raised.

    On IB's hosts each step fails over between them as :mod:`.hosts` says, and SendRequest
    starts on the host ``hosts`` (by default the process-wide :data:`HOST_MEMORY`) says
    last worked, and tells it which one did.
    """
    memory = HOST_MEMORY if hosts is None else hosts
    tally = _Tally()
    template = send_request(
        base_url=settings.base_url,
        token=settings.token,
        query_id=settings.query_id,
        from_date=settings.from_date,
        to_date=settings.to_date,
        period=settings.period,
    )
    sending = plan_route(template.url, settings.base_url, start=memory.preferred())
    resent = False
    while True:
        reference = yield from _send(settings, tally, template, sending, memory)
        # Without a <Url>, GetStatement goes to the host whose SendRequest just answered.
        own = settings.base_url.rstrip("/") + GET_PATH
        url = reference.url or plan_route(own, settings.base_url, start=host_of(sending.url)).url
        poll = get_statement_request(
            url=check_statement_url(url, settings.base_url, secret=settings.token),
            token=settings.token,
            reference_code=reference.code,
        )
        polling = plan_route(poll.url, settings.base_url)
        result = yield from _poll(settings, tally, poll, polling)
        if not isinstance(result, IbAnswer):
            return result
        # The fresh SendRequest counts against the SendRequest budget like any other: with
        # that spent, the 1017 stands.
        if resent or tally.polls >= settings.max_retries or tally.sends >= settings.max_retries:
            raise answer_error(result, Step.GET_STATEMENT, QueryError)
        resent = True
        yield tally.wait(
            Wait(MIN_SPACING, Step.SEND_REQUEST, "IB 1017: asking for a fresh reference", 1017)
        )


def _send(
    settings: FetchSettings, tally: _Tally, template: HttpRequest, route: Route, memory: HostMemory
) -> Generator[Action, Outcome | None, Reference]:
    """Step 1: SendRequest until IB hands out a reference code; each attempt goes where
    ``route`` says, and the IB host that answered is told to ``memory``."""
    while True:
        tally.sends += 1
        request = dataclasses.replace(template, url=route.url)
        outcome = _expect_outcome((yield tally.request(request)))
        if isinstance(outcome, Saved):
            raise TypeError("a SendRequest answer cannot be a saved statement")
        answer = (
            outcome
            if isinstance(outcome, Trouble)
            else read_send_answer(outcome, secret=settings.token)
        )
        tally.heard(request, answer)
        if route.fails_over and not isinstance(answer, Trouble):
            memory.worked(host_of(request.url))  # IB answered from there: start there next
        if isinstance(answer, Reference):
            tally.failures_in_a_row = 0
            return answer
        tally.failures_in_a_row += 1
        yield tally.wait(
            _retry_or_raise(answer, Step.SEND_REQUEST, tally.sends, tally, settings, 0, route)
        )


def _poll(
    settings: FetchSettings, tally: _Tally, poll: HttpRequest, route: Route
) -> Generator[Action, Outcome | None, Result | IbAnswer]:
    """Step 2: poll GetStatement; returns the statement (or the file the driver saved it
    to), or IB's 1017 answer."""
    in_progress = 0
    wait = Wait(MIN_SPACING, Step.GET_STATEMENT, "generation takes about a second")
    while True:
        yield tally.wait(wait)
        tally.polls += 1
        request = dataclasses.replace(poll, url=route.url)
        outcome = _expect_outcome((yield tally.request(request)))
        tally.heard(request, outcome)
        if isinstance(outcome, Saved):
            return outcome
        result: IbAnswer | Trouble
        if isinstance(outcome, Trouble):
            result = outcome
        else:
            read = read_get_answer(outcome, secret=settings.token)
            if not isinstance(read, ET.Element):
                result = read
            else:
                checked = _statement(outcome, read, settings)
                if isinstance(checked, FlexStatement):
                    return checked
                result = checked
        if isinstance(result, IbAnswer) and result.kind is CodeKind.REFERENCE:
            return result
        if isinstance(result, IbAnswer) and result.kind is CodeKind.IN_PROGRESS:
            in_progress += 1
            tally.failures_in_a_row = 0
        else:
            tally.failures_in_a_row += 1
        wait = _retry_or_raise(
            result, Step.GET_STATEMENT, tally.polls, tally, settings, in_progress, route
        )


def _retry_or_raise(
    answer: IbAnswer | Trouble,
    step: Step,
    attempts: int,
    tally: _Tally,
    settings: FetchSettings,
    in_progress: int,
    route: Route,
) -> Wait:
    """The wait before the next attempt, or the error that ends the fetch. Moves ``route``
    to IB's other host when ``answer`` says the one in use is gone."""
    seconds = tally.timeline - tally.dns_since
    if no_network(failed=tally.dns_failed, hosts=route.hosts, seconds=seconds):
        names = [from_server(host, settings.token, limit=100) for host in sorted(route.hosts)]
        reason = no_network_reason(names, tally.dns_failures, seconds)
        raise TransportError(f"gave up after {attempts} {step} requests: {reason}", step=step)
    verdict = decide(
        answer,
        step=step,
        attempts=attempts,
        max_attempts=settings.max_retries,
        failures_in_a_row=tally.failures_in_a_row,
        in_progress=in_progress,
        backoff_base=settings.backoff_base,
    )
    if isinstance(verdict, FlexError):
        raise verdict
    reason = (
        f"IB {answer.code}: {answer.message}" if isinstance(answer, IbAnswer) else answer.reason
    )
    code = answer.code if isinstance(answer, IbAnswer) else None
    moved_to = route.failed(answer) if isinstance(answer, Trouble) else None
    if moved_to is not None:
        reason = f"{reason}; trying {moved_to} next"
    # Never closer than a second: IB's limit is 1 request per second per token.
    return Wait(max(verdict, MIN_SPACING), step, reason, code)


def _expect_outcome(outcome: Outcome | None) -> Outcome:
    if outcome is None:
        raise TypeError("fetch_flow expects a Reply or a Trouble in answer to an HttpRequest")
    return outcome


def _statement(
    outcome: Reply, root: ET.Element, settings: FetchSettings
) -> FlexStatement | Trouble:
    """The checked statement, or Trouble when the document is incomplete (retry it). The
    check's message quotes the document, so it is server text: the token is redacted."""
    body = outcome.body
    try:
        return FlexStatement._from_root(body, root, settings.day_first)
    except FlexError as exc:
        reason = from_server(str(exc), settings.token)
    return Trouble(f"a statement that is {reason}", outcome.status)


def worst_case_seconds(*, max_retries: int, backoff_base: float, timeout: float) -> float:
    """An upper bound on one fetch's duration with these settings (no pacer queueing).

    Each step makes at most ``max_retries`` requests, each lasting at most
    ``attempt_limit(timeout)``; between two requests the longest wait is
    ``max(MAX_BACKOFF, backoff_base)``.
    """
    requests = 2 * max_retries
    longest_wait = max(MAX_BACKOFF, backoff_base)
    return requests * attempt_limit(timeout) + (requests - 1) * longest_wait
