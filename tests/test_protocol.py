"""The pure protocol core: requests, envelopes, the code table and the URL rule."""

from __future__ import annotations

import sys
from datetime import date

import pytest

from ibkr_flex_client import Step, UnsafeUrlError, __version__
from ibkr_flex_client.protocol import (
    DEFAULT_BASE_URL,
    CodeKind,
    IbAnswer,
    Reference,
    Reply,
    Trouble,
    check_statement_url,
    classify,
    get_statement_request,
    read_get_answer,
    read_send_answer,
    redact,
    send_request,
    user_agent,
)

# Every code in docs/protocol.md's table, with what a client must do.
CODES = {
    1001: CodeKind.TRANSIENT,
    1003: CodeKind.REQUEST,
    1004: CodeKind.TRANSIENT,
    1005: CodeKind.TRANSIENT,
    1006: CodeKind.TRANSIENT,
    1007: CodeKind.TRANSIENT,
    1008: CodeKind.TRANSIENT,
    1009: CodeKind.TRANSIENT,
    1010: CodeKind.REQUEST,
    1011: CodeKind.AUTH,
    1012: CodeKind.AUTH,
    1013: CodeKind.AUTH,
    1014: CodeKind.REQUEST,
    1015: CodeKind.AUTH,
    1016: CodeKind.AUTH,
    1017: CodeKind.REFERENCE,
    1018: CodeKind.THROTTLED,
    1019: CodeKind.IN_PROGRESS,
    1020: CodeKind.REQUEST,
    1021: CodeKind.TRANSIENT,
    1025: CodeKind.LOCKED_OUT,
}


@pytest.mark.parametrize(("code", "kind"), CODES.items())
def test_every_documented_code_has_its_kind(code: int, kind: CodeKind) -> None:
    assert classify(code) is kind


@pytest.mark.parametrize("code", [1002, 1022, 1099, 0, 999, 2001])
def test_codes_ib_does_not_document_are_unknown(code: int) -> None:
    assert classify(code) is None


def envelope(inner: str, status: str = "Fail") -> bytes:
    return (
        f'<FlexStatementResponse timestamp="x"><Status>{status}</Status>{inner}'
        "</FlexStatementResponse>"
    ).encode()


def test_send_request_carries_v3_and_only_ibs_parameter_names() -> None:
    request = send_request(
        base_url=DEFAULT_BASE_URL,
        token="TOKEN",
        query_id="123",
        from_date=date(2026, 1, 5),
        to_date=date(2026, 2, 27),
    )
    assert request.step is Step.SEND_REQUEST
    assert request.url == (
        "https://ndcdyn.interactivebrokers.com/AccountManagement/FlexWebService/SendRequest"
    )
    assert dict(request.params) == {
        "t": "TOKEN",
        "q": "123",
        "v": "3",
        "fd": "20260105",
        "td": "20260227",
    }
    assert "TOKEN" not in repr(request)
    assert "TOKEN" not in request.safe_url


def test_send_request_period_is_p() -> None:
    request = send_request(base_url="https://x.example", token="T", query_id="1", period=30)
    assert dict(request.params) == {"t": "T", "q": "1", "v": "3", "p": "30"}


def test_get_statement_request_carries_reference_and_v3() -> None:
    request = get_statement_request(url="https://u/GetStatement", token="T", reference_code="9")
    assert request.step is Step.GET_STATEMENT
    assert dict(request.params) == {"t": "T", "q": "9", "v": "3"}


@pytest.mark.parametrize("tag", ["Url", "url"])
def test_send_answer_success_reads_reference_and_either_url_spelling(tag: str) -> None:
    body = envelope(
        f"<ReferenceCode>1234567890</ReferenceCode><{tag}>https://gdcdyn.interactivebrokers.com"
        f"/AccountManagement/FlexWebService/GetStatement</{tag}>",
        status="Success",
    )
    answer = read_send_answer(Reply(200, body))
    assert answer == Reference(
        "1234567890",
        "https://gdcdyn.interactivebrokers.com/AccountManagement/FlexWebService/GetStatement",
    )


def test_error_code_is_read_whatever_the_status_says() -> None:
    # "Branch on ErrorCode, not on Status (1019 comes as Warn)."
    body = envelope(
        "<ErrorCode>1019</ErrorCode><ErrorMessage>Statement generation in progress.</ErrorMessage>",
        status="Warn",
    )
    answer = read_get_answer(Reply(200, body))
    assert answer == IbAnswer(1019, "Statement generation in progress.", 200)
    assert isinstance(answer, IbAnswer)
    assert answer.kind is CodeKind.IN_PROGRESS


def test_ib_error_envelope_on_a_non_2xx_status_still_gives_the_code() -> None:
    body = envelope("<ErrorCode>1009</ErrorCode><ErrorMessage>busy</ErrorMessage>")
    assert read_send_answer(Reply(503, body)) == IbAnswer(1009, "busy", 503)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(200, b""), "an empty body"),
        (Reply(200, b"   \n"), "an empty body"),
        (Reply(200, b"<!DOCTYPE html><html><body>down</body></html>"), "an HTML page"),
        (Reply(200, b"<html><body>maintenance</body></html>"), "an HTML page"),
        (Reply(200, b"<FlexStatementResponse><Status>Su"), "not a complete XML document"),
        (Reply(503, b"<html>Our services are temporarily unavailable</html>"), "HTTP 503"),
        (Reply(404, b""), "HTTP 404"),
        (Reply(302, b""), "HTTP 302"),
        (Reply(200, b"<Other/>"), "unexpected <Other>"),
        (Reply(200, envelope("", status="Success")), "without a ReferenceCode"),
        (Reply(200, envelope("<ErrorCode>abc</ErrorCode>")), "not a number"),
    ],
)
def test_send_answer_trouble_names_what_came(reply: Reply, reason: str) -> None:
    answer = read_send_answer(reply)
    assert isinstance(answer, Trouble)
    assert reason in answer.reason


def test_get_answer_returns_the_parsed_statement_root() -> None:
    body = b'<FlexQueryResponse queryName="q" type="AF"><FlexStatements count="0"/>'
    body += b"</FlexQueryResponse>"
    root = read_get_answer(Reply(200, body))
    assert not isinstance(root, (IbAnswer, Trouble))
    assert root.tag == "FlexQueryResponse"


def test_get_answer_with_a_dtd_is_trouble_and_nothing_is_expanded() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b"<FlexQueryResponse>&lol2;</FlexQueryResponse>"
    )
    answer = read_get_answer(Reply(200, bomb))
    assert isinstance(answer, Trouble)
    assert "DTD" in answer.reason


IB_URLS = [
    "https://gdcdyn.interactivebrokers.com/AccountManagement/FlexWebService/GetStatement",
    "https://ndcdyn.interactivebrokers.com/AccountManagement/FlexWebService/GetStatement",
    "https://interactivebrokers.com/GetStatement",
    "https://NDCDYN.InteractiveBrokers.com/AccountManagement/FlexWebService/GetStatement",
    "https://gdcdyn.interactivebrokers.com:443/x",
]


@pytest.mark.parametrize("url", IB_URLS)
def test_https_urls_on_ib_hosts_are_followed(url: str) -> None:
    assert check_statement_url(url, DEFAULT_BASE_URL).lower() == url.lower()


def test_a_query_string_in_the_url_is_dropped() -> None:
    # Our own t/q/v are the only parameters sent, so a planted `t=` cannot collide.
    url = "https://gdcdyn.interactivebrokers.com/GetStatement?t=x&other=1#frag"
    assert check_statement_url(url, DEFAULT_BASE_URL) == (
        "https://gdcdyn.interactivebrokers.com/GetStatement"
    )


UNSAFE_URLS = [
    "http://gdcdyn.interactivebrokers.com/GetStatement",  # not https
    "https://interactivebrokers.com.evil.example/GetStatement",  # suffix trick
    "https://evilinteractivebrokers.com/GetStatement",  # no dot boundary
    "https://gdcdyn.interactivebrokers.com@evil.example/GetStatement",  # userinfo trick
    "https://user:pw@gdcdyn.interactivebrokers.com/GetStatement",  # credentials
    "https://gdcdyn.interactivebrokers.com:8443/GetStatement",  # odd port
    "ftp://gdcdyn.interactivebrokers.com/GetStatement",
    "/AccountManagement/FlexWebService/GetStatement",  # relative
    "https://[::1/GetStatement",  # unparseable
    "https://127.0.0.1/GetStatement",
    "",
]


@pytest.mark.parametrize("url", UNSAFE_URLS)
def test_urls_off_ib_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrlError) as caught:
        check_statement_url(url, DEFAULT_BASE_URL)
    assert caught.value.step is Step.SEND_REQUEST
    assert "not sent" in str(caught.value)


def test_a_custom_base_url_allows_its_own_scheme_host_and_port_only() -> None:
    base = "http://127.0.0.1:8080"
    assert check_statement_url("http://127.0.0.1:8080/G", base) == "http://127.0.0.1:8080/G"
    for other in ("http://127.0.0.1:8081/G", "https://127.0.0.1:8080/G", "http://localhost:8080/G"):
        with pytest.raises(UnsafeUrlError):
            check_statement_url(other, base)
    # IB's own hosts stay allowed behind a proxy base_url.
    assert check_statement_url(IB_URLS[0], base) == IB_URLS[0]


def test_user_agent_names_library_version_and_python() -> None:
    python = f"Python/{sys.version_info.major}.{sys.version_info.minor}"
    assert user_agent() == f"ibkr-flex-client/{__version__} {python}"
    assert user_agent("myapp/2.1") == f"myapp/2.1 ibkr-flex-client/{__version__} {python}"


def test_redact_removes_plain_and_url_encoded_forms() -> None:
    secret = "a+b/c d"
    text = f"raw {secret} quoted a%2Bb%2Fc%20d path a%2Bb/c%20d form a%2Bb/c+d"
    cleaned = redact(text, secret)
    assert "a+b" not in cleaned
    assert "a%2Bb" not in cleaned
    assert cleaned.count("***") == 4
