"""Host key checks against known_hosts files, read here rather than by paramiko.

paramiko's loader raises on `@cert-authority` lines (DESIGN.md), and fleets live on exactly
those: one CA line instead of a pin per box. This reads OpenSSH's format in full: plain and
hashed (`|1|salt|hash`) names, `*`/`?` patterns and `!` negation, `@cert-authority` and
`@revoked`. No paramiko here; the CA signature check is in client/sshcert.py.

Order: lager's own file decides first, when it knows the host; then the user's files, as ssh.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from lager.errors import HostKeyChanged

from . import sshcert
from .config import Box, Config
from .records import record

if TYPE_CHECKING:
    import paramiko

CA_MARKER = "@cert-authority"
REVOKED_MARKER = "@revoked"


@record(frozen=True)
class Entry:
    marker: str | None
    patterns: tuple[str, ...]
    key_type: str
    blob: bytes
    path: Path
    line: int

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def fingerprint(key_bytes: bytes) -> str:
    digest = base64.b64encode(hashlib.sha256(key_bytes).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def key_changed(label: str, seen: str, fix: str, pinned: str = "") -> str:
    """The one "HOST KEY CHANGED" line (connecting and `lager boxes add` both say it)."""
    was = f"pinned {pinned}, " if pinned else ""
    return (f"HOST KEY CHANGED for {label}: {was}it now shows {seen}. Refusing to connect. "
            f"If it was reinstalled on purpose, {fix}")


def _hashed_match(pattern: str, name: str) -> bool:
    parts = pattern.split("|")
    if len(parts) != 4 or parts[1] != "1":
        return False
    try:
        salt, want = base64.b64decode(parts[2]), base64.b64decode(parts[3])
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), want)


def _wildcard(pattern: str, name: str) -> bool:
    """ssh's patterns know only `*` and `?`; `[host]:port` brackets are literal."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.IGNORECASE | re.DOTALL) is not None


def matches(patterns: Iterable[str], name: str) -> bool:
    """OpenSSH's rule: any negated pattern that matches wins; else any plain one that does."""
    found = False
    for pattern in patterns:
        if pattern.startswith("|"):
            found = found or _hashed_match(pattern, name)
        elif pattern.startswith("!"):
            if _wildcard(pattern[1:], name):
                return False
        elif _wildcard(pattern, name):
            found = True
    return found


def read(path: Path) -> list[Entry]:
    """Every usable line; lines this cannot read are skipped, as ssh skips them."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        parts = raw.split()
        if not parts or parts[0].startswith("#"):
            continue
        marker = None
        if parts[0].startswith("@"):
            marker, parts = parts[0], parts[1:]
            if marker not in (CA_MARKER, REVOKED_MARKER):
                continue
        if len(parts) < 3:
            continue
        try:
            blob = base64.b64decode(parts[2], validate=True)
            if sshcert.key_type_of(blob) != parts[1]:
                continue
        except (binascii.Error, ValueError):
            continue
        entries.append(Entry(marker, tuple(parts[0].split(",")), parts[1], blob, path, number))
    return entries


@record(frozen=True)
class Presented:
    """What the host showed: its plain key, and the certificate around it when it sent one."""

    key_type: str
    blob: bytes
    cert_blob: bytes | None = None


class Verdict:
    TRUSTED, UNKNOWN, CHANGED, REVOKED, BAD_CERT = "trusted", "unknown", "changed", "revoked", \
        "bad-cert"

    def __init__(self, status: str, detail: str = "", entry: Entry | None = None) -> None:
        self.status = status
        self.detail = detail
        self.entry = entry

    @property
    def via_ca(self) -> bool:
        return self.status == Verdict.TRUSTED and self.entry is not None and \
            self.entry.marker == CA_MARKER

    def __repr__(self) -> str:
        return f"Verdict({self.status!r}, {self.detail!r})"


def _cert_verdict(cert_blob: bytes, name: str, principal: str,
                  entries: list[Entry]) -> Verdict | None:
    """A verdict when a CA line for this host signed the certificate; None to fall back to
    the plain key (ssh: "No matching CA found. Retry with plain key")."""
    try:
        cert = sshcert.parse(cert_blob)
    except sshcert.CertError:
        return None
    for entry in entries:
        if entry.marker == REVOKED_MARKER and entry.blob == cert.ca_blob:
            return Verdict(Verdict.REVOKED, f"its certificate's CA is revoked at {entry.where}",
                           entry)
    cas = [e for e in entries if e.marker == CA_MARKER and e.blob == cert.ca_blob
           and matches(e.patterns, name)]
    if not cas:
        return None
    ca = cas[0]
    problem = None
    if cert.kind != sshcert.HOST_CERT:
        problem = "it is not a host certificate"
    elif not sshcert.verify(cert):
        problem = "the CA's signature does not verify"
    elif principal not in cert.principals:
        listed = ", ".join(cert.principals) or "no names"
        problem = f"it is for {listed}, not {principal}"
    elif cert.critical_options:
        problem = "it has critical options lager does not know: " + \
            ", ".join(cert.critical_options)
    else:
        problem = cert.validity_problem()
    if problem:
        return Verdict(Verdict.BAD_CERT, f"host certificate {cert.key_id!r} from the CA at "
                       f"{ca.where} is refused: {problem}", ca)
    return Verdict(Verdict.TRUSTED, f"host certificate {cert.key_id!r} signed by the CA at "
                   f"{ca.where}", ca)


def _plain_verdict(shown: Presented, name: str, entries: list[Entry]) -> Verdict | None:
    known = [e for e in entries if e.marker is None and matches(e.patterns, name)]
    if not known:
        return None
    for entry in known:
        if entry.blob == shown.blob:
            return Verdict(Verdict.TRUSTED, f"pinned at {entry.where}", entry)
    same_type = [e for e in known if e.key_type == shown.key_type]
    if same_type:
        return Verdict(Verdict.CHANGED, f"{same_type[0].where} holds another {shown.key_type} "
                       "key for it", same_type[0])
    return None  # only keys of other types: as unknown, so the user decides


def check(shown: Presented, name: str, principal: str, lager_file: Path,
          user_files: Iterable[Path]) -> Verdict:
    """Trusted, or why not. `name` is the known_hosts name (HostKeyAlias, or host / [host]:port),
    `principal` the name a host certificate must list (HostKeyAlias or host, no port)."""
    ours = read(lager_file)
    theirs = [e for path in user_files for e in read(path)]
    everything = ours + theirs
    for entry in everything:
        if entry.marker == REVOKED_MARKER and entry.blob == shown.blob:
            return Verdict(Verdict.REVOKED, f"its key is revoked at {entry.where}", entry)
    if shown.cert_blob is not None:
        verdict = _cert_verdict(shown.cert_blob, name, principal, everything)
        if verdict is not None:
            return verdict
    for entries in (ours, theirs):
        verdict = _plain_verdict(shown, name, entries)
        if verdict is not None:
            return verdict
    return Verdict(Verdict.UNKNOWN)


def has_ca_for(name: str, files: Iterable[Path]) -> bool:
    """Whether some @cert-authority line could vouch for this host: then ask it for a cert."""
    return any(e.marker == CA_MARKER and matches(e.patterns, name)
               for path in files for e in read(path))


def _user_files(box: Box) -> list[Path]:
    from .sshconfig import user_known_hosts

    return user_known_hosts(box)


class HostKeyPolicy:
    """Strict: a host is trusted by lager's pin, the user's known_hosts, or a host certificate
    from a CA there; anything else is one line with the fingerprint and what to run."""

    def __init__(self, config: Config, target: Box) -> None:
        self.config = config
        self.target = target

    def wants_cert(self, node: Box) -> bool:
        return has_ca_for(node.known_hosts_name,
                                      [self.config.known_hosts_path, *_user_files(node)])

    def check(self, node: Box, transport: paramiko.Transport) -> Verdict:
        key = transport.get_remote_server_key()
        cert = getattr(key, "public_blob", None)
        blob = cert.key_blob if cert is not None else None
        shown = Presented(key.get_name(), key.asbytes(), blob)
        verdict = check(shown, node.known_hosts_name, node.principal_name,
                                    self.config.known_hosts_path, _user_files(node))
        if verdict.status != Verdict.TRUSTED:
            self.refuse(node, shown, verdict)
        return verdict

    def pin_command(self, repin: bool = False) -> str:
        """The one command that pins what the target's path shows (every hop included)."""
        target = self.target
        if target.inventory and not repin:  # issue 18: pinned by snapshotting the inventory
            return f"lager boxes import --inventory {target.inventory}"
        flag = " --repin" if repin else ""
        if not target.ssh:  # a lager box added by address
            return f"lager boxes add {target.name} --host {target.host} --port {target.port}" \
                   + flag
        from .config import valid_name

        name = target.name if valid_name(target.name) else \
            "".join(c if c.isalnum() or c in "._-" else "-" for c in target.host).strip("-.")
        return f"lager boxes add {name or 'box'} --ssh {target.target}{flag}"

    def refuse(self, node: Box, shown: Presented,
               verdict: Verdict) -> None:
        seen = fingerprint(shown.blob)
        entry = verdict.entry
        if verdict.status == Verdict.UNKNOWN:
            raise HostKeyChanged(
                f"{node.label} shows a host key lager does not know: {seen} "
                f"({shown.key_type}). If that is its key, pin it with: {self.pin_command()}")
        if verdict.status == Verdict.CHANGED and entry is not None:
            was = fingerprint(entry.blob)
            if entry.path == self.config.known_hosts_path:
                fix = f"re-pin with `{self.pin_command(repin=True)}`"
            else:
                fix = f"remove the old key with `ssh-keygen -R '{node.known_hosts_name}' " \
                      f"-f {entry.path}`"
            raise HostKeyChanged(key_changed(node.label, seen, fix,
                                             pinned=f"{was} ({entry.where})"))
        raise HostKeyChanged(f"{node.label} refused: {verdict.detail} (it shows {seen})")
