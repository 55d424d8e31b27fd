"""The keeper socket's name hashes with CPython's own sha256 module, not hashlib (which
loads OpenSSL): the same digest, so a keeper made by an older client is still found."""
from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from client.route_digest import sha256_hex


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_the_digest_is_hashlibs(data: bytes) -> None:
    assert sha256_hex(data) == hashlib.sha256(data).hexdigest()


def test_known_vector() -> None:
    # FIPS 180-2's "abc".
    assert sha256_hex(b"abc") == ("ba7816bf8f01cfea414140de5dae2223"
                                  "b00361a396177a9cb410ff61f20015ad")
