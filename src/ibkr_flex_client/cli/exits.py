"""Exit statuses, one per kind of failure, and the one line that reports a failure.

Listed for users in :data:`EXIT_CODES_HELP` (every command's ``--help``) and the README.
"""

from __future__ import annotations

import traceback
from typing import TextIO

from ..errors import (
    LockedOutError,
    PacingError,
    QueryError,
    SaveError,
    StatementError,
    StoreBusyError,
    StoreError,
    TemporaryError,
    TokenError,
    UnknownCodeError,
    UnsafeUrlError,
)

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_CODES_HELP",
    "EXIT_CONFIG",
    "EXIT_ERROR",
    "EXIT_HANGUP",
    "EXIT_INTERRUPTED",
    "EXIT_LOCKED_OUT",
    "EXIT_NO_INPUT",
    "EXIT_OK",
    "EXIT_QUERY",
    "EXIT_SAVE",
    "EXIT_STATEMENT",
    "EXIT_TEMPORARY",
    "EXIT_TERMINATED",
    "EXIT_TOKEN",
    "EXIT_UNTRUSTED",
    "EXIT_USAGE",
    "Exit",
    "exit_code",
    "report",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2  # argparse's own code for bad arguments
EXIT_TOKEN = 3
EXIT_QUERY = 4
EXIT_LOCKED_OUT = 5
EXIT_UNTRUSTED = 6
EXIT_STATEMENT = 7
EXIT_SAVE = 8
EXIT_NO_INPUT = 66  # sysexits.h EX_NOINPUT: "did not exist or was not readable"
EXIT_TEMPORARY = 75  # sysexits.h EX_TEMPFAIL: schedulers know to try again later
EXIT_CONFIG = 78  # sysexits.h EX_CONFIG
EXIT_HANGUP = 129  # 128 + SIGHUP: the terminal went away
EXIT_INTERRUPTED = 130  # 128 + SIGINT (Ctrl-C), the shell convention
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE
EXIT_TERMINATED = 143  # 128 + SIGTERM: kill, systemd, docker stop, a scheduler's timeout

EXIT_CODES_HELP = """exit codes:
  0    success
  1    other error
  2    usage: bad arguments or options
  3    the token cannot be used (expired, invalid, IP-restricted): renew it (IB 1011-1016)
  4    IB rejected the query or request: fix it (IB 1003, 1010, 1014, 1017, 1020)
  5    locked out by IB (1025): stop using the token for a while
  6    IB's answer was untrusted or unknown (a foreign download URL, an unknown code)
  7    the file or answer is not a complete Flex statement
  8    the output could not be written (a full disk, a missing permission), or the sync
       database cannot be used (not one, from a newer version, damaged)
  66   the input file does not exist, is a directory, or cannot be read
  75   temporary failure (throttled, still generating, IB or network down, the sync
       database busy with another sync): retry later
  78   no token (set IBKR_FLEX_TOKEN or pass --token-file), or the token's shared budget
       cannot be reached (--pacing, IBKR_FLEX_STATE_DIR, the Redis server), or
       export --format parquet without pyarrow (pip install 'ibkr-flex-client[parquet]')
  129  interrupted by SIGHUP (128 + 1, the shell's convention)
  130  interrupted (Ctrl-C: SIGINT)
  143  interrupted by SIGTERM (128 + 15)
"""


class Exit(Exception):  # noqa: N818 - a way out, not an error of the library's
    """Leave with this exit status and one line on stderr."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_EXIT_BY_CLASS: list[tuple[type[BaseException], int]] = [
    (TokenError, EXIT_TOKEN),
    (QueryError, EXIT_QUERY),
    (LockedOutError, EXIT_LOCKED_OUT),
    (PacingError, EXIT_CONFIG),
    (TemporaryError, EXIT_TEMPORARY),
    (UnsafeUrlError, EXIT_UNTRUSTED),
    (UnknownCodeError, EXIT_UNTRUSTED),
    (StatementError, EXIT_STATEMENT),
    (SaveError, EXIT_SAVE),
    (StoreBusyError, EXIT_TEMPORARY),
    (StoreError, EXIT_SAVE),
]


def exit_code(error: BaseException) -> int:
    """The documented exit status for an error."""
    if isinstance(error, Exit):
        return error.status
    return next((code for cls, code in _EXIT_BY_CLASS if isinstance(error, cls)), EXIT_ERROR)


def report(err: TextIO, error: BaseException, verbose: bool, prefix: str = "") -> None:
    """One line for the error; its traceback first with ``--verbose``."""
    if verbose and not isinstance(error, Exit):
        traceback.print_exception(type(error), error, error.__traceback__, file=err)
    print(f"ibkr-flex: error: {prefix}{error}", file=err)
