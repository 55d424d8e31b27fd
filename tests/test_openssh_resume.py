"""Issue 11 with OpenSSH on the other side: `ssh -s attach` goes on at `ID STDOUT ERR` byte
offsets across an agent SIGKILL, byte-exact, and `ssh -s download` takes a finished run's
files in the framing the README documents (a JSON line, then the bytes)."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Client, make_client, numbered_output, wait_for, write_script
from sshclients import openssh
from test_lost_runs import Leftovers

# Both streams, deterministic; a gate half-way so the agent dies while the run is going.
GATED = """
import pathlib, sys, time
for i in range(2000):
    print(f"out {i:05d} " + "z" * 60)
    if i % 100 == 0:
        print(f"err {i:05d}", file=sys.stderr)
    if i == 1000:
        sys.stdout.flush()
        sys.stderr.flush()
        while not pathlib.Path(sys.argv[1]).exists():
            time.sleep(0.05)
print("END")
sys.exit(7)
"""


def gated_output() -> tuple[bytes, bytes]:
    out, err = numbered_output(2000, 5, "z" * 60, 100, "END")
    return out.encode(), err.encode()


@pytest.fixture
def left() -> Iterator[Leftovers]:
    tracked = Leftovers()
    yield tracked
    tracked.end()


@pytest.fixture(autouse=True)
def _needs_openssh() -> None:
    if shutil.which("ssh") is None:
        from conftest import cannot_run

        cannot_run("OpenSSH's ssh is not installed")


def ssh_argv(client: Client, subsystem: str) -> list[str]:
    """The command sshclients.openssh runs, for a test that must kill it mid-stream."""
    return ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={client.known_hosts}",
            "-i", str(client.key_path), "-p", str(client.agent.port), "-T", "-s",
            f"lab@{client.agent.host}", subsystem]


class Collect:
    """Everything one stream of a process gives, read on a thread as it comes."""

    def __init__(self, stream) -> None:  # type: ignore[no-untyped-def]
        self.data = b""
        self._stream = stream
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while chunk := self._stream.read1(65536):
            self.data += chunk

    def join(self) -> bytes:
        self._thread.join(30)
        return self.data


def common_prefix(a: bytes, b: bytes) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def detached(client: Client, script: Path, *args: str) -> str:
    started = client.run("python", str(script), *args, "--detach")
    assert started.returncode == 0, started.stderr
    return started.stdout.split()[2]


def test_openssh_attach_goes_on_at_byte_offsets_across_an_agent_sigkill(
        tmp_path: Path, left: Leftovers) -> None:
    box = left.agent(tmp_path / "state")
    laptop = make_client(tmp_path / "laptop", box)
    gate = tmp_path / "go"
    run_id = detached(laptop, write_script(tmp_path, "gated.py", GATED), str(gate))
    out, err = gated_output()
    first_half = out[:out.index(b"out 01001")]

    # OpenSSH follows the run; once it has some of it, the agent dies under it.
    ssh = subprocess.Popen(ssh_argv(laptop, "attach"), stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    left.procs.append(ssh)  # type: ignore[arg-type]
    assert ssh.stdin is not None
    ssh.stdin.write(f"{run_id}\n".encode())
    ssh.stdin.flush()
    got_out, got_err = Collect(ssh.stdout), Collect(ssh.stderr)
    wait_for(lambda: len(got_out.data) >= len(first_half) // 2, 30, what="output over ssh")
    box.proc.send_signal(signal.SIGKILL)
    box.proc.wait()
    ssh.wait(30)
    have_out, have_err = got_out.join(), got_err.join()
    assert ssh.returncode == 255  # ssh's own code for a lost connection
    assert out.startswith(have_out) and len(have_out) >= len(first_half) // 2
    # ssh's own complaint about the lost link comes after the run's stderr: not the run's.
    run_err = have_err[:common_prefix(have_err, err)]
    assert b"err " not in have_err[len(run_err):], have_err
    have_err = run_err

    gate.write_text("go")  # the rest is written while no agent runs
    again = left.agent(tmp_path / "state", listen=f"127.0.0.1:{box.port}")
    try:
        resumed = openssh(laptop, "attach", f"{run_id} {len(have_out)} {len(have_err)}\n",
                          timeout=60)
        assert resumed.returncode == 7, resumed.stderr  # the script's own code
        assert have_out + resumed.stdout == out  # no gap, no duplicate
        assert have_err + resumed.stderr == err
        # Without offsets, OpenSSH gets the whole run again.
        whole = openssh(laptop, "attach", f"{run_id}\n", timeout=60)
        assert whole.returncode == 7 and (whole.stdout, whole.stderr) == (out, err)
    finally:
        again.stop()


def read_download(stream: bytes) -> tuple[dict[str, bytes], list[dict]]:
    """The download subsystem's answer: {path: bytes} and the missing list."""
    files: dict[str, bytes] = {}
    pos = 0
    while True:
        end = stream.index(b"\n", pos)
        head = json.loads(stream[pos:end])
        pos = end + 1
        if head.get("end"):
            assert pos == len(stream), "bytes after the end line"
            return files, head["missing"]
        files[head["path"]] = stream[pos:pos + head["size"]]
        pos += head["size"]


def test_openssh_download_takes_a_finished_runs_files(client: Client, tmp_path: Path) -> None:
    blob = bytes(range(256)) * 300
    script = write_script(tmp_path, "writes.py", f"""
import os, pathlib
pathlib.Path("results.csv").write_text("v,i\\n5.0,0.5\\n")
os.makedirs("logs", exist_ok=True)
pathlib.Path("logs/raw.bin").write_bytes({blob!r})
os.symlink("/etc/hostname", "logs/host")
print("wrote")
""")
    run_id = detached(client, script)
    wait_for(lambda: json.loads(client.run("python", "--list", "--json").stdout) and next(
        r for r in json.loads(client.run("python", "--list", "--json").stdout)
        if r["id"] == run_id)["state"] == "exited", 30, what="the run to end")
    request = json.dumps({"id": run_id, "paths": ["results.csv", "logs", "nope.txt",
                                                  "../escape"]}) + "\n"
    result = openssh(client, "download", request)
    assert result.returncode == 0, result.stderr
    files, missing = read_download(result.stdout)
    assert files == {"results.csv": b"v,i\n5.0,0.5\n", "logs/raw.bin": blob}
    reasons = {m["path"]: m["reason"] for m in missing}
    assert set(reasons) == {"nope.txt", "../escape"} and "no such file" in reasons["nope.txt"]

    # A refusal is one line and a non-zero status, as any subsystem's.
    unknown = openssh(client, "download", json.dumps({"id": "ffffffff", "paths": ["x"]}))
    assert unknown.returncode != 0 and unknown.stdout == b""
    assert unknown.stderr.count(b"\n") == 1 and b"no run with id" in unknown.stderr
