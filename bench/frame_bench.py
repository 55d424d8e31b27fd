"""What the framed run channel (issue 14's events) costs on a big stream, against the plain form,
in the same run: one agent, one paramiko client, a script that writes SIZE MB to stdout.

Each round runs the same flood twice, plain (`events` off: today's bytes) and framed (`events`
on, read through client/run_stream.py), alternating, and reports the median MB/s and the
client's CPU per MB. Run: `.venv/bin/python bench/frame_bench.py [--mb 200] [--rounds 3]`.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paramiko

from client.run_stream import RunStream
from lager import protocol

BIN = Path(sys.executable).parent
READY = re.compile(r"listening on ([\d.]+):(\d+)")


def flood(mb: int) -> bytes:
    return (f"import sys\nchunk = b'x' * (1 << 20)\nfor _ in range({mb}):\n"
            "    sys.stdout.buffer.write(chunk)\nsys.stdout.buffer.flush()\n").encode()


def one_run(transport: paramiko.Transport, body: bytes, framed: bool) -> tuple[float, float, int]:
    head = {"main": "f.py", "files": [{"path": "f.py", "size": len(body)}],
            "v": protocol.PROTOCOL_VERSION, "events": framed}
    chan = transport.open_session(window_size=protocol.WINDOW,
                                  max_packet_size=protocol.MAX_PACKET)
    chan.invoke_subsystem("run")
    chan.sendall(json.dumps(head).encode() + b"\n" + body)
    stream = RunStream(asked_events=framed)
    got = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while True:
        data = chan.recv(1 << 26)
        if not data:
            break
        for kind, piece in stream.stdout_data(data):
            if kind == 1 and isinstance(piece, bytes):
                got += len(piece)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    assert chan.recv_exit_status() == 0
    chan.close()
    return wall, cpu, got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        agent = subprocess.Popen([str(BIN / "lager-box"), "serve", "--listen", "127.0.0.1:0",
                                  "--state-dir", str(root / "state")],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert agent.stdout is not None
            match = READY.search(agent.stdout.readline())
            assert match, "agent did not start"
            key_path = root / "id"
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key_path)],
                           check=True)
            subprocess.run([str(BIN / "lager-box"), "authorize", "--state-dir",
                            str(root / "state"), str(key_path) + ".pub"], check=True,
                           capture_output=True)
            transport = paramiko.Transport((match.group(1), int(match.group(2))))
            transport.connect(username="bench",
                              pkey=paramiko.Ed25519Key.from_private_key_file(str(key_path)))
            body = flood(args.mb)
            rows: dict[bool, list[tuple[float, float, int]]] = {False: [], True: []}
            for _ in range(args.rounds):
                for framed in (False, True):
                    rows[framed].append(one_run(transport, body, framed))
            transport.close()
        finally:
            agent.terminate()
            agent.wait(30)
    print(f"{args.mb} MB of script stdout, paramiko client, {args.rounds} rounds (median)")
    print(f"{'form':<8} {'MB/s':>8} {'client CPU ms/MB':>18}")
    for framed, name in ((False, "plain"), (True, "framed")):
        wall = statistics.median(r[0] for r in rows[framed])
        cpu = statistics.median(r[1] for r in rows[framed])
        assert all(r[2] == args.mb << 20 for r in rows[framed]), "bytes lost"
        print(f"{name:<8} {args.mb / wall:>8.1f} {cpu / args.mb * 1000:>18.2f}")


if __name__ == "__main__":
    main()
