"""Helpers shared by test modules."""

from __future__ import annotations

from collections.abc import Iterator


def chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and every exception behind it (``__cause__``, ``__context__``, groups)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += [current.__cause__, current.__context__]
        stack += list(getattr(current, "exceptions", ()))
