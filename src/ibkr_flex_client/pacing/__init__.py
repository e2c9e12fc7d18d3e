"""Every request of a token waits for that token's budget, shared as widely as the token is.

IB counts 1 request per second and 10 per minute per token, across every process and machine
using it, and locks a token out after too many failed attempts ("Rate limits" in
``docs/protocol.md``). Where the budget is kept is the ``pacing`` setting (``FlexClient(pacing=
...)``, ``--pacing``, or ``IBKR_FLEX_PACING``):

``"machine"`` (the default)
    Every process of the user on this machine shares it, through a locked state file per
    token (:mod:`.machine`).
``"process"``
    This process only (two processes using the token at once may draw 1018).
``"redis://…"`` or ``"rediss://…"``
    Every worker on every machine using that Redis server shares it (:mod:`.redis_backend`;
    the extra ``ibkr-flex-client[redis]``).

The pure rules live in :mod:`.slots`, the waiting in :mod:`.pacer`, and each place in a
backend module behind :class:`~.backend.Backend`.
"""

from __future__ import annotations

import hashlib
import os
import re
import weakref
from pathlib import Path
from urllib.parse import urlsplit

from .._clock import SYSTEM_CLOCK, Clock, SystemClock
from .backend import Backend, LocalBackend
from .machine import STATE_DIR_VARIABLE, MachineBackend, default_state_dir
from .pacer import OnWait, Ticket, TokenPacer

__all__ = [
    "DEFAULT_PACING",
    "PACING_VARIABLE",
    "STATE_DIR_VARIABLE",
    "OnWait",
    "Ticket",
    "TokenPacer",
    "check_pacing",
    "pacer_for",
    "token_digest",
    "unlock",
]

PACING_VARIABLE = "IBKR_FLEX_PACING"
DEFAULT_PACING = "machine"
_MODES = ("machine", "process")
_REDIS_SCHEMES = ("redis", "rediss")


def check_pacing(pacing: object) -> str:
    """The pacing setting, checked: ``pacing``, else ``IBKR_FLEX_PACING``, else "machine".

    Raises ``ValueError`` naming where a bad value came from (a Redis URL's password is
    never shown).
    """
    source = "pacing"
    if pacing is None:
        pacing = os.environ.get(PACING_VARIABLE) or DEFAULT_PACING
        source = PACING_VARIABLE if os.environ.get(PACING_VARIABLE) else "pacing"
    if not isinstance(pacing, str):
        raise ValueError(f"pacing must be a string, got {type(pacing).__name__}")
    if pacing in _MODES:
        return pacing
    if _is_redis_url(pacing):
        return pacing
    # A URL may hold a password (in its user part or its query): never echo one.
    shown = "a URL that is not one (not shown: it may hold a password)"
    if "://" not in pacing and "@" not in pacing and "password" not in pacing.lower():
        shown = repr(pacing[:100])
    raise ValueError(
        f'{source} must be "machine", "process" or a redis:// or rediss:// URL, got {shown}'
    )


def _is_redis_url(text: str) -> bool:
    if not text.isascii() or not text.isprintable() or re.search(r"\s", text):
        return False
    try:
        parts = urlsplit(text)
        _ = parts.port
    except ValueError:
        return False
    return parts.scheme in _REDIS_SCHEMES and bool(parts.hostname) and not parts.fragment


def describe_pacing(pacing: str) -> str:
    """The setting as it may be shown: a Redis URL without its password."""
    if pacing in _MODES:
        return pacing
    parts = urlsplit(pacing)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # an IPv6 address
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def token_digest(token: str) -> str:
    """What names a token's shared state: a digest, never the token."""
    return hashlib.sha256(b"ibkr-flex-client/budget\0" + token.encode()).hexdigest()[:32]


# One pacer per (clock, token digest, place): its line orders every request of the token in
# this process. Keyed by a digest, so this table never holds the token; the clock is held
# weakly, so a test's FakeClock takes its pacers with it when it goes.
_PACERS: weakref.WeakKeyDictionary[object, dict[tuple[str, str], TokenPacer]] = (
    weakref.WeakKeyDictionary()
)


def pacer_for(token: str, clock: Clock, pacing: str = "process") -> TokenPacer:
    """The process-wide pacer of ``token`` on ``clock`` for a checked ``pacing`` setting.

    On a virtual clock (tests) the budget is the process's own: a virtual clock's time means
    nothing to another process, and the user's state files must not hold it.
    """
    real = isinstance(clock, SystemClock)
    if not real and pacing != "process":
        if pacing != "machine":
            raise ValueError(
                "a Redis budget runs on real time: clock= must be the system clock "
                '(use pacing="process" with a virtual clock)'
            )
        pacing = "process"
    digest = token_digest(token)
    place = str(default_state_dir()) if pacing == "machine" else pacing
    pacers = _PACERS.setdefault(clock, {})
    pacer = pacers.get((digest, place))
    if pacer is None:
        pacer = pacers[(digest, place)] = TokenPacer(clock, _backend(pacing, digest, clock))
    return pacer


def _backend(pacing: str, digest: str, clock: Clock) -> Backend:
    if pacing == "process":
        return LocalBackend(clock.now)
    if pacing == "machine":
        return MachineBackend(default_state_dir(), digest)
    # The optional extra, loaded only when used.
    from .redis_backend import RedisBackend  # noqa: PLC0415

    backend: Backend = RedisBackend(pacing, digest)
    return backend


async def unlock(token: str, *, pacing: str | None = None) -> bool:
    """Clear a lock-out of ``token`` (kept after IB's 1025 for ``lockout_seconds``) once the
    cause is fixed, everywhere its budget is shared. True if it was locked out.

    ``pacing`` as for :class:`~ibkr_flex_client.FlexClient` (by default
    ``IBKR_FLEX_PACING``, else "machine"). Raises ``PacingError`` when the budget cannot be
    reached.
    """
    return await pacer_for(token, SYSTEM_CLOCK, check_pacing(pacing)).unlock()


def state_path(token: str) -> Path:
    """The machine-wide state file of ``token`` (which may not exist yet)."""
    return default_state_dir() / f"{token_digest(token)}.json"
