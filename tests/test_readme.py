"""The README's examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from ibkr_flex_client import FlexStatement
from ibkr_flex_client.testing import build_statement

README = Path(__file__).parents[1] / "README.md"


def readme_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- tested: [^>]*-->\n```python\n(.*?)```", text, re.DOTALL)
    assert len(blocks) == 2, "the README lost a tested example"
    return blocks


def readme_example() -> str:
    return next(b for b in readme_blocks() if "test_my_report.py" in b)


def test_typed_rows_example_runs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    block = next(b for b in readme_blocks() if "statement.rows" in b)
    module = types.ModuleType("readme_typed_rows")  # dataclasses look their module up
    monkeypatch.setitem(sys.modules, module.__name__, module)
    module.statement = FlexStatement(build_statement())  # type: ignore[attr-defined]
    exec(compile(block, "README.md", "exec"), module.__dict__)  # noqa: S102 - our own README
    assert capsys.readouterr().out.splitlines() == ["AAPL 10", "MSFT -5", "SPY   260417C00560000 1"]


def test_testing_your_code_example_passes_as_written(tmp_path: Path) -> None:
    (tmp_path / "test_my_report.py").write_text(readme_example(), encoding="utf-8")
    result = subprocess.run(  # noqa: S603 - our interpreter, our file
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{readme_example().count('def test_')} passed" in result.stdout


def test_testing_your_code_example_is_mypy_strict_clean(tmp_path: Path) -> None:
    """Users copy it into projects that type-check their tests: it must pass as written."""
    pytest.importorskip("mypy")
    (tmp_path / "test_my_report.py").write_text(readme_example(), encoding="utf-8")
    result = subprocess.run(  # noqa: S603 - our interpreter, our file
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            "test_my_report.py",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,  # no project config here: --strict alone, as a user's project
    )
    assert result.returncode == 0, result.stdout + result.stderr
