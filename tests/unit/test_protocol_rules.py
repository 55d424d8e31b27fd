"""Rules both ends apply, written once in lager/protocol.py."""
from __future__ import annotations

import pytest

from lager import protocol


@pytest.mark.parametrize("name", ["A", "_", "LAGER_BOX", "x1", "_9_", "DUT_SERIAL"])
def test_env_names_accepted(name: str) -> None:
    assert protocol.valid_env_name(name)


@pytest.mark.parametrize("name", ["", "1A", "A-B", "A B", "É", "A=B", "a\x00", "ß_X", "A.B"])
def test_env_names_refused(name: str) -> None:
    assert not protocol.valid_env_name(name)


def test_one_packet_size_fits_under_asyncssh_s_limit() -> None:
    assert protocol.MAX_PACKET < 256 * 1024 and protocol.WINDOW >= 16 * protocol.MAX_PACKET


def test_the_quick_client_takes_any_packet_a_box_sends() -> None:
    # a box's packet: MAX_PACKET of data plus the SSH header and padding (under 1 KiB)
    assert protocol.QUICK_PACKET_LIMIT >= protocol.MAX_PACKET + 1024
    assert protocol.MAX_PACKET <= protocol.QUICK_WINDOW <= protocol.WINDOW
