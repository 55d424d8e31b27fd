"""Output on a terminal: stdout and stderr, both going to one terminal, land in the order they
arrived from the box (a flushed print, then a banner, shows as print then banner); on a pipe,
each stream has a writer of its own, so a stalled stdout reader never holds back stderr."""
from __future__ import annotations

import os
import pty
import threading
import time

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


def test_one_terminal_gets_both_streams_in_arrival_order() -> None:
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    pairs = 300
    with open(os.dup(slave), "wb", buffering=0) as stdout, \
            open(os.dup(slave), "wb", buffering=0) as stderr:
        out = RunOutput(stdout, stderr, countdown=False)
        try:
            for i in range(pairs):
                out.write(1, f"out {i}\n".encode())
                out.write(2, f"err {i}\n".encode())
            shown = _read_until(master, sum(len(f"out {i}\r\nerr {i}\r\n") for i in range(pairs)))
        finally:
            out.close()
    os.close(slave)
    os.close(master)
    expected = "".join(f"out {i}\r\nerr {i}\r\n" for i in range(pairs)).encode()
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


def test_one_pipe_for_both_streams_keeps_arrival_order() -> None:
    """`lager python test.py 2>&1 | tee log`: stdout and stderr are one pipe, and the log
    must read as the run wrote (the README's demo showed `=== resumed` after the lines the
    script printed once resumed, each stream having had a writer of its own)."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    pairs = 300
    with open(write_end, "wb", buffering=0) as stdout, \
            open(os.dup(write_end), "wb", buffering=0) as stderr:
        out = RunOutput(stdout, stderr, countdown=False)
        try:
            for i in range(pairs):
                out.write(2, f"=== banner {i}\n".encode())
                out.write(1, f"out {i}\n".encode())
            expected = "".join(f"=== banner {i}\nout {i}\n" for i in range(pairs)).encode()
            shown = _read_until(read_end, len(expected))
        finally:
            out.close()
    os.close(read_end)
    assert shown == expected
