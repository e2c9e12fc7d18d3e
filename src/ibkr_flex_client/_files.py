"""Writing files atomically: a temporary file beside the target, renamed over it when whole.

A download that dies without running its cleanup (``kill -9``, a power cut) leaves its
temporary file behind. So temporary files are named in a form of our own,
``.NAME.WRITER-PID-RANDOM.ibkr-part``, that says which process wrote them, and each new one
first clears the directory of such leftovers (see :func:`new_temp`). Files of any other naming
are never touched.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import secrets
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import SaveError

__all__ = [
    "atomic_output",
    "check_target",
    "discard",
    "new_temp",
    "open_temp",
    "remove_stale_parts",
    "replace",
]

SUFFIX = ".ibkr-part"
# How much of the target's name the temporary name keeps, in bytes: enough to tell which file
# a part is for, short enough that the whole temporary name stays far below NAME_MAX (255
# bytes on common file systems, 143 under eCryptfs) whatever the target's name.
PREFIX_BYTES = 64
# A part untouched this long is stale whoever wrote it: a live download writes as the body
# arrives, and an attempt is abandoned after at most 10 x its timeout.
STALE_AFTER = 24 * 60 * 60.0
# ".{prefix}.{writer}-{pid}-{random}.ibkr-part"; parsed from the end, as the prefix is free.
_PART = re.compile(
    r"\..*\.(?P<writer>[0-9a-f]{8})-(?P<pid>[1-9][0-9]{0,9})-[0-9a-f]{8}" + re.escape(SUFFIX),
    re.DOTALL,
)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


def check_target(target: Path) -> None:
    """Raise :class:`SaveError` unless a file could be written at ``target``: called before
    any request is spent, so a typo in a path costs no request against the token's limits.

    Checks that the name fits the file system, that its directory exists, is a directory and
    is writable, and that ``target`` is not a directory. Creates nothing.
    """
    try:
        reason = _unwritable(target)
    except OSError as exc:
        reason = exc.strerror or str(exc)
    if reason:
        raise SaveError(f"cannot write {str(target)!r}: {reason}")


def _unwritable(target: Path) -> str | None:
    """Why ``target`` cannot be written, or None."""
    parent = target.parent
    if len(os.fsencode(target.name)) > _name_max(parent):
        return "file name too long"
    try:
        mode = parent.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return f"no such directory {str(parent)!r}"
    if not stat.S_ISDIR(mode):
        return f"{str(parent)!r} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"permission denied in {str(parent)!r}"
    try:
        if stat.S_ISDIR(target.stat().st_mode):
            return "it is a directory"
    except FileNotFoundError:
        pass
    return None


def open_temp(target: Path) -> tuple[Path, IO[bytes]]:
    """A new, empty file beside ``target`` (same file system: the rename is atomic), readable
    by its owner only, open for writing; :class:`SaveError` if the directory does not take
    it, or :func:`check_target` refuses ``target``.

    The file is written through the descriptor that created it (``O_EXCL | O_NOFOLLOW``),
    never reopened by name, so nothing swapped in at that name meanwhile (a symlink to
    another file) is ever written to. Stale parts of earlier writers in that directory are
    removed first (see :func:`remove_stale_parts`): this is the one moment a part is added,
    so the directory never collects more than the live writers' parts and a day's worth of
    others.
    """
    check_target(target)
    remove_stale_parts(target.parent)
    reason = ""
    for _ in range(8):  # a name taken (by chance, or by an attacker guessing): draw again
        temp = target.parent / _temp_name(target.name)
        try:
            handle = os.open(temp, _CREATE, 0o600)
        except FileExistsError:
            reason = "no free temporary name"
            continue
        except OSError as exc:
            reason = f"{exc.strerror or exc} in {str(target.parent)!r}"
            break
        return temp, os.fdopen(handle, "wb")
    raise SaveError(f"cannot write {str(target)!r}: {reason}")


def new_temp(target: Path) -> Path:
    """:func:`open_temp`, closed at once: the empty part, for a caller that only needs its
    name (tests, and a writer that holds the part to show it is live)."""
    temp, file = open_temp(target)
    file.close()
    return temp


def remove_stale_parts(directory: Path) -> None:
    """Remove the parts of our naming in ``directory`` whose writer is gone.

    A part is stale when it was written on this machine (same host and process namespace) by
    a process that no longer runs, or when it has not been touched for :data:`STALE_AFTER`
    seconds whoever wrote it (a writer on another machine cannot be asked). A live writer's
    part, one of another user, and any file of another naming are left alone. Errors are
    ignored: cleaning up must never fail a download.
    """
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        now = time.time()
        for entry in entries:
            match = _PART.fullmatch(entry.name) if entry.name.endswith(SUFFIX) else None
            if match is None:
                continue
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(info.st_mode) or not _mine(info):
                    continue
                old = now - info.st_mtime > STALE_AFTER
                here = match["writer"] == _writer()
                if old or (here and not _alive(int(match["pid"]))):
                    Path(entry.path).unlink()


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
    temp, file = open_temp(target)
    try:
        with file as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        replace(temp, target)
    finally:
        discard(temp)


def _temp_name(name: str) -> str:
    """``.{prefix}.{writer}-{pid}-{random}.ibkr-part``: the target's name cut to
    :data:`PREFIX_BYTES` (on a character boundary, so the name stays valid UTF-8), who wrote
    it, and a random part for writers of the same target in one process."""
    prefix = _truncated(name, PREFIX_BYTES)
    return f".{prefix}.{_writer()}-{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"


def _truncated(name: str, limit: int) -> str:
    """The longest start of ``name`` that takes at most ``limit`` bytes on disk."""
    size = 0
    for index, char in enumerate(name):
        size += len(os.fsencode(char))
        if size > limit:
            return name[:index]
    return name


@functools.cache
def _writer() -> str:
    """Who writes, in 8 hex digits: the host name and, on Linux, the process-id namespace.

    Pids are only comparable within one namespace: two containers that share a host name
    and a volume each have their own pid 7. Hashed, so it is short, fixed in form, and shows
    nothing of the host.
    """
    namespace = ""
    with contextlib.suppress(OSError):
        namespace = str(Path("/proc/self/ns/pid").readlink())
    identity = f"{socket.gethostname()}\0{namespace}"
    return hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (on this host), counting any doubt as alive."""
    if os.name != "posix":
        return True  # os.kill would terminate it on Windows: never ask there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # EPERM: it runs, as another user; else: do not guess
        return True
    return True


def _mine(info: os.stat_result) -> bool:
    """Whether this user owns the file: another user's parts are theirs to clean."""
    getuid = getattr(os, "getuid", None)
    return getuid is None or info.st_uid == getuid()


def _name_max(directory: Path) -> int:
    """The longest file name ``directory`` takes, in bytes (255 where it cannot say)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return os.pathconf(directory, "PC_NAME_MAX")
    return 255
