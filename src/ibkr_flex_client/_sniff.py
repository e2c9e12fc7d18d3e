"""What a file looks like from its first bytes, for an error message that helps.

A Flex statement is XML. When a file is not, the XML parser's complaint (``not well-formed
(invalid token): line 1, column 0``, ``a document type declaration (DTD) is not allowed``)
says nothing useful; naming the kind of file does: an HTML login page saved by a browser, a
zip or PDF download, IB's CSV output. Guesses only: :func:`describe` is asked once a file has
been refused, never to decide whether to read it.
"""

from __future__ import annotations

import codecs
import re

__all__ = ["GZIP_MAGIC", "HEAD_BYTES", "describe", "is_gzip"]

HEAD_BYTES = 2048  # enough for a few lines of CSV or the start of an HTML page
GZIP_MAGIC = b"\x1f\x8b"  # RFC 1952, section 2.3.1

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (GZIP_MAGIC, "gzip-compressed data"),
    (b"PK\x03\x04", "a zip archive: unpack it first"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"%PDF-", "a PDF document: a Flex Query for this tool must have the format XML"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"BZh", "bzip2-compressed data"),
    (b"\xfd7zXZ\x00", "xz-compressed data"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data"),
)
# Read as a statement when whole (._csv); asked here only when it was not.
_IB_CSV_HINT = "cut short, or in a layout this tool cannot read (see the reason)"
# IB's CSV output: a header of quoted names ("ClientAccountID",...), or with its section
# markers a first line of BOF,... / "BOF",... or HEADER,TRNT,... / "HEADER","TRNT",...
_IB_CSV = re.compile(r'"?(ClientAccountID|AccountID)"?,|"?(BOF|HEADER|BOA|BOS|DATA)"?,', re.I)
_HTML = re.compile(r"<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>]", re.I)
_XML_START = re.compile(r"<[?!A-Za-z_:]")
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def is_gzip(head: bytes) -> bool:
    """Whether ``head`` starts a gzip stream (whatever the file's name)."""
    return head.startswith(GZIP_MAGIC)


def describe(head: bytes) -> str | None:
    """What the file starting with ``head`` looks like, as a phrase that follows "it is"
    or "it looks like" (``"an HTML page"``), or None if it looks like XML: then the parser's
    own message is the better one."""
    if not head:
        return "empty"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    text = _text(head)
    if text is None:
        return "binary data, not text"
    stripped = text.lstrip()
    if not stripped:
        return "empty but for white space"
    if _HTML.match(stripped) or (stripped.startswith("<") and _HTML.search(stripped[:512])):
        return "an HTML page (a login or error page saved in place of the statement?)"
    if _XML_START.match(stripped):
        return None
    if stripped[0] in "{[":
        return "JSON"
    lines = [line for line in stripped.splitlines() if line.strip()]
    if _IB_CSV.match(lines[0]):
        return f"IB's CSV output: {_IB_CSV_HINT}"
    if _csv_like(lines):
        return "a CSV file"
    return "plain text"


def _text(head: bytes) -> str | None:
    """``head`` decoded, if it is text (a cut multi-byte character at its end is fine)."""
    encoding = "utf-8"
    for bom, name in _BOMS:
        if head.startswith(bom):
            head, encoding = head[len(bom) :], name
            break
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        text = decoder.decode(head)  # final=False: an incomplete last character waits
    except UnicodeDecodeError:
        return None
    if any(ch < " " and ch not in "\t\r\n\f" for ch in text):
        return None
    return text


def _csv_like(lines: list[str]) -> bool:
    """Comma-separated: the complete lines (the last may be cut) have the same number of
    separators, at least one."""
    complete = lines[:-1] if len(lines) > 1 else lines
    for separator in ",;\t":
        counts = {line.count(separator) for line in complete[:10]}
        if len(counts) == 1 and counts.pop() > 0:
            return True
    return False
