"""The client's config dir: known boxes, lager's own pinned host keys, and lager's own key.

A `--box` is a lager box name first. Otherwise it is reached the way ssh would reach it
(client/sshconfig.py): a non-wildcard ssh_config Host, an IP address, or `[user@]host[:port]`.
Such a resolution is cached here, keyed by the literal target and the ssh_config files' mtimes,
so the connection keeper's path (client/mux.py, client/fastpath.py) never imports paramiko.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from lager import protocol
from lager.errors import LagerError, UnknownBox, UsageError
from lager.plain_record import Factory, install

# typing costs ~5 ms of a short command's start (issue 13): its names are for type checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform

    _T = TypeVar("_T")
else:
    def dataclass_transform(**_kwargs: object) -> Callable[[_T], _T]:
        return lambda decorated: decorated

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CACHED_TARGETS = 64

# Like OpenSSH's ConnectTimeout: how long a box may take to accept TCP and finish the SSH
# handshake and auth before lager gives up (exit 255). Per box, or per command through the env.
DEFAULT_CONNECT_TIMEOUT = 10.0
ENV_CONNECT_TIMEOUT = "LAGER_CONNECT_TIMEOUT"


def config_dir() -> Path:
    env = os.environ.get("LAGER_CONFIG_DIR")
    return Path(env) if env else Path.home() / ".config" / "lager"


class UnknownBoxName(UnknownBox, UsageError):
    """A --box that is neither a lager box nor a host: a usage error, exit 2 (ISSUE-NOTES 13)."""


# A plain record instead of @dataclass: importing dataclasses (inspect, ast, dis, tokenize)
# was a fifth of the instructions of a short request through the keeper (issue 13), and every
# command reads a Box. Type checkers see it as a dataclass (dataclass_transform).


def field(*, default_factory: Callable[[], _T]) -> _T:
    return Factory(default_factory)  # type: ignore[return-value]


@dataclass_transform(field_specifiers=(field,))
def _record(cls: type[_T]) -> type[_T]:
    names = tuple(cls.__annotations__)
    install(cls, names, {n: cls.__dict__[n] for n in names if n in cls.__dict__})
    return cls


@_record
class Box:
    """A box, or one OpenSSH jump host on the way to it (`hop`).

    A lager box stores name, host, port, user, identity and connect_timeout (and `ssh` when it
    is defined by an ssh_config Host). The other fields come from ssh_config at resolution.
    """

    name: str
    host: str
    port: int = protocol.DEFAULT_PORT
    user: str = "lager"
    identity: str | None = None
    connect_timeout: float | None = None  # None: $LAGER_CONNECT_TIMEOUT, else the default
    ssh: str | None = None  # the ssh_config Host or [user@]host[:port] this box is reached as
    identities: list[str] = field(default_factory=list)  # IdentityFile, in order
    certificate: str | None = None  # CertificateFile
    identities_only: bool = False
    use_agent: bool = True  # IdentityAgent none turns it off
    batch: bool = False  # BatchMode: never ask for a passphrase
    host_key_alias: str | None = None
    known_hosts_files: list[str] = field(default_factory=list)  # UserKnownHostsFile
    proxy_command: str | None = None
    jumps: list[Box] = field(default_factory=list)  # ProxyJump, flattened, first hop first
    server_alive_interval: float = 0.0
    server_alive_count_max: int = 3
    hop: bool = False  # an OpenSSH jump host: ssh's defaults (port 22, ~/.ssh keys)
    inventory: str | None = None  # the Ansible inventory naming it (never stored in boxes.json)

    @property
    def known_hosts_name(self) -> str:
        """Pins are keyed by HostKeyAlias when one is set, so two boxes behind one forwarded
        local port each keep their own."""
        if self.host_key_alias:
            return self.host_key_alias
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    @property
    def principal_name(self) -> str:
        """The name a host certificate must list."""
        return self.host_key_alias or self.host

    @property
    def label(self) -> str:
        what = "jump host" if self.hop else "box"
        return f"{what} {self.name} ({self.host}:{self.port})"

    @property
    def target(self) -> str:
        """What to give `lager boxes add NAME --ssh` to reach this box again."""
        return self.ssh or self.name

    def to_dict(self) -> dict[str, Any]:
        """Only what differs from the defaults, so the file stays readable and a lager
        without the newer fields can still read it."""
        out: dict[str, Any] = {}
        defaults = Box("", "")
        for name in self.__annotations__:
            value = getattr(self, name)
            if name in ("name", "host") or value != getattr(defaults, name):
                out[name] = [j.to_dict() for j in value] if name == "jumps" else value
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Box:
        # Fields a newer lager added are skipped, so an older one still reads the file.
        known = set(cls.__annotations__)
        values = {k: v for k, v in raw.items() if k in known}
        values["jumps"] = [cls.from_dict(j) for j in values.get("jumps", [])]
        return cls(**values)


def _named(resolved: Box, stored: Box | None, name: str) -> Box:
    """A resolution under the name the user gave; a lager box's own settings win."""
    resolved.name = name
    if stored is not None:
        resolved.ssh = stored.ssh
        if stored.identity:
            resolved.identity = stored.identity
        if stored.connect_timeout:
            resolved.connect_timeout = stored.connect_timeout
    return resolved


ENV_INVENTORY = "LAGER_INVENTORY"  # also `--inventory FILE` (client/fleet/route.py)


def _inventory_given(name: str) -> bool:
    return bool(os.environ.get(ENV_INVENTORY)) and bool(_NAME.match(name))


def _inventory_box(name: str) -> Box | None:
    """NAME as the Ansible inventory in $LAGER_INVENTORY names it, before ssh_config (the
    fleet's order, client/fleet/targets.py). Read only for a plain name no lager box has."""
    if not _inventory_given(name):
        return None
    from .fleet.inventory import read

    return read(os.environ[ENV_INVENTORY]).boxes.get(name)


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


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
    # What ssh_config says is read afresh at each use, never stored with the box.
    stored = ("name", "host", "port", "user", "identity", "connect_timeout", "ssh")
    return {k: getattr(box, k) for k in stored if k in ("name", "host", "port", "user")
            or getattr(box, k) is not None}


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
            return {name: Box.from_dict(entry) for name, entry in raw.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise LagerError(f"{self.boxes_path} is damaged ({exc}); fix or remove it") from None

    def _save(self, boxes: dict[str, Box]) -> None:
        self._ensure_dir()
        tmp = self.boxes_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({n: _entry(b) for n, b in sorted(boxes.items())}, indent=2))
        tmp.replace(self.boxes_path)

    def box(self, name: str | None) -> Box:
        """The box `--box NAME` means: a lager box, else a host reached as ssh would reach it
        (ssh_config read only when the cached resolution is stale)."""
        if not name:
            raise UsageError("no box given: use --box NAME or set LAGER_BOX")
        boxes = self.boxes()
        stored = boxes.get(name)
        if stored is not None and not stored.ssh:
            return stored
        if stored is None:  # lager's config wins; then an Ansible inventory's name (issue 18)
            listed = _inventory_box(name)
            if listed is not None:
                return listed
        found = self.cached_box(name, boxes)
        if found is not None:
            return found
        from . import sshconfig

        target = stored.ssh if stored is not None and stored.ssh else name
        if stored is None and not sshconfig.is_host_target(name):
            known = ", ".join(sorted(boxes)) or "none yet"
            raise UnknownBoxName(
                f"unknown box {name!r} (known: {known}); add it with `lager boxes add {name} "
                "--host HOST`, or name a host: an ssh_config Host, an IP address, "
                "USER@HOST or HOST:PORT")
        resolved, stamp = sshconfig.resolve(target)
        self._cache_resolution(target, resolved, stamp)
        return _named(resolved, stored, name)

    def cached_box(self, name: str, boxes: dict[str, Box] | None = None) -> Box | None:
        """The box for NAME without reading ssh_config or importing paramiko: a lager box, or a
        resolution cached while the ssh_config files are unchanged. None: resolve it anew."""
        boxes = self.boxes() if boxes is None else boxes
        stored = boxes.get(name)
        if stored is not None and not stored.ssh:
            return stored
        if stored is None and _inventory_given(name):
            return None  # the inventory may name it, and is read only on the full path
        from . import sshconfig  # only for a box reached the ssh way (its import costs)

        target = stored.ssh if stored is not None and stored.ssh else name
        entry = self._resolutions().get(target)
        if not isinstance(entry, dict) or not sshconfig.fresh(entry.get("stamp")):
            return None
        try:
            return _named(Box.from_dict(entry["box"]), stored, name)
        except (KeyError, TypeError, AttributeError):
            return None

    @property
    def _resolutions_path(self) -> Path:
        return self.root / "ssh_targets.json"

    def _resolutions(self) -> dict[str, Any]:
        try:
            raw = json.loads(self._resolutions_path.read_text())
        except (OSError, ValueError):
            return {}
        return raw if isinstance(raw, dict) else {}

    def _cache_resolution(self, target: str, box: Box, stamp: Any) -> None:
        cache = self._resolutions()
        cache.pop(target, None)
        cache[target] = {"stamp": stamp, "box": box.to_dict()}
        while len(cache) > _CACHED_TARGETS:  # oldest first: dicts keep insertion order
            del cache[next(iter(cache))]
        try:
            self._ensure_dir()
            tmp = self._resolutions_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache))
            tmp.replace(self._resolutions_path)
        except OSError:
            pass  # only a cache: the next command resolves again

    def add_box(self, box: Box) -> None:
        if not _NAME.match(box.name):
            raise UsageError(f"box name {box.name!r} must be letters, digits, '.', '_' or '-'")
        boxes = self.boxes()
        boxes[box.name] = box
        self._save(boxes)

    def remove_box(self, name: str) -> Box:
        boxes = self.boxes()
        if name not in boxes:
            self.box(name)  # says why: unknown, or a host rather than a lager box
            raise UnknownBoxName(f"{name!r} is not a lager box, so there is nothing to remove")
        box = boxes[name]  # as stored: removing must not depend on today's ssh_config
        del boxes[name]
        self._save(boxes)
        # Two names for one address share one pin: it goes only with the last of them.
        if box.known_hosts_name not in self._pin_names(boxes):
            self.unpin(box)
        return box

    def _pin_names(self, boxes: dict[str, Box]) -> set[str]:
        """The pin names the given boxes use: a box reached the ssh way by its cached
        resolution (which knows HostKeyAlias) when there is one, and by its stored address."""
        names = {b.known_hosts_name for b in boxes.values()}
        for name, stored in boxes.items():
            if stored.ssh:
                resolved = self.cached_box(name, boxes)
                if resolved is not None:
                    names.add(resolved.known_hosts_name)
        return names

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
        """The key offered first: --identity, else ssh_config's first IdentityFile, else
        lager's own (client/identities.py has the whole order, agent keys included)."""
        if box.identity:
            return Path(box.identity).expanduser()
        return Path(box.identities[0]) if box.identities else self.default_key_path

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
