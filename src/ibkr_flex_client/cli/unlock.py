"""``ibkr-flex unlock``: clear the token's lock-out, once the cause of IB's 1025 is fixed.

After IB answers 1025 (too many failed attempts), the library stops every request of the
token, everywhere its budget is shared, for ``lockout_seconds`` (an hour by default). This
command ends that pause sooner. It sends nothing to IB.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TextIO

from ..pacing import check_pacing, describe_pacing, unlock
from .exits import EXIT_OK, EXIT_USAGE, Exit
from .fetch import read_token

__all__ = ["main"]


def main(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Clear the lock-out of the token (from IBKR_FLEX_TOKEN or --token-file)."""
    del err
    token = read_token(args)
    try:
        pacing = check_pacing(args.pacing)
    except ValueError as exc:
        raise Exit(EXIT_USAGE, str(exc).replace("pacing must", "--pacing must", 1)) from None
    was = asyncio.run(unlock(token, pacing=pacing))  # a PacingError exits 78, as for fetch
    where = describe_pacing(pacing)
    if was:
        print(f"unlocked: the token may send requests again (pacing: {where})", file=out)
    else:
        print(f"the token was not locked out (pacing: {where}); nothing changed", file=out)
    return EXIT_OK
