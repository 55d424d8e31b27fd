"""A run's output reaches lager's stdout as views of the packets it was decrypted into, with no
copy between (client/plain_pool.py, client/chan_buffer.py take_views; issue 13), and every
byte is the script's, in order, even while the buffers are reused under a stalled reader.

The box is the real agent; the script is test_stream_exact's seeded flood (blocks of every size
up to 1.5 MB on stdout, a line on stderr after each). The follower is lager's own (in this
process, so the test sees its pool), and the CLI's, read by a reader that takes its time.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from conftest import LAGER, Client, write_script
from test_stream_exact import SCRIPT, expected

from client import ssh
from client.chan_buffer import WINDOW_PARTS
from client.config import Config
from client.follow import Follower
from client.plain_pool import KEEP


def _run_request(script: str) -> bytes:
    body = script.encode()
    head = {"main": "t.py", "script": "t.py", "files": [{"path": "t.py", "size": len(body)}],
            "v": 2, "events": True}
    return json.dumps(head).encode() + b"\n" + body


def test_the_follower_shows_the_flood_byte_exact_through_reused_views(client: Client,
                                                                      tmp_path: Path) -> None:
    """Two runs on one connection, each shown by lager's Follower into files: stdout and
    stderr byte-exact, the packets' buffers reused (so views were handed out and released)
    and never more made than the pool keeps; the window adjusted in quarters."""
    out_exp, err_exp, _ = expected()
    config = Config(client.config_dir)
    conn = ssh.BoxConnection(config, config.box(client.box))
    try:
        reader = conn.transport.lager_fast_recv
        for i in range(2):
            chan = conn.open("run")
            chan.sendall(_run_request(SCRIPT))
            out_path, err_path = tmp_path / f"out{i}", tmp_path / f"err{i}"
            with out_path.open("wb") as out, err_path.open("wb") as err:
                follower = Follower(chan, client.box, stops_run=False, stdout=out, stderr=err,
                                    read_stdin=False)
                assert follower.run() == 0
            # the box gets more window once a quarter of it is read, not paramiko's tenth
            assert chan.in_window_threshold == chan.in_window_size // WINDOW_PARTS
            assert out_path.read_bytes() == out_exp
            assert err_path.read_bytes() == err_exp
    finally:
        conn.close()
    assert reader.pool.reused > len(out_exp) // (1 << 20), "the views' buffers were not reused"
    assert reader.pool.made <= KEEP


def test_a_reader_that_takes_its_time_gets_every_byte(client: Client, tmp_path: Path) -> None:
    """`lager python flood.py | slow reader`: the writer queue fills, lager stops reading the
    box (its window closes) while views of the queued packets are held, and the pool must not
    hand a held buffer out again. The reader takes 4 KiB at a time, checking a hash."""
    script = write_script(tmp_path, "flood.py", SCRIPT)
    out_exp, _, _ = expected()
    proc = subprocess.Popen([LAGER, "python", str(script), "--box", client.box],
                            env=client.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    digest, size = hashlib.sha256(), 0
    fd = proc.stdout.fileno()
    while chunk := os.read(fd, 4096):
        digest.update(chunk)
        size += len(chunk)
    assert proc.wait(120) == 0
    assert size == len(out_exp)
    assert digest.hexdigest() == hashlib.sha256(out_exp).hexdigest()
