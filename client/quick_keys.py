"""The quick SSH client's keys (client/quick_ssh.py): lager's own unencrypted ed25519 key, and
the box's pinned host key. Anything else goes the full way, which can ask or explain."""
from __future__ import annotations

import base64
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .quick_ssh import HOST_KEY, Lost, Reader, Unsupported


def load_ed25519(path: Path) -> tuple[Ed25519PrivateKey, bytes]:
    """An unencrypted OpenSSH ed25519 private key and its public blob; Unsupported otherwise
    (an encrypted key, or another type, goes the full way, which can ask or explain)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise Unsupported(f"identity {path}: {exc}") from None
    begin, end = "-----BEGIN OPENSSH PRIVATE KEY-----", "-----END OPENSSH PRIVATE KEY-----"
    if begin not in text or end not in text:
        raise Unsupported("not an OpenSSH private key")
    try:
        raw = base64.b64decode("".join(text.split(begin, 1)[1].split(end, 1)[0].split()))
    except ValueError:
        raise Unsupported("unreadable private key") from None
    magic = b"openssh-key-v1\0"
    if not raw.startswith(magic):
        raise Unsupported("not an openssh-key-v1 key")
    try:
        r = Reader(raw, len(magic))
        if r.string() != b"none" or r.string() != b"none":
            raise Unsupported("encrypted private key")
        r.string()  # kdf options
        if r.u32() != 1:
            raise Unsupported("more than one key in the file")
        public_blob = r.string()
        private = Reader(r.string())
        if private.u32() != private.u32():
            raise Unsupported("damaged private key")
        if private.string() != HOST_KEY:
            raise Unsupported("not an ed25519 key")
        private.string()  # the public key again
        secret = private.string()
    except Lost:
        raise Unsupported("damaged private key") from None
    if len(secret) != 64:
        raise Unsupported("damaged private key")
    return Ed25519PrivateKey.from_private_bytes(secret[:32]), public_blob


def pinned_blob(pinned_line: str | None) -> bytes:
    """The host key blob lager pinned for the box; only a plain ed25519 pin is ours to check."""
    parts = (pinned_line or "").split()
    if len(parts) < 3 or parts[1] != HOST_KEY.decode():
        raise Unsupported("no plain ed25519 pin for this box")
    try:
        return base64.b64decode(parts[2])
    except ValueError:
        raise Unsupported("unreadable pin") from None
