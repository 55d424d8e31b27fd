"""OpenSSH certificates (PROTOCOL.certkeys), read from their wire form without paramiko.

paramiko negotiates a host certificate and checks the key exchange signature with the key inside,
but never looks at the certificate itself: who signed it, for which names, until when. This
module reads those fields; `verify` checks the CA's signature (paramiko, imported only then).
"""
from __future__ import annotations

import struct
import time
from typing import Any

from .records import record

CERT_SUFFIX = "-cert-v01@openssh.com"
USER_CERT, HOST_CERT = 1, 2
# How many length-prefixed fields each certified key type has between the nonce and the serial.
_KEY_FIELDS = {
    "ssh-ed25519": 1,
    "ssh-rsa": 2,
    "ecdsa-sha2-nistp256": 2,
    "ecdsa-sha2-nistp384": 2,
    "ecdsa-sha2-nistp521": 2,
    "sk-ssh-ed25519@openssh.com": 2,
    "sk-ecdsa-sha2-nistp256@openssh.com": 3,
    "ssh-dss": 4,
}


class CertError(ValueError):
    """Not a certificate this module can read."""


@record(frozen=True)
class Certificate:
    cert_type: str  # e.g. ssh-ed25519-cert-v01@openssh.com
    key_type: str  # the certified key's type: ssh-ed25519
    key_blob: bytes  # the certified public key, in its plain wire form
    serial: int
    kind: int  # USER_CERT or HOST_CERT
    key_id: str
    principals: tuple[str, ...]
    valid_after: int
    valid_before: int
    critical_options: tuple[str, ...]
    ca_blob: bytes  # the signing CA's public key, wire form
    signed: bytes  # everything the CA signed
    signature: bytes

    def validity_problem(self, now: float | None = None) -> str | None:
        now = time.time() if now is None else now
        if now < self.valid_after:
            return f"not valid before {_when(self.valid_after)}"
        if now >= self.valid_before:
            return f"expired at {_when(self.valid_before)}"
        return None


def _when(stamp: int) -> str:
    if stamp >= 1 << 63:
        return "forever"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise CertError("truncated certificate")
        chunk = self.data[self.at:self.at + n]
        self.at += n
        return chunk

    def uint32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def uint64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def string(self) -> bytes:
        return self.take(self.uint32())

    def text(self) -> str:
        return self.string().decode("utf-8", "replace")


def _strings(blob: bytes) -> tuple[str, ...]:
    reader, out = _Reader(blob), []
    while reader.at < len(blob):
        out.append(reader.text())
    return tuple(out)


def _named_options(blob: bytes) -> tuple[str, ...]:
    reader, names = _Reader(blob), []
    while reader.at < len(blob):
        names.append(reader.text())
        reader.string()  # the option's value
    return tuple(names)


def _pack(*parts: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def parse(blob: bytes) -> Certificate:
    reader = _Reader(blob)
    cert_type = reader.text()
    if not cert_type.endswith(CERT_SUFFIX):
        raise CertError(f"{cert_type[:60]!r} is not a certificate type")
    key_type = cert_type[:-len(CERT_SUFFIX)]
    fields = _KEY_FIELDS.get(key_type)
    if fields is None:
        raise CertError(f"unsupported certificate type {cert_type!r}")
    reader.string()  # nonce
    key_fields = [reader.string() for _ in range(fields)]
    serial = reader.uint64()
    kind = reader.uint32()
    key_id = reader.text()
    principals = _strings(reader.string())
    valid_after, valid_before = reader.uint64(), reader.uint64()
    critical = _named_options(reader.string())
    reader.string()  # extensions: permissions for user certificates, none for hosts
    reader.string()  # reserved
    ca_blob = reader.string()
    signed = blob[:reader.at]
    signature = reader.string()
    return Certificate(cert_type, key_type, _pack(key_type.encode(), *key_fields), serial, kind,
                       key_id, principals, valid_after, valid_before, critical, ca_blob, signed,
                       signature)


def key_type_of(blob: bytes) -> str:
    return _Reader(blob).text()


def public_key(blob: bytes) -> Any:
    """A paramiko key for a public wire blob."""
    from .ssh import _paramiko

    paramiko = _paramiko()
    return paramiko.PKey.from_type_string(key_type_of(blob), blob)


def verify(cert: Certificate) -> bool:
    """True when the CA key inside the certificate made its signature."""
    from .ssh import _paramiko

    paramiko = _paramiko()
    try:
        ca = public_key(cert.ca_blob)
        return bool(ca.verify_ssh_sig(cert.signed, paramiko.Message(cert.signature)))
    except (paramiko.SSHException, paramiko.UnknownKeyType, ValueError, TypeError):
        return False
