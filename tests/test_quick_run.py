"""`lager python SCRIPT` over the quick SSH client (client/quick_run.py): no paramiko on a run's
path, the box's rekeying mid-stream, a link that goes silent, and the full way whenever the quick
client cannot take the run (issue 13)."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    LAGER,
    Client,
    StreamReader,
    laptop_on_a_new_box,
    wait_for,
    write_script,
)
from keeper_rig import connections, run_serving, run_to_first_pause
from test_stream_exact import check_records, request

from client import quick_keys, quick_run
from client.config import Config

# 40 MB that no two packets share: a counter in every line, so a packet repeated, dropped or
# put out of order changes the digest.
PATTERNED = ("import hashlib, sys\nout = sys.stdout.buffer\nh = hashlib.sha256()\n"
             "for i in range(400_000):\n"
             "    line = b'%09d ' % i + b'x' * 89 + b'\\n'\n"
             "    h.update(line)\n    out.write(line)\n"
             "out.flush()\nprint(h.hexdigest(), file=sys.stderr)\n")


def _imports(laptop: Client, script: Path, env: dict[str, str] | None = None
             ) -> tuple[subprocess.CompletedProcess[bytes], set[str]]:
    done = subprocess.run([sys.executable, "-X", "importtime", LAGER, "python", str(script),
                           "--box", laptop.box], env={**laptop.env, **(env or {})},
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    names = {line.rsplit(b"|", 1)[-1].strip().decode() for line in done.stderr.splitlines()
             if line.startswith(b"import time:")}
    assert len(names) > 20, done.stderr[-2000:]  # the interpreter really reported them
    return done, names


def _stderr(done: subprocess.CompletedProcess[bytes]) -> str:
    return "".join(line + "\n" for line in done.stderr.decode(errors="replace").splitlines()
                   if not line.startswith("import time:"))


def test_a_run_needs_no_paramiko_and_streams_byte_exact(tmp_path: Path) -> None:
    with laptop_on_a_new_box(tmp_path) as laptop:
        # No keeper: a run serving the other terminals loads paramiko for that, in the
        # background, once it has gone on a second (SideKeeper), and this one may.
        laptop.env["LAGER_MUX"] = "0"
        script = write_script(tmp_path, "flood.py", PATTERNED)
        done, names = _imports(laptop, script)
        assert done.returncode == 0, _stderr(done)
        assert not any(name.split(".")[0] == "paramiko" for name in names)
        assert names.isdisjoint({"click", "client.cli", "client.commands.python", "client.ssh"})
        assert _stderr(done).strip() == hashlib.sha256(done.stdout).hexdigest()
        assert len(done.stdout) == 400_000 * 100
        # The baseline: the full way (LAGER_QUICK_RUN=0) loads paramiko for the same run.
        full, full_names = _imports(laptop, script, {"LAGER_QUICK_RUN": "0"})
        assert full.returncode == 0 and full.stdout == done.stdout, _stderr(full)
        assert "paramiko.transport" in full_names


def test_exit_code_and_both_streams_match_the_full_way(tmp_path: Path) -> None:
    """What a user sees is the same either way: the script's code and both streams."""
    with laptop_on_a_new_box(tmp_path) as laptop:
        script = write_script(tmp_path, "mixed.py", (
            "import sys\nprint('out 1', flush=True)\nprint('err 1', file=sys.stderr, "
            "flush=True)\nprint('out 2')\nsys.exit(7)\n"))
        seen = []
        for quick in ("1", "0"):
            laptop.env["LAGER_QUICK_RUN"] = quick
            done = laptop.run("python", str(script))
            seen.append((done.returncode, done.stdout, done.stderr))
        assert seen[0] == seen[1] == (7, "out 1\nout 2\n", "err 1\n")


def test_the_box_rekeying_mid_stream_keeps_a_quick_run_byte_exact(tmp_path: Path) -> None:
    """The box changes keys every 2 MiB it sends (`--rekey-limit 2M`): several key exchanges
    inside one stream (test_stream_exact's interleaved flood, read back record by record),
    each done by the quick run's reader thread while the packets keep coming. The client is
    client/quick_run.py in this process, so the test can count the key exchanges."""
    with laptop_on_a_new_box(tmp_path, "--rekey-limit", "2M") as laptop:
        config = Config(laptop.config_dir)
        chan = quick_run.open_run(config, config.box(laptop.box), iter([request()]))
        assert chan is not None, "the quick client did not take the run"
        try:
            received = bytearray()
            while data := chan.recv(1 << 20):
                received += data
            assert chan.recv_exit_status() == 0
        finally:
            chan.close()
        check_records(bytes(received))
        assert chan.transport.key_sets - 1 >= 3, "the box did not rekey mid-stream"


def test_a_box_gone_silent_is_noticed_and_the_run_followed_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ServerAliveInterval 1, ServerAliveCountMax 2 (the user's ssh_config, as ssh reads it):
    an agent that stops answering (SIGSTOP) is given up on after about 2 s by the quick run's
    reader, and once it answers again the run is followed on over a fresh connection."""
    with laptop_on_a_new_box(tmp_path) as laptop:
        assert laptop.run("python", "--list").returncode == 0  # the box's key pinned
        home = tmp_path / "home"
        (home / ".ssh").mkdir(parents=True)
        (home / ".ssh" / "config").write_text(
            f"Host alivebox\n  HostName {laptop.agent.host}\n  Port {laptop.agent.port}\n"
            f"  IdentityFile {laptop.key_path}\n  ServerAliveInterval 1\n"
            "  ServerAliveCountMax 2\n")
        laptop.env.update(HOME=str(home), LAGER_MUX="0")
        laptop.box = "alivebox"
        # The quick client takes this box (as the CLI resolves it, HOME and all).
        monkeypatch.setenv("HOME", str(home))
        config = Config(laptop.config_dir)
        box = config.box("alivebox")
        assert box.server_alive_interval == 1 and quick_run.planned(box, False, None)
        quick_keys.load_ed25519(config.identity_path(box))
        quick_keys.pinned_blob(config.pinned_line(box))
        go = tmp_path / "go"
        script = write_script(tmp_path, "ticker.py", (
            "import pathlib, time\nprint('tick', flush=True)\n"
            f"while not pathlib.Path({str(go)!r}).exists():\n    time.sleep(0.05)\n"
            "print('done', flush=True)\n"))
        proc = laptop.popen("python", str(script))
        out, err = StreamReader(proc.stdout), StreamReader(proc.stderr)
        out.wait_for("tick")
        agent = laptop.agent.proc.pid
        os.kill(agent, signal.SIGSTOP)
        try:
            err.wait_for("lost; reconnecting", timeout=15)
        finally:
            os.kill(agent, signal.SIGCONT)
        err.wait_for("reconnected to")
        go.touch()
        assert proc.wait(30) == 0, err.join()
        assert out.join() == "tick\ndone\n"


def test_a_run_serves_the_other_terminals_once_it_pauses(tmp_path: Path) -> None:
    """A quick run cannot open channels for the other terminals: it makes one full connection
    at its first pause, and serves them over it from then on (client/run_keeper.py)."""
    with laptop_on_a_new_box(tmp_path) as laptop:
        laptop.env["LAGER_MUX"] = "1"
        run, ident = run_to_first_pause(laptop, tmp_path)
        # The first request waits for the run's side connection (made at the pause).
        run_serving(laptop)
        before = connections(laptop)
        for seen in (2, 3):
            assert laptop.run("python", "--continue", ident).returncode == 0
            wait_for(lambda n=seen: run.err.text.count("=== lager breakpoint") == n,
                     what="the next pause")
        assert laptop.run("python", "--continue", ident).returncode == 0
        assert run.finish() == 0, run.err.text
        assert connections(laptop) == before  # all of them over the run's side connection
        assert "done" in run.out.text


def test_a_large_upload_goes_whole_in_pieces(tmp_path: Path) -> None:
    """A script with a 6 MB --add-file: the first piece goes with the subsystem request, the
    rest as the box's window allows; the box gets every byte (its digest), and the quick
    client took the run (no paramiko)."""
    with laptop_on_a_new_box(tmp_path) as laptop:
        laptop.env["LAGER_MUX"] = "0"
        blob = tmp_path / "blob.bin"
        blob.write_bytes(os.urandom(6 << 20))
        script = write_script(tmp_path, "digest.py", (
            "import hashlib\nprint(hashlib.sha256(open('blob.bin', 'rb').read()).hexdigest())\n"))
        done = subprocess.run([sys.executable, "-X", "importtime", LAGER, "python", str(script),
                               "--add-file", str(blob), "--box", laptop.box], env=laptop.env,
                              capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, _stderr(done)
        assert done.stdout.decode().strip() == hashlib.sha256(blob.read_bytes()).hexdigest()
        loaded = {line.rsplit(b"|", 1)[-1].strip().decode() for line in done.stderr.splitlines()
                  if line.startswith(b"import time:")}
        assert not any(name.split(".")[0] == "paramiko" for name in loaded)
