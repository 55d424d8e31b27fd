"""The agent's state dir: host key, box keys (authorized_keys), run dirs and claim locks."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from lager.errors import LagerError

from .authkeys import REFUSED_KEY_TYPES, AuthLine, parse

log = logging.getLogger("lager-box.state")
DEFAULT_STATE_DIR = Path(os.environ.get("LAGER_BOX_STATE", "/var/lib/lager-box"))


@dataclass(frozen=True)
class BoxKey:
    """One key `authorize` added, with what the audit record names it by."""

    key: asyncssh.SSHKey
    comment: str
    fingerprint: str


class StateDir:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.host_key_path = root / "ssh_host_ed25519_key"
        self.authorized_keys_path = root / "authorized_keys"
        self.runs_dir = root / "runs"
        self.claims_dir = root / "claims"
        self._keys_cache: tuple[tuple[int, int, int], list[AuthLine]] | None = None
        self._keys_error: str | None = None

    def prepare(self) -> None:
        """First start creates everything; later starts keep the host key clients pinned."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Private to the agent; privilege separation may open it to passing through (0711),
        # never to listing or writing, so keep that bit when it is there.
        os.chmod(self.root, 0o700 | (os.stat(self.root).st_mode & 0o011))
        for sub in (self.runs_dir, self.claims_dir):
            sub.mkdir(exist_ok=True, mode=0o700)
        # Runs outlive the agent (their monitors keep them); the next agent adopts them.
        if not self.host_key_path.exists():
            key = asyncssh.generate_private_key("ssh-ed25519", comment="lager-box")
            key.write_private_key(str(self.host_key_path))
            os.chmod(self.host_key_path, 0o600)
        pub = self.host_key_path.with_name(self.host_key_path.name + ".pub")
        if not pub.exists():  # what an SSH CA signs for `lager-box serve --host-cert`
            self.host_key().write_public_key(str(pub))
        if not self.authorized_keys_path.exists():
            self.authorized_keys_path.touch(mode=0o600)

    def host_key(self) -> asyncssh.SSHKey:
        return asyncssh.read_private_key(str(self.host_key_path))

    def box_keys(self) -> list[AuthLine]:
        """Checked on every login so `lager-box authorize` takes effect without a restart;
        parsed (and its bad lines reported) only when the file changed."""
        try:
            st = self.authorized_keys_path.stat()
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            if self._keys_cache is not None and self._keys_cache[0] == stamp:
                return self._keys_cache[1]
            text = self.authorized_keys_path.read_text(errors="replace")
        except OSError as exc:
            # Fail closed. Said once per kind of failure: logins keep coming while it lasts.
            error = str(exc.strerror or exc)
            if error != self._keys_error:
                log.warning("cannot read %s: %s; refusing every key until it can be read",
                            self.authorized_keys_path, error)
            self._keys_error = error
            return []
        self._keys_error = None
        lines = parse(text, "authorized_keys")
        self._keys_cache = (stamp, lines)
        return lines

    def _append(self, line: str, present: str) -> None:
        """Add `line` unless a line starting with `present` (up to the key) is there."""
        self.prepare()
        try:
            existing = self.authorized_keys_path.read_text(errors="replace").splitlines()
        except OSError as exc:
            raise LagerError(f"cannot read {self.authorized_keys_path}: "
                             f"{exc.strerror or exc}") from None
        if any(old.strip().startswith(present) for old in existing):
            return
        with self.authorized_keys_path.open("a") as f:
            f.write(line + "\n")

    def authorize(self, pubkey: str) -> BoxKey:
        """Add a public key (a file's path or the line itself) to the box keys."""
        key, line = _read_public_key(pubkey)
        self._append(line, " ".join(line.split()[:2]))
        return BoxKey(key, key.get_comment() or "", key.get_fingerprint("sha256"))

    def authorize_ca(self, ca_key: str, principals: list[str]) -> BoxKey:
        """Trust user certificates signed by this CA (a file's path or the line itself), for
        the given principals only when some are given: one `cert-authority` line."""
        key, line = _read_public_key(ca_key)
        bad = [p for p in principals if not p or any(c in p for c in '",\\ \t')]
        if bad:
            raise LagerError(f"principal {bad[0]!r} may not be empty or hold quotes, commas, "
                             "backslashes or spaces")
        options = "cert-authority" + (f',principals="{",".join(principals)}"'
                                      if principals else "")
        self._append(f"{options} {line}", f"{options} {' '.join(line.split()[:2])}")
        return BoxKey(key, key.get_comment() or "", key.get_fingerprint("sha256"))


def _read_public_key(pubkey: str) -> tuple[asyncssh.SSHKey, str]:
    text = pubkey
    candidate = Path(pubkey).expanduser()
    if "ssh-" not in pubkey and "ecdsa-" not in pubkey and candidate.is_file():
        text = candidate.read_text()
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    try:
        key = asyncssh.import_public_key(line)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise LagerError(f"not an OpenSSH public key: {exc}") from None
    if key.get_algorithm() in REFUSED_KEY_TYPES:
        raise LagerError(f"{key.get_algorithm()} keys are not accepted (OpenSSH refuses them "
                         "too since 8.8); use an ed25519, ECDSA or RSA key")
    return key, line
