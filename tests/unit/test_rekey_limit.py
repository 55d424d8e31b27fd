"""`lager-box serve --rekey-limit`, written as sshd_config writes RekeyLimit: a size, then
optionally a time; anything else is one line of error."""
from __future__ import annotations

import pytest

from box_agent.rekey_limit import MAX_BYTES, MIN_BYTES, RekeyLimit, parse_rekey_limit


@pytest.mark.parametrize(("text", "limit"), [
    ("1G", RekeyLimit(1 << 30, 3600.0)), ("1G 1h", RekeyLimit(1 << 30, 3600.0)),
    ("512M 30m", RekeyLimit(512 << 20, 1800.0)), ("2M", RekeyLimit(2 << 20, 3600.0)),
    ("64K 10s", RekeyLimit(MIN_BYTES, 10.0)), ("1T", RekeyLimit(MAX_BYTES, 3600.0)),
    ("  4M\t2h ", RekeyLimit(4 << 20, 7200.0)), ("default none", RekeyLimit(1 << 30, 0.0)),
    ("default", RekeyLimit()), ("8M default", RekeyLimit(8 << 20, 3600.0)),
    ("1G 0", RekeyLimit(1 << 30, 0.0)), ("1G 2w", RekeyLimit(1 << 30, 14 * 86400.0)),
])
def test_limits_as_sshd_config_writes_them(text: str, limit: RekeyLimit) -> None:
    assert parse_rekey_limit(text) == limit


@pytest.mark.parametrize(("text", "why"), [
    ("", "not a rekey limit"), ("1G 1h 2", "not a rekey limit"), ("1K", "too small"),
    ("65535", "too small"), ("2T", "too big"), ("9" * 400, "too big"), ("lots", "not a size"),
    ("1G soon", "not a duration"), ("1G 0.5", "too short"), ("1G 400d", "too long"),
    ("none", "not a size"), ("Default", "not a size"),
])
def test_bad_limits_say_why_in_one_line(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        parse_rekey_limit(text)
    assert "\n" not in str(caught.value)
