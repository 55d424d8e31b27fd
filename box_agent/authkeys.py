"""Who may log in: the box's authorized_keys, read by asyncssh's own authorized-keys parser, and
the decisions OpenSSH makes about it, each refusal logged with its reason.

Each line is parsed on its own (asyncssh.import_authorized_keys), so a refusal can name its line
and one bad line costs only itself. Honoured: `from=`, `expiry-time=`, `cert-authority` with
`principals=`, `restrict` and `no-pty` (no terminal, so the console runs without a PTY; asyncssh
refuses the pty-req itself from the options returned here). Ignored: `environment=` (scripts
get the agent's whitelisted env only). Refused, with a log line: `command=` (the box serves its
own subsystems, never a forced command), a certificate's `force-command`, and any option this
does not know (a restriction ignored would be a restriction lost).

asyncssh hands the server only the CA key of a user certificate, never the certificate, so
`Login.wrap` looks at each offer first: that is where expired, not-yet-valid and wrong-principal
certificates are told apart, and where the key id the audit names comes from.
"""
from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import asyncssh
from asyncssh.public_key import (
    CERT_TYPE_HOST,
    CERT_TYPE_USER,
    SSHOpenSSHCertificate,
    decode_ssh_certificate,
)

__all__ = ["CERT_TYPE_HOST", "AuthLine", "Login", "SSHOpenSSHCertificate", "find", "parse"]

log = logging.getLogger("lager-box.auth")

# DSA: 1024-bit and SHA-1 only; OpenSSH stopped accepting it by default in 7.0 and removed it.
REFUSED_KEY_TYPES = frozenset({"ssh-dss"})
# SHA-1 RSA signatures: OpenSSH 8.8+ refuses them; RSA keys still log in with rsa-sha2-*.
REFUSED_SIGNATURES = frozenset({b"ssh-rsa", b"ssh-dss"})
KNOWN_OPTIONS = frozenset({
    "cert-authority", "command", "environment", "expiry-time", "from", "principals", "restrict",
    "pty", "no-pty", "no-port-forwarding", "port-forwarding", "no-agent-forwarding",
    "agent-forwarding", "no-X11-forwarding", "X11-forwarding", "no-user-rc", "user-rc",
    "permitopen", "permitlisten", "tunnel", "no-touch-required"})
RESTRICTED = ("no-pty", "no-port-forwarding", "no-agent-forwarding", "no-X11-forwarding",
              "no-user-rc")


@dataclass(frozen=True)
class AuthLine:
    number: int
    text: str
    entries: asyncssh.SSHAuthorizedKeys


def parse(text: str, where: str) -> list[AuthLine]:
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            lines.append(AuthLine(number, line, asyncssh.import_authorized_keys(line)))
        except (asyncssh.KeyImportError, ValueError) as exc:
            log.warning("%s line %d: ignored, asyncssh cannot read it (%s)", where, number,
                        str(exc)[:200])
    return lines


def _token(key: asyncssh.SSHKey) -> str:
    """The key's base64, which is how a line names it."""
    return key.export_public_key("openssh").decode().split()[1]


def _comment(line: str, token: str) -> str:
    return line.split(token, 1)[1].strip() if token in line else ""


def _expiry(values: Any) -> tuple[float | None, str | None]:
    """OpenSSH's YYYYMMDD[HHMM[SS]][Z]: local time unless Z; the earliest of several wins."""
    earliest = None
    for value in values if isinstance(values, list) else [values]:
        text = str(value)
        utc = text.endswith("Z")
        digits = text[:-1] if utc else text
        formats = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
        if not digits.isdigit() or len(digits) not in formats:
            return None, f"its expiry-time {text!r} is not YYYYMMDD[HHMM[SS]][Z]"
        parsed = time.strptime(digits, formats[len(digits)])
        stamp = calendar.timegm(parsed) if utc else time.mktime(parsed)
        earliest = stamp if earliest is None else min(earliest, stamp)
    return earliest, None


def _problem(options: dict[str, Any]) -> str | None:
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        return f"it has options lager-box does not know ({', '.join(unknown)}), which it will " \
               "not ignore"
    if "command" in options:
        return "it has command=: lager-box serves only its own subsystems and cannot run a " \
               "forced command, so the key is refused rather than let in without it"
    if "expiry-time" in options:
        when, bad = _expiry(options["expiry-time"])
        if bad:
            return bad
        if when is not None and time.time() >= when:
            return f"it expired at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(when))} " \
                   "(expiry-time)"
    return None


def _effective(options: dict[str, Any]) -> dict[str, Any]:
    """What asyncssh should enforce: `restrict` spelled out, `environment=` dropped."""
    out = {k: v for k, v in options.items() if k != "environment"}
    if out.get("restrict"):
        for name in RESTRICTED:
            if not out.get(name[3:]):  # `restrict,pty` gives the terminal back
                out[name] = True
    return out


@dataclass
class Match:
    line: AuthLine
    options: dict[str, Any]
    comment: str
    fingerprint: str  # of the key that logged in (a certificate's own key, not its CA's)
    cert_id: str | None = None


def find(lines: list[AuthLine], key: asyncssh.SSHKey, host: str, addr: str,
         principals: list[str] | None = None, ca: bool = False) -> tuple[Match | None, str]:
    """The first line that lets `key` (or, with ca, a certificate from CA `key`) in, or why
    none does."""
    token = _token(key)
    why = []
    for line in lines:
        if token not in line.text:
            continue
        options = line.entries.validate(key, host, addr, principals, ca)
        if options is None:
            if line.entries.validate(key, host, addr, None, not ca) is not None:
                continue  # the key is on a line of the other kind (CA, or plain key)
            # Same key, so an option said no: principals= (CA lines) or from=.
            if ca and line.entries.validate(key, host, addr, None, ca) is not None:
                why.append(f"line {line.number}: its principals= list none of the "
                           f"certificate's ({', '.join(principals or []) or 'none'})")
            else:
                why.append(f"line {line.number}: from= does not allow {addr}")
            continue
        problem = _problem(dict(options))
        if problem:
            why.append(f"line {line.number}: {problem}")
            continue
        return Match(line, _effective(dict(options)), _comment(line.text, token),
                     key.get_fingerprint("sha256")), ""
    return None, "; ".join(why)


def _sig_alg(signature: bytes) -> bytes:
    size = int.from_bytes(signature[:4], "big")
    return signature[4:4 + size]


@dataclass
class Login:
    """One connection's logins: the checks, MaxAuthTries, and what the audit will name."""

    lines: Callable[[], list[AuthLine]]
    peer: str  # host:port, for log lines
    addr: str  # the peer's address, for from= and source-address
    max_auth_tries: int
    refused: Callable[[str, str], None]  # (kind, message): throttled log lines
    failures: int = 0
    match: Match | None = None  # the current attempt's line; after auth, the one that worked
    _calls: dict[bytes, int] = field(default_factory=dict)

    def gate(self, username: str) -> None:
        if self.failures >= self.max_auth_tries:  # as sshd: the attempt after the last failure
            self.refused("connections over MaxAuthTries",
                         f"too many authentication failures for {username!r} from {self.peer} "
                         f"({self.failures}); disconnected")
            raise asyncssh.PermissionDenied("Too many authentication failures")

    def wrap(self, original: Callable[[str, bytes, bytes, bytes], Awaitable[bool]]) \
            -> Callable[[str, bytes, bytes, bytes], Awaitable[bool]]:
        """Stands in for the connection's validate_public_key: every offer passes here."""

        async def validate(username: str, key_data: bytes, msg: bytes,
                           signature: bytes) -> bool:
            self.gate(username)
            self.match = None
            if signature and _sig_alg(signature) in REFUSED_SIGNATURES:
                ok = False
                alg = _sig_alg(signature).decode(errors="replace")
                self.refused("refused keys", f"refused a {alg} (SHA-1) signature for "
                             f"{username!r} from {self.peer}")
            elif not self._cert_allowed(username, key_data):
                ok = False
            else:
                ok = await original(username, key_data, msg, signature)
            # A query and then the signed request: two calls per key. More than that are
            # retries, which count against MaxAuthTries like refused keys do.
            calls = self._calls[key_data] = self._calls.get(key_data, 0) + 1
            if not ok or calls > 2:
                self.failures += 1
            return ok

        return validate

    def _cert_allowed(self, username: str, key_data: bytes) -> bool:
        """False (logged) for a certificate OpenSSH would refuse; True for plain keys."""
        try:
            cert = decode_ssh_certificate(key_data)
        except asyncssh.KeyImportError:
            return True  # a plain key, or nothing asyncssh reads: it decides
        if not isinstance(cert, SSHOpenSSHCertificate):
            self.refused("refused certificates", f"refused an X.509 certificate for "
                         f"{username!r} from {self.peer}: only OpenSSH certificates are accepted")
            return False
        # asyncssh keeps the key id private; it is what the CA's operator knows the user by.
        key_id = str(getattr(cert, "_key_id", "?"))
        what = f"certificate {key_id!r} (key {cert.key.get_fingerprint('sha256')}, CA " \
               f"{cert.signing_key.get_fingerprint('sha256')}) for {username!r} from {self.peer}"
        match, why = find(self.lines(), cert.signing_key, self.addr, self.addr,
                          list(cert.principals), ca=True)
        reason = self._cert_problem(cert, username, match, self.addr) if match is not None \
            else why or "its CA is not a cert-authority in authorized_keys"
        if match is None or reason:
            self.refused("refused certificates", f"refused {what}: {reason}")
            return False
        match.fingerprint = cert.key.get_fingerprint("sha256")
        match.cert_id = key_id
        self.match = match
        return True

    @staticmethod
    def _cert_problem(cert: SSHOpenSSHCertificate, username: str, match: Match,
                      host: str) -> str | None:
        try:
            # Without principals= on its line, the certificate must name the login (as sshd).
            cert.validate(CERT_TYPE_USER, None if "principals" in match.options else username)
        except ValueError as exc:
            text = str(exc).lower()
            if "principal" in text:
                return f"wrong principal: it is for {', '.join(cert.principals)}, not " \
                       f"{username!r} (log in as one of those, or list them with principals=)"
            if "expired" in text:
                return "expired"
            if "not yet valid" in text:
                return "not yet valid"
            return text
        if cert.options.get("force-command") is not None:
            return "it has force-command, which lager-box cannot honour"
        networks = cast(list[Any], cert.options.get("source-address") or [])
        if networks:
            from ipaddress import ip_address

            if not any(ip_address(host) in net for net in networks):
                return f"its source-address does not allow {host}"
        return None

    def validate(self, key: asyncssh.SSHKey, client_host: str, client_addr: str,
                 cert_principals: list[str] | None = None,
                 ca: bool = False) -> dict[str, Any] | None:
        """asyncssh's authorized-keys hook (SSHAuthorizedKeys.validate): the options of the
        line that lets this key in. For a certificate, the line `_cert_allowed` already chose
        for this very offer."""
        if ca:
            return self.match.options if self.match is not None else None
        if key.get_algorithm() in REFUSED_KEY_TYPES:
            self.refused("refused keys", f"refused {key.get_algorithm()} key "
                         f"{key.get_fingerprint('sha256')} from {self.peer}: "
                         f"{key.get_algorithm()} keys are not accepted")
            return None
        match, why = find(self.lines(), key, client_host, client_addr)
        if match is None:
            self.refused("refused keys", f"refused key {key.get_fingerprint('sha256')} from "
                         f"{self.peer}" + (f": {why}" if why else ""))
            return None
        self.match = match
        return match.options
