"""Temporary files beside a download's target: the early check, their names, and the
clearing of parts that writers killed without cleanup left behind."""

from __future__ import annotations

import contextlib
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ibkr_flex_client import SaveError
from ibkr_flex_client._files import atomic_output, check_target, new_temp

PART = re.compile(r"\.(?P<prefix>.*)\.(?P<writer>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}\.ibkr-part")
DAY = 24 * 60 * 60
OTHER_HOST = "00000000"  # a writer identity that is not this host's, in all likelihood


def parts(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".ibkr-part"))


def part_of(pid: int, target: Path, writer: str | None = None) -> Path:
    """A part beside ``target`` as process ``pid`` would have named it, on this host or on
    the one ``writer`` names. Made elsewhere and moved in: a write to the directory itself
    would already clear it."""
    scratch = target.parent.parent / "scratch"
    scratch.mkdir(exist_ok=True)
    made = new_temp(scratch / target.name)
    match = PART.fullmatch(made.name)
    assert match is not None
    name = made.name.replace(f"-{match['pid']}-", f"-{pid}-")
    if writer is not None:
        name = name.replace(f".{match['writer']}-", f".{writer}-")
    return made.rename(target.parent / name)


def dead_pid() -> int:
    """The pid of a process that ran and is gone (reaped), as after ``kill -9``."""
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait(timeout=10)
    return process.pid


@contextlib.contextmanager
def live_writer(target: Path) -> Iterator[Path]:
    """The part of another process that is downloading into the same directory right now."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        yield part_of(process.pid, target)
    finally:
        process.communicate(timeout=10)


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


# --- names ---------------------------------------------------------------------------------


def test_a_temporary_file_is_ours_by_name_private_and_empty(tmp_path: Path) -> None:
    temp = new_temp(tmp_path / "report.xml")
    match = PART.fullmatch(temp.name)
    assert match is not None, temp.name
    assert match["prefix"] == "report.xml"
    assert int(match["pid"]) == os.getpid()
    assert temp.parent == tmp_path
    assert stat.S_IMODE(temp.stat().st_mode) == 0o600
    assert temp.read_bytes() == b""
    assert new_temp(tmp_path / "report.xml") != temp  # a second writer of the same target


@pytest.mark.parametrize(
    "name",
    ["a" * 246 + ".xml", "é" * 123 + ".xml", "€" * 82 + ".xml", "x" + "😀" * 62 + ".xml"],
    ids=["ascii-250-bytes", "2-byte-utf8", "3-byte-utf8", "4-byte-utf8"],
)
def test_a_name_near_the_file_system_limit_still_writes(tmp_path: Path, name: str) -> None:
    target = tmp_path / name
    assert 246 <= len(os.fsencode(target.name)) <= 255
    temp = new_temp(target)
    encoded = os.fsencode(temp.name)
    assert len(encoded) <= 128  # far below 255, and below eCryptfs' 143
    prefix = PART.fullmatch(encoded.decode("utf-8"))  # cut on a character boundary
    assert prefix is not None
    assert name.startswith(prefix["prefix"])
    assert 60 <= len(os.fsencode(prefix["prefix"])) <= 64
    with atomic_output(target) as out:
        out.write(b"<FlexQueryResponse/>")
    assert target.read_bytes() == b"<FlexQueryResponse/>"
    temp.unlink()
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_atomic_output_leaves_nothing_when_the_block_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_bytes(b"before")

    def fail_halfway() -> None:
        with atomic_output(target) as out:
            out.write(b"half")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        fail_halfway()
    assert target.read_bytes() == b"before"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


# --- the early check ------------------------------------------------------------------------


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "readonly"
    directory.mkdir()
    directory.chmod(0o500)
    yield directory
    directory.chmod(0o700)


def test_check_target_accepts_a_writable_place_and_creates_nothing(tmp_path: Path) -> None:
    check_target(tmp_path / "new.xml")
    existing = tmp_path / "old.xml"
    existing.write_bytes(b"old")
    check_target(existing)
    check_target(tmp_path / ("n" * 255))
    assert [p.name for p in tmp_path.iterdir()] == ["old.xml"]


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("dir", "it is a directory"),
        ("missing/x.xml", "no such directory"),
        ("file/x.xml", "is not a directory"),
        ("n" * 256, "file name too long"),
    ],
)
def test_check_target_refuses_what_could_never_be_written(
    tmp_path: Path, where: str, says: str
) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(SaveError, match=re.escape(says)) as raised:
        check_target(tmp_path / where)
    assert str(raised.value).startswith(f"cannot write {str(tmp_path / where)!r}: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_check_target_refuses_a_directory_it_may_not_write(readonly_dir: Path) -> None:
    with pytest.raises(SaveError, match="permission denied"):
        check_target(readonly_dir / "x.xml")
    with pytest.raises(SaveError, match="Permission denied"):
        new_temp(readonly_dir / "x.xml")


# --- stale parts ------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The directory downloads go to (``tmp_path`` also holds the scratch of :func:`part_of`)."""
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


def test_a_dead_writers_part_goes_with_the_next_write_to_the_directory(folder: Path) -> None:
    stale = part_of(dead_pid(), folder / "killed.xml")
    fresh = new_temp(folder / "next.xml")
    assert parts(folder) == [fresh.name]
    assert not stale.exists()


def test_a_live_writers_part_stays(folder: Path) -> None:
    with live_writer(folder / "busy.xml") as theirs:
        mine = new_temp(folder / "busy.xml")  # this process, alive too
        new_temp(folder / "other.xml")
        assert theirs.exists()
        assert mine.exists()


def test_a_part_untouched_for_a_day_goes_whoever_wrote_it(folder: Path) -> None:
    silent = part_of(os.getpid(), folder / "stuck.xml")  # alive, yet silent for a day
    age(silent, DAY + 60)
    far = part_of(dead_pid(), folder / "far.xml", writer=OTHER_HOST)
    age(far, DAY + 60)
    near = part_of(dead_pid(), folder / "near.xml", writer=OTHER_HOST)
    age(near, DAY - 60)  # another host's writer cannot be asked: a day's grace
    fresh = new_temp(folder / "next.xml")
    assert parts(folder) == sorted([near.name, fresh.name])


def test_files_of_other_naming_are_never_touched(folder: Path) -> None:
    stale = part_of(dead_pid(), folder / "a.xml")
    others = [
        folder / ".report.xml.k2j3h4g5.part",  # this library's naming before
        folder / "notes.ibkr-part",
        folder / stale.name.replace(".ibkr-part", ".ibkr-part.bak"),
        folder / stale.name[1:],  # no leading dot
    ]
    for path in others:
        path.write_bytes(b"keep")
        age(path, 30 * DAY)
    directory = folder / stale.name.replace("a.xml", "d.xml")  # our form, not a file
    directory.mkdir()
    link = folder / stale.name.replace("a.xml", "l.xml")
    link.symlink_to(others[0])
    age(link, 30 * DAY)
    new_temp(folder / "next.xml")
    assert not stale.exists()
    assert all(path.read_bytes() == b"keep" for path in others)
    assert directory.is_dir()
    assert link.is_symlink()


def test_trouble_while_clearing_never_fails_the_write(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = part_of(dead_pid(), folder / "a.xml")
    impossible = part_of(9_999_999_999, folder / "crafted.xml")  # no such pid can exist
    new_temp(folder / "a.xml")
    assert impossible.exists()  # in doubt: left for the age rule
    assert not stale.exists()
    stale = part_of(dead_pid(), folder / "a.xml")

    def refuse(self: Path, missing_ok: bool = False) -> None:
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patched:
        patched.setattr(Path, "unlink", refuse)
        assert new_temp(folder / "b.xml").exists()
    assert stale.exists()

    def unreadable(path: object) -> None:
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patched:
        patched.setattr(os, "scandir", unreadable)
        assert new_temp(folder / "c.xml").exists()
    assert stale.exists()
