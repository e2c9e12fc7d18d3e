"""The one place XML is parsed: refuses DTDs before expat sees the document.

Flex statements never carry a document type declaration, so one is hostile or broken: a DTD is
where entity declarations (billion laughs, external entities) live. Refusing it outright means
nothing is ever expanded, whatever the expat version underneath. The check reads only the prolog
(what stands before the root element), so it costs nothing on a 50 MB statement.
"""

from __future__ import annotations

import codecs
import re
import xml.etree.ElementTree as ET

__all__ = ["XmlRejectedError", "check_prolog", "parse_xml", "prolog_read", "root_name"]

# Byte-order marks of the wide encodings; UTF-8 (with or without BOM) and the one-byte
# encodings IB uses (ISO-8859-1) can be scanned as bytes.
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class XmlRejectedError(ValueError):
    """The document is not well-formed XML, or carries a DTD. The text says which."""


def _as_text(data: bytes | str, limit: int | None) -> str:
    """The document's first ``limit`` bytes (all of it for ``None``) as text, in any encoding."""
    head = data[:limit] if limit is not None else data
    if isinstance(head, str):
        return head
    for bom, codec in _WIDE_BOMS:
        if head.startswith(bom):
            return head.decode(codec, errors="replace")
    return head.decode("latin-1")


def _scan_prolog(text: str) -> tuple[str, int]:
    """Walk the prolog: ``("dtd", i)``, ``("root", i)`` where the root starts, or
    ``("open", -1)`` if ``text`` ends before either."""
    pos = 0
    while True:
        start = text.find("<", pos)
        if start < 0:
            return "open", -1
        if text.startswith("<?", start):
            end, width = text.find("?>", start), 2
        elif text.startswith("<!--", start):
            end, width = text.find("-->", start), 3
        elif text.startswith("<!", start):
            return "dtd", start  # "<!DOCTYPE", with any entity declarations inside it
        else:
            return "root", start
        if end < 0:
            return "open", -1
        pos = end + width


def check_prolog(data: bytes | str) -> None:
    """Raise :class:`XmlRejectedError` if the prolog holds a DTD (``<!DOCTYPE``, ``<!ENTITY``).

    Walks the declaration, processing instructions and comments up to the root element. The
    first 4 KiB nearly always hold the whole prolog; a longer one is scanned in full.
    """
    for limit in (4096, None):
        verdict, _ = _scan_prolog(_as_text(data, limit))
        if verdict == "dtd":
            raise XmlRejectedError("a document type declaration (DTD) is not allowed")
        if verdict == "root" or limit is None or len(data) <= limit:
            return


def prolog_read(data: bytes) -> bool:
    """True once ``data`` (a document's start) reaches the root element or a DTD."""
    return _scan_prolog(_as_text(data, None))[0] != "open"


_NAME_END = re.compile(r"[\s/>]")


def root_name(head: bytes) -> str | None:
    """The root element's name from the start of a document, if the start holds it."""
    text = _as_text(head, 4096)
    verdict, start = _scan_prolog(text)
    if verdict != "root":
        return None
    end = _NAME_END.search(text, start + 1)
    return text[start + 1 : end.start()] if end else None


def parse_xml(data: bytes | str) -> ET.Element:
    """Parse a whole document after :func:`check_prolog`; errors become :class:`XmlRejectedError`.

    Bytes go to expat undecoded so the document's own encoding declaration is honoured (IB
    serves ISO-8859-1 headers over documents that may declare something else).
    """
    if not data:
        raise XmlRejectedError("the document is empty")
    check_prolog(data)
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        reason = str(exc)
    # Raised outside the except block, so no parser exception rides along as __context__.
    raise XmlRejectedError(f"not well-formed XML ({reason})")
