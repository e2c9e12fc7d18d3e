"""Reading one answer's body as it arrives, in bounded memory, into what the flow expects.

Every answer is inflated here in pieces (:mod:`._inflate`), never by the HTTP layer, and fed
to the XML parser piece by piece, so the size of what we hold depends on what the answer
*is*, never on how far it inflates:

* Until the root element shows, at most :data:`MAX_PROLOG` bytes.
* An envelope (SendRequest's answer, GetStatement's 1019 and other codes, an error page): at
  most :data:`MAX_ENVELOPE` bytes. IB's envelopes are a few hundred bytes; a larger answer
  that is not a statement is not IB's, and reading stops there.
* A statement in ``fetch()``: parsed as it arrives, held up to ``max_statement_bytes``.
* A statement in ``download()``: written to a temporary file beside the target (created only
  now, when the statement starts) and checked as it arrives, in flat memory.

Text that is not XML at all (an HTML page, garbage) stops the read at once: the flow names
what it was from the bytes read so far. Between pieces the event loop gets a turn, so a long
body never holds it for more than one piece's parsing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

from ._csv import NO_HEADERS, CsvError, headerless_csv, looks_like_csv, parse_csv
from ._files import discard, open_temp
from ._inflate import InflateError, Inflater
from ._sniff import HEAD_BYTES, describe
from ._xml import MAX_PROLOG, XmlFeed, XmlRejectedError
from .errors import SaveError, StatementError, Step
from .protocol import Reply, Saved, Trouble, from_server
from .stream import StatementCheck

__all__ = ["MAX_ENVELOPE", "MAX_GAP", "read_body"]

MAX_ENVELOPE = 1024 * 1024
# IB writes every value of a statement in an attribute of a row, and rows are short: no
# statement has a token (an attribute, a run of text, a comment, a CDATA section) of
# megabytes. An answer that does is refused here, before the parser would hold it whole.
MAX_GAP = 8 * 1024 * 1024
# What a parsed tree costs is about 800 bytes per element (the element, its attribute
# dict) and 80 per further attribute, whatever their size in the document. Weighing an
# element as 10 units and an attribute as 1, IB's statements spend 13 to 15 bytes per unit
# (rows of dozens of attributes with real values; the simulator's small rows 8); a body
# spending fewer than 6 would make a tree of over 13 times its size (a real statement's is
# about 6) and is refused before it does.
ELEMENT_UNITS = 10
BYTES_PER_UNIT = 6
SPARE_UNITS = 65536
_STATEMENT_ROOT = "FlexQueryResponse"


class _Saving:
    """The statement's way to disk: a temporary file and the streaming check."""

    __slots__ = ("check", "file", "path", "size")

    def __init__(self, target: Path) -> None:
        self.path, self.file = open_temp(target)
        self.check = StatementCheck()
        self.size = 0

    def write(self, piece: bytes) -> None:
        try:
            self.file.write(piece)
        except OSError as exc:
            raise _save_error(exc, self.path) from None
        self.size += len(piece)
        self.check.feed(piece)

    async def finish(self) -> None:
        try:
            self.file.flush()
            await asyncio.to_thread(os.fsync, self.file.fileno())
        except OSError as exc:
            raise _save_error(exc, self.path) from None
        finally:
            self.file.close()
        self.check.close()

    def abandon(self) -> None:
        self.file.close()
        discard(self.path)


def _save_error(exc: OSError, path: Path) -> SaveError:
    return SaveError(f"cannot save the statement: {exc.strerror or exc} writing {str(path)!r}")


async def read_body(
    chunks: AsyncIterator[bytes],
    *,
    status: int,
    step: Step,
    content_encoding: str | None,
    save_as: Path | None,
    max_statement_bytes: int | None,
    secret: str,
) -> Reply | Saved | Trouble:
    """Read ``chunks`` (the raw body) into a :class:`Reply` (with the document parsed when it
    parsed), a :class:`Saved` statement (``save_as`` set, GetStatement only: the temporary
    file it went to, which the caller renames), or :class:`Trouble`.

    Raises :class:`StatementError` for a statement over ``max_statement_bytes`` (trying again
    would not help), :class:`SaveError` when the disk refuses the file.
    """
    try:
        inflater = Inflater(content_encoding)
    except InflateError as exc:
        return Trouble(from_server(str(exc), secret), status)
    reader = _Reader(status, step, save_as, max_statement_bytes)
    try:
        async for raw in chunks:
            for piece in inflater.feed(raw):
                if not reader.take(piece):
                    return reader.stopped(secret)
                await asyncio.sleep(0)  # a long body never holds the loop
        inflater.finish()
        return await reader.finish(secret)
    except InflateError as exc:
        return Trouble(from_server(str(exc), secret), status)
    except StatementError as exc:
        if reader.fatal:
            raise
        return Trouble(f"a statement that is {from_server(str(exc), secret)}", status)
    finally:
        reader.abandon()


class _Reader:
    """Where each piece goes, as the body reveals what it is."""

    __slots__ = (
        "body",
        "fatal",
        "feed",
        "form",
        "limit",
        "max_statement",
        "parsed",
        "problem",
        "root",
        "save_as",
        "saving",
        "status",
        "step",
        "units",
    )

    def __init__(
        self, status: int, step: Step, save_as: Path | None, max_statement: int | None
    ) -> None:
        self.status = status
        self.step = step
        self.save_as = save_as if step is Step.GET_STATEMENT else None
        self.max_statement = max_statement
        self.body = bytearray()
        self.feed: XmlFeed | None = XmlFeed()
        self.root: str | None = None
        self.limit: int | None = MAX_PROLOG
        self.saving: _Saving | None = None
        self.problem = ""
        self.fatal = False  # a refusal that trying again would not change
        self.units = 0  # "<" and "=" in the statement fetch() is parsing
        self.parsed = 0  # bytes of it
        self.form = "xml"  # or "csv" (a CSV query's statement), "undecided" (not XML: which?)

    def take(self, piece: bytes) -> bool:
        """Handle the next piece; False once reading should stop."""
        if self.saving is not None:
            self.saving.write(piece)
            self._mind_the_gap(self.saving.check.stalled)
            return True
        if self.root is not None and self._is_statement():
            self._mind_the_density(piece)
        self.body += piece
        if self.form == "undecided":
            return self._other_form(final=False)
        if self.feed is not None:
            try:
                self.feed.feed(piece)
            except XmlRejectedError as exc:
                # Not XML (or hostile XML): what was read is enough to say what it is, but
                # for a statement in CSV form, which reads on.
                self.feed, self.problem = None, str(exc)
                markup = bytes(self.body[:64]).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")
                if not markup and self.step is Step.GET_STATEMENT and 200 <= self.status < 300:
                    self.form = "undecided"
                    return self._other_form(final=False)
                return False
            if self.root is None and self.feed.root_tag is not None:
                self._root_found(self.feed.root_tag)
            elif self._is_statement():
                self._mind_the_gap(self.feed.stalled)
        return self.limit is None or len(self.body) <= self.limit

    def _other_form(self, *, final: bool) -> bool:
        """GetStatement answered with something that is not XML: a statement in CSV (or
        text) form reads on as one; an HTML page goes back to the flow (IB's maintenance
        page: try again); anything else is no statement, and trying again would not change
        that. False once reading should stop."""
        head = bytes(self.body[:HEAD_BYTES])
        if not final and b"\n" not in head and len(head) < 512:
            return True  # its first line says
        if looks_like_csv(head):
            self.form, self.problem, self.root = "csv", "", _STATEMENT_ROOT
            if self.save_as is not None:
                self.saving = _Saving(self.save_as)
                body, self.body = bytes(self.body), bytearray()
                self.saving.write(body)
            else:
                self.limit = self.max_statement
            return self.limit is None or len(self.body) <= self.limit
        self.form = "other"
        kind = describe(head)
        if kind is None or "HTML" in kind or not head.strip():
            return False  # broken XML, an HTML page, nothing: the flow says which
        self.fatal = True
        why = NO_HEADERS if headerless_csv(head) else "neither XML nor IB's CSV or text output"
        raise StatementError(
            f"not a Flex statement: GetStatement answered with what looks like {kind}: {why}"
        )

    def _root_found(self, root: str) -> None:
        self.root = root
        if not self._is_statement():
            self.limit = MAX_ENVELOPE
        elif self.save_as is not None:
            self.saving = _Saving(self.save_as)
            head, self.body, self.feed = bytes(self.body), bytearray(), None
            self.saving.write(head)
        else:
            self.limit = self.max_statement

    def _mind_the_gap(self, stalled: int) -> None:
        if stalled > MAX_GAP:
            self.fatal = True
            raise StatementError(
                f"not a Flex statement: more than {MAX_GAP:,} bytes in one attribute, text, "
                "comment or other token (IB writes every value in an attribute of a short row)"
            )

    def _mind_the_density(self, piece: bytes) -> None:
        # Counting "<" (elements) and "=" (attributes) costs nothing next to parsing, and
        # keeps a hostile body of tiny elements from growing a tree out of proportion. In CSV
        # a record (a line) is an element, and each delimiter an attribute.
        if self.form == "csv":
            fields = piece.count(b",") + piece.count(b"|") + piece.count(b"\t")
            self.units += ELEMENT_UNITS * piece.count(b"\n") + fields
        else:
            self.units += ELEMENT_UNITS * piece.count(b"<") + piece.count(b"=")
        self.parsed += len(piece)
        if self.units > self.parsed // BYTES_PER_UNIT + SPARE_UNITS:
            self.fatal = True
            raise StatementError(
                "not a Flex statement: too many elements and attributes for its size (its "
                "tree would be over 13 times as large; a real statement's is about 6 times); "
                "refused before the tree fills memory"
            )

    def _is_statement(self) -> bool:
        # An error status with a statement-looking body is an error all the same.
        return (
            self.root == _STATEMENT_ROOT
            and self.step is Step.GET_STATEMENT
            and 200 <= self.status < 300
        )

    def stopped(self, secret: str) -> Reply | Trouble:
        """The answer when reading stopped early."""
        if self.problem:
            return Reply(self.status, bytes(self.body))  # the flow says what it looks like
        if self.root is None:
            return Trouble(
                f"no root element in the first {MAX_PROLOG:,} bytes of the answer", self.status
            )
        if self._is_statement():
            self.fatal = True
            raise StatementError(
                f"the statement is larger than max_statement_bytes ({self.limit:,} bytes): "
                "raise it, or use download(), which streams to disk in flat memory"
            )
        tag = from_server(self.root, secret, limit=40)
        return Trouble(
            f"an answer over {MAX_ENVELOPE:,} bytes that is not a statement (<{tag}>)",
            self.status,
        )

    async def finish(self, secret: str) -> Reply | Saved | Trouble:
        if self.saving is not None:
            saving, self.saving = self.saving, None
            try:
                await saving.finish()
            except BaseException:
                discard(saving.path)
                raise
            return Saved(self.status, str(saving.path), saving.size)
        body = bytes(self.body)
        if self.form == "undecided":
            self._other_form(final=True)
        if self.form == "csv":
            return self._csv_statement(body, secret)
        if self.feed is None or not body.strip():
            return Reply(self.status, body)
        try:
            root = self.feed.close()
        except XmlRejectedError:
            return Reply(self.status, body)  # the flow parses it again and says why
        return Reply(self.status, body, root)

    def _csv_statement(self, body: bytes, secret: str) -> Reply | Trouble:
        try:
            root = parse_csv(body)
        except CsvError as exc:
            reason = from_server(str(exc), secret)  # it may quote the server's text
            if exc.final:  # the same bytes again would give the same
                self.fatal = True
                raise StatementError(
                    f"not a Flex statement in CSV form we can read: {reason}"
                ) from None
            return Trouble(f"a statement in CSV form that is not complete: {reason}", self.status)
        return Reply(self.status, body, root)

    def abandon(self) -> None:
        if self.saving is not None:
            self.saving.abandon()
            self.saving = None
