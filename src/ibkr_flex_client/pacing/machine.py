"""The budget every process of the user on this machine shares: a small locked file per token.

The state directory is ``IBKR_FLEX_STATE_DIR``, else the platform's user cache directory
(``$XDG_CACHE_HOME/ibkr-flex-client``, else ``~/.cache/ibkr-flex-client``; on macOS
``~/Library/Caches/ibkr-flex-client``). It is created 0700 and must belong to the user; its
files are 0600. Per token, named by a digest of the token (never the token itself):

* ``<digest>.lock``: held with ``flock`` while the state is read, changed and written. The
  kernel lets go of it when its holder dies, even by ``kill -9``.
* ``<digest>.json``: the :class:`~.slots.TokenState`, replaced whole by ``rename`` from
  ``<digest>.json.tmp``, so a process killed at any moment leaves the old state or the new
  one, never half of one.

A state file that cannot be read as one (corrupt, foreign, not a regular file) counts as
"this minute is full" (the next request waits a minute: never a burst) and is rewritten.
Times in the file are wall-clock seconds (they must mean the same in every process and
survive a reboot). Each write also marks the file with the machine's steady clock (Linux:
``CLOCK_BOOTTIME``, which counts suspend and is never stepped, and the boot's id), so the next
writer sees a wall clock stepped meanwhile (NTP, a resumed VM) and moves the stored times by
the step: a step forward lets no burst through, a step back stretches no wait. Elsewhere, and
across a reboot, :func:`~.slots.forget` still never lets a stored time lie further ahead than
the rules set it (a lock-out never outlasts its ``lockout_seconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import PacingError
from .slots import Mark, TokenState, forget_owners, full_minute, owners, shift

__all__ = [
    "STATE_DIR_VARIABLE",
    "MachineBackend",
    "default_state_dir",
    "host_owner",
    "steady_clock",
]

STATE_DIR_VARIABLE = "IBKR_FLEX_STATE_DIR"
# The state is a few hundred bytes; anything much larger is not ours.
MAX_STATE_BYTES = 256 * 1024
# A lock held longer than this is held by a process that is stuck (stopped, or on a dead
# network file system): say so, never wait forever.
LOCK_PATIENCE = 10.0
_LOCK_POLL = 0.002

R = TypeVar("R")
# A machine's steady clock: the boot's id and seconds since boot, or None where unknown.
Steady = Callable[[], tuple[str, float] | None]


def default_state_dir() -> Path:
    """``IBKR_FLEX_STATE_DIR``, else the platform's user cache directory for this library."""
    configured = os.environ.get(STATE_DIR_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    if cache and Path(cache).is_absolute() and sys.platform != "darwin":
        return Path(cache) / "ibkr-flex-client"
    try:
        home = Path.home()
    except (RuntimeError, KeyError):
        # No home at all (a service account): a directory of this user's own in the temp
        # directory; one that someone else made first is refused when used.
        uid = os.getuid() if hasattr(os, "getuid") else 0
        return Path(tempfile.gettempdir()) / f"ibkr-flex-client-{uid}"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "ibkr-flex-client"
    return home / ".cache" / "ibkr-flex-client"


def steady_clock() -> tuple[str, float] | None:
    """This boot's id and ``CLOCK_BOOTTIME`` (Linux), else None: no steady clock that every
    process of the machine shares and that a reboot can be told from."""
    boot = _boot_id()
    if boot is None:
        return None
    return boot, time.clock_gettime(time.CLOCK_BOOTTIME)


_BOOT_ID: list[str | None] = []


def _boot_id() -> str | None:
    if not _BOOT_ID:
        boot = None
        if sys.platform == "linux" and hasattr(time, "CLOCK_BOOTTIME"):
            with contextlib.suppress(OSError, UnicodeDecodeError):
                boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:64] or None
        _BOOT_ID.append(boot)
    return _BOOT_ID[0]


def host_owner() -> str:
    """This process, as named in the state: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class MachineBackend:
    """One token's budget in ``directory``, shared by every process that opens the same file."""

    recheck = 0.5  # other processes change the state: look again at least this often

    def __init__(
        self,
        directory: Path,
        digest: str,
        *,
        now: Callable[[], float] | None = None,
        steady: Steady | None = None,
        patience: float = LOCK_PATIENCE,
    ) -> None:
        """``now`` is the shared time the state is kept in (the wall clock by default) and
        ``steady`` the machine's steady clock that tells a step of it (by default
        :func:`steady_clock` with the wall clock, none with another ``now``)."""
        self.directory = directory
        self.path = directory / f"{digest}.json"
        self._lock_path = directory / f"{digest}.lock"
        self._temp_path = directory / f"{digest}.json.tmp"
        self._now = now if now is not None else time.time
        self._steady = steady if steady is not None or now is not None else steady_clock
        self._patience = patience
        self._host = socket.gethostname()
        self._ready = False

    def describe(self) -> str:
        return f"the state file {self.path}"

    async def apply(self, change: Callable[[TokenState, float], R]) -> tuple[R, float]:
        try:
            fd = self._open_lock()
        except OSError as exc:
            raise self._error("cannot open", exc, self._lock_path) from None
        try:
            await self._lock(fd)
            now = self._now()
            steady = self._steady() if self._steady is not None else None
            state = self._load(now)
            _follow_wall_clock(state, now, steady)
            forget_owners(state, self._dead(state))
            result = change(state, now)
            state.mark = Mark(steady[0], steady[1], now) if steady is not None else None
            self._save(state)
        except OSError as exc:
            raise self._error("cannot use", exc) from None
        finally:
            os.close(fd)  # closing the descriptor lets go of the lock
        return result, now

    # --- the directory and the lock ------------------------------------------------------

    def _open_lock(self) -> int:
        if not self._ready:
            self._prepare_directory()
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | _CLOEXEC, 0o600)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "not a regular file", str(self._lock_path))
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.fchmod(fd, 0o600)
        return fd

    def _prepare_directory(self) -> None:
        if sys.platform == "win32":
            raise PacingError(
                "machine-wide pacing needs POSIX file locks, which this platform lacks; "
                'use pacing="process" (one process per token) or a Redis URL'
            )
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = self.directory.stat()
        if not stat.S_ISDIR(info.st_mode):
            raise OSError(errno.ENOTDIR, "not a directory")
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            # Anyone who can write the state can hold the token's requests back forever.
            raise PacingError(
                f"the state directory {self.directory} belongs to another user; set "
                f"{STATE_DIR_VARIABLE} to a directory of your own"
            )
        if stat.S_IMODE(info.st_mode) & 0o077:
            self.directory.chmod(0o700)
        self._ready = True

    async def _lock(self, fd: int) -> None:
        give_up = time.monotonic() + self._patience
        while not _try_lock(fd):
            if time.monotonic() > give_up:
                raise PacingError(
                    f"{self.describe()} has been locked by another process for over "
                    f"{self._patience:g} s (a stopped process?); no request was sent"
                )
            await asyncio.sleep(_LOCK_POLL)

    # --- the state file ------------------------------------------------------------------

    def _load(self, now: float) -> TokenState:
        try:
            data = self._read()
        except FileNotFoundError:
            return TokenState()
        except OSError:
            return full_minute(now)  # unreadable: wait a minute, and rewrite it
        if data is None:
            return full_minute(now)
        try:
            return TokenState.from_json(data)
        except ValueError:
            return full_minute(now)  # corrupt or foreign: never a burst

    def _read(self) -> bytes | None:
        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC)
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_STATE_BYTES:
                return None
            return file.read(MAX_STATE_BYTES + 1)

    def _save(self, state: TokenState) -> None:
        data = state.to_json()
        # Under the lock only one writer exists, so one fixed temporary name suffices; one
        # left by a killed writer is simply overwritten.
        _clear(self._temp_path)
        if self.path.is_dir() and not self.path.is_symlink():
            _clear(self.path)  # rename cannot replace a directory
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC
        fd = os.open(self._temp_path, flags, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        self._temp_path.replace(self.path)

    def _dead(self, state: TokenState) -> set[str]:
        """Owners on this host whose process no longer exists (killed): their seats and
        places in line go at once rather than when they expire."""
        dead = set()
        for owner in owners(state):
            host, _, pid = owner.rpartition(":")
            if host == self._host and pid.isdigit() and not _alive(int(pid)):
                dead.add(owner)
        return dead

    def _error(self, what: str, exc: OSError, path: Path | None = None) -> PacingError:
        named = path or (Path(exc.filename) if isinstance(exc.filename, str) else self.path)
        return PacingError(
            f"{what} {named} ({exc.strerror or exc}); the token's shared budget "
            f"is out of reach, so no request was sent. Set {STATE_DIR_VARIABLE} to a "
            'writable directory of your own, or use pacing="process"'
        )


def _follow_wall_clock(state: TokenState, now: float, steady: tuple[str, float] | None) -> None:
    """Move the state's times by how much the wall clock was stepped since it was written
    (known when it was written on this boot, with a steady clock)."""
    mark = state.mark
    if mark is None or steady is None or mark.boot != steady[0]:
        return
    stepped = (now - mark.wall) - (steady[1] - mark.steady)
    if stepped:
        shift(state, stepped)


def _clear(path: Path) -> None:
    """Remove what is at ``path`` (a file, a link, or a directory that is in the way); a
    directory that is not empty is moved aside, never deleted with what it holds."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    except (IsADirectoryError, PermissionError):
        if not path.is_dir() or path.is_symlink():
            raise
        try:
            path.rmdir()
        except OSError:
            path.rename(path.with_name(f"{path.name}.moved-aside-{time.time_ns()}"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # it exists (another user's), or it is not a pid we can judge
    return True


_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` if it is free; False if another process holds it."""
    if sys.platform == "win32":  # pragma: no cover - refused in _prepare_directory
        raise PacingError("no POSIX file locks on this platform")
    import fcntl  # noqa: PLC0415 - POSIX only

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
