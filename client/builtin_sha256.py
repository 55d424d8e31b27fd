"""sha256 without hashlib: for the keeper socket's name (client/mux.py) and the quick client's
key exchange (client/quick_ssh.py).

`import hashlib` loads OpenSSL's libcrypto (~3 to 4 ms of a short command's start, issue 13),
for a digest CPython also builds in: its own sha256 module (`_sha256` up to 3.11, `_sha2`
from 3.12). hashlib stays the fallback for an interpreter built without them. Same interface
as hashlib.sha256: sha256(data).digest() / .hexdigest().
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hashlib import sha256
else:
    try:
        from _sha2 import sha256
    except ImportError:
        try:
            from _sha256 import sha256
        except ImportError:
            from hashlib import sha256

__all__ = ["sha256"]
