"""Run output on the client: stdout and stderr going to one place (a terminal, or one pipe with
`2>&1`) land in the order they arrived from the box (a flushed print, then a banner, shows as
print then banner); on two pipes each stream has a writer of its own, so a stalled stdout
reader never holds back stderr."""
from __future__ import annotations

import os
import pty
import threading
import time

import pytest

from client.terminal_out import RunOutput


def _read_until(fd: int, want: int, seconds: float = 30) -> bytes:
    got = b""
    until = time.monotonic() + seconds
    while len(got) < want and time.monotonic() < until:
        try:
            got += os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.01)
    return got


@pytest.mark.parametrize("place", ["terminal", "pipe"])
def test_one_place_gets_both_streams_in_arrival_order(place: str) -> None:
    """Both streams to one terminal, or to one pipe (`lager python test.py 2>&1 | tee log`):
    what shows reads as the run wrote it, a banner after the line printed ahead of it (the
    README's demo, through a pipe, showed `=== resumed` after the lines the script printed
    once resumed, each stream having had a writer of its own)."""
    if place == "terminal":
        read_end, write_end = pty.openpty()
        newline = "\r\n"  # the terminal's own line discipline
    else:
        read_end, write_end = os.pipe()
        newline = "\n"
    os.set_blocking(read_end, False)
    pairs = 300
    expected = "".join(f"out {i}{newline}=== banner {i}{newline}"
                       for i in range(pairs)).encode()
    with open(os.dup(write_end), "wb", buffering=0) as stdout, \
            open(os.dup(write_end), "wb", buffering=0) as stderr:
        out = RunOutput(stdout, stderr, countdown=False)
        try:
            for i in range(pairs):
                out.write(1, f"out {i}\n".encode())
                out.write(2, f"=== banner {i}\n".encode())
            shown = _read_until(read_end, len(expected))
        finally:
            out.close()
    os.close(write_end)
    os.close(read_end)
    assert shown == expected


def test_a_stalled_stdout_pipe_does_not_hold_back_stderr() -> None:
    out_r, out_w = os.pipe()  # nobody reads stdout: its writer blocks once the pipe is full
    err_r, err_w = os.pipe()
    os.set_blocking(err_r, False)
    with open(out_w, "wb", buffering=0) as stdout, open(err_w, "wb", buffering=0) as stderr:
        out = RunOutput(stdout, stderr, countdown=False)
        out.write(1, b"x" * (1 << 20))  # more than a pipe holds
        out.write(2, b"the script's last words\n")
        assert _read_until(err_r, 24) == b"the script's last words\n"
        os.close(out_r)  # the stdout writer gets EPIPE and ends
        out.close()
    for thread in threading.enumerate():
        if thread.name.startswith("lager-output"):
            thread.join(10)
    os.close(err_r)
