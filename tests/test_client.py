"""FlexClient against the simulated IB service over real loopback sockets."""

from __future__ import annotations

import inspect
import socket
import sys
from collections.abc import Callable
from datetime import date
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from ibkr_flex_client import (
    FlexClient,
    FlexError,
    FlexStatement,
    LockedOutError,
    QueryError,
    Step,
    TokenError,
    TransportError,
    UnsafeUrlError,
    __version__,
)
from ibkr_flex_client.testing import (
    QUERY_CODES,
    TOKEN_CODES,
    FakeClock,
    Fault,
    FlexSimulator,
    fingerprint,
)

from .conftest import TOKEN

MakeClient = Callable[..., FlexClient]


async def test_readme_example_runs_unchanged(sim: FlexSimulator, clock: FakeClock) -> None:
    client = FlexClient(token=TOKEN, query_id="42", base_url=sim.base_url, clock=clock)
    async with aiohttp.ClientSession() as session:
        statement = await client.fetch(session)
        assert not session.closed  # a caller's session is never closed
    assert statement.account_id == "U1234567"
    assert statement.from_date == date(2026, 3, 2)
    assert statement.to_date == date(2026, 3, 6)
    symbols = [(t.get("symbol"), t.get("quantity")) for t in statement.iter("Trade")]
    assert symbols[:2] == [("AAPL", "10"), ("MSFT", "-5")]
    assert len(statement.xml) > 1000


def test_documented_signature_and_defaults() -> None:
    parameters = inspect.signature(FlexClient).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())
    assert parameters["max_retries"].default == 10
    assert parameters["backoff_base"].default == 10.0


async def test_fetch_without_a_session_opens_and_closes_its_own(
    make_client: MakeClient, sim: FlexSimulator
) -> None:
    statement = await make_client().fetch()
    assert isinstance(statement, FlexStatement)
    assert sim.answers() == ["reference", "statement"]


async def test_both_steps_send_v3_and_a_user_agent_naming_us(
    make_client: MakeClient, sim: FlexSimulator
) -> None:
    await make_client(user_agent="taxbot/1.2").fetch()
    python = f"Python/{sys.version_info.major}.{sys.version_info.minor}"
    assert [r.step for r in sim.requests] == ["SendRequest", "GetStatement"]
    for record in sim.requests:
        assert record.params["v"] == "3"
        assert record.user_agent == f"taxbot/1.2 ibkr-flex-client/{__version__} {python}"
        assert record.token_fingerprint == fingerprint(TOKEN)
    assert sim.requests[0].params["q"] == "42"


async def test_date_range_and_period_are_sent_as_fd_td_and_p(
    make_client: MakeClient, sim: FlexSimulator
) -> None:
    await make_client(from_date=date(2026, 1, 5), to_date="20260227").fetch()
    await make_client(token="other-token", period=30).fetch()
    sends = [r.params for r in sim.requests if r.step == "SendRequest"]
    assert sends[0] == {"q": "42", "v": "3", "fd": "20260105", "td": "20260227"}
    assert sends[1] == {"q": "42", "v": "3", "p": "30"}


async def test_generation_time_is_polled_through_on_virtual_time(
    sim: FlexSimulator, make_client: MakeClient, clock: FakeClock
) -> None:
    sim.add_query("42", generation_seconds=6.0)
    start = clock.now()
    await make_client().fetch()
    answers = sim.answers(Step.GET_STATEMENT)
    assert answers[-1] == "statement"
    assert set(answers[:-1]) == {"1019"}
    assert 6.0 <= clock.now() - start <= 9.0


FAULTS = [
    Fault.http_status(503),
    Fault.http_status(500),
    Fault.http_status(404),
    Fault.html(),
    Fault.empty(),
    Fault.drop(),
    Fault.truncated(),
    Fault.hang(),
    Fault.ib_code(1001),
    Fault.ib_code(1009),
    Fault.ib_code(1021),
]


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f"{f.kind.value}-{f.code or f.status}")
@pytest.mark.parametrize("step", [Step.SEND_REQUEST, Step.GET_STATEMENT])
async def test_each_transient_fault_is_retried_and_recovered(
    sim: FlexSimulator, make_client: MakeClient, fault: Fault, step: Step
) -> None:
    sim.fail("42", fault, step=step)
    statement = await make_client(timeout=0.2).fetch()
    assert statement.account_id == "U1234567"
    # One request per attempt: the fault cost exactly one request, never a hidden re-send.
    assert sim.answers(step).count("reference" if step is Step.SEND_REQUEST else "statement") == 1
    assert len(sim.answers(step)) == 2
    assert "1018" not in sim.answers()


@pytest.mark.parametrize(
    ("fault", "named"),
    [
        (Fault.http_status(503), "HTTP 503"),
        (Fault.html(), "an HTML page instead of XML"),
        (Fault.empty(), "an empty body"),
        (Fault.drop(), "closed the connection"),
        (Fault.truncated(), "cut short"),
        (Fault.hang(), "no progress for 0.2 s"),
    ],
    ids=lambda v: v.kind.value if isinstance(v, Fault) else "",
)
async def test_when_the_budget_runs_out_the_error_names_what_happened_last(
    sim: FlexSimulator, make_client: MakeClient, fault: Fault, named: str
) -> None:
    sim.fail("42", fault, times=3)
    with pytest.raises(TransportError) as caught:
        await make_client(timeout=0.2, max_retries=3).fetch()
    assert named in str(caught.value)
    assert caught.value.step is Step.GET_STATEMENT
    assert len(sim.answers(Step.GET_STATEMENT)) == 3


async def test_connection_refused_is_transport_trouble(clock: FakeClock) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = FlexClient(
        token=TOKEN,
        query_id="1",
        base_url=f"http://127.0.0.1:{port}",
        clock=clock,
        max_retries=2,
    )
    with pytest.raises(TransportError) as caught:
        await client.fetch()
    assert "cannot connect to 127.0.0.1" in str(caught.value)
    assert caught.value.step is Step.SEND_REQUEST
    assert clock.slept == [10.0]  # one backoff between the two attempts


class _FailingResolver(AbstractResolver):
    """A resolver that fails like getaddrinfo does for an unknown host (no network used)."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def close(self) -> None:
        return None


async def test_dns_failure_is_transport_trouble(clock: FakeClock) -> None:
    client = FlexClient(token=TOKEN, query_id="1", clock=clock, max_retries=2)
    connector = aiohttp.TCPConnector(resolver=_FailingResolver())
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(TransportError) as caught:
            await client.fetch(session)
    # The second attempt failed over to IB's other host (tests/test_hosts.py has the rest).
    assert "DNS lookup failed for gdcdyn.interactivebrokers.com" in str(caught.value)


async def test_a_stalled_read_ends_the_attempt_after_timeout(
    sim: FlexSimulator, make_client: MakeClient
) -> None:
    sim.fail("42", Fault.hang(), times=10)
    with pytest.raises(TransportError) as caught:
        await make_client(timeout=0.1, max_retries=2).fetch()
    assert "no progress for 0.1 s" in str(caught.value)


@pytest.mark.parametrize(("token", "number"), TOKEN_CODES.items())
async def test_known_bad_tokens_raise_their_class(
    make_client: MakeClient, sim: FlexSimulator, token: str, number: int
) -> None:
    expected = LockedOutError if number == 1025 else TokenError
    with pytest.raises(expected) as caught:
        await make_client(token=token).fetch()
    assert caught.value.code == number
    assert sim.answers() == [str(number)]  # terminal: never retried


@pytest.mark.parametrize(("query", "number"), QUERY_CODES.items())
async def test_known_bad_queries_raise_query_error(
    make_client: MakeClient, sim: FlexSimulator, query: str, number: int
) -> None:
    with pytest.raises(QueryError) as caught:
        await make_client(query_id=query).fetch()
    assert caught.value.code == number
    assert len(sim.requests) == 1


async def test_foreign_statement_url_is_refused_and_the_token_goes_nowhere(
    make_client: MakeClient, sim: FlexSimulator
) -> None:
    sim.fail("42", Fault.foreign_url("https://flex.example.net/GetStatement"))
    with pytest.raises(UnsafeUrlError) as caught:
        await make_client().fetch()
    assert "flex.example.net" in str(caught.value)
    assert [r.step for r in sim.requests] == ["SendRequest"]


async def test_redirects_are_not_followed(make_client: MakeClient, sim: FlexSimulator) -> None:
    # The target is a path the simulator records: had the client followed, it would show.
    target = f"{sim.base_url}/AccountManagement/FlexWebService/FlexStatementService.SendRequest"
    sim.fail("42", Fault.redirect(target), times=2)
    with pytest.raises(TransportError) as caught:
        await make_client(max_retries=2).fetch()
    assert "HTTP 302" in str(caught.value)
    assert "http:404" not in sim.answers()


async def test_a_closed_session_is_a_flex_error(make_client: MakeClient) -> None:
    session = aiohttp.ClientSession()
    await session.close()
    with pytest.raises(FlexError, match="closed"):
        await make_client().fetch(session)


async def test_legacy_urls_answer_as_ib_does(sim: FlexSimulator) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{sim.base_url}/Universal/servlet/FlexStatementService.SendRequest",
            params={"t": "x", "q": "1", "v": "3"},
        ) as response:
            assert b"<ErrorCode>1001</ErrorCode>" in await response.read()
        async with session.get(
            f"{sim.base_url}/AccountManagement/FlexWebService/FlexStatementService.SendRequest"
        ) as response:
            assert response.status == 404


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"token": ""}, "token"),
    ({"token": "abc def"}, "token"),
    ({"token": "abc\n"}, "token"),
    ({"query_id": ""}, "query_id"),
    ({"query_id": "  "}, "query_id"),
    ({"max_retries": 0}, "max_retries"),
    ({"max_retries": True}, "max_retries"),
    ({"backoff_base": 0}, "backoff_base"),
    ({"backoff_base": float("nan")}, "backoff_base"),
    ({"timeout": -1}, "timeout"),
    ({"from_date": "20260101"}, "to_date"),
    ({"to_date": date(2026, 1, 1)}, "from_date"),
    ({"from_date": "2026-01-01", "to_date": "20260102"}, "from_date"),
    ({"from_date": "20260231", "to_date": "20260302"}, "from_date"),
    ({"from_date": "20260301", "to_date": "20260201"}, "from_date"),
    ({"from_date": "20250101", "to_date": "20260101"}, "366 days"),
    ({"period": 0}, "period"),
    ({"period": 366}, "period"),
    ({"period": "30"}, "period"),
    ({"period": 5, "from_date": "20260101", "to_date": "20260102"}, "not both"),
    ({"base_url": "ftp://x"}, "base_url"),
    ({"base_url": "http://proxy.example.com"}, "https"),
    ({"base_url": "https://x.example/?a=1"}, "base_url"),
    ({"user_agent": "bad\nagent"}, "user_agent"),
]


@pytest.mark.parametrize(("options", "named"), INVALID)
def test_invalid_settings_raise_value_error_naming_the_argument(
    options: dict[str, Any], named: str
) -> None:
    settings: dict[str, Any] = {"token": "SECRET-TOKEN", "query_id": "1", **options}
    with pytest.raises(ValueError, match=named) as caught:
        FlexClient(**settings)
    assert "SECRET" not in str(caught.value)


def test_valid_edges_are_accepted() -> None:
    FlexClient(token="t", query_id=123, from_date="20250101", to_date="20251231")
    FlexClient(token="t", query_id="1", period=365)
    FlexClient(token="t", query_id="1", base_url="http://localhost:8080/")
    client = FlexClient(token="t", query_id="1", max_retries=1, backoff_base=1, timeout=1)
    assert client.worst_case_seconds == 2 * 10 + 600
