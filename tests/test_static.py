"""Full type hints are part of the style (DESIGN.md): mypy must pass on every package."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_passes() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy", "--ignore-missing-imports",
                             "lager", "box_agent", "client"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]


def test_ruff_passes() -> None:
    """The rules chosen in pyproject.toml ([tool.ruff]) hold on the whole tree."""
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
