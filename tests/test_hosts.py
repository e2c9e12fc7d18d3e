"""Hosts that move, and no network told soon: the pure rules, the flow, and real failover.

The rules (``hosts.py``) and the flow are driven with canned answers. The driver's part is
shown over real TLS on loopback: the simulator serves https on 127.0.0.1 with a certificate
for both of IB's host names, and the client's session resolves those names through a
resolver of the test's own, which maps each to a simulator's port or fails it as DNS does.
No name is ever looked up for real: the session has no network.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Generator, Iterator, Mapping, Sequence
from urllib.parse import urlsplit

import aiohttp
import pytest
import trustme
from aiohttp.abc import AbstractResolver, ResolveResult

from ibkr_flex_client import FlexClient, FlexStatement, Step, TransportError
from ibkr_flex_client.events import EventKind, FetchEvent
from ibkr_flex_client.flow import FetchSettings, Outcome, Result, Wait, fetch_flow
from ibkr_flex_client.hosts import (
    FAILOVER,
    HOST_MEMORY,
    IB_HOSTS,
    NO_NETWORK_SECONDS,
    HostMemory,
    Route,
    host_of,
    ib_host,
    no_network,
    no_network_reason,
    on_host,
    plan_route,
)
from ibkr_flex_client.protocol import (
    GET_PATH,
    SEND_PATH,
    HttpRequest,
    IbAnswer,
    Reply,
    Trouble,
    TroubleKind,
    read_get_answer,
    read_send_answer,
)
from ibkr_flex_client.testing import FakeClock, Fault, FlexSimulator, build_statement

from .conftest import TOKEN

NDC, GDC = IB_HOSTS
NDC_URL, GDC_URL = f"https://{NDC}", f"https://{GDC}"
PROXY = "flex-proxy.example.net"
STATEMENT = build_statement()


@pytest.fixture(autouse=True)
def fresh_memory() -> Iterator[None]:
    """The process-wide memory starts empty in each test, and is left so for the next."""
    HOST_MEMORY.forget()
    yield
    HOST_MEMORY.forget()


# --- The pure rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host"),
    [
        (NDC_URL, NDC),
        (GDC_URL + GET_PATH, GDC),
        ("https://NDCDYN.InteractiveBrokers.com/x", NDC),
        (f"https://{NDC}./x", NDC),
        (f"https://{GDC}:443{SEND_PATH}", GDC),
        (f"https://{NDC}:8443", None),  # another port is another server
        (f"http://{NDC}", None),  # the token travels in the query: https only
        ("https://www.interactivebrokers.com", None),  # IB's, but not a Flex host
        (f"https://{NDC}.example.net", None),
        (f"https://user@{NDC}", None),
        ("https://127.0.0.1:8443", None),
        (f"https://{PROXY}", None),
        ("https://[::1", None),  # not even a URL
        ("", None),
    ],
)
def test_ib_host_names_only_https_urls_on_ibs_two_hosts(url: str, host: str | None) -> None:
    assert ib_host(url) == host


def test_on_host_keeps_scheme_path_and_query() -> None:
    assert on_host(f"{GDC_URL}:443{GET_PATH}?a=1", NDC) == f"{NDC_URL}{GET_PATH}?a=1"
    assert host_of("https://Example.NET./x") == "example.net"
    assert host_of("https://[::1") == ""


@pytest.mark.parametrize(
    ("url", "base_url", "start", "urls"),
    [
        # The default base_url: the other host is the way out.
        (NDC_URL + SEND_PATH, NDC_URL, None, (NDC_URL + SEND_PATH, GDC_URL + SEND_PATH)),
        # The remembered host goes first.
        (NDC_URL + SEND_PATH, NDC_URL, GDC, (GDC_URL + SEND_PATH, NDC_URL + SEND_PATH)),
        (NDC_URL + SEND_PATH, NDC_URL, NDC, (NDC_URL + SEND_PATH, GDC_URL + SEND_PATH)),
        (NDC_URL + SEND_PATH, NDC_URL, PROXY, (NDC_URL + SEND_PATH, GDC_URL + SEND_PATH)),
        # A base_url on gdcdyn works the same way round.
        (GDC_URL + SEND_PATH, GDC_URL, None, (GDC_URL + SEND_PATH, NDC_URL + SEND_PATH)),
        # A <Url> on either IB host fails over to the same path on the other.
        (GDC_URL + "/moved/Get", NDC_URL, None, (GDC_URL + "/moved/Get", NDC_URL + "/moved/Get")),
        # Never to any other host: another base_url, or a <Url> on a third IB host.
        (f"https://{PROXY}{SEND_PATH}", f"https://{PROXY}", GDC, (f"https://{PROXY}{SEND_PATH}",)),
        (GDC_URL + GET_PATH, f"https://{PROXY}", None, (GDC_URL + GET_PATH,)),
        (GDC_URL + GET_PATH, "http://127.0.0.1:8080", None, (GDC_URL + GET_PATH,)),
        (
            "https://www.interactivebrokers.com" + GET_PATH,
            NDC_URL,
            None,
            ("https://www.interactivebrokers.com" + GET_PATH,),
        ),
    ],
)
def test_plan_route(url: str, base_url: str, start: str | None, urls: tuple[str, ...]) -> None:
    assert plan_route(url, base_url, start=start).urls == urls


@pytest.mark.parametrize("kind", list(TroubleKind))
def test_a_route_moves_on_only_when_the_host_seems_gone(kind: TroubleKind) -> None:
    route = plan_route(NDC_URL + SEND_PATH, NDC_URL)
    moved = route.failed(Trouble("x", kind=kind))
    if kind in (TroubleKind.DNS, TroubleKind.CONNECT, TroubleKind.NOT_FOUND):
        assert moved == GDC
        assert route.url == GDC_URL + SEND_PATH
        assert route.failed(Trouble("x", kind=kind)) == NDC  # and back again
    else:
        assert moved is None
        assert route.url == NDC_URL + SEND_PATH
    assert kind in FAILOVER or moved is None


def test_a_route_with_one_url_stays() -> None:
    route = Route((f"https://{PROXY}",))
    assert route.failed(Trouble("x", kind=TroubleKind.DNS)) is None
    assert route.url == f"https://{PROXY}"
    assert route.hosts == {PROXY}


@pytest.mark.parametrize(
    ("failed", "hosts", "seconds", "verdict"),
    [
        ((NDC, GDC), (NDC, GDC), NO_NETWORK_SECONDS, True),
        ((NDC, GDC), (NDC, GDC), 150.0, True),
        ((NDC, GDC), (NDC, GDC), 70.0, False),  # not long enough yet
        ((NDC,), (NDC, GDC), 600.0, False),  # the other host may still resolve
        ((GDC,), (NDC, GDC), 600.0, False),
        ((), (NDC, GDC), 600.0, False),
        ((PROXY,), (PROXY,), 150.0, True),  # a fetch that may use one host only
        ((PROXY,), (PROXY,), 119.9, False),
        ((), (), 600.0, False),
    ],
)
def test_no_network_rule(
    failed: tuple[str, ...], hosts: tuple[str, ...], seconds: float, verdict: bool
) -> None:
    assert no_network(failed=failed, hosts=hosts, seconds=seconds) is verdict


def test_no_network_reason_names_what_failed() -> None:
    both = no_network_reason([GDC, NDC], 5, 150.0)
    assert both == (
        f"DNS lookups of both IB hosts ({NDC}, {GDC}) failed 5 times in a row over 150 s: "
        "this machine seems to have no network (or no working DNS)"
    )
    assert no_network_reason([PROXY], 7, 310.0).startswith(f"DNS lookups of {PROXY} failed 7")


def test_host_memory_holds_only_ibs_hosts() -> None:
    memory = HostMemory()
    assert memory.preferred() is None
    memory.worked(GDC)
    memory.worked(PROXY)
    assert memory.preferred() == GDC
    assert repr(memory) == f"HostMemory(preferred={GDC!r})"
    memory.forget()
    assert memory.preferred() is None


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (Reply(404, b"<!DOCTYPE html><html><body>404 Not Found</body></html>"), "not found"),
        (Reply(404, b""), "not found"),
        (Reply(404, b"<html><body>Not Found</body></html>"), "not found"),
        (Reply(503, b"<!DOCTYPE html><html><body>maintenance</body></html>"), "other"),
        (Reply(200, b"<!DOCTYPE html><html><body>a page</body></html>"), "other"),
        (Reply(500, b""), "other"),
    ],
)
def test_answers_that_are_not_ibs_say_whether_the_path_is_gone(reply: Reply, kind: str) -> None:
    for read in (read_send_answer(reply), read_get_answer(reply)):
        assert isinstance(read, Trouble)
        assert read.kind is TroubleKind(kind)


def test_ibs_own_envelope_on_a_404_is_ibs_answer() -> None:
    envelope = b"<FlexStatementResponse><ErrorCode>1020</ErrorCode></FlexStatementResponse>"
    assert isinstance(read_send_answer(Reply(404, envelope)), IbAnswer)


# --- The flow, with canned answers --------------------------------------------------------


def reference(url: str | None = GDC_URL + GET_PATH) -> Reply:
    where = f"<Url>{url}</Url>" if url else ""
    return Reply(
        200,
        b"<FlexStatementResponse><Status>Success</Status><ReferenceCode>77</ReferenceCode>"
        + where.encode()
        + b"</FlexStatementResponse>",
    )


IN_PROGRESS = Reply(
    200,
    b"<FlexStatementResponse><Status>Warn</Status><ErrorCode>1019</ErrorCode>"
    b"<ErrorMessage>Statement generation in progress.</ErrorMessage></FlexStatementResponse>",
)
DONE = Reply(200, STATEMENT)
DNS = Trouble("DNS lookup failed", kind=TroubleKind.DNS)
REFUSED = Trouble("cannot connect: Connection refused", kind=TroubleKind.CONNECT)
MOVED = Trouble("an HTML page instead of XML (HTTP 404)", 404, TroubleKind.NOT_FOUND)
DOWN = Trouble("HTTP 503 from SendRequest", 503)


class Run:
    """Drives fetch_flow with canned answers; records every request and wait."""

    def __init__(
        self,
        answers: Sequence[Reply | Trouble],
        *,
        base_url: str = NDC_URL,
        memory: HostMemory | None = None,
        max_retries: int = 10,
        backoff_base: float = 10.0,
    ) -> None:
        self.answers = list(answers)
        self.memory = HostMemory() if memory is None else memory
        self.requests: list[HttpRequest] = []
        self.waits: list[Wait] = []
        settings = FetchSettings(
            token=TOKEN,
            query_id="42",
            base_url=base_url,
            max_retries=max_retries,
            backoff_base=backoff_base,
        )
        self.flow: Generator[HttpRequest | Wait, Outcome | None, Result] = fetch_flow(
            settings, hosts=self.memory
        )

    def result(self) -> Result:
        outcome: Outcome | None = None
        while True:
            try:
                action = self.flow.send(outcome)
            except StopIteration as done:
                assert not self.answers, "the flow stopped before using every answer"
                result: Result = done.value
                return result
            if isinstance(action, Wait):
                self.waits.append(action)
                outcome = None
            else:
                self.requests.append(action)
                outcome = self.answers.pop(0)

    def hosts(self) -> list[str]:
        return [host_of(r.url) for r in self.requests]

    def elapsed(self) -> float:
        return sum(w.seconds for w in self.waits)


@pytest.mark.parametrize("trouble", [DNS, REFUSED, MOVED], ids=["dns", "refused", "html-404"])
def test_sendrequest_fails_over_and_the_host_that_worked_is_remembered(trouble: Trouble) -> None:
    run = Run([trouble, reference(), DONE])
    assert isinstance(run.result(), FlexStatement)
    assert run.hosts() == [NDC, GDC, GDC]
    assert run.requests[1].url == GDC_URL + SEND_PATH
    assert dict(run.requests[1].params) == dict(run.requests[0].params)
    assert run.waits[0].seconds == 10.0  # the usual backoff: the token's limits span hosts
    assert run.waits[0].reason == f"{trouble.reason}; trying {GDC} next"
    assert run.memory.preferred() == GDC
    # The next fetch starts where the last one worked.
    again = Run([reference(), DONE], memory=run.memory)
    assert isinstance(again.result(), FlexStatement)
    assert again.hosts() == [GDC, GDC]


def test_other_trouble_stays_on_the_host() -> None:
    run = Run([DOWN, Trouble("the SendRequest body was cut short"), reference(), DONE])
    assert isinstance(run.result(), FlexStatement)
    assert run.hosts() == [NDC, NDC, NDC, GDC]  # the last one is IB's <Url>
    assert run.memory.preferred() == NDC


def test_a_failing_host_is_left_each_time_both_fail() -> None:
    run = Run([MOVED, REFUSED, MOVED, reference(NDC_URL + GET_PATH), DONE])
    assert isinstance(run.result(), FlexStatement)
    assert run.hosts() == [NDC, GDC, NDC, GDC, NDC]
    assert run.memory.preferred() == GDC


def test_a_statement_url_on_a_dead_host_fails_over_to_the_same_path() -> None:
    run = Run([reference(GDC_URL + GET_PATH), DNS, IN_PROGRESS, DONE])
    assert isinstance(run.result(), FlexStatement)
    assert [r.url for r in run.requests[1:]] == [
        GDC_URL + GET_PATH,
        NDC_URL + GET_PATH,
        NDC_URL + GET_PATH,  # it stays where it worked
    ]
    assert {r.params["q"] for r in run.requests[1:]} == {"77"}
    # GetStatement follows <Url>: only SendRequest's host is remembered.
    assert run.memory.preferred() == NDC


def test_without_a_statement_url_getstatement_goes_where_sendrequest_worked() -> None:
    run = Run([DNS, reference(None), DONE])
    assert isinstance(run.result(), FlexStatement)
    assert [r.url for r in run.requests] == [
        NDC_URL + SEND_PATH,
        GDC_URL + SEND_PATH,
        GDC_URL + GET_PATH,
    ]


def test_a_remembered_host_is_where_sendrequest_starts() -> None:
    memory = HostMemory()
    memory.worked(GDC)
    run = Run([reference(None), DONE], memory=memory)
    assert isinstance(run.result(), FlexStatement)
    assert run.hosts() == [GDC, GDC]


def test_the_default_memory_is_the_process_wide_one() -> None:
    settings = FetchSettings(
        token=TOKEN, query_id="42", base_url=NDC_URL, max_retries=10, backoff_base=10.0
    )
    flow = fetch_flow(settings)
    assert host_of(next(flow).url) == NDC  # type: ignore[union-attr]
    flow.send(DNS)  # the wait
    assert host_of(flow.send(None).url) == GDC  # type: ignore[union-attr]
    flow.send(reference())
    flow.close()
    assert HOST_MEMORY.preferred() == GDC


@pytest.mark.parametrize("base_url", [f"https://{PROXY}", "http://127.0.0.1:8080"])
def test_another_server_never_fails_over_nor_is_remembered(base_url: str) -> None:
    memory = HostMemory()
    memory.worked(GDC)
    run = Run([DNS, MOVED, REFUSED, reference(None), DONE], base_url=base_url, memory=memory)
    assert isinstance(run.result(), FlexStatement)
    assert {r.url.split("/Account")[0] for r in run.requests} == {base_url}
    assert memory.preferred() == GDC  # untouched


def test_a_statement_url_on_ib_does_not_fail_over_for_another_server() -> None:
    run = Run([reference(GDC_URL + GET_PATH), DNS, DONE], base_url=f"https://{PROXY}")
    assert isinstance(run.result(), FlexStatement)
    assert run.hosts() == [PROXY, GDC, GDC]


# With the defaults (backoff 10 s doubling): lookups at 0, 10, 30, 70 and 150 s.
DEFAULT_WAITS = [10.0, 20.0, 40.0, 80.0]


def test_no_network_is_told_after_150_seconds_with_the_defaults() -> None:
    run = Run([DNS] * 10)
    with pytest.raises(TransportError) as caught:
        run.result()
    assert run.hosts() == [NDC, GDC, NDC, GDC, NDC]
    assert [w.seconds for w in run.waits] == DEFAULT_WAITS
    assert run.elapsed() == 150.0  # the issue's bound: within 5 minutes, not some 40
    assert str(caught.value) == (
        f"gave up after 5 SendRequest requests: DNS lookups of both IB hosts ({NDC}, {GDC}) "
        "failed 5 times in a row over 150 s: this machine seems to have no network "
        "(or no working DNS)"
    )
    assert caught.value.step is Step.SEND_REQUEST
    assert caught.value.http_status is None
    assert run.memory.preferred() is None  # nothing worked
    run.answers.clear()


@pytest.mark.parametrize(
    ("answers", "hosts", "no_net"),
    [
        # A DNS failure now and then is retried as before: an answer ends the run.
        ([DNS, reference(), DONE], [NDC, GDC, GDC], False),
        ([DNS, DNS, DNS, reference(), DONE], [NDC, GDC, NDC, GDC, GDC], False),
        # A refused connection, an HTML 404 or a 503 proves there is a network: the run
        # starts again (without them, the fifth request, at 150 s, would be the last).
        ([DNS, DNS, DNS, REFUSED] + [DNS] * 6, [NDC, GDC, NDC, GDC, NDC, GDC], True),
        ([DNS, DNS, DNS, MOVED] + [DNS] * 6, [NDC, GDC, NDC, GDC, NDC, GDC], True),
        ([DNS, DNS, DNS, DOWN] + [DNS] * 6, [NDC, GDC, NDC, GDC, GDC, NDC], True),
        ([REFUSED] + [DNS] * 9, [NDC, GDC, NDC, GDC, NDC], True),
        # Never two DNS failures in a row: the budget ends it, as before.
        ([DNS, REFUSED] * 5, [NDC, GDC] * 5, False),
    ],
)
def test_a_dns_failure_now_and_then_is_retried(
    answers: list[Reply | Trouble], hosts: list[str], no_net: bool
) -> None:
    run = Run(answers)
    if answers[-1] is DONE:
        assert isinstance(run.result(), FlexStatement)
    else:
        with pytest.raises(TransportError) as caught:
            run.result()
        assert ("no network" in str(caught.value)) is no_net
        assert ("gave up after 10 SendRequest requests; last:" in str(caught.value)) is not no_net
        run.answers.clear()
    assert run.hosts() == hosts


def test_no_network_during_getstatement() -> None:
    run = Run([reference(GDC_URL + GET_PATH)] + [DNS] * 10)
    with pytest.raises(TransportError) as caught:
        run.result()
    assert caught.value.step is Step.GET_STATEMENT
    assert "DNS lookups of both IB hosts" in str(caught.value)
    assert run.hosts() == [NDC, GDC, NDC, GDC, NDC, GDC]
    run.answers.clear()


def test_no_network_for_a_fetch_that_may_use_one_host() -> None:
    run = Run([DNS] * 10, base_url=f"https://{PROXY}")
    with pytest.raises(TransportError) as caught:
        run.result()
    assert run.hosts() == [PROXY] * 5
    assert f"DNS lookups of {PROXY} failed 5 times in a row over 150 s" in str(caught.value)
    run.answers.clear()


@pytest.mark.parametrize(
    ("backoff_base", "requests", "elapsed"),
    [
        (1.0, 8, 1.1 + 2 + 4 + 8 + 16 + 32 + 64),  # a quick backoff tries longer
        (10.0, 5, 150.0),
        (60.0, 3, 180.0),
        (600.0, 2, 600.0),  # one lookup of each host, ten minutes apart
    ],
)
def test_how_soon_no_network_is_told(backoff_base: float, requests: int, elapsed: float) -> None:
    run = Run([DNS] * 10, backoff_base=backoff_base)
    with pytest.raises(TransportError, match="no network"):
        run.result()
    assert len(run.requests) == requests
    assert run.elapsed() == pytest.approx(elapsed)
    run.answers.clear()


def test_a_short_budget_still_ends_on_its_budget() -> None:
    run = Run([DNS, DNS], max_retries=2)
    with pytest.raises(TransportError) as caught:
        run.result()
    assert str(caught.value) == f"gave up after 2 SendRequest requests; last: {DNS.reason}"


# --- The driver: real TLS on loopback, IB's names resolved by the test ----------------------


class IbDns(AbstractResolver):
    """IB's host names on loopback: each maps to a port, or fails as an unknown name does.

    Every name asked for is recorded; any name not in ``ports`` fails, so the session has no
    network at all.
    """

    def __init__(self, ports: Mapping[str, int | None]) -> None:
        self.ports = dict(ports)
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        target = self.ports.get(host.lower())
        if target is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=target,  # the client asked for 443: the simulator's port it is
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*IB_HOSTS).configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def port_of(sim: FlexSimulator) -> int:
    port = urlsplit(sim.base_url).port
    assert port is not None
    assert sim.base_url.startswith("https://127.0.0.1:")
    return port


def session_for(dns: IbDns, client_tls: ssl.SSLContext) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=dns, ssl=client_tls))


def ib_client(clock: FakeClock) -> FlexClient:
    """A client on IB's default host, with every other setting at its default."""
    return FlexClient(token=TOKEN, query_id="42", clock=clock)


def statement_url_on(sim: FlexSimulator, host: str) -> None:
    """The simulator's next SendRequest answer points <Url> at ``host``, as IB's does."""
    sim.fail("42", Fault.foreign_url(f"https://{host}{GET_PATH}"))


async def test_a_dead_dns_name_fails_over_and_is_remembered(
    clock: FakeClock, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    events: list[FetchEvent] = []
    async with FlexSimulator(clock=clock, ssl_context=server_tls) as sim:
        dns = IbDns({NDC: None, GDC: port_of(sim)})
        async with session_for(dns, client_tls) as session:
            statement_url_on(sim, GDC)
            statement = await ib_client(clock).fetch(session, on_event=events.append)
            assert statement.xml == build_statement()
            assert dns.lookups[:2] == [NDC, GDC]
            assert sim.answers() == ["reference", "statement"]
            assert HOST_MEMORY.preferred() == GDC
            waits = [e for e in events if e.kind is EventKind.WAIT]
            assert waits[0].detail == f"DNS lookup failed for {NDC}; trying {GDC} next"
            # The next fetch starts on the host that worked: ndcdyn is not even looked up.
            dns.lookups.clear()
            statement_url_on(sim, GDC)
            await ib_client(clock).fetch(session)
            assert NDC not in dns.lookups
            assert sim.answers() == ["reference", "statement"] * 2


async def test_a_moved_path_fails_over(
    clock: FakeClock, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    async with (
        FlexSimulator(clock=clock, ssl_context=server_tls) as moved,
        FlexSimulator(clock=clock, ssl_context=server_tls) as serving,
    ):
        # ndcdyn answers IB's HTML 404 page where SendRequest used to be.
        moved.fail("42", Fault.http_status(404), step=Step.SEND_REQUEST, times=10)
        dns = IbDns({NDC: port_of(moved), GDC: port_of(serving)})
        async with session_for(dns, client_tls) as session:
            statement_url_on(serving, GDC)
            started = clock.now()
            await ib_client(clock).fetch(session)
            assert clock.now() - started == pytest.approx(10.0 + 1.1)  # one backoff, one poll
            assert moved.answers() == ["fault:http status"]
            assert serving.answers() == ["reference", "statement"]
            assert HOST_MEMORY.preferred() == GDC
            statement_url_on(serving, GDC)
            await ib_client(clock).fetch(session)
            assert moved.answers() == ["fault:http status"]  # never asked again


async def test_a_refused_connection_fails_over(
    clock: FakeClock, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    async with FlexSimulator(clock=clock, ssl_context=server_tls) as sim:
        dns = IbDns({NDC: closed, GDC: port_of(sim)})
        async with session_for(dns, client_tls) as session:
            statement_url_on(sim, GDC)
            await ib_client(clock).fetch(session)
    assert sim.answers() == ["reference", "statement"]
    assert HOST_MEMORY.preferred() == GDC


async def test_a_statement_url_on_a_dead_host_is_fetched_from_the_other(
    clock: FakeClock, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    async with FlexSimulator(clock=clock, ssl_context=server_tls) as sim:
        dns = IbDns({NDC: port_of(sim), GDC: None})
        async with session_for(dns, client_tls) as session:
            statement_url_on(sim, GDC)
            await ib_client(clock).fetch(session)
    assert dns.lookups[:2] == [NDC, GDC]
    assert set(dns.lookups) == {NDC, GDC}
    assert sim.answers() == ["reference", "statement"]
    assert HOST_MEMORY.preferred() == NDC


async def test_no_network_is_told_within_five_minutes(
    clock: FakeClock, client_tls: ssl.SSLContext
) -> None:
    dns = IbDns({})
    started = clock.now()
    async with session_for(dns, client_tls) as session:
        with pytest.raises(TransportError) as caught:
            await ib_client(clock).fetch(session)  # max_retries=10, backoff_base=10
    elapsed = clock.now() - started
    assert elapsed == 150.0  # on the fake clock; today's 10 attempts took 2,430 s
    assert elapsed <= 5 * 60
    assert dns.lookups == [NDC, GDC, NDC, GDC, NDC]
    assert "this machine seems to have no network" in str(caught.value)
    assert f"DNS lookups of both IB hosts ({NDC}, {GDC})" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert HOST_MEMORY.preferred() is None


async def test_another_server_is_the_only_one_looked_up(
    clock: FakeClock, client_tls: ssl.SSLContext
) -> None:
    dns = IbDns({})
    client = FlexClient(
        token=TOKEN, query_id="42", clock=clock, base_url=f"https://{PROXY}", max_retries=3
    )
    async with session_for(dns, client_tls) as session:
        with pytest.raises(TransportError, match=f"DNS lookup failed for {PROXY}"):
            await client.fetch(session)
    assert dns.lookups == [PROXY] * 3
