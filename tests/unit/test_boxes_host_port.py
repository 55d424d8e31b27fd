"""`lager boxes add --ip HOST:PORT`: the address and port taken apart, IPv6 kept whole."""
from __future__ import annotations

import pytest

from client.commands.boxes import _host_port
from lager.errors import UsageError


@pytest.mark.parametrize("given, port, expected", [
    ("10.0.0.7:2222", None, ("10.0.0.7", 2222)),
    ("bench.lab:22", 22, ("bench.lab", 22)),
    ("[fe80::1]:2200", None, ("fe80::1", 2200)),
    ("fe80::1", None, ("fe80::1", None)),        # a bare IPv6 address: its colons are its own
    ("[fe80::1]", 2222, ("fe80::1", 2222)),
    ("10.0.0.7", 2222, ("10.0.0.7", 2222)),
    (None, None, (None, None)),
])
def test_split(given: str | None, port: int | None,
               expected: tuple[str | None, int | None]) -> None:
    assert _host_port(given, port) == expected


@pytest.mark.parametrize("given, port, words", [
    ("10.0.0.7:2222", 22, "says port 2222 but --port says 22"),
    ("10.0.0.7:70000", None, "port 70000 is not 1-65535"),
    ("10.0.0.7:0", None, "port 0 is not 1-65535"),
])
def test_refused_in_one_line(given: str, port: int | None, words: str) -> None:
    with pytest.raises(UsageError) as caught:
        _host_port(given, port)
    assert words in str(caught.value) and "\n" not in str(caught.value)
