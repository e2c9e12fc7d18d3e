"""The README's examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- tested: [^>]*-->\n```python\n(.*?)```", text, re.DOTALL)
    assert match, "the README lost its tested example"
    return match[1]


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
    assert "2 passed" in result.stdout
