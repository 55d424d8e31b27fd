"""`lager-box` says what it did and nothing else (#19 review): asyncssh's import makes
cryptography warn about DSA 5-10 times on stderr; box_agent silences that one warning from
asyncssh's crypto modules, and no other."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import LAGER_BOX


def new_key(path: Path) -> Path:
    """A key made by OpenSSH's ssh-keygen, as an owner authorizing a laptop has."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "laptop", "-f",
                    str(path)], check=True)
    return path.with_name(path.name + ".pub")


def test_authorize_says_one_line_and_stderr_stays_empty(tmp_path: Path) -> None:
    pub = new_key(tmp_path / "k")
    done = subprocess.run([LAGER_BOX, "authorize", "--state-dir", str(tmp_path / "s"),
                           str(pub)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert len(done.stdout.splitlines()) == 1 and done.stdout.startswith("authorized SHA256:")


def test_a_refused_authorize_is_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-key.pub"
    bogus.write_text("ssh-ed25519 !!!not base64!!! laptop\n")
    done = subprocess.run([LAGER_BOX, "authorize", "--state-dir", str(tmp_path / "s"),
                           str(bogus)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "Deprecat" not in done.stderr


def test_other_warnings_still_show() -> None:
    """The filter is that warning from asyncssh only: the same category raised elsewhere, and
    other categories, still reach stderr."""
    code = ("import warnings, box_agent.server\n"
            "from cryptography.utils import CryptographyDeprecationWarning\n"
            "warnings.warn('from elsewhere', CryptographyDeprecationWarning)\n"
            "warnings.warn('a plain one', UserWarning)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "from elsewhere" in done.stderr and "a plain one" in done.stderr
    assert "DSA" not in done.stderr
