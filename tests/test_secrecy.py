"""The token never shows: not in exceptions (or their chains), logs, reprs or records."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterator
from urllib.parse import quote

import aiohttp
import pytest

from ibkr_flex_client import FlexClient, FlexError
from ibkr_flex_client.testing import FakeClock, Fault, FlexSimulator

from .support import chain

# Characters that URL-encoding changes, so every spelling of the token is hunted for.
SECRET = "Sec+ret/Tok=en%7e"
SPELLINGS = {SECRET, quote(SECRET), quote(SECRET, safe=""), SECRET.replace("+", " ")}


def texts_of(error: BaseException) -> Iterator[str]:
    for link in chain(error):
        yield str(link)
        yield repr(link)
        yield from (repr(arg) for arg in link.args)
        yield repr(vars(link)) if hasattr(link, "__dict__") else ""
        yield from (repr(note) for note in getattr(link, "__notes__", []))


def assert_hidden(text: str) -> None:
    for spelling in SPELLINGS:
        assert spelling not in text


SCENARIOS: list[tuple[str, Callable[[FlexSimulator], None], dict[str, object]]] = [
    ("http-5xx", lambda s: s.fail("42", Fault.http_status(503), times=2), {}),
    ("html", lambda s: s.fail("42", Fault.html(), times=2), {}),
    ("drop", lambda s: s.fail("42", Fault.drop(), times=2), {}),
    ("truncated", lambda s: s.fail("42", Fault.truncated(), times=2), {}),
    ("hang", lambda s: s.fail("42", Fault.hang(), times=2), {"timeout": 0.1}),
    ("foreign-url", lambda s: s.fail("42", Fault.foreign_url()), {}),
    ("throttled", lambda s: s.fail("42", Fault.ib_code(1018), times=2), {}),
    ("expired", lambda s: s.token_codes.__setitem__(SECRET, 1012), {}),
    ("locked", lambda s: s.token_codes.__setitem__(SECRET, 1025), {}),
    ("unknown-code", lambda s: s.fail("42", Fault.ib_code(1099)), {}),
    ("redirect", lambda s: s.fail("42", Fault.redirect(), times=2), {}),
]


@pytest.mark.parametrize(("name", "arrange", "options"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
async def test_no_failure_shows_the_token(
    sim: FlexSimulator,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    name: str,
    arrange: Callable[[FlexSimulator], None],
    options: dict[str, object],
) -> None:
    arrange(sim)
    client = FlexClient(
        token=SECRET,
        query_id="42",
        base_url=sim.base_url,
        clock=clock,
        max_retries=2,
        **options,  # type: ignore[arg-type]
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(FlexError) as caught:
        await client.fetch()  # every logger, every level is captured
    for text in texts_of(caught.value):
        assert_hidden(text)
    assert_hidden(pickle.dumps(caught.value).decode("latin-1"))
    assert caplog.records, f"{name}: the fetch logged nothing to check"
    for record in caplog.records:
        assert_hidden(record.getMessage())
        assert_hidden(repr(record.args))


async def test_a_session_that_raises_for_status_does_not_leak_its_url(
    sim: FlexSimulator, clock: FakeClock
) -> None:
    # aiohttp's ClientResponseError names the full URL, query string and token included.
    sim.fail("42", Fault.http_status(503), times=2)
    client = FlexClient(
        token=SECRET, query_id="42", base_url=sim.base_url, clock=clock, max_retries=2
    )
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        with pytest.raises(FlexError) as caught:
            await client.fetch(session)
    assert "HTTP 503" in str(caught.value)
    for text in texts_of(caught.value):
        assert_hidden(text)


async def test_successful_fetch_logs_no_token(
    make_client: Callable[..., FlexClient], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        statement = await make_client(token=SECRET).fetch()
    assert any("GET" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert_hidden(record.getMessage())
    assert_hidden(repr(statement))


def test_client_repr_and_settings_repr_hide_the_token() -> None:
    client = FlexClient(token=SECRET, query_id="42")
    assert_hidden(repr(client))
    assert_hidden(str(client))
    assert "query_id='42'" in repr(client)
    assert_hidden(repr(client._settings))


async def test_the_simulator_records_a_fingerprint_not_the_token(
    make_client: Callable[..., FlexClient], sim: FlexSimulator
) -> None:
    await make_client(token=SECRET).fetch()
    for record in sim.requests:
        assert_hidden(repr(record))
