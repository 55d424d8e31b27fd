"""Reaching a box the way ssh would: the user's ssh_config, read with paramiko's own SSHConfig.

The file is `$LAGER_SSH_CONFIG` (what `lager -F FILE` sets), else `~/.ssh/config`. `Include`
lines are expanded here (paramiko ignores them). Honoured per host: HostName, Port, User,
IdentityFile, CertificateFile, IdentitiesOnly, IdentityAgent none, BatchMode, HostKeyAlias,
UserKnownHostsFile, ProxyJump (any number of hops, each looked up in turn), ProxyCommand,
ConnectTimeout, ServerAliveInterval and ServerAliveCountMax.

Defaults differ by role: the box listens on protocol.DEFAULT_PORT and takes the user name
`lager` unless ssh_config or the target says otherwise; a jump host is an ordinary sshd (port
22, the local user name, the usual ~/.ssh keys). When a host has both ProxyJump and
ProxyCommand, ProxyJump wins (paramiko cannot tell which came first, which is ssh's rule).

Only `resolve` imports paramiko; what config.py needs on the keeper's path does not.
"""
from __future__ import annotations

import getpass
import os
import re
import shlex
from pathlib import Path
from typing import Any, ClassVar

from lager import protocol
from lager.errors import ConnectionFailed, UsageError

from .config import Box, parse_seconds

ENV_SSH_CONFIG = "LAGER_SSH_CONFIG"
SSH_PORT = 22
DEFAULT_USER = "lager"
MAX_HOPS = 8
_INCLUDE = re.compile(r"^\s*include(?:\s*=\s*|\s+)(.+)$", re.IGNORECASE)
_HOST = re.compile(r"^\s*host(?:\s*=\s*|\s+)(.+)$", re.IGNORECASE)
# The keys OpenSSH reads from ~/.ssh when no IdentityFile is given (FIDO keys: paramiko has
# no support for them; DSA: refused by OpenSSH 8.8+ and by lager boxes).
DEFAULT_IDENTITIES = ("id_rsa", "id_ecdsa", "id_ed25519")


class SSHConfigError(ConnectionFailed):
    """An ssh_config lager cannot use: one line, exit 255 as ssh has it."""


class BadTarget(UsageError):
    """A --box that is not `[user@]host[:port]`: a usage error, exit 2."""


def config_path() -> Path:
    env = os.environ.get(ENV_SSH_CONFIG)
    return Path(env).expanduser() if env else Path.home() / ".ssh" / "config"


def _mtime(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _read(path: Path, depth: int, seen: list[Path], lines: list[str]) -> None:
    seen.append(path)
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return  # a missing file is no config, as for ssh; its mtime still keys the cache
    for line in text.splitlines():
        include = _INCLUDE.match(line)
        if include is None:
            lines.append(line)
            continue
        if depth >= 16:
            raise SSHConfigError(f"{path}: Include nested too deeply")
        try:
            patterns = shlex.split(include.group(1))
        except ValueError:
            raise SSHConfigError(f"{path}: cannot read {line.strip()!r}") from None
        import glob  # only for an Include (a run's start loads this module without one)

        for pattern in patterns:
            full = Path(pattern).expanduser()
            if not full.is_absolute():
                full = Path.home() / ".ssh" / full  # ssh's rule for a user's config
            seen.append(full.parent)  # a file added to a globbed directory changes the result
            for match in sorted(glob.glob(str(full))):
                _read(Path(match), depth + 1, seen, lines)


def read_config() -> tuple[list[str], list[Path]]:
    """The config's lines with Includes expanded, and every file and directory they came from."""
    seen: list[Path] = []
    lines: list[str] = []
    _read(config_path(), 0, seen, lines)
    return lines, seen


def stamp_of(paths: list[Path]) -> dict[str, Any]:
    return {"config": str(config_path()),
            "files": [[str(p), _mtime(p)] for p in dict.fromkeys(paths)]}


def fresh(stamp: Any) -> bool:
    """True while the config files a cached resolution came from are unchanged."""
    if not isinstance(stamp, dict) or stamp.get("config") != str(config_path()):
        return False
    files = stamp.get("files")
    return isinstance(files, list) and all(
        isinstance(item, list) and len(item) == 2 and _mtime(Path(item[0])) == item[1]
        for item in files)


def host_aliases(lines: list[str]) -> set[str]:
    """The non-wildcard names of `Host` lines: the only bare names taken as hosts."""
    names: set[str] = set()
    for line in lines:
        match = _HOST.match(line)
        if match is None:
            continue
        try:
            tokens = shlex.split(match.group(1))
        except ValueError:
            continue
        names.update(t for t in tokens if not any(c in t for c in "*?!"))
    return names


def _is_ip(text: str) -> bool:
    # Imported here: a run's start loads this module for the known_hosts files' names, not
    # for a target, and ipaddress was ~1.5 ms of it (issue 13).
    import ipaddress

    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def parse_target(spec: str) -> tuple[str | None, str, int | None]:
    """`[ssh://][user@]host[:port]` (IPv6 as `[addr]:port` or bare) -> (user, host, port)."""
    rest = spec[len("ssh://"):] if spec.startswith("ssh://") else spec
    user, at, hostport = rest.rpartition("@")
    if at and not user:
        raise BadTarget(f"{spec!r}: empty user name before '@'")
    host, port_text = hostport, ""
    if hostport.startswith("["):
        close = hostport.find("]")
        tail = hostport[close + 1:]
        if close < 0 or (tail and not tail.startswith(":")):
            raise BadTarget(f"{spec!r}: use [ADDRESS]:PORT")
        host, port_text = hostport[1:close], tail[1:]
    elif not _is_ip(hostport) and ":" in hostport:
        host, _, port_text = hostport.rpartition(":")
    port = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise BadTarget(f"{spec!r}: {port_text!r} is not a port")
        port = int(port_text)
    if not host or any(c.isspace() for c in host):
        raise BadTarget(f"{spec!r}: no host name")
    return (user or None), host, port


def is_host_target(name: str) -> bool:
    """ISSUE-NOTES 13: a bare name is a host only when it is an ssh_config Host with no
    wildcard, or an address; USER@HOST, HOST:PORT and [ADDR]:PORT always are."""
    if "@" in name or name.startswith("[") or _is_ip(name):
        return True
    host, sep, port = name.rpartition(":")
    if sep and host and port.isdigit():
        return True
    return name in host_aliases(read_config()[0])


def _expand_tokens(value: str, host: str, alias: str, port: int, user: str) -> str:
    """ssh's %-tokens for ProxyCommand, with the port and user lager will really use."""
    out, i = [], 0
    table = {"h": host, "n": alias, "p": str(port), "r": user, "%": "%"}
    while i < len(value):
        if value[i] == "%" and i + 1 < len(value) and value[i + 1] in table:
            out.append(table[value[i + 1]])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def _flag(opts: dict[str, Any], key: str) -> bool:
    return str(opts.get(key, "no")).lower() in ("yes", "true")


def _seconds(opts: dict[str, Any], key: str, what: str) -> float | None:
    raw = opts.get(key)
    if raw is None or str(raw) in ("0", "none"):
        return None
    return parse_seconds(str(raw), what)


class _Resolver:
    def __init__(self, lines: list[str]) -> None:
        from .ssh import _paramiko

        paramiko = _paramiko()

        class Config(paramiko.config.SSHConfig):  # type: ignore[misc, name-defined]
            # %p and %r are expanded here instead: paramiko would use 22 and the local user
            # where lager means protocol.DEFAULT_PORT and `lager`.
            TOKENS_BY_CONFIG_KEY: ClassVar[dict[str, list[str]]] = {
                **paramiko.config.SSHConfig.TOKENS_BY_CONFIG_KEY,
                                    "proxycommand": ["~"], "proxyjump": []}

        try:
            self.config = Config.from_text("\n".join(lines))
        except (paramiko.ssh_exception.ConfigParseError, ValueError) as exc:
            raise SSHConfigError(f"cannot read ssh_config {config_path()}: {exc}") from None
        self.paramiko = paramiko

    def lookup(self, host: str) -> dict[str, Any]:
        try:
            return dict(self.config.lookup(host))
        except ImportError:  # paramiko runs `Match exec` through invoke, kept out on purpose
            raise SSHConfigError(f"ssh_config {config_path()}: lager does not run `Match exec` "
                                 f"(looking up {host})") from None
        except (self.paramiko.ssh_exception.ConfigParseError,
                self.paramiko.ssh_exception.CouldNotCanonicalize, ValueError, KeyError) as exc:
            raise SSHConfigError(f"ssh_config {config_path()}, host {host}: {exc}") from None

    def one(self, spec: str, hop: bool, jumps_allowed: bool, depth: int) -> Box:
        if depth > MAX_HOPS:
            raise SSHConfigError(f"ProxyJump for {spec!r} goes more than {MAX_HOPS} hops deep "
                                 "(a loop in ssh_config?)")
        try:
            user, alias, port = parse_target(spec)
        except BadTarget as exc:
            if not hop:
                raise
            raise SSHConfigError(f"ssh_config ProxyJump: {exc}") from None
        opts = self.lookup(alias)
        host = str(opts.get("hostname") or alias)
        try:
            port = port or int(opts.get("port") or (SSH_PORT if hop else protocol.DEFAULT_PORT))
        except ValueError:
            raise SSHConfigError(f"ssh_config: Port {opts.get('port')!r} for {alias} is not a "
                                 "number") from None
        user = user or opts.get("user") or (getpass.getuser() if hop else DEFAULT_USER)
        known_hosts = [str(Path(p).expanduser()) for p in
                       str(opts.get("userknownhostsfile", "")).split()]
        box = Box(
            name=spec, host=host, port=port, user=str(user), ssh=spec, hop=hop,
            identities=[str(Path(p).expanduser()) for p in opts.get("identityfile", [])],
            certificate=str(Path(opts["certificatefile"]).expanduser())
            if opts.get("certificatefile") else None,
            identities_only=_flag(opts, "identitiesonly"),
            use_agent=str(opts.get("identityagent", "")).lower() != "none",
            batch=_flag(opts, "batchmode"),
            host_key_alias=opts.get("hostkeyalias") or None,
            known_hosts_files=known_hosts,
            connect_timeout=_seconds(opts, "connecttimeout", "ssh_config ConnectTimeout"),
            server_alive_interval=_seconds(opts, "serveraliveinterval",
                                           "ssh_config ServerAliveInterval") or 0.0,
            server_alive_count_max=int(opts.get("serveralivecountmax", 3)),
        )
        command = opts.get("proxycommand")
        if command:
            box.proxy_command = _expand_tokens(str(command), host, alias, port, box.user)
        jump = str(opts.get("proxyjump") or "")
        if jumps_allowed and jump and jump.lower() != "none":
            box.proxy_command = None
            box.jumps = self.chain([h.strip() for h in jump.split(",") if h.strip()], depth)
        return box

    def chain(self, hops: list[str], depth: int) -> list[Box]:
        """`ProxyJump a,b`: a as ssh would reach it (its own ProxyJump too), then b through a.
        Flattened so that only the first hop of all may have a ProxyCommand."""
        first = self.one(hops[0], hop=True, jumps_allowed=True, depth=depth + 1)
        path = [*first.jumps, first]
        first.jumps = []
        for spec in hops[1:]:
            later = self.one(spec, hop=True, jumps_allowed=False, depth=depth + 1)
            later.proxy_command = None
            path.append(later)
        if len(path) > MAX_HOPS:
            raise SSHConfigError(f"more than {MAX_HOPS} ProxyJump hops")
        return path


def resolve(target: str) -> tuple[Box, dict[str, Any]]:
    """The box `target` names, with its jump hosts, and the stamp that keys its cache entry."""
    lines, files = read_config()
    box = _Resolver(lines).one(target, hop=False, jumps_allowed=True, depth=0)
    return box, stamp_of(files)


def default_identities() -> list[Path]:
    return [p for p in (Path.home() / ".ssh" / n for n in DEFAULT_IDENTITIES) if p.exists()]


def user_known_hosts(box: Box) -> list[Path]:
    """UserKnownHostsFile, else ssh's defaults; the system-wide file too, as ssh reads it."""
    if box.known_hosts_files:
        files = [Path(p) for p in box.known_hosts_files]
    else:
        files = [Path.home() / ".ssh" / "known_hosts", Path.home() / ".ssh" / "known_hosts2"]
    return [*files, Path("/etc/ssh/ssh_known_hosts")]
