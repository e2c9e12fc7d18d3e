"""The one place XML is parsed: expat itself refuses DTDs and entities, so nothing is expanded.

Flex statements never carry a document type declaration, so one is hostile or broken: a DTD is
where entity declarations (billion laughs, external entities) and attribute defaults live. The
refusal is expat's own, not a scan of the text: a small expat parser reads the document's start
with handlers that raise on a DOCTYPE, an entity declaration or an external entity reference,
and stops at the root element's start tag. It decides the encoding exactly as the tree parser
will (UTF-16 without a BOM included), so no disguise of the prolog gets past it; and as a DTD
can only precede the root, no entity can be declared after it, so an entity reference there is
expat's "undefined entity" error. Only then do the same bytes go to the C ElementTree parser,
which builds the tree at full speed. The root's start tag must end within :data:`MAX_PROLOG`.

:func:`parse_xml` takes a whole document. Two push parsers take one as it arrives:
:class:`XmlFeed` builds the whole tree (a statement parsed while it downloads), and
:class:`XmlStream` hands out start and end events for a reader that prunes the tree. Both feed
expat so that a huge token costs linear time: expat 2.5 (bundled with Python 3.10-3.12)
re-scans an unfinished token from its start on every feed, so one 100 MB attribute fed 64 KiB
at a time would be 1,600 scans of up to 100 MB. While feeds bring no event, what comes next is
held until it matches what was fed since the last event, so the feeds double and the total work
stays linear. (expat 2.6 defers such re-scans itself; the two rules agree.)

:class:`XmlStream` also keeps memory bounded against documents no Flex statement resembles (a
statement is about 6 elements deep; its rows have fewer than 300 attributes):

* nesting deeper than :data:`MAX_DEPTH` is refused;
* so is a start tag with more than :data:`MAX_ATTRIBUTES` attributes, before expat builds them
  (it builds a tag's attributes all at once). What is counted, as the bytes arrive, is ``=``
  from one ``<`` to the next, so an ``=`` inside a value (or in text) counts too;
* what was held behind a huge token goes to expat at most :data:`_STALL_MARKUP` ``<`` at a
  time, so it cannot fill the tree before the limits above are looked at; if that many ``<``
  bring no event (they sit in one huge comment, processing instruction or CDATA section), the
  document is refused.

Those scans look at bytes, where in UTF-16 a ``<`` may be half of another character, so
:class:`XmlStream` turns a UTF-16 document into UTF-8 as it arrives and has both parsers read
that (as ``str`` input always is).

Every failure is an :class:`XmlRejectedError` (a ``ValueError``), whatever raised it
underneath: expat, an unknown or multi-byte declared encoding, text that will not encode.
"""

from __future__ import annotations

import codecs
import collections
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Literal, NoReturn, cast
from xml.parsers import expat

__all__ = [
    "CHUNK",
    "MAX_ATTRIBUTES",
    "MAX_DEPTH",
    "MAX_PROLOG",
    "XmlFeed",
    "XmlLimitError",
    "XmlRejectedError",
    "XmlStream",
    "parse_xml",
]

CHUNK = 64 * 1024
# The root's start tag must end within this many bytes; a real prolog is one line.
MAX_PROLOG = 1024 * 1024
MAX_DEPTH = 256
MAX_ATTRIBUTES = 10_000
_STALL_MARKUP = 4096
# What the prolog parser may spend re-scanning to name the root early (a few milliseconds).
_PROLOG_WORK = 8 * MAX_PROLOG

Event = tuple[str, ET.Element]
_EventName = Literal["start", "end", "comment", "pi"]


class XmlRejectedError(ValueError):
    """The document is not well-formed XML, carries a DTD, or cannot be read. The text says
    which."""


class XmlLimitError(XmlRejectedError):
    """The document passes a limit no Flex statement comes near. The text names the limit."""


# What expat, the codecs and ElementTree raise for a document they cannot read: ParseError is a
# SyntaxError; an unknown declared encoding a LookupError; a multi-byte one, or text that will
# not encode, a ValueError; more than 2 GiB in one piece, an OverflowError.
_FAILURES = (SyntaxError, expat.ExpatError, LookupError, ValueError, OverflowError)
_NO_ROOT = "no root element in the first MiB"


def _reason(exc: Exception) -> str:
    if isinstance(exc, (SyntaxError, expat.ExpatError)):
        return f"not well-formed XML ({exc})"
    if isinstance(exc, LookupError):
        return f"unsupported encoding ({exc})"
    return f"unreadable XML ({type(exc).__name__}: {exc})"


def _refuse(what: str) -> Callable[..., NoReturn]:
    def handler(*_: object) -> NoReturn:
        raise XmlRejectedError(f"{what} is not allowed")

    return handler


class _RootReached(Exception):  # noqa: N818 - a signal to stop, not an error
    """Raised from expat's start-element handler: the prolog is over."""


# Flex statements use no XML namespaces, and ElementTree keeps a copy of every distinct
# "{uri}name" for the parser's life: one long namespace URI and many short names make a
# small body cost gigabytes, and the URI is copied for every element. So a namespace
# declaration ("xmlns") is refused, wherever it stands. It is looked for in the document's
# bytes in every encoding expat reads without a conversion table (UTF-8 and one-byte
# ASCII-compatible codings, UTF-16, UTF-32); a declared encoding in which "xmlns" is none of
# these bytes (EBCDIC, say) is refused outright.
_XMLNS = "xmlns"
_XMLNS_FORMS = tuple(
    {
        _XMLNS.encode(codec)
        for codec in ("ascii", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
    }
)
_XMLNS_TAIL = max(len(form) for form in _XMLNS_FORMS) - 1
_NAMESPACE = "a namespace declaration (xmlns), which no Flex statement has"


def _namespace_in(data: bytes | memoryview) -> bool:
    return any(form in data for form in _XMLNS_FORMS)


def _check_encoding(_version: str | None, encoding: str | None, _standalone: int) -> None:
    """expat's XmlDeclHandler: refuse a declared encoding whose markup is not ASCII bytes."""
    if not encoding or encoding.lower().replace("_", "-").startswith(("utf-16", "utf-32")):
        return
    try:
        markup = f'<{_XMLNS}="'
        ascii_markup = markup.encode(encoding) == markup.encode("ascii")
    except (LookupError, UnicodeError, ValueError):
        return  # expat itself refuses an encoding it does not know
    if not ascii_markup:
        raise XmlRejectedError(f"a document in {encoding[:40]!r}, whose markup is not ASCII")


class _Prolog:
    """expat over a document's start, up to the root's start tag, refusing a DTD on the way."""

    __slots__ = ("_parser", "fed", "root_at", "root_tag", "work")

    def __init__(self, encoding: str | None = None) -> None:
        # ElementTree's own settings ("}" joins a namespace to a name): both read alike.
        parser = expat.ParserCreate(encoding, "}")
        parser.StartDoctypeDeclHandler = _refuse("a document type declaration (DTD)")
        parser.EntityDeclHandler = _refuse("an entity declaration")
        parser.UnparsedEntityDeclHandler = _refuse("an entity declaration")
        parser.ExternalEntityRefHandler = _refuse("an external entity reference")
        parser.StartNamespaceDeclHandler = _refuse(_NAMESPACE)
        parser.XmlDeclHandler = _check_encoding
        parser.StartElementHandler = self._root_started
        # expat >= 2.6 may put off parsing a cut-off token; `pending` assumes it does not.
        switch: Callable[[bool], None] | None = getattr(parser, "SetReparseDeferralEnabled", None)
        if switch is not None:
            switch(False)
        self._parser = parser
        self.fed = 0
        self.work = 0  # bytes expat has scanned, re-scans included
        self.root_tag: str | None = None
        self.root_at = 0  # the byte offset of the root's "<"

    def _root_started(self, name: str, _: object) -> NoReturn:
        self.root_tag = "{" + name if "}" in name else name  # as ElementTree writes it
        self.root_at = self._parser.CurrentByteIndex
        raise _RootReached

    @property
    def pending(self) -> int:
        """Bytes fed that expat has kept for later: a token the data so far cuts off."""
        return self.fed - max(self._parser.CurrentByteIndex, 0)

    def parse(self, data: bytes | str, final: bool = False) -> bool:
        """Parse on; True once the root's start tag has been read."""
        self.work += self.pending + len(data)
        self.fed += len(data)
        try:
            self._parser.Parse(data, final)
        except _RootReached:
            return True
        except XmlRejectedError:
            raise
        except _FAILURES as exc:
            reason = _reason(exc)
        else:
            return False
        raise XmlRejectedError(reason)


def parse_xml(data: bytes | str) -> ET.Element:
    """Parse a whole document, refusing a DTD; every failure is :class:`XmlRejectedError`.

    Bytes go to expat undecoded so the document's own encoding declaration is honoured (IB
    serves ISO-8859-1 headers over documents that may declare something else).
    """
    if not _Prolog().parse(data[:MAX_PROLOG]):
        if len(data) > MAX_PROLOG:
            raise XmlLimitError(_NO_ROOT)
        if not data.strip():
            raise XmlRejectedError("the document is empty")
    if (_XMLNS in data) if isinstance(data, str) else _namespace_in(data):
        raise XmlRejectedError(_NAMESPACE)
    try:
        return ET.fromstring(data)
    except _FAILURES as exc:
        reason = _reason(exc)
    # Raised outside the except block, so no parser exception rides along as __context__.
    raise XmlRejectedError(reason)


class _Push:
    """What the push parsers share: the prolog check, then ElementTree's parser, fed so that a
    token expat cannot finish yet is not re-scanned for every piece."""

    __slots__ = (
        "_blank",
        "_closed",
        "_error",
        "_flush",
        "_head",
        "_parser",
        "_prolog",
        "_queue",
        "_queued",
        "_root_tag",
        "_stall",
        "_tail",
        "_text_prolog",
        "_unseen",
        "_unseen_size",
    )

    _EVENTS: tuple[_EventName, ...] = ("start",)
    # Bytes per feed while events flow; a stalled token is fed as much again as is pending.
    _STEP = 1 << 62

    def __init__(self) -> None:
        self._prolog: _Prolog | None = _Prolog()
        self._head: list[bytes] = []  # all bytes before the root shows: the tree parser's too
        self._unseen: list[bytes] = []  # what the prolog parser has not been given yet
        self._unseen_size = 0
        self._blank = True
        self._root_tag: str | None = None
        self._parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=self._EVENTS)
        # Python builds with expat >= 2.6: parse what feed() may have put off.
        self._flush: Callable[[], None] | None = getattr(self._parser, "flush", None)
        self._queue: collections.deque[bytes | memoryview] = collections.deque()
        self._queued = 0
        self._stall = 0  # bytes fed since the tree parser last reported an event
        self._error: XmlRejectedError | None = None
        self._closed = False
        self._text_prolog = False  # the bytes were made UTF-8: tell the tree parser so
        self._tail = b""  # the last bytes seen, for an "xmlns" cut in two by pieces

    @property
    def root_tag(self) -> str | None:
        """The root element's name (``{namespace}name`` as ElementTree writes it) once its start
        tag has been read; None before."""
        return self._root_tag

    def _check_open(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise RuntimeError("the document was closed")

    @property
    def stalled(self) -> int:
        """Bytes taken since the tree parser last reported an event (fed, or held back while
        one token is still open): what one comment, attribute or run of text costs so far."""
        return self._stall + self._queued if self._stall else 0

    def _take(self, piece: bytes) -> None:
        if _namespace_in(self._tail + piece[:_XMLNS_TAIL]) or _namespace_in(piece):
            raise XmlRejectedError(_NAMESPACE)
        self._tail = (self._tail + piece)[-_XMLNS_TAIL:]
        if self._prolog is None:
            self._queue.append(piece)
            self._queued += len(piece)
        elif piece:
            self._head.append(piece)
            self._unseen.append(piece)
            self._unseen_size += len(piece)
            if self._blank and not piece.isspace():
                self._blank = False
            self._read_prolog(self._prolog, final=False, ends=b">" in piece)

    def _read_prolog(self, prolog: _Prolog, *, final: bool, ends: bool = False) -> None:
        """Parse on when it can pay: the caller wants the root named as soon as it shows, but
        expat 2.5 re-scans the pending token on every parse. Every token of a prolog ends with
        ">": a piece that holds one is parsed at once, while the re-scans stay within a
        budget; otherwise (and after) the pieces are held until they match what is pending."""
        room = MAX_PROLOG - prolog.fed
        due = min(prolog.pending, room)
        early = ends and prolog.work + due <= _PROLOG_WORK
        if not final and not early and self._unseen_size < due:
            return
        data = b"".join(self._unseen)[:room]
        self._unseen, self._unseen_size = [], 0
        if prolog.parse(data, final):
            self._root_tag = prolog.root_tag
            self._start_tree(prolog.root_at)
        elif prolog.fed >= MAX_PROLOG:
            raise XmlLimitError(_NO_ROOT)

    def _end_prolog(self) -> None:
        if self._prolog is None:
            return
        if self._blank:
            raise XmlRejectedError("the document is empty")
        self._read_prolog(self._prolog, final=True)  # expat raises for a document without a root

    def _start_tree(self, root_at: int) -> None:
        head = b"".join(self._head)
        self._prolog, self._head = None, []
        # The prolog in one piece: it holds no element to flood the tree, and cut up it could
        # look like a stall. It ends where the root starts, so nothing is left pending. Text
        # makes ElementTree read UTF-8 whatever the declaration says, as str input always does.
        prolog = head[:root_at]
        self._feed_parser(prolog.decode() if self._text_prolog else prolog)
        self._stall = 0
        rest = memoryview(head)[root_at:]
        self._queue.append(rest)
        self._queued += len(rest)

    def _next_portion(self, final: bool) -> bytes | memoryview | None:
        """What to feed next, if anything: while events flow, up to _STEP bytes; while they
        do not, nothing until as much again as is pending has come (or the document ends)."""
        if not self._queue:
            return None
        if not self._stall:
            return self._dequeue(self._STEP)
        if self._queued < self._stall and not final:
            return None
        return self._dequeue(self._stall)

    def _dequeue(self, size: int) -> bytes | memoryview:
        """The first ``size`` bytes of the queue (all of it if it is shorter)."""
        queue, parts, got = self._queue, [], 0
        while queue and got < size:
            item = queue.popleft()
            if got + len(item) > size:
                view = memoryview(item)
                queue.appendleft(view[size - got :])
                item = view[: size - got]
            parts.append(item)
            got += len(item)
        self._queued -= got
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _requeue(self, rest: bytes | memoryview) -> None:
        self._queue.appendleft(rest)
        self._queued += len(rest)

    def _feed_parser(self, data: bytes | memoryview | str) -> None:
        stalled = self._stall
        try:
            self._parser.feed(data)
            if stalled and self._flush is not None:
                self._flush()
        except _FAILURES as exc:
            reason = _reason(exc)
        else:
            self._stall += len(data)
            return
        raise XmlRejectedError(reason)

    def _close_parser(self) -> None:
        try:
            self._parser.close()
        except _FAILURES as exc:
            reason = _reason(exc)
        else:
            return
        raise XmlRejectedError(reason)


class XmlFeed(_Push):
    """One document fed in pieces as it arrives, built into a whole tree.

    ``feed(piece)`` parses as far as the pieces so far allow and raises
    :class:`XmlRejectedError` as soon as the document is refused (a DTD or entity, not
    well-formed, an unusable encoding, no root within :data:`MAX_PROLOG`); after that every
    call raises the same error. :attr:`root_tag` names the root once its start tag has been
    read, so a caller can tell what the document is before the rest arrives. ``close()``
    finishes and returns the root element.

    Each feed does work in proportion to its piece, except while one huge token is arriving:
    then pieces are held and handed over in doubling batches (see the module docstring).
    """

    __slots__ = ("_root",)

    def __init__(self) -> None:
        super().__init__()
        self._root: ET.Element | None = None

    def feed(self, data: bytes) -> None:
        """Parse the next piece of the document."""
        self._check_open()
        try:
            self._take(data)
            self._pump(final=False)
        except XmlRejectedError as exc:
            self._error = exc
            raise

    def close(self) -> ET.Element:
        """The document is complete: finish parsing and return its root element."""
        self._check_open()
        self._closed = True
        try:
            self._end_prolog()
            self._pump(final=True)
            self._close_parser()
            self._drain()
        except XmlRejectedError as exc:
            self._error = exc
            raise
        return cast("ET.Element", self._root)  # a document that parsed has a root

    def _pump(self, *, final: bool) -> None:
        while (portion := self._next_portion(final)) is not None:
            self._feed_parser(portion)
            self._drain()

    def _drain(self) -> None:
        events = cast("Iterator[Event]", self._parser.read_events())
        try:
            first = next(events, None)
            if first is not None:
                self._stall = 0
                if self._root is None:
                    self._root = first[1]
                collections.deque(events, maxlen=0)  # the tree is all that is wanted
        except SyntaxError as exc:  # ParseError, queued by XMLPullParser.feed
            reason = _reason(exc)
        else:
            return
        raise XmlRejectedError(reason)


class XmlStream(_Push):
    """One document fed in pieces, handed out as ``("start" | "end", element)`` events for a
    reader that prunes the tree as it goes (see :mod:`.stream`).

    ``feed(piece)`` takes the next piece: the prolog is checked at once (a DTD, an unusable
    encoding, no root within :data:`MAX_PROLOG`), and so is the attribute limit, but the body
    is parsed as :meth:`read_events` is iterated, one portion at a time, so memory stays bounded
    however much was fed. ``close()`` says the document is complete; iterating
    :meth:`read_events` then finishes it. Every failure is an :class:`XmlRejectedError`
    (:class:`XmlLimitError` for a limit), raised where it is found; after one, every call
    raises it again.
    """

    __slots__ = ("_capped", "_decoder", "_depth", "_equals", "_finished", "_lead")

    _EVENTS: tuple[_EventName, ...] = ("start", "end", "comment", "pi")  # PIs, comments: progress
    _STEP = CHUNK

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._equals = 0  # "=" since the last "<"
        self._capped = False
        self._finished = False
        self._lead: bytes | None = b""  # the first bytes, until they say how wide a character is
        self._decoder: codecs.IncrementalDecoder | None = None

    def feed(self, data: bytes) -> None:
        """Take the next piece of the document."""
        self._check_open()
        try:
            for start in range(0, len(data), CHUNK):
                piece = self._narrow(data[start : start + CHUNK] if len(data) > CHUNK else data)
                if piece:
                    self._count_attributes(piece)
                    self._take(piece)
        except XmlRejectedError as exc:
            self._error = exc
            raise

    def _narrow(self, piece: bytes, final: bool = False) -> bytes:
        """``piece`` in an encoding whose markup bytes are ASCII: UTF-16 becomes UTF-8.

        The limits scan bytes for ``<`` and ``=``, which in UTF-16 may be half of another
        character. expat takes a document for UTF-16 from its first two bytes (a BOM, or a
        zero byte); such a document is decoded here and both parsers read it as UTF-8."""
        if self._lead is not None:
            head = self._lead + piece
            if len(head) < 2 and not final:
                self._lead = head
                return b""
            self._lead = None
            if head[:2] == b"\xfe\xff" or head[:1] == b"\0":
                wide: str | None = "utf-16-be"
            elif head[:2] == b"\xff\xfe" or head[1:2] == b"\0":
                wide = "utf-16-le"
            else:
                wide = None
            if wide is not None:
                self._decoder = codecs.getincrementaldecoder(wide)()
                self._prolog, self._text_prolog = _Prolog("utf-8"), True
            piece = head
        if self._decoder is None:
            return piece
        try:
            return self._decoder.decode(piece, final).encode()
        except UnicodeError as exc:
            reason = _reason(exc)
        raise XmlRejectedError(reason)

    def close(self) -> None:
        """The document is complete; :meth:`read_events` now parses it to the end."""
        self._check_open()
        self._closed = True
        try:
            rest = self._narrow(b"", final=True)
            if rest:
                self._count_attributes(rest)
                self._take(rest)
            self._end_prolog()
        except XmlRejectedError as exc:
            self._error = exc
            raise

    def read_events(self) -> Iterator[Event]:
        """Parse what has been fed, yielding each element's start and end as it comes.

        Iterate it to the end (or drop it) before the next feed()."""
        if self._error is not None:
            raise self._error
        # The loop is the hot path of every streaming reader: state lives in locals, saved
        # in `finally` (which also runs when the reader drops the iterator).
        depth, progressed = self._depth, False
        try:
            while True:
                for event in cast("Iterator[Event]", self._parser.read_events()):
                    progressed = True
                    kind = event[0]
                    if kind == "start":
                        depth += 1
                        if depth > MAX_DEPTH:
                            raise XmlLimitError(f"elements nested more than {MAX_DEPTH} deep")
                    elif kind == "end":
                        depth -= 1
                    else:
                        continue  # a comment or PI: progress, nothing to hand out
                    yield event
                if progressed:
                    self._stall, progressed = 0, False
                if not self._advance():
                    break
        except (SyntaxError, XmlRejectedError) as exc:  # SyntaxError: ParseError, as queued
            error = exc if isinstance(exc, XmlRejectedError) else XmlRejectedError(_reason(exc))
            self._error = error
            raise error from None
        finally:
            self._depth = depth
            if progressed:
                self._stall = 0

    def _advance(self) -> bool:
        """Feed the next portion, or finish a closed document; False if there is nothing to do
        until more is fed."""
        if self._capped:
            if self._stall:
                raise XmlLimitError(
                    f"more than {_STALL_MARKUP:,} '<' inside one comment, processing "
                    "instruction or CDATA section"
                )
            self._capped = False
        portion = self._next_portion(self._closed)
        if portion is not None:
            self._feed_parser(self._cap(portion))
        elif self._closed and not self._finished and self._prolog is None:
            self._finished = True
            self._close_parser()  # its last events come round the loop
        else:
            return False
        return True

    def _cap(self, portion: bytes | memoryview) -> bytes | memoryview:
        """After a stall, what follows the stalled token comes in the same portion: let at most
        _STALL_MARKUP tags of it through before the depth limit is looked at again."""
        if not self._stall:
            return portion
        data = bytes(portion)
        if data.count(b"<") <= _STALL_MARKUP:
            return data
        at = -1
        for _ in range(_STALL_MARKUP + 1):
            at = data.find(b"<", at + 1)
        self._capped = True
        self._requeue(memoryview(data)[at:])
        return data[:at]

    def _count_attributes(self, piece: bytes) -> None:
        """Refuse a tag with too many attributes before expat builds them all at once."""
        carried = self._equals
        total = carried + piece.count(b"=")
        if total > MAX_ATTRIBUTES:  # rare: count from each "<" to the next
            parts = piece.split(b"<")
            counts = [carried + parts[0].count(b"=")] + [p.count(b"=") for p in parts[1:]]
            if max(counts) > MAX_ATTRIBUTES:
                raise XmlLimitError(f"an element with more than {MAX_ATTRIBUTES:,} attributes")
        last = piece.rfind(b"<")
        self._equals = total if last < 0 else piece.count(b"=", last + 1)
