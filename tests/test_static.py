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


def test_mypy_checks_a_message_constructor(tmp_path: Path) -> None:
    """@message classes look like dataclasses to mypy (dataclass_transform): a wrong field type,
    an unknown field, a factory field's item type, a frozen message's assignment are errors."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from lager.protocol.channel import FileEntry, RunHeader\n"
        "from lager.protocol.reservation import Hold\n"
        "ok = RunHeader('t.py', files=[FileEntry('t.py', 3)]).replaced(fleet='f-1')\n"
        "ok.files.append(FileEntry('u.py', 1))\n"
        "RunHeader(main=1)\n"
        "RunHeader('t.py', flet='f-1')\n"
        "RunHeader('t.py', files=[1])\n"
        "Hold('i', 'n', 'f', 'l', 0.0, 'run').label = 'x'\n")
    result = subprocess.run([sys.executable, "-m", "mypy", "--ignore-missing-imports",
                             "--cache-dir", str(tmp_path / "cache"), str(probe)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    errors = sorted(int(line.split(":")[1]) for line in result.stdout.splitlines()
                    if ": error:" in line)
    assert errors == [5, 6, 7, 8], result.stdout[-3000:]
