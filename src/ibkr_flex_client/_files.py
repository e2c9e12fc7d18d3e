"""Writing files atomically: a temporary file beside the target, renamed over it when whole."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import SaveError

__all__ = ["atomic_output", "discard", "new_temp", "replace"]


def new_temp(target: Path) -> Path:
    """An empty file beside ``target`` (same file system: the rename is atomic), readable by
    its owner only; :class:`SaveError` if the directory does not take it, or ``target`` is a
    directory itself."""
    if target.is_dir():
        raise SaveError(f"cannot write {str(target)!r}: it is a directory")
    try:
        handle, name = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".part"
        )
    except OSError as exc:
        reason = f"{exc.strerror or exc} in {str(target.parent)!r}"
    else:
        os.close(handle)
        return Path(name)
    raise SaveError(f"cannot write {str(target)!r}: {reason}")


def replace(temp: Path, target: Path) -> None:
    """Rename ``temp`` over ``target`` in one step."""
    try:
        temp.replace(target)
    except OSError as exc:
        reason = f"{exc.strerror or exc} renaming to {str(target)!r}"
    else:
        return
    raise SaveError(f"cannot write {str(target)!r}: {reason}")


def discard(path: Path) -> None:
    """Remove ``path`` if it is there."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output(target: Path) -> Iterator[IO[bytes]]:
    """A binary file that appears at ``target`` only if the block completes: flushed to disk
    and renamed over it. On any error, ``target`` is as it was and no temporary file stays."""
    temp = new_temp(target)
    try:
        with temp.open("wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        replace(temp, target)
    finally:
        discard(temp)
