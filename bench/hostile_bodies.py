"""Hostile bodies: how much memory ``fetch()`` takes, and how it ends, against huge answers.

Each measurement is one fresh process running one ``fetch()`` against a server of its own on
127.0.0.1 (started for that run, killed after it), and reports its peak resident set size
(Linux's ``VmHWM``). The attacks:

* a SendRequest answer that is a 1 MB gzip bomb (``Content-Encoding: gzip``, 1 GiB of zeros);
* a GetStatement answer that is a 2 MB gzip bomb, and one that is a 2 MB deflate bomb, each
  inflating to a statement's first bytes followed by 2 GiB of spaces;
* a plain 2 GiB GetStatement body streamed by the server as it goes (never held in memory):
  a statement's first bytes then spaces; random bytes that are not XML; a statement's first
  bytes then tiny rows; and rows just dense enough to pass the density rule, which only
  ``max_statement_bytes`` stops: the honest worst case of a body that could be a statement.

Each is measured against a baseline, the same process fetching a tiny normal statement, in
the order baseline, attack, baseline, attack (3 pairs); the table shows the median of the
paired differences. Target: under 100 MB above the baseline, ending in a ``FlexError`` within
the attempt's time limit (``10 x timeout``).

Every process runs under an address-space limit of 4 GiB (``RLIMIT_AS``), so a client that
inflates or buffers everything fails with ``MemoryError`` ("ran out of memory") instead of
taking the machine's memory; only one process fetches at a time.

    python bench/hostile_bodies.py              # every case: a few minutes
    python bench/hostile_bodies.py get-gzip     # only the cases named
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Iterator
from pathlib import Path

PAIRS = 3
TIMEOUT = 5.0  # the client's timeout: one attempt may last 10 x this
MEMORY_LIMIT = 4 * 1024**3  # RLIMIT_AS of every measured process
TARGET_MB = 100.0
MIB = 1024 * 1024
GIB = 1024 * MIB
SEND_PATH = b"/AccountManagement/FlexWebService/SendRequest"
GET_PATH = "/AccountManagement/FlexWebService/GetStatement"
# What a statement's first bytes look like; an attack that goes on from here looks, to a
# client reading a stream, like a statement still arriving.
STATEMENT_START = b'<?xml version="1.0" encoding="UTF-8"?>\n<FlexQueryResponse><x a="'
TINY_STATEMENT = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<FlexQueryResponse queryName="Bench" type="AF"><FlexStatements count="1">'
    b'<FlexStatement accountId="U1234567" fromDate="20260302" toDate="20260306" period="" '
    b'whenGenerated="20260309;081502"><Trades/></FlexStatement></FlexStatements>'
    b"</FlexQueryResponse>\n"
)


@dataclasses.dataclass(frozen=True, slots=True)
class Case:
    name: str
    description: str


CASES = (
    Case("send-gzip", "SendRequest: 1 MB gzip bomb, 1 GiB of zeros inflated"),
    Case("get-gzip", "GetStatement: 2 MB gzip bomb, 2 GiB inflated"),
    Case("get-deflate", "GetStatement: 2 MB deflate bomb, 2 GiB inflated"),
    Case("get-plain-xml", "GetStatement: plain 2 GiB, a statement's start then spaces"),
    Case("get-plain-random", "GetStatement: plain 2 GiB of random bytes"),
    Case("get-plain-rows", "GetStatement: plain 2 GiB, a statement's start then tiny rows"),
    Case(
        "get-plain-dense",
        "GetStatement: plain 2 GiB, a statement's start then rows as dense as max_statement_bytes"
        " and the density rule allow",
    ),
)
BOMBS = {  # case: (file name, zlib wbits, first bytes, filler byte, inflated size)
    "send-gzip": ("send-gzip.bin", 31, b"", b"\0", GIB),
    "get-gzip": ("get-gzip.bin", 31, STATEMENT_START, b" ", 2 * GIB),
    "get-deflate": ("get-deflate.bin", 15, STATEMENT_START, b" ", 2 * GIB),
}


def write_bomb(path: Path, wbits: int, start: bytes, filler: bytes, size: int) -> None:
    """A compressed stream of ``start`` then ``filler`` up to ``size`` bytes, made a MiB at a
    time (the inflated body never exists)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = filler * MIB
    with path.open("wb") as out:
        out.write(packer.compress(start))
        for _ in range((size - len(start)) // MIB):
            out.write(packer.compress(block))
        out.write(packer.compress(filler * ((size - len(start)) % MIB)))
        out.write(packer.flush())


# --- The server: one per run, killed after it ------------------------------------------


def _head(status: int, length: int, encoding: str | None = None) -> bytes:
    lines = [
        f"HTTP/1.1 {status} OK",
        "Content-Type: text/xml;charset=ISO-8859-1",
        f"Content-Length: {length}",
        "Connection: close",
    ]
    if encoding:
        lines.append(f"Content-Encoding: {encoding}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _envelope(port: int) -> bytes:
    return (
        "<FlexStatementResponse><Status>Success</Status><ReferenceCode>1234567890</ReferenceCode>"
        f"<Url>http://127.0.0.1:{port}{GET_PATH}</Url></FlexStatementResponse>"
    ).encode()


async def _stream(writer: asyncio.StreamWriter, start: bytes, block: bytes, size: int) -> None:
    """``start`` then ``block`` repeated up to ``size`` bytes, as the client takes them."""
    writer.write(_head(200, size) + start)
    sent = len(start)
    while sent < size:
        piece = block[: size - sent]
        writer.write(piece)
        sent += len(piece)
        await writer.drain()


async def _answer(case: str, folder: Path, port: int, step: str, w: asyncio.StreamWriter) -> None:
    bomb = case == "send-gzip" if step == "send" else case in ("get-gzip", "get-deflate")
    if bomb:
        body = (folder / BOMBS[case][0]).read_bytes()
        encoding = "deflate" if case == "get-deflate" else "gzip"
        w.write(_head(200, len(body), encoding) + body)
    elif step == "send":
        body = _envelope(port)
        w.write(_head(200, len(body)) + body)
    elif case == "get-plain-xml":
        await _stream(w, STATEMENT_START, b" " * MIB, 2 * GIB)
    elif case == "get-plain-rows":
        rows_start = STATEMENT_START.removesuffix(b'<x a="')
        await _stream(w, rows_start, b'<r a="1"/>' * (MIB // 10), 2 * GIB)
    elif case == "get-plain-dense":
        rows_start = STATEMENT_START.removesuffix(b'<x a="')
        row = b'<r a="1234567890" b="1234567890" c="1234567890"/>'  # 6.1 bytes a unit
        await _stream(w, rows_start, row * (MIB // len(row)), 2 * GIB)
    elif case == "get-plain-random":
        await _stream(w, b"", os.urandom(MIB), 2 * GIB)
    else:
        w.write(_head(200, len(TINY_STATEMENT)) + TINY_STATEMENT)
    await w.drain()


async def serve(case: str, folder: Path) -> None:
    port = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            path = head.split(b" ", 2)[1].split(b"?", 1)[0]
            step = "send" if path.endswith(SEND_PATH) else "get"
            await _answer(case, folder, port, step, writer)
        except (OSError, IndexError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass  # the client gave up first, as it should
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        await server.serve_forever()


# --- The measured process ----------------------------------------------------------------


def peak_mb() -> float:
    """This process's peak resident set size so far, in MB (Linux's VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("needs Linux's /proc/self/status")


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _where(error: BaseException) -> str:
    """Where ``error`` was raised (file:line), and the last frame of this library it left."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return ""
    ours = [f for f in frames if "ibkr_flex_client" in f.filename]
    raised = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}"
    if ours and ours[-1] is not frames[-1]:
        raised += f" via {Path(ours[-1].filename).name}:{ours[-1].lineno}"
    return f" (raised at {raised})"


def probe(url: str) -> None:
    """One fetch from ``url``; prints what it cost and how it ended, as JSON."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    from ibkr_flex_client import FlexClient, FlexError  # noqa: PLC0415 - after the limit
    from ibkr_flex_client.retry import attempt_limit  # noqa: PLC0415

    token = "bench-token"  # noqa: S105 - a fake one: the server is ours, on loopback
    client = FlexClient(token=token, query_id="1", base_url=url, max_retries=1, timeout=TIMEOUT)
    before = peak_mb()
    start = time.monotonic()
    error: BaseException | None = None
    try:
        asyncio.run(client.fetch())
    except BaseException as exc:  # noqa: BLE001 - reported, whatever it is
        error = exc
    seconds = time.monotonic() - start
    result = {
        "before": before,
        "peak": peak_mb(),
        "seconds": seconds,
        "limit": attempt_limit(TIMEOUT),
        "worst_case": client.worst_case_seconds,
        "error": None
        if error is None
        else f"{type(error).__name__}: {str(error)[:160]}{_where(error)}",
        "flex_error": isinstance(error, FlexError),
        "oom": error is not None and any(isinstance(e, MemoryError) for e in _chain(error)),
    }
    print(json.dumps(result))


# --- The orchestrator ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    peak: float | None
    seconds: float | None
    limit: float
    worst_case: float
    ending: str
    flex_error: bool
    oom: bool


def measure(case: str, folder: Path) -> Run:
    """One run: a fresh server for ``case``, one probe process against it, both ended."""
    server = subprocess.Popen(  # noqa: S603 - our interpreter, this script
        [sys.executable, __file__, "--serve", case, str(folder)], stdout=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        limit = 10 * TIMEOUT
        try:
            done = subprocess.run(  # noqa: S603 - our interpreter, this script
                [sys.executable, __file__, "--probe", f"http://127.0.0.1:{port}"],
                capture_output=True,
                text=True,
                timeout=3 * limit + 60,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return Run(None, None, limit, 0.0, "did not end: killed", False, False)
    finally:
        server.kill()
        server.wait()
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        died = "killed by the kernel" if done.returncode < 0 else f"exit {done.returncode}"
        oom = "MemoryError" in done.stderr or done.returncode < 0
        tail = done.stderr.strip().splitlines()[-1:] or [""]
        ending = f"process died ({died}): {tail[0][:120]}"
        return Run(None, None, limit, 0.0, ending, False, oom)
    found = json.loads(lines[-1])
    return Run(
        peak=float(found["peak"]),
        seconds=float(found["seconds"]),
        limit=float(found["limit"]),
        worst_case=float(found["worst_case"]),
        ending=found["error"] or "returned a statement",
        flex_error=bool(found["flex_error"]),
        oom=bool(found["oom"]),
    )


def describe(runs: list[Run]) -> str:
    endings = sorted({("ran out of memory; " if r.oom else "") + r.ending for r in runs})
    return " / ".join(endings)


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for file, wbits, start, filler, size in BOMBS.values():
            write_bomb(folder / file, wbits, start, filler, size)
        sizes = {case: (folder / file).stat().st_size for case, (file, *_) in BOMBS.items()}
        print(
            f"fetch() with max_retries=1, timeout={TIMEOUT:g} s (one attempt at most "
            f"{10 * TIMEOUT:g} s); every process limited to {MEMORY_LIMIT / GIB:g} GiB of "
            f"address space; {PAIRS} baseline/attack pairs per case."
        )
        print(f"Target: under {TARGET_MB:g} MB above baseline, ending in a FlexError within")
        print("the attempt's time limit.")
        print()
        print("| case | bomb | baseline peak | attack peak | median Δ | ends in | time | verdict |")
        print("|---|---:|---:|---:|---:|---|---:|---|")
        chosen = sys.argv[1:]  # case names, to run only those; all by default
        for case in [c for c in CASES if not chosen or c.name in chosen]:
            pairs = [
                (measure("baseline", folder), measure(case.name, folder)) for _ in range(PAIRS)
            ]
            baselines = [b.peak for b, _ in pairs if b.peak is not None]
            attacks = [a for _, a in pairs]
            peaks = [a.peak for a in attacks if a.peak is not None]
            deltas = [
                a.peak - b.peak for b, a in pairs if a.peak is not None and b.peak is not None
            ]
            delta = statistics.median(deltas) if deltas else None
            times = [a.seconds for a in attacks if a.seconds is not None]
            took = statistics.median(times) if times else None
            limit, worst = attacks[0].limit, max(a.worst_case for a in attacks)
            ok = (
                delta is not None
                and delta < TARGET_MB
                and all(
                    a.flex_error and a.seconds is not None and a.seconds <= a.limit for a in attacks
                )
            )
            bomb = f"{sizes[case.name] / 1e6:.2f} MB" if case.name in sizes else "-"
            print(
                f"| {case.description} | {bomb} "
                f"| {statistics.median(baselines):.0f} MB "
                f"| {(f'{statistics.median(peaks):.0f} MB' if peaks else 'n/a')} "
                f"| {(f'+{delta:.0f} MB' if delta is not None else 'n/a')} "
                f"| {describe(attacks)} "
                f"| {(f'{took:.1f} s' if took is not None else 'n/a')} of {limit:g} s "
                f"(worst case {worst:g} s) "
                f"| {'meets target' if ok else 'MISSES target'} |",
                flush=True,
            )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        asyncio.run(serve(sys.argv[2], Path(sys.argv[3])))
    elif sys.argv[1:2] == ["--probe"]:
        probe(sys.argv[2])
    else:
        main()
