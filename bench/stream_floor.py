"""The stream's floor on this machine: a script's stdout carried with no SSH at all.

`stream_floor.py [--log FILE] SCRIPT` runs SCRIPT with its stdout on a pipe (1 MiB, as the
box's monitor sets it), and relays every byte over a loopback TCP connection to a reader
process that throws them away: the shape of `ssh HOST python SCRIPT` without a key, a cipher or
a packet. With --log the relay first appends each chunk to FILE, as the box's monitor keeps its
durable log (issue 11). Reads and writes are 1 MiB, so the Python here costs next to nothing
beside the kernel's pipe, page cache and TCP work.

bench/run_bench.py times it beside lager and OpenSSH in the same run: no SSH implementation on
this machine can stream faster than this, so it bounds the ratio any can reach.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import socket
import subprocess
import sys

_CHUNK = 1 << 20
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, named from Python 3.10 on Linux only


def relay(script: str, log_path: str | None) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    reader = subprocess.Popen([sys.executable, __file__, "--read", str(port)],
                              stdout=subprocess.PIPE, text=True)
    conn, _ = listener.accept()
    run = subprocess.Popen([sys.executable, script], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
    assert run.stdout is not None
    fcntl.fcntl(run.stdout.fileno(), _F_SETPIPE_SZ, _CHUNK)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) if log_path else -1
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    source = run.stdout.fileno()
    sent = 0
    while n := os.readv(source, [buf]):
        sent += n
        if log >= 0:
            os.write(log, view[:n])  # a regular file takes a whole write
        conn.sendall(view[:n])
    conn.close()
    if log >= 0:
        os.close(log)
    got, _ = reader.communicate()
    if run.wait() != 0 or reader.returncode != 0 or int(got) != sent:
        sys.exit(f"stream_floor: the script or the reader failed ({got.strip()} of {sent})")


def read(port: int) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    buf = bytearray(_CHUNK)
    got = 0
    while n := sock.recv_into(buf):
        got += n
    print(got)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--read", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--log", metavar="FILE")
    parser.add_argument("script", nargs="?")
    args = parser.parse_args()
    if args.read:
        read(args.read)
    elif args.script:
        relay(args.script, args.log)
    else:
        parser.error("give a script")


if __name__ == "__main__":
    main()
