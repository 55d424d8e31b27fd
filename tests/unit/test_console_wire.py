"""The agent-to-console frames (lager/console/wire.py): what the relay writes, the console reads."""
from __future__ import annotations

import pytest

from lager.console import wire


def test_frames_survive_any_split() -> None:
    stream = (wire.window(120, 40) + wire.data(b"print('h\xc3\xa9')\r") + wire.interrupt()
              + wire.data(b"") + wire.window(0, 0))
    expected = [wire.Window(120, 40), wire.Data(b"print('h\xc3\xa9')\r"), wire.Interrupt(),
                wire.Data(b""), wire.Window(wire.DEFAULT_COLS, wire.DEFAULT_ROWS)]
    for step in (1, 2, 3, 5, 7, len(stream)):
        decoder = wire.FrameDecoder()
        got = []
        for i in range(0, len(stream), step):
            got += decoder.feed(stream[i:i + step])
        assert got == expected and decoder.pending == 0


@pytest.mark.parametrize(("cols", "rows", "want"), [
    (0, 0, (80, 24)), (1, 1, (1, 1)), (200, 60, (200, 60)),
    (2**31, 2**31, (wire.MAX_COLS, wire.MAX_ROWS)), (-5, 10, (80, 10)),
])
def test_absurd_window_sizes_are_clamped(cols: int, rows: int, want: tuple[int, int]) -> None:
    assert wire.clamp_size(cols, rows) == want
    (frame,) = wire.FrameDecoder().feed(wire.window(cols, rows))
    assert frame == wire.Window(*want)


def test_a_broken_stream_is_refused_not_guessed() -> None:
    with pytest.raises(wire.WireError):
        wire.FrameDecoder().feed(b"z\x00\x00\x00\x00")
    with pytest.raises(wire.WireError):
        wire.FrameDecoder().feed(b"d\xff\xff\xff\xff")  # 4 GB frame
    decoder = wire.FrameDecoder()
    assert decoder.feed(wire.data(b"abc")[:-1]) == [] and decoder.pending == 7
