"""The client's config dir: known boxes, lager's own pinned host keys, and lager's own key."""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from lager.errors import LagerError, UnknownBox, UsageError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# Like OpenSSH's ConnectTimeout: how long a box may take to accept TCP and finish the SSH
# handshake and auth before lager gives up (exit 255). Per box, or per command through the env.
DEFAULT_CONNECT_TIMEOUT = 10.0
ENV_CONNECT_TIMEOUT = "LAGER_CONNECT_TIMEOUT"


def config_dir() -> Path:
    env = os.environ.get("LAGER_CONFIG_DIR")
    return Path(env) if env else Path.home() / ".config" / "lager"


@dataclass
class Box:
    name: str
    host: str
    port: int = 2222
    user: str = "lager"
    identity: str | None = None
    connect_timeout: float | None = None  # None: $LAGER_CONNECT_TIMEOUT, else the default

    @property
    def known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def parse_seconds(value: str, what: str) -> float:
    """A positive, finite number of seconds, or a one-line usage error naming `what`."""
    try:
        seconds = float(value)
    except ValueError:
        raise UsageError(f"{what} {value!r} is not a number of seconds") from None
    if not 0 < seconds < float("inf"):
        raise UsageError(f"{what} {value!r} must be a positive number of seconds")
    return seconds


def connect_timeout(box: Box) -> float:
    """The env wins over the box's stored value: it is the per-command override."""
    raw = os.environ.get(ENV_CONNECT_TIMEOUT)
    if raw:
        return parse_seconds(raw, ENV_CONNECT_TIMEOUT)
    return box.connect_timeout or DEFAULT_CONNECT_TIMEOUT


def _entry(box: Box) -> dict[str, object]:
    # Unset optional fields stay out of the file, so a lager without them can still read it.
    entry = asdict(box)
    if entry["connect_timeout"] is None:
        del entry["connect_timeout"]
    return entry


class Config:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or config_dir()
        self.boxes_path = self.root / "boxes.json"
        self.known_hosts_path = self.root / "known_hosts"
        self.default_key_path = self.root / "id_ed25519"

    def _ensure_dir(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def boxes(self) -> dict[str, Box]:
        if not self.boxes_path.exists():
            return {}
        try:
            raw = json.loads(self.boxes_path.read_text())
            # Fields a newer lager added are skipped, so an older one still reads the file.
            known = {f.name for f in fields(Box)}
            return {name: Box(**{k: v for k, v in entry.items() if k in known})
                    for name, entry in raw.items()}
        except (ValueError, TypeError) as exc:
            raise LagerError(f"{self.boxes_path} is damaged ({exc}); fix or remove it") from None

    def _save(self, boxes: dict[str, Box]) -> None:
        self._ensure_dir()
        tmp = self.boxes_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({n: _entry(b) for n, b in sorted(boxes.items())}, indent=2))
        tmp.replace(self.boxes_path)

    def box(self, name: str | None) -> Box:
        if not name:
            raise UsageError("no box given: use --box NAME or set LAGER_BOX")
        boxes = self.boxes()
        if name not in boxes:
            known = ", ".join(sorted(boxes)) or "none yet"
            raise UnknownBox(f"unknown box {name!r} (known: {known}); "
                             f"add it with `lager boxes add {name} --host HOST`")
        return boxes[name]

    def add_box(self, box: Box) -> None:
        if not _NAME.match(box.name):
            raise UsageError(f"box name {box.name!r} must be letters, digits, '.', '_' or '-'")
        boxes = self.boxes()
        boxes[box.name] = box
        self._save(boxes)

    def remove_box(self, name: str) -> Box:
        boxes = self.boxes()
        box = self.box(name)
        del boxes[name]
        self._save(boxes)
        self.unpin(box)
        return box

    # --- pinned host keys, in lager's own file (OpenSSH known_hosts syntax) ---

    def pinned_line(self, box: Box) -> str | None:
        if not self.known_hosts_path.exists():
            return None
        for line in self.known_hosts_path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == box.known_hosts_name:
                return line
        return None

    def pin(self, box: Box, key_type: str, key_b64: str) -> None:
        self._ensure_dir()
        self.unpin(box)
        with self.known_hosts_path.open("a") as f:
            f.write(f"{box.known_hosts_name} {key_type} {key_b64}\n")

    def unpin(self, box: Box) -> None:
        if not self.known_hosts_path.exists():
            return
        keep = [line for line in self.known_hosts_path.read_text().splitlines()
                if line.split()[:1] != [box.known_hosts_name]]
        self.known_hosts_path.write_text("".join(line + "\n" for line in keep))

    # --- lager's own client key ---

    def identity_path(self, box: Box) -> Path:
        return Path(box.identity).expanduser() if box.identity else self.default_key_path

    def ensure_default_key(self) -> tuple[Path, str, bool]:
        """Create lager's ed25519 key once; returns its path, public line, and if it is new."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        path = self.default_key_path
        pub_path = path.with_name(path.name + ".pub")
        created = False
        if not path.exists():
            self._ensure_dir()
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
            public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                   serialization.PublicFormat.OpenSSH)
            user = os.environ.get("USER") or "user"
            pub_path.write_text(f"{public.decode()} lager:{user}@{os.uname().nodename}\n")
            created = True
        return path, pub_path.read_text().strip(), created
