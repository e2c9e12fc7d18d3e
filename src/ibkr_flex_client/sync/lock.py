"""One sync of a database at a time: a lock file beside it.

``PATH.sync-lock`` (named after the database's real path, so a sync through a symbolic link
meets the same lock) is locked (``flock``) while a sync runs; the kernel lets go of it when
the process ends, even by ``kill -9``. It holds the running sync's pid, for the message that
a second sync gets. It is opened without following links and must be a regular file: a
link planted in its place is refused, never written through.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

from ..errors import StoreBusyError, StoreError

__all__ = ["exclusive", "lock_path", "sync_running"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def lock_path(database: Path) -> Path:
    """The lock file of ``database``: beside the file it really is."""
    real = database.resolve()
    return real.with_name(real.name + ".sync-lock")


@contextlib.contextmanager
def exclusive(database: Path) -> Iterator[None]:
    """Hold the database's lock while the block runs, or raise :class:`StoreBusyError` at once
    when another sync holds it."""
    if not database.parent.is_dir():
        raise StoreError(f"cannot create the database {database}: no folder {database.parent}")
    path = lock_path(database)
    fd = _open(path, os.O_RDWR | os.O_CREAT)
    try:
        if not _lock(fd, shared=False):
            holder = _read(fd) or "another process"
            raise StoreBusyError(
                f"{database} is busy: another sync of it is running ({holder}); try again when "
                "it has finished"
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}".encode())
        yield
    finally:
        os.close(fd)


def sync_running(database: Path) -> bool:
    """Whether a sync of ``database`` holds its lock now (read-only: creates nothing)."""
    try:
        fd = _open(lock_path(database), os.O_RDONLY)
    except StoreError:
        return False  # no lock file: no sync has run here
    try:
        return not _lock(fd, shared=True)
    finally:
        os.close(fd)


def _open(path: Path, flags: int) -> int:
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StoreError(f"{path} is a symbolic link: refused (remove it)") from None
        raise StoreError(f"cannot open {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StoreError(f"{path} is not a regular file: refused (remove it)")
    return fd


def _read(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.pread(fd, 64, 0).decode(errors="replace").strip()
    return ""


def _lock(fd: int, *, shared: bool) -> bool:
    """Take the lock without waiting; False when another process holds it."""
    if sys.platform == "win32":  # pragma: no cover - no CI for Windows
        import msvcrt  # noqa: PLC0415

        if shared:
            return True  # no shared locks there: a running sync is not told apart
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl  # noqa: PLC0415

    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
