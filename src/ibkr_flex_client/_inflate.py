"""Decompressing an HTTP body in bounded pieces, however far it inflates.

aiohttp would inflate a compressed body for us, but older versions inflate each network read
whole: a 1 MB gzip bomb becomes a gigabyte in memory before we see a byte of it. So the driver
asks for the raw bytes and inflates them here, at most :data:`PIECE` bytes at a time; whoever
reads the pieces decides when enough is enough and simply stops asking. Pure: no I/O.

We ask only for ``gzip`` and ``deflate`` (``Accept-Encoding``); an answer in another coding
is refused by name rather than misread.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

__all__ = ["ACCEPT_ENCODING", "PIECE", "InflateError", "Inflater"]

ACCEPT_ENCODING = "gzip, deflate"
PIECE = 64 * 1024
# A gzip body may hold several members back to back (RFC 1952); IB sends one. Many thousands
# of tiny members are a way to make a body cost work without producing anything.
MAX_MEMBERS = 64


class InflateError(ValueError):
    """The body's compression is broken, truncated, or of a coding we did not ask for."""


class Inflater:
    """Turns a body's raw bytes, as they arrive, into its decompressed bytes in pieces of at
    most :data:`PIECE` bytes.

    ``content_encoding`` is the ``Content-Encoding`` header (``None`` or ``identity`` for a
    plain body). :meth:`feed` is a generator: nothing is inflated beyond
    the piece being handed over, so memory stays at one piece whatever the ratio.
    """

    __slots__ = ("_coding", "_inflater", "_members")

    def __init__(self, content_encoding: str | None) -> None:
        coding = (content_encoding or "identity").strip().lower()
        if coding not in ("identity", "gzip", "x-gzip", "deflate"):
            # The header as sent (the caller redacts and cuts it): lower-cased or cut first,
            # an echoed token would no longer be recognised.
            raise InflateError(
                f"a body in content coding {content_encoding!r}, which was not asked for"
            )
        self._coding = coding
        self._inflater: zlib._Decompress | None = None
        self._members = 0

    def _member(self, data: bytes) -> zlib._Decompress | None:
        """The decompressor for ``data``: the current one, or a new one once a gzip member
        has ended (None when what follows the last member is only NUL padding)."""
        if self._inflater is not None and not self._inflater.eof:
            return self._inflater
        if self._inflater is not None:
            if not data.strip(b"\0"):
                return None
            if self._coding == "deflate":
                raise InflateError("bytes after the end of a deflate body")
        self._members += 1
        if self._members > MAX_MEMBERS:
            raise InflateError(f"a gzip body of more than {MAX_MEMBERS} members")
        if self._coding == "deflate":
            # RFC 9110 "deflate" is zlib-wrapped, but some servers send raw deflate: a zlib
            # stream starts with a header whose first byte says method 8 and which is a
            # multiple of 31 as a 16-bit number (RFC 1950).
            wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        else:
            self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return self._inflater

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decompressed bytes that ``data`` (the next raw bytes) makes, piece by piece."""
        if self._coding == "identity":
            for start in range(0, len(data), PIECE):
                yield data[start : start + PIECE]
            return
        while data:
            inflater = self._member(data)
            if inflater is None:
                return
            yield from self._drain(inflater, data)
            data = inflater.unused_data if inflater.eof else b""

    def _drain(self, inflater: zlib._Decompress, data: bytes) -> Iterator[bytes]:
        # A full piece may leave output inside zlib even with no input left: ask again
        # until a piece comes back short.
        while True:
            try:
                piece = inflater.decompress(data, PIECE)
            except zlib.error as exc:
                raise InflateError(f"a {self._coding} body that does not inflate ({exc})") from None
            if piece:
                yield piece
            data = inflater.unconsumed_tail
            if inflater.eof or (not data and len(piece) < PIECE):
                return

    def finish(self) -> None:
        """Call once the body has ended: raises :class:`InflateError` if the compressed
        stream was cut short (an empty body is an empty body, in any coding)."""
        if self._inflater is not None and not self._inflater.eof:
            raise InflateError(f"a {self._coding} body cut short")
