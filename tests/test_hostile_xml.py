"""Hostile and odd XML on every path that parses a statement.

Each document is built here, small enough for the whole module to run in a second or two. The
paths are every public way in (``FlexStatement`` from bytes, text or a file, the streaming
readers, the push check ``download()`` uses) and the push parsers underneath them.
"""

from __future__ import annotations

import codecs
import collections
import dataclasses
import io
import tracemalloc
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ibkr_flex_client import FlexStatement, StatementError, iter_elements, iter_rows
from ibkr_flex_client._xml import (
    MAX_ATTRIBUTES,
    MAX_DEPTH,
    MAX_PROLOG,
    XmlFeed,
    XmlRejectedError,
    XmlStream,
    parse_xml,
)
from ibkr_flex_client.stream import StatementCheck, check_statement_file, walk
from ibkr_flex_client.testing import build_statement

STATEMENT = build_statement()
BODY = STATEMENT.split(b"?>", 1)[1].lstrip().decode()  # no XML declaration: a prolog can lead
SYMBOLS = ["AAPL", "MSFT", "SPY   260417C00560000"]
HEADER = 'accountId="U1234567" fromDate='  # the <FlexStatement> header's start

assert BODY.count(HEADER) == 1


@dataclasses.dataclass
class Trade:
    symbol: str


# --- every path that parses a document -------------------------------------------------------
# Each reads a document and returns the trade symbols it saw, or "checked" for the checks.
Read = Callable[[bytes, Path], object]


def _symbols(elements: Iterator[ET.Element]) -> list[str | None]:
    return [e.get("symbol") for e in elements if e.tag == "Trade"]


def _statement(doc: bytes, _: Path) -> object:
    return _symbols(FlexStatement(doc).iter("Trade"))


def _from_file(doc: bytes, folder: Path) -> object:
    path = folder / "statement.xml"
    path.write_bytes(doc)
    return _symbols(FlexStatement.from_file(path).iter("Trade"))


def _iter_elements(doc: bytes, _: Path) -> object:
    return _symbols(iter_elements(io.BytesIO(doc), "Trade"))


def _iter_rows(doc: bytes, _: Path) -> object:
    return [row.symbol for row in iter_rows(io.BytesIO(doc), "Trade", Trade)]


def _walk(doc: bytes, _: Path) -> object:
    return _symbols(element for _, _, element in walk(io.BytesIO(doc)))


def _check_file(doc: bytes, folder: Path) -> object:
    path = folder / "statement.xml"
    path.write_bytes(doc)
    check_statement_file(path)
    return "checked"


def _pieces(doc: bytes, size: int) -> Iterator[bytes]:
    return (doc[i : i + size] for i in range(0, len(doc), size))


def _statement_check(doc: bytes, _: Path) -> object:
    check = StatementCheck()
    for piece in _pieces(doc, 1000):
        check.feed(piece)
    check.close()
    return "checked"


def _xml_feed(doc: bytes, _: Path) -> object:
    feed = XmlFeed()
    for piece in _pieces(doc, 1000):
        feed.feed(piece)
    return _symbols(feed.close().iter())


def _xml_feed_whole(doc: bytes, _: Path) -> object:
    feed = XmlFeed()
    feed.feed(doc)
    return _symbols(feed.close().iter())


def _xml_stream(doc: bytes, _: Path) -> object:
    stream = XmlStream()
    ended: list[ET.Element] = []
    for piece in _pieces(doc, 4096):
        stream.feed(piece)
        ended.extend(e for kind, e in stream.read_events() if kind == "end")
    stream.close()
    ended.extend(e for kind, e in stream.read_events() if kind == "end")
    return _symbols(iter(ended))


# name: (read, what it raises)
TREE_PATHS: dict[str, tuple[Read, type[Exception]]] = {
    "FlexStatement(bytes)": (_statement, StatementError),
    "FlexStatement.from_file": (_from_file, StatementError),
    "XmlFeed in pieces": (_xml_feed, XmlRejectedError),
    "XmlFeed at once": (_xml_feed_whole, XmlRejectedError),
}
STREAM_PATHS: dict[str, tuple[Read, type[Exception]]] = {
    "iter_elements": (_iter_elements, StatementError),
    "iter_rows": (_iter_rows, StatementError),
    "walk": (_walk, StatementError),
    "check_statement_file": (_check_file, StatementError),
    "StatementCheck": (_statement_check, StatementError),
    "XmlStream": (_xml_stream, XmlRejectedError),
}
PATHS = TREE_PATHS | STREAM_PATHS
CHECKS = {"check_statement_file", "StatementCheck"}


def expected(path: str, symbols: list[str] | None = None) -> object:
    return "checked" if path in CHECKS else (SYMBOLS if symbols is None else symbols)


# --- DTDs in every disguise ------------------------------------------------------------------

# doctype + what the body does with it (each, if expanded, would change what the reader sees).
PAYLOADS: dict[str, tuple[str, Callable[[str], str]]] = {
    "ATTLIST default injection": (
        '<!DOCTYPE FlexQueryResponse [<!ATTLIST FlexStatement accountId CDATA "U-INJECTED">]>',
        lambda body: body.replace('accountId="U1234567" fromDate', "fromDate", 1),
    ),
    "internal entity": (
        '<!DOCTYPE FlexQueryResponse [<!ENTITY who "U-ENTITY">]>',
        lambda body: body.replace(HEADER, 'accountId="&who;" fromDate='),
    ),
    "entity expansion": (  # 2,000 references to 100 characters: 200,000 characters
        '<!DOCTYPE FlexQueryResponse [<!ENTITY e "' + "x" * 100 + '">]>',
        lambda body: body.replace('description="APPLE INC"', 'description="' + "&e;" * 2000 + '"'),
    ),
    "external entity": (
        '<!DOCTYPE FlexQueryResponse [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
        lambda body: body.replace("<Trades>", "<Trades>&x;", 1),
    ),
    "parameter entity": (
        "<!DOCTYPE FlexQueryResponse [<!ENTITY % p \"<!ENTITY who 'U-PARAM'>\"> %p;]>",
        lambda body: body.replace(HEADER, 'accountId="&who;" fromDate='),
    ),
    "external DTD": ('<!DOCTYPE FlexQueryResponse SYSTEM "file:///etc/passwd">', lambda body: body),
}


def _comment(size: int) -> str:
    """A comment of exactly ``size`` bytes, holding what a text scan would take for markup."""
    inner = " <FlexQueryResponse> <!DOCTYPE x> "
    return "<!--" + inner + "x" * (size - len(inner) - 7) + "-->"


# How the DTD is dressed: (text before it, encoding).
DISGUISES: dict[str, tuple[str, str]] = {
    "plain": ("", "utf-8"),
    # The first 4,096 bytes end on the DOCTYPE's lone "<".
    "after a 4,095-byte comment": (_comment(4095), "utf-8"),
    "after a 100 KB comment": (_comment(100_000), "utf-8"),
    "utf-16 without BOM": ("", "utf-16-le"),  # expat knows it from "<\0"
    "utf-16 with BOM": ("\ufeff", "utf-16-le"),
    "after an XML declaration": ('<?xml version="1.0" encoding="ISO-8859-1"?>\n', "latin-1"),
}


def hostile(payload: str, disguise: str) -> tuple[bytes, str]:
    doctype, rework = PAYLOADS[payload]
    before, encoding = DISGUISES[disguise]
    text = before + doctype + rework(BODY)
    return text.encode(encoding), text


assert len(_comment(4095).encode()) == 4095


@pytest.mark.parametrize("disguise", DISGUISES)
@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("path", PATHS)
def test_a_dtd_is_refused_by_the_parser_on_every_path(
    path: str, payload: str, disguise: str, tmp_path: Path
) -> None:
    read, error = PATHS[path]
    doc, _ = hostile(payload, disguise)
    with pytest.raises(error, match=r"document type declaration \(DTD\) is not allowed"):
        read(doc, tmp_path)


@pytest.mark.parametrize("disguise", DISGUISES)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_dtd_is_refused_in_text_too(payload: str, disguise: str) -> None:
    _, text = hostile(payload, disguise)
    with pytest.raises(StatementError, match=r"\(DTD\) is not allowed"):
        FlexStatement(text)


def test_the_disguises_really_hide_the_dtd_from_a_text_scan() -> None:
    """What the tests above refuse is what expat would otherwise expand: the injected
    default and the entity reach the tree when a parser without our check reads them."""
    doc, _ = hostile("ATTLIST default injection", "after a 4,095-byte comment")
    assert ET.fromstring(doc).find("*/FlexStatement").get("accountId") == "U-INJECTED"  # type: ignore[union-attr]
    doc, _ = hostile("internal entity", "utf-16 without BOM")
    assert ET.fromstring(doc).find("*/FlexStatement").get("accountId") == "U-ENTITY"  # type: ignore[union-attr]


# --- encodings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "says"),
    [("x-bogus", "unknown encoding: x-bogus"), ("shift_jis", "multi-byte encodings")],
)
@pytest.mark.parametrize("path", PATHS)
def test_an_unusable_declared_encoding_is_refused(
    path: str, encoding: str, says: str, tmp_path: Path
) -> None:
    read, error = PATHS[path]
    doc = f'<?xml version="1.0" encoding="{encoding}"?>\n{BODY}'.encode()
    with pytest.raises(error, match=says) as caught:
        read(doc, tmp_path)
    assert isinstance(caught.value, ValueError)


def test_text_that_will_not_encode_is_refused() -> None:
    with pytest.raises(StatementError, match="UnicodeEncodeError"):
        FlexStatement(BODY.replace("APPLE INC", "APPLE \udc80INC"))


# --- what must keep working ------------------------------------------------------------------


@pytest.mark.parametrize("size", [5_000, 100_000])
@pytest.mark.parametrize("path", PATHS)
def test_a_long_leading_comment_is_fine_on_every_path(path: str, size: int, tmp_path: Path) -> None:
    read, _ = PATHS[path]
    doc = ('<?xml version="1.0" encoding="UTF-8"?>\n' + _comment(size) + "\n" + BODY).encode()
    assert read(doc, tmp_path) == expected(path)


@pytest.mark.parametrize("path", PATHS)
def test_utf16_statements_without_bom_are_fine(path: str, tmp_path: Path) -> None:
    read, _ = PATHS[path]
    assert read(BODY.encode("utf-16-le"), tmp_path) == expected(path)


@pytest.mark.parametrize("path", PATHS)
def test_a_2mb_attribute_value_is_accepted(path: str, tmp_path: Path) -> None:
    read, _ = PATHS[path]
    big = "x" * (2 * 1024 * 1024)
    doc = BODY.replace('symbol="MSFT"', f'symbol="{big}"').encode()
    assert read(doc, tmp_path) == expected(path, ["AAPL", big, "SPY   260417C00560000"])


# --- refusals everywhere -----------------------------------------------------------------------


def _namespace_bomb(names: int) -> str:
    """One long namespace URI and many distinct names: ElementTree keeps a "{uri}name" copy
    of each, so this small document once cost ~2 MB per name (gigabytes in all)."""
    uri = "urn:" + "u" * 100_000
    rows = "".join(f'<p:a{n} x="1"/>' for n in range(names))
    return (
        f'<FlexQueryResponse xmlns:p="{uri}"><FlexStatements count="1">{rows}'
        "</FlexStatements></FlexQueryResponse>"
    )


@pytest.mark.parametrize(
    "doc",
    [
        _namespace_bomb(50).encode(),
        BODY.replace("<Trades>", '<Trades xmlns="urn:late">').encode(),
        BODY.replace("<Trades>", '<Trades xmlns="urn:late">').encode("utf-16-le"),
    ],
    ids=["bomb-on-root", "late-default", "utf16-no-bom"],
)
@pytest.mark.parametrize("path", PATHS)
def test_a_namespace_declaration_is_refused(path: str, doc: bytes, tmp_path: Path) -> None:
    read, error = PATHS[path]
    with pytest.raises(error, match=r"a namespace declaration \(xmlns\)"):
        read(doc, tmp_path)


def test_xmlns_cut_between_pieces_is_seen() -> None:
    doc = BODY.replace("<Trades>", '<Trades xmlns="urn:x">').encode()
    at = doc.index(b"xmlns") + 2
    feed = XmlFeed()
    feed.feed(doc[:at])
    with pytest.raises(XmlRejectedError, match="namespace"):
        feed.feed(doc[at:])


@pytest.mark.parametrize("path", PATHS)
def test_an_encoding_whose_markup_is_not_ascii_is_refused(path: str, tmp_path: Path) -> None:
    read, error = PATHS[path]
    # The declaration in ASCII, as expat must read it; the rest in EBCDIC, where "xmlns" has
    # other bytes than any a byte scan would look for.
    doc = b'<?xml version="1.0" encoding="cp037"?>' + BODY.encode("cp037")
    with pytest.raises(error, match="whose markup is not ASCII"):
        read(doc, tmp_path)


@pytest.mark.parametrize("doc", [b"", b"  \r\n\t "], ids=["nothing", "whitespace"])
@pytest.mark.parametrize("path", PATHS)
def test_an_empty_document_says_so(path: str, doc: bytes, tmp_path: Path) -> None:
    read, error = PATHS[path]
    with pytest.raises(error, match="the document is empty"):
        read(doc, tmp_path)


@pytest.mark.parametrize("path", PATHS)
def test_a_prolog_over_a_mib_is_refused(path: str, tmp_path: Path) -> None:
    read, error = PATHS[path]
    doc = (_comment(MAX_PROLOG + 10) + BODY).encode()
    with pytest.raises(error, match="no root element in the first MiB"):
        read(doc, tmp_path)


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        (BODY[:700], "no element found"),
        (BODY.replace("<Trades>", "<Trades>&nbsp;"), "undefined entity"),
        ("Our services are temporarily unavailable", "syntax error"),
        (BODY + "<!DOCTYPE x>", "junk after document element"),
    ],
    ids=["truncated", "undefined entity", "not xml", "doctype after the root"],
)
@pytest.mark.parametrize("path", PATHS)
def test_malformed_documents_are_refused(path: str, doc: str, says: str, tmp_path: Path) -> None:
    read, error = PATHS[path]
    with pytest.raises(error, match=f"not well-formed XML \\({says}"):
        read(doc.encode(), tmp_path)


# --- the streaming readers' memory limits ------------------------------------------------------


def _nested(levels: int) -> bytes:
    """The statement with ``levels`` elements nested inside <Trades> (itself 4 deep)."""
    return BODY.replace("<Trades>", "<Trades>" + "<a>" * levels + "</a>" * levels, 1).encode()


@pytest.mark.parametrize("path", STREAM_PATHS)
def test_nesting_deeper_than_the_limit_is_refused_by_the_streaming_readers(
    path: str, tmp_path: Path
) -> None:
    read, error = STREAM_PATHS[path]
    assert read(_nested(MAX_DEPTH - 4), tmp_path) == expected(path)  # just within
    with pytest.raises(error, match=f"elements nested more than {MAX_DEPTH} deep"):
        read(_nested(MAX_DEPTH - 3), tmp_path)


def _attributes(count: int) -> bytes:
    """The statement with an element of ``count`` attributes inside <Trades>."""
    names = " ".join(f'a{i}=""' for i in range(count))
    return BODY.replace("<Trades>", f"<Trades><Extra {names}/>", 1).encode()


@pytest.mark.parametrize("path", STREAM_PATHS)
def test_more_attributes_than_the_limit_are_refused_by_the_streaming_readers(
    path: str, tmp_path: Path
) -> None:
    read, error = STREAM_PATHS[path]
    assert read(_attributes(MAX_ATTRIBUTES), tmp_path) == expected(path)
    with pytest.raises(error, match=f"more than {MAX_ATTRIBUTES:,} attributes"):
        read(_attributes(MAX_ATTRIBUTES + 1), tmp_path)


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("path", STREAM_PATHS)
def test_the_limits_hold_in_utf16(path: str, encoding: str, tmp_path: Path) -> None:
    """In UTF-16 a byte "<" or "=" may be half of another character ("ļ" is 3C 01 in
    UTF-16LE): counted as bytes, every value here would restart the count."""
    read, error = STREAM_PATHS[path]
    names = " ".join(f'a{i}="ļ"' for i in range(MAX_ATTRIBUTES + 1))
    wide = BODY.replace("<Trades>", f"<Trades><Extra {names}/>", 1)
    with pytest.raises(error, match="attributes"):
        read(wide.encode(encoding), tmp_path)
    within = wide.replace(f' a{MAX_ATTRIBUTES}="ļ"', "")
    assert read(within.encode(encoding), tmp_path) == expected(path)
    with pytest.raises(error, match="nested more than"):
        read(_nested(MAX_DEPTH).decode().encode(encoding), tmp_path)


def test_a_statement_error_names_the_limit() -> None:
    with pytest.raises(StatementError) as caught:
        check_statement_file(io.BytesIO(_nested(1000)))
    assert str(caught.value) == "not a Flex statement: elements nested more than 256 deep"


def _peak_megabytes(read: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        read()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 1e6


def test_nesting_behind_a_huge_token_cannot_flood_memory() -> None:
    """A huge attribute holds back what follows it (so expat 2.5 does not re-scan it); what
    was held must not reach the tree at once: uncapped, this takes over 100 MB."""
    big = "x" * 1_200_000  # ends early in a held batch: most of the batch is nesting
    doc = BODY.replace('symbol="MSFT"', f'symbol="{big}"').encode()
    cut = doc.index(b"/>", doc.index(big.encode())) + 2
    doc = doc[:cut] + b"<a>" * 700_000 + doc[cut:]

    def read() -> None:
        with pytest.raises(StatementError, match="nested more than"):
            check_statement_file(io.BytesIO(doc))

    assert _peak_megabytes(read) < 40


def test_a_huge_comment_full_of_markup_is_refused_by_the_streaming_readers() -> None:
    doc = BODY.replace("<Trades>", "<Trades><!--" + "<" * 200_000 + "-->", 1).encode()
    assert _statement(doc, Path()) == SYMBOLS
    with pytest.raises(StatementError, match="more than 4,096 '<' inside one comment"):
        check_statement_file(io.BytesIO(doc))


# --- feeding huge tokens: linear, not quadratic ------------------------------------------------


def test_a_huge_attribute_is_not_fed_to_expat_piece_by_piece(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """expat 2.5 re-scans an unfinished token on every feed: 4 MB in 64 KiB pieces would be
    64 scans of up to 4 MB. Held back until it at least doubles, it is a handful."""
    fed: list[int] = []
    feed = ET.XMLPullParser.feed

    def counting(self: ET.XMLPullParser[ET.Element], data: bytes) -> None:
        fed.append(len(data))
        feed(self, data)

    monkeypatch.setattr(ET.XMLPullParser, "feed", counting)
    big = "x" * (4 * 1024 * 1024)
    doc = BODY.replace('symbol="MSFT"', f'symbol="{big}"').encode()
    assert [len(e.get("symbol", "")) for e in iter_elements(io.BytesIO(doc), "Trade")] == [
        4,
        len(big),
        21,
    ]
    assert sum(fed) == len(doc)
    assert len(fed) <= 16


# --- the push parsers ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [5_000, 70_000])
def test_the_root_is_named_as_soon_as_its_start_tag_is_read(size: int) -> None:
    """Behind a long comment, fed in small pieces, the root is named with the piece that
    completes its start tag: the caller decides from it before the rest arrives."""
    doc = ('<?xml version="1.0"?>\n' + _comment(size) + "\n" + BODY).encode()
    end = doc.index(b">", doc.index(b"<FlexQueryResponse queryName")) + 1
    for feed in (XmlFeed(), XmlStream(), StatementCheck()):
        for piece in _pieces(doc[: end - 1], 1000):
            feed.feed(piece)
        assert feed.root_tag is None
        feed.feed(doc[end - 1 : end + 10])
        assert feed.root_tag == "FlexQueryResponse"


def test_the_push_feed_builds_the_same_tree_as_parse_xml() -> None:
    feed = XmlFeed()
    for piece in _pieces(STATEMENT, 333):
        feed.feed(piece)
    built, parsed = feed.close(), parse_xml(STATEMENT)
    assert ET.tostring(built) == ET.tostring(parsed)


def test_a_refused_feed_stays_refused() -> None:
    feed = XmlFeed()
    doc, _ = hostile("internal entity", "plain")
    with pytest.raises(XmlRejectedError, match="DTD") as first:
        feed.feed(doc)
    with pytest.raises(XmlRejectedError) as again:
        feed.feed(b"<more/>")
    assert again.value is first.value
    with pytest.raises(XmlRejectedError):
        feed.close()


def test_the_stream_hands_out_start_and_end_events_only() -> None:
    stream = XmlStream()
    stream.feed(b"<?xml version='1.0'?><!-- c --><r><?pi x?><!-- in --><a>text</a></r>")
    stream.close()
    events = [(kind, element.tag) for kind, element in stream.read_events()]
    assert events == [("start", "r"), ("start", "a"), ("end", "a"), ("end", "r")]


def test_a_statement_check_reports_a_wrong_root_and_keeps_its_name() -> None:
    check = StatementCheck()
    with pytest.raises(StatementError, match="the root is <FlexStatementResponse>"):
        check.feed(b"<FlexStatementResponse><Status>Warn</Status></FlexStatementResponse>")
    assert check.root_tag == "FlexStatementResponse"


def test_a_statement_check_runs_the_structure_check_on_close() -> None:
    check = StatementCheck()
    check.feed(b'<FlexQueryResponse><FlexStatements count="2"><FlexStatement accountId="U1" ')
    check.feed(b'fromDate="20260101" toDate="20260102"/></FlexStatements></FlexQueryResponse>')
    with pytest.raises(StatementError, match="count='2' but 1"):
        check.close()


def test_the_stream_parses_what_was_fed_a_portion_at_a_time() -> None:
    """Fed a large document at once, the stream still parses it as its events are read, so
    the tree never holds more than a portion of it."""
    rows = [{"symbol": f"S{i}"} for i in range(20_000)]
    stream = XmlStream()
    stream.feed(build_statement(sections={"Trades": ("Trade", rows)}))
    stream.close()
    events = stream.read_events()
    trades = ET.Element("none")
    for kind, element in events:
        if kind == "start" and element.tag == "Trades":
            trades = element
        elif kind == "end" and element.tag == "Trade":
            break
    assert 0 < len(trades) < 5_000  # what one 64 KiB portion holds
    rest = collections.Counter(e.tag for kind, e in events if kind == "end")
    assert rest["Trade"] == 19_999


def test_utf16_with_bom_detects_like_elementtree() -> None:
    doc = codecs.BOM_UTF16_BE + BODY.encode("utf-16-be")
    assert _statement(doc, Path()) == SYMBOLS
    assert _xml_stream(doc, Path()) == SYMBOLS
