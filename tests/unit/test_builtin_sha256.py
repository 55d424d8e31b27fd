"""CPython's own sha256 module, used instead of hashlib (which loads OpenSSL) for the keeper
socket's name and the quick client's key exchange: the same digest as hashlib's, so a keeper
made by an older client is still found and a box still accepts the exchange hash."""
from __future__ import annotations

import hashlib
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from client.builtin_sha256 import sha256


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_the_digest_is_hashlibs(data: bytes) -> None:
    assert sha256(data).digest() == hashlib.sha256(data).digest()
    assert sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()


def test_known_vector_and_not_openssl() -> None:
    # FIPS 180-2's "abc".
    assert sha256(b"abc").hexdigest() == ("ba7816bf8f01cfea414140de5dae2223"
                                          "b00361a396177a9cb410ff61f20015ad")
    if sys.version_info < (3, 14):  # a CPython that builds its own sha256 in: 3.11 to 3.13
        assert sha256.__module__ in ("_sha256", "_sha2")
