"""The budget every worker on every machine shares through one Redis server (``pacing=
"redis://…"`` or ``"rediss://…"``; the extra ``ibkr-flex-client[redis]``).

One key per token, ``ibkr-flex-client:budget:<digest>`` (a digest of the token, never the
token), holds the :class:`~.slots.TokenState` as :meth:`~.slots.TokenState.to_json` writes it.
Each change is an optimistic transaction:

1. read the key and the server's ``TIME`` in one round trip: the server's clock is the one
   clock of every machine (each pacer turns "ask again at t" into a wait on its own clock);
2. decide in Python (:mod:`.slots`, the same rules as every other backend);
3. write the new state with a small Lua script that sets it only if the key still holds
   what was read (compare-and-set), and retry from 1 if another worker got there first.

Redis runs a script atomically, so two workers can never both take the slot they read as
free. Every write sets the key to expire once nothing in it constrains anything
(:func:`~.slots.expires_in`, plus a margin), so nothing grows and idle tokens leave nothing
behind. A value under the key that is not a state we wrote (corrupt, foreign, another type)
counts as "this minute is full" (the next request waits a minute: never a burst) and is
replaced.

Every Redis failure (refused, unknown host, timeout, authentication, TLS) is a
:class:`~ibkr_flex_client.PacingError` at once, and no request is sent: going on without the
budget the other workers share could draw IB's throttle (1018) for all of them. Messages
show the server as ``scheme://host:port/db``, never the URL's password.

A connection is opened for each change and closed after it: a pacer outlives event loops
(the blocking helpers run one per call, several threads may share a pacer) and a redis-py
client belongs to the loop it first ran on. On loopback a change costs about 2 ms, most of
it the connection; a pacer makes a few a second at most while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ..errors import PacingError
from .machine import MAX_STATE_BYTES
from .slots import TokenState, expires_in, full_minute

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry

__all__ = ["KEY_PREFIX", "RedisBackend"]

R = TypeVar("R")

KEY_PREFIX = "ibkr-flex-client:budget:"
# Each connect, read and write gives up after this long: a server that does not answer is
# an error to report, not a reason to wait forever.
TIMEOUT = 5.0
# Compare-and-set failures in a row (other workers changing the state between our read and
# our write) before giving up; each retry waits a little longer, at random.
TRIES = 50
# The key outlives the last time its state constrains anything by this much.
EXPIRY_MARGIN = 10.0

_MISSING = "pacing='redis://…' needs the redis package: pip install 'ibkr-flex-client[redis]'"

# KEYS[1]: the state's key. ARGV: what the read saw ("none": no key; "other": a value that
# is not a string; "string": ARGV[2]), the new state, its expiry in milliseconds. Sets the
# key only if it still holds what was read; 1 if it did, 0 if someone else changed it.
_COMPARE_AND_SET = """
local current = redis.pcall('GET', KEYS[1])
local seen = 'string'
if current == false then
  seen = 'none'
elseif type(current) == 'table' then
  seen = 'other'
end
if seen ~= ARGV[1] or (seen == 'string' and current ~= ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
return 1
"""
_COMPARE_AND_SET_SHA = hashlib.sha1(_COMPARE_AND_SET.encode(), usedforsecurity=False).hexdigest()


class RedisBackend:
    """One token's budget under one key of the Redis server at ``url``.

    Args:
        url: a ``redis://`` or ``rediss://`` URL (checked by ``check_pacing``); it may hold
            a password, which is never shown.
        digest: the token's digest (:func:`~ibkr_flex_client.pacing.token_digest`).
        timeout: seconds each connect, read and write may take.

    Raises ``ValueError`` when the redis package (the extra ``ibkr-flex-client[redis]``) is
    not installed, or the URL's options are not redis-py's.
    """

    recheck = 0.5  # other workers change the state: look again at least this often

    def __init__(self, url: str, digest: str, *, timeout: float = TIMEOUT) -> None:
        try:
            from redis.asyncio import Redis  # noqa: PLC0415 - the optional extra
            from redis.asyncio.connection import parse_url  # noqa: PLC0415
            from redis.asyncio.retry import Retry  # noqa: PLC0415
            from redis.backoff import NoBackoff  # noqa: PLC0415
            from redis.exceptions import NoScriptError, RedisError  # noqa: PLC0415
        except ImportError:
            raise ValueError(_MISSING) from None
        from . import describe_pacing  # noqa: PLC0415 - the package imports this module

        self.key = f"{KEY_PREFIX}{digest}"
        self._where = describe_pacing(url)
        options = parse_url(url)  # ValueError for options redis-py does not take
        password = options.get("password")
        self._secrets = [str(password)] if password else []
        self._url = url
        self._timeout = timeout
        self._redis = Redis
        # One try: a failure is reported at once, not after redis-py's backoff.
        self._retry: Callable[[], Retry] = functools.partial(Retry, NoBackoff(), 0)
        self._no_script = NoScriptError
        self._failures: tuple[type[BaseException], ...] = (
            RedisError,
            OSError,
            asyncio.TimeoutError,
        )

    def describe(self) -> str:
        return f"the Redis server {self._where}"

    def __repr__(self) -> str:
        return f"RedisBackend({self._where!r}, key={self.key!r})"

    async def apply(self, change: Callable[[TokenState, float], R]) -> tuple[R, float]:
        try:
            client = self._connect()
        except ValueError as exc:
            raise self._error(exc) from None
        try:
            for attempt in range(TRIES):
                done, result, now = await self._try(client, change)
                if done:
                    return result, now
                # Another worker changed the state between our read and our write.
                await asyncio.sleep(random.uniform(0, min(0.001 * 2**attempt, 0.05)))  # noqa: S311
        except self._failures as exc:
            raise self._error(exc) from None
        finally:
            await self._close(client)
        raise PacingError(
            f"{self.describe()}: the token's state was changed by other workers {TRIES} times "
            "in a row between reading and writing it; no request was sent"
        )

    async def _try(
        self, client: Redis, change: Callable[[TokenState, float], R]
    ) -> tuple[bool, R, float]:
        """One read, decision and compare-and-set: whether it was written, the result, now."""
        async with client.pipeline(transaction=False) as pipe:
            pipe.get(self.key)
            pipe.time()
            value, clock = await pipe.execute(raise_on_error=False)
        if isinstance(clock, BaseException):
            raise clock
        seconds, microseconds = clock
        now = seconds + microseconds / 1e6
        state, seen = self._load(value, now)
        result = change(state, now)
        milliseconds = math.ceil((expires_in(state, now) + EXPIRY_MARGIN) * 1000)
        arguments = (seen, value if seen == "string" else b"", state.to_json(), milliseconds)
        try:
            written = await client.evalsha(_COMPARE_AND_SET_SHA, 1, self.key, *arguments)
        except self._no_script:  # the server's script cache was flushed, or never had it
            written = await client.eval(_COMPARE_AND_SET, 1, self.key, *arguments)
        return written == 1, result, now

    def _load(self, value: object, now: float) -> tuple[TokenState, str]:
        """The state under the key, and what the compare-and-set must find there still."""
        if value is None:
            return TokenState(), "none"
        if isinstance(value, BaseException):
            if "WRONGTYPE" not in str(value):
                raise value
            return full_minute(now), "other"  # not ours: wait a minute, and replace it
        if not isinstance(value, bytes) or len(value) > MAX_STATE_BYTES:
            return full_minute(now), "string"
        try:
            return TokenState.from_json(value), "string"
        except ValueError:
            return full_minute(now), "string"  # corrupt or foreign: never a burst

    def _connect(self) -> Redis:
        # URL options (?socket_timeout=…) win over these, as redis-py documents.
        return self._redis.from_url(
            self._url,
            socket_connect_timeout=self._timeout,
            socket_timeout=self._timeout,
            retry=self._retry(),
            protocol=2,  # RESP2: every server since Redis 2.6 speaks it (no HELLO needed)
        )

    async def _close(self, client: Redis) -> None:
        with contextlib.suppress(*self._failures):
            await client.aclose()  # a connection that failed is gone either way

    def _error(self, exc: BaseException) -> PacingError:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        for secret in self._secrets:
            detail = detail.replace(secret, "***")
        return PacingError(
            f"cannot use {self.describe()} ({detail[:300]}); the token's shared budget is out "
            "of reach, so no request was sent. Check that the server is up and the URL, "
            'password and TLS settings are right, or use pacing="machine" (this machine only)'
        )
