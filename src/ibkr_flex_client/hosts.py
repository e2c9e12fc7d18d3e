"""IB's two hosts: where a request may fail over to, the host that last worked, and when DNS
failures mean that the machine has no network. Pure rules, and one small process-wide memory.

"Hosts move" (``docs/protocol.md``, "Hosts"): IB has served the Flex Web Service from both
``ndcdyn`` and ``gdcdyn``; one host's DNS fails now and then, and paths have moved on one host
while the other still served them. So, when a fetch's ``base_url`` is one of those two hosts:

* An attempt that fails with a DNS failure, a refused or unreachable connection, or a 404 that
  is not IB's envelope (:data:`FAILOVER`) sends the next attempt to the same URL on the other
  host. A ``<Url>`` on one of the two hosts fails over to the same path on the other.
* Never to any other host: a ``base_url`` naming another server (a proxy, a simulator) or a
  ``<Url>`` on a third ``interactivebrokers.com`` host gets no failover at all.
* The host whose SendRequest last got an answer from IB is where the next fetch in this
  process starts (:data:`HOST_MEMORY`). GetStatement always starts where IB's ``<Url>`` says.

And for any fetch: when DNS lookups of every host it may use have failed in a row for
:data:`NO_NETWORK_SECONDS`, the machine has no network (or no DNS) and the fetch gives up
instead of backing off for its whole budget (:func:`no_network`).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Collection
from urllib.parse import urlsplit

from .protocol import Trouble, TroubleKind

__all__ = [
    "FAILOVER",
    "HOST_MEMORY",
    "IB_HOSTS",
    "NO_NETWORK_SECONDS",
    "HostMemory",
    "Route",
    "host_of",
    "ib_host",
    "no_network",
    "no_network_reason",
    "on_host",
    "plan_route",
]

# "Hosts move": the two hosts IB has served the Flex Web Service from; the first is the
# default base_url's (protocol.DEFAULT_BASE_URL).
IB_HOSTS = ("ndcdyn.interactivebrokers.com", "gdcdyn.interactivebrokers.com")

# What says the host in use is gone (its name, its address, or the path on it), so that the
# other one may serve. A 5xx, a drop, a stall or a TLS failure says nothing of the kind.
FAILOVER = frozenset({TroubleKind.DNS, TroubleKind.CONNECT, TroubleKind.NOT_FOUND})

# DNS failing for every host a fetch may use, without a break, for this long (on the fetch's
# own timeline, the sum of its waits) means no network. With the default backoff (10 s,
# doubling) lookups fail at 0, 10, 30, 70 and 150 s: the fetch gives up at 150 s, after
# five requests, where its full budget of ten would take some 40 minutes. A lookup that
# fails now and then is followed by one that works, which ends the run.
NO_NETWORK_SECONDS = 120.0

_HTTPS_PORT = 443


def host_of(url: str) -> str:
    """``url``'s host name, lower-case and without a trailing dot ("" if it has none)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host.removesuffix(".")


def ib_host(url: str) -> str | None:
    """The one of :data:`IB_HOSTS` that ``url`` is on: https, the default port, no user
    info. ``None`` for any other URL (another host, http, another port)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme != "https" or port not in (None, _HTTPS_PORT) or "@" in parts.netloc:
        return None
    host = host_of(url)
    return host if host in IB_HOSTS else None


def on_host(url: str, host: str) -> str:
    """``url`` with its host (and port) replaced by ``host``: same scheme, path and query."""
    return urlsplit(url)._replace(netloc=host).geturl()


def _other(host: str) -> str:
    return IB_HOSTS[1] if host == IB_HOSTS[0] else IB_HOSTS[0]


@dataclasses.dataclass(slots=True)
class Route:
    """Where one step's requests go: its URLs, in failover order, and the one in use."""

    urls: tuple[str, ...]
    index: int = 0

    @property
    def url(self) -> str:
        """The URL the next attempt goes to."""
        return self.urls[self.index]

    @property
    def hosts(self) -> frozenset[str]:
        """Every host this step may use."""
        return frozenset(host_of(url) for url in self.urls)

    @property
    def fails_over(self) -> bool:
        """True when the step has IB's other host to turn to."""
        return len(self.urls) > 1

    def failed(self, trouble: Trouble) -> str | None:
        """After ``trouble`` from :attr:`url`: move on to the other host if it says the host
        in use is gone (:data:`FAILOVER`); returns the host moved to, else ``None``."""
        if not self.fails_over or trouble.kind not in FAILOVER:
            return None
        self.index = (self.index + 1) % len(self.urls)
        return host_of(self.url)


def plan_route(url: str, base_url: str, *, start: str | None = None) -> Route:
    """The route of requests to ``url``, for a fetch whose setting is ``base_url``.

    With both on :data:`IB_HOSTS`, ``url`` and the same URL on the other IB host; first the
    one on ``start`` (the host that last worked), else ``url``. Otherwise ``url`` alone.
    """
    host = ib_host(url)
    if host is None or ib_host(base_url) is None:
        return Route((url,))
    urls = (url, on_host(url, _other(host)))
    if start is not None and start != host and start in IB_HOSTS:
        urls = urls[::-1]
    return Route(urls)


class HostMemory:
    """Which of IB's hosts last answered a SendRequest, for fetches that start later.

    One per process (:data:`HOST_MEMORY`); fetches in several threads share it. Tests of the
    flow pass their own.
    """

    __slots__ = ("_host", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._host: str | None = None

    def preferred(self) -> str | None:
        """The host to start on, or ``None`` when none has answered yet."""
        with self._lock:
            return self._host

    def worked(self, host: str) -> None:
        """``host`` (one of :data:`IB_HOSTS`) answered; other hosts are ignored."""
        if host in IB_HOSTS:
            with self._lock:
                self._host = host

    def forget(self) -> None:
        """Start from ``base_url``'s own host again."""
        with self._lock:
            self._host = None

    def __repr__(self) -> str:
        return f"HostMemory(preferred={self.preferred()!r})"


# The process-wide memory every fetch uses unless given another.
HOST_MEMORY = HostMemory()


def no_network(*, failed: Collection[str], hosts: Collection[str], seconds: float) -> bool:
    """Whether to give up because the machine seems to have no network.

    Args:
        failed: the hosts whose DNS lookups failed since the last request that got past DNS
            (anything else, even a refused connection, proves the network is there).
        hosts: every host the step may use.
        seconds: how long those failures have gone on, first to last, on the fetch's
            timeline.

    True when every one of ``hosts`` failed, for at least :data:`NO_NETWORK_SECONDS`.
    """
    return bool(hosts) and set(hosts) <= set(failed) and seconds >= NO_NETWORK_SECONDS


def no_network_reason(hosts: Collection[str], failures: int, seconds: float) -> str:
    """The words for :func:`no_network`'s verdict: which lookups failed, how often, how long."""
    if set(hosts) == set(IB_HOSTS):
        names = f"both IB hosts ({', '.join(IB_HOSTS)})"
    else:
        names = ", ".join(sorted(hosts))
    return (
        f"DNS lookups of {names} failed {failures} times in a row over {seconds:g} s: "
        "this machine seems to have no network (or no working DNS)"
    )
