"""The fetch state machine and retry policy, driven with canned answers: no sockets, no time."""

from __future__ import annotations

import itertools
from collections.abc import Generator, Sequence

import pytest

from ibkr_flex_client import (
    FlexError,
    FlexStatement,
    LockedOutError,
    NotReadyError,
    QueryError,
    ServiceUnavailableError,
    Step,
    TemporaryError,
    ThrottledError,
    TokenError,
    TransportError,
    UnknownCodeError,
    UnsafeUrlError,
)
from ibkr_flex_client.flow import (
    FetchSettings,
    Outcome,
    Result,
    Wait,
    fetch_flow,
    worst_case_seconds,
)
from ibkr_flex_client.protocol import HttpRequest, Reply, Trouble
from ibkr_flex_client.retry import MAX_BACKOFF, POLL_SCHEDULE, backoff_delay, poll_delay
from ibkr_flex_client.testing import IB_MESSAGES, build_statement

IB_GET = "https://gdcdyn.interactivebrokers.com/AccountManagement/FlexWebService/GetStatement"
STATEMENT = build_statement()


def ok_reference(url: str = IB_GET) -> Reply:
    return Reply(
        200,
        b"<FlexStatementResponse><Status>Success</Status><ReferenceCode>77</ReferenceCode>"
        + f"<Url>{url}</Url></FlexStatementResponse>".encode(),
    )


def code(number: int, http_status: int = 200) -> Reply:
    message = IB_MESSAGES.get(number, "Something new.")
    return Reply(
        http_status,
        f"<FlexStatementResponse><Status>Fail</Status><ErrorCode>{number}</ErrorCode>"
        f"<ErrorMessage>{message}</ErrorMessage></FlexStatementResponse>".encode(),
    )


STATEMENT_REPLY = Reply(200, STATEMENT)


def settings(**overrides: object) -> FetchSettings:
    values: dict[str, object] = {
        "token": "TOKEN",
        "query_id": "42",
        "base_url": "https://ndcdyn.interactivebrokers.com",
        "max_retries": 10,
        "backoff_base": 10.0,
    }
    values.update(overrides)
    return FetchSettings(**values)  # type: ignore[arg-type]


class Run:
    """Drives fetch_flow with scripted answers; records every request and wait."""

    def __init__(self, answers: Sequence[Reply | Trouble], **overrides: object) -> None:
        self.answers = list(answers)
        self.requests: list[HttpRequest] = []
        self.waits: list[Wait] = []
        self.order: list[str] = []
        self.flow: Generator[HttpRequest | Wait, Outcome | None, Result] = fetch_flow(
            settings(**overrides)
        )

    def result(self) -> FlexStatement:
        outcome: Reply | Trouble | None = None
        while True:
            try:
                action = self.flow.send(outcome)
            except StopIteration as done:
                result = done.value
                break
            if isinstance(action, Wait):
                self.waits.append(action)
                self.order.append("wait")
                outcome = None
            else:
                self.requests.append(action)
                self.order.append("request")
                outcome = self.answers.pop(0)
        assert not self.answers, "the flow stopped before using every answer"
        assert isinstance(result, FlexStatement)
        return result

    def steps(self) -> list[Step]:
        return [r.step for r in self.requests]


def test_happy_path_is_one_send_and_one_poll_a_second_later() -> None:
    run = Run([ok_reference(), STATEMENT_REPLY])
    statement = run.result()
    assert statement.xml == STATEMENT
    assert run.steps() == [Step.SEND_REQUEST, Step.GET_STATEMENT]
    assert [w.seconds for w in run.waits] == [1.1]
    assert run.requests[1].url == IB_GET
    assert dict(run.requests[1].params) == {"t": "TOKEN", "q": "77", "v": "3"}


def test_in_progress_polls_follow_the_gentle_schedule() -> None:
    run = Run([ok_reference(), code(1019), code(1019), code(1019), STATEMENT_REPLY])
    run.result()
    assert [w.seconds for w in run.waits] == [1.1, 1.1, 2.0, 2.0]
    assert [w.code for w in run.waits] == [None, 1019, 1019, 1019]


def test_missing_url_falls_back_to_base_url_get_statement() -> None:
    reply = Reply(
        200,
        b"<FlexStatementResponse><Status>Success</Status><ReferenceCode>5</ReferenceCode>"
        b"</FlexStatementResponse>",
    )
    run = Run([reply, STATEMENT_REPLY])
    run.result()
    assert run.requests[1].url == (
        "https://ndcdyn.interactivebrokers.com/AccountManagement/FlexWebService/GetStatement"
    )


TERMINAL = {
    1003: QueryError,
    1010: QueryError,
    1011: TokenError,
    1012: TokenError,
    1013: TokenError,
    1014: QueryError,
    1015: TokenError,
    1016: TokenError,
    1020: QueryError,
    1025: LockedOutError,
    1002: UnknownCodeError,
    1099: UnknownCodeError,
}


@pytest.mark.parametrize(("number", "error"), TERMINAL.items())
@pytest.mark.parametrize("step", [Step.SEND_REQUEST, Step.GET_STATEMENT])
def test_terminal_codes_raise_at_once_with_ibs_code_and_message(
    number: int, error: type[FlexError], step: Step
) -> None:
    answers = [code(number)] if step is Step.SEND_REQUEST else [ok_reference(), code(number)]
    run = Run(answers)
    with pytest.raises(error) as caught:
        run.result()
    assert len(run.requests) == len(answers)  # no retry of a terminal answer
    assert caught.value.code == number
    assert caught.value.step is step
    message = IB_MESSAGES.get(number, "Something new.")
    assert caught.value.message == message
    assert str(number) in str(caught.value)
    assert message in str(caught.value)


EXHAUSTED = {
    1018: ThrottledError,
    1019: NotReadyError,
    1001: ServiceUnavailableError,
    1004: ServiceUnavailableError,
    1005: ServiceUnavailableError,
    1006: ServiceUnavailableError,
    1007: ServiceUnavailableError,
    1008: ServiceUnavailableError,
    1009: ServiceUnavailableError,
    1021: ServiceUnavailableError,
}


@pytest.mark.parametrize(("number", "error"), EXHAUSTED.items())
def test_retryable_codes_are_retried_until_the_poll_budget_then_raised(
    number: int, error: type[TemporaryError]
) -> None:
    run = Run([ok_reference(), *[code(number)] * 4], max_retries=4)
    with pytest.raises(error) as caught:
        run.result()
    assert run.steps().count(Step.GET_STATEMENT) == 4  # max_retries bounds the polls
    assert caught.value.code == number
    assert "gave up after 4 GetStatement requests" in str(caught.value)
    assert isinstance(caught.value, TemporaryError)


@pytest.mark.parametrize(("number", "error"), EXHAUSTED.items())
def test_retryable_codes_at_send_request_use_the_same_budget(
    number: int, error: type[TemporaryError]
) -> None:
    run = Run([code(number)] * 3, max_retries=3)
    with pytest.raises(error):
        run.result()
    assert run.steps() == [Step.SEND_REQUEST] * 3


def test_transient_then_success_recovers() -> None:
    run = Run([code(1009), ok_reference(), code(1001), code(1021), STATEMENT_REPLY])
    assert run.result().account_id == "U1234567"
    assert [w.seconds for w in run.waits] == [10.0, 1.1, 10.0, 20.0]


def test_throttle_backs_off_exponentially_from_backoff_base() -> None:
    run = Run([code(1018)] * 5 + [ok_reference(), STATEMENT_REPLY], backoff_base=7.0)
    run.result()
    assert [w.seconds for w in run.waits][:4] == [7.0, 14.0, 28.0, 56.0]


def test_backoff_is_capped_at_ibs_penalty_box() -> None:
    assert backoff_delay(1, 10.0) == 10.0
    assert backoff_delay(7, 10.0) == MAX_BACKOFF
    assert backoff_delay(10_000, 10.0) == MAX_BACKOFF
    assert backoff_delay(3, 1000.0) == 1000.0  # a base above the cap is honoured as is


def test_poll_delay_is_capped_at_backoff_base() -> None:
    assert [poll_delay(n, 10.0) for n in range(1, len(POLL_SCHEDULE) + 3)] == [
        *POLL_SCHEDULE,
        10.0,
        10.0,
    ]
    assert poll_delay(1, 0.5) == 0.5


@pytest.mark.parametrize(
    "trouble",
    [
        Trouble("cannot connect to 127.0.0.1:1: Connection refused"),
        Trouble("HTTP 503 from GetStatement", 503),
        Trouble("an HTML page instead of XML (HTTP 200)", 200),
        Trouble("no progress for 30 s (the read or connect stalled)"),
        Trouble("the GetStatement body was cut short"),
        Trouble("DNS lookup failed for ndcdyn.interactivebrokers.com"),
    ],
)
def test_http_trouble_is_retried_then_named_in_the_error(trouble: Trouble) -> None:
    run = Run([ok_reference(), trouble, trouble, trouble], max_retries=3)
    with pytest.raises(TransportError) as caught:
        run.result()
    assert trouble.reason in str(caught.value)
    assert caught.value.http_status == trouble.http_status
    assert caught.value.code is None


def test_an_incomplete_statement_is_never_returned() -> None:
    truncated_but_well_formed = (
        b'<FlexQueryResponse queryName="q" type="AF"><FlexStatements count="2">'
        b'<FlexStatement accountId="U1" fromDate="20260302" toDate="20260306"/>'
        b"</FlexStatements></FlexQueryResponse>"
    )
    cut = STATEMENT[: len(STATEMENT) // 2]
    run = Run(
        [ok_reference(), Reply(200, truncated_but_well_formed), Reply(200, cut), STATEMENT_REPLY]
    )
    assert run.result().xml == STATEMENT
    reasons = [w.reason for w in run.waits]
    assert "count='2' but 1" in reasons[1]
    assert "not a complete XML document" in reasons[2]


def test_1017_gets_one_fresh_send_request_then_is_raised() -> None:
    run = Run([ok_reference(), code(1017), ok_reference(), code(1017)])
    with pytest.raises(QueryError) as caught:
        run.result()
    assert caught.value.code == 1017
    assert run.steps() == [Step.SEND_REQUEST, Step.GET_STATEMENT] * 2


def test_1017_then_success_after_the_fresh_reference() -> None:
    run = Run([ok_reference(), code(1017), ok_reference(), STATEMENT_REPLY])
    assert run.result().xml == STATEMENT


def test_foreign_url_raises_before_the_token_goes_anywhere() -> None:
    run = Run([ok_reference("https://flex.example.net/GetStatement")])
    with pytest.raises(UnsafeUrlError):
        run.result()
    assert run.steps() == [Step.SEND_REQUEST]


def test_the_driver_must_answer_each_request() -> None:
    flow = fetch_flow(settings())
    assert isinstance(next(flow), HttpRequest)
    with pytest.raises(TypeError):
        flow.send(None)


def test_worst_case_is_an_upper_bound_from_the_settings() -> None:
    # 2 steps x 10 requests x 300 s + 19 waits x 600 s.
    assert worst_case_seconds(max_retries=10, backoff_base=10.0, timeout=30.0) == 17_400.0
    assert worst_case_seconds(max_retries=1, backoff_base=1.0, timeout=1.0) == 2 * 10 + 600


def request_times(run: Run) -> list[float]:
    """Each request's time on the fetch's own timeline (the sum of the waits before it)."""
    times: list[float] = []
    clock, waits = 0.0, iter(run.waits)
    for item in run.order:
        if item == "wait":
            clock += next(waits).seconds
        else:
            times.append(clock)
    return times


def test_a_long_generation_keeps_one_fetch_to_9_requests_a_minute() -> None:
    run = Run([ok_reference(), *[code(1019)] * 25, STATEMENT_REPLY], max_retries=26)
    run.result()
    times = request_times(run)
    assert times[:11] == pytest.approx([0.0, 1.1, 2.2, 4.2, 6.2, 8.2, 10.2, 20.2, 30.2, 60, 70])
    for i, t in enumerate(times):
        assert sum(1 for s in times[: i + 1] if s > t - 60.0) <= 9
        if i:
            assert t - times[i - 1] >= 1.0
    assert max(b - a for a, b in itertools.pairwise(times[10:])) <= 10.0


def test_window_wait_only_lengthens_when_the_window_is_full() -> None:
    from ibkr_flex_client.retry import window_wait  # noqa: PLC0415

    assert window_wait(1.0, 5.0, [0.0, 5.0]) == 1.0
    nine = [float(t) for t in range(9)]
    assert window_wait(1.0, 8.0, nine) == 52.0  # waits until t=60, when t=0 leaves
    assert window_wait(70.0, 8.0, nine) == 70.0
