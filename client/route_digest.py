"""sha256 for the keeper socket's name (client/mux.py), without hashlib.

`import hashlib` loads OpenSSL's libcrypto (~4 ms of a short command's start, issue 13), for
a digest CPython also builds in: its own sha256 module (`_sha256` up to 3.11, `_sha2` from
3.12). hashlib stays the fallback for an interpreter built without them.
"""
from __future__ import annotations


def sha256_hex(data: bytes) -> str:
    """The sha256 of data, in hex: the same digest as hashlib.sha256(data).hexdigest()."""
    try:
        from _sha2 import sha256  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        try:
            from _sha256 import sha256  # type: ignore[import-not-found, no-redef, unused-ignore]
        except ImportError:
            from hashlib import sha256
    return sha256(data).hexdigest()  # type: ignore[no-any-return, unused-ignore]
