"""What the box's reservation costs a run's start, and how fast it passes the box on.

Prints one table; nothing is asserted. Two agents run side by side in one run, one with
reservations on and one with `--reservations off`, and the start of a run is timed on each,
alternated call by call so drift on a busy machine hits both (medians).

- run start: from opening the `run` channel (header and a one-line script sent) to the
  script's first byte on stdout, over one paramiko connection per agent. The target (#19):
  the reservation adds at most 2 ms (median, on against off).
- the reservation's own work: begin_run + run_started + a run's end, in-process.
- freed after the script's exit: A's run exits at a time it prints; B stands in the box's
  queue (the `reservation` channel) and is granted the box. Target: within 1 s.
- next run starts after the script's exit: B's run, started with that grant, prints the
  time it starts. Target: within 2 s. Both go through the whole end of a run (ISSUE-NOTES 3:
  exit, sweep, safe state, release, wake).

Run: .venv/bin/python bench/reservation_bench.py [--rounds N]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import paramiko
from procs import end_left_under

BIN = Path(sys.executable).parent
LAGER_BOX = str(BIN / "lager-box")
READY = re.compile(r"listening on ([\d.]+):(\d+)")


class Box:
    def __init__(self, root: Path, *extra: str) -> None:
        self.root = root
        self.log = open(root.with_suffix(".log"), "w")  # noqa: SIM115 - lives with the box
        self.proc = subprocess.Popen([LAGER_BOX, "serve", "--listen", "127.0.0.1:0",
                                      "--state-dir", str(root), *extra],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        assert self.proc.stdout is not None
        match = READY.search(self.proc.stdout.readline())
        if not match:
            raise RuntimeError(f"the agent did not start; see {self.log.name}")
        self.port = int(match.group(2))

    def connect(self, key: Path) -> paramiko.SSHClient:
        subprocess.run([LAGER_BOX, "authorize", "--state-dir", str(self.root), f"{key}.pub"],
                       check=True, capture_output=True)
        ssh = paramiko.SSHClient()
        ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # a loopback bench
        ssh.connect("127.0.0.1", self.port, username="bench", key_filename=str(key),
                    look_for_keys=False, allow_agent=False)
        return ssh

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        # Runs and the simulated bench outlive an agent by design: end what this bench left.
        end_left_under(self.root, signal.SIGTERM)


def new_key(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f",
                    str(path)], check=True)
    return path


def run_header(script: str, ticket: str | None = None, detach: bool = False) -> bytes:
    head: dict[str, Any] = {"script": "b.py", "main": "b.py", "files": [
        {"path": "b.py", "size": len(script.encode())}], "label": "bench", "detach": detach}
    if ticket:
        head["ticket"] = ticket
    return (json.dumps(head) + "\n").encode() + script.encode()


def start_to_first_byte(ssh: paramiko.SSHClient, script: str) -> float:
    transport = ssh.get_transport()
    assert transport is not None
    began = time.perf_counter()
    chan = transport.open_session()
    chan.invoke_subsystem("run")
    chan.sendall(run_header(script))
    first = chan.recv(1)
    took = time.perf_counter() - began
    assert first, chan.recv_stderr(4096)
    while chan.recv(65536):
        pass
    assert chan.recv_exit_status() == 0
    chan.close()
    return took


def detached_start(ssh: paramiko.SSHClient, script: str) -> float:
    """Until the box answers a --detach run with its id: the run exists (its monitor is up
    and the script forked), without the script's own interpreter start in the figure."""
    transport = ssh.get_transport()
    assert transport is not None
    began = time.perf_counter()
    chan = transport.open_session()
    chan.invoke_subsystem("run")
    chan.sendall(run_header(script, detach=True))
    answer = chan.makefile("rb").read()
    took = time.perf_counter() - began
    assert chan.recv_exit_status() == 0 and b'"id"' in answer, chan.recv_stderr(4096)
    chan.close()
    return took


def alternated(on: paramiko.SSHClient, off: paramiko.SSHClient, rounds: int,
               measure: Any) -> tuple[list[float], list[float]]:
    """Each round times both, the order flipped every round so drift and order cost both
    sides alike."""
    with_on: list[float] = []
    with_off: list[float] = []
    for i in range(rounds):
        pair = [(on, with_on), (off, with_off)]
        for ssh, into in (pair if i % 2 == 0 else pair[::-1]):
            into.append(measure(ssh))
    return with_on, with_off


def handover(a: paramiko.SSHClient, b: paramiko.SSHClient) -> tuple[float, float]:
    """(grant, start) seconds after A's script exited."""
    exit_at = time.time() + 0.6
    ta, tb = a.get_transport(), b.get_transport()
    assert ta is not None and tb is not None
    holder = ta.open_session()
    holder.invoke_subsystem("run")
    holder.sendall(run_header(f"import time\ntime.sleep(max(0, {exit_at!r} - time.time()))\n"
                              "print(repr(time.time()), flush=True)\n"))
    time.sleep(0.2)  # A's run holds the box before B queues
    queue = tb.open_session()
    queue.invoke_subsystem("reservation")
    queue.sendall(b'{"op": "wait", "wait": 60, "label": "bench"}\n')
    buf = b""
    ticket = None
    while ticket is None:
        data = queue.recv(65536)
        assert data, queue.recv_stderr(4096)
        buf += data
        for line in buf.split(b"\n")[:-1]:
            msg = json.loads(line)
            if "granted" in msg:
                ticket = msg["granted"]
                granted_at = time.time()
        buf = buf[buf.rfind(b"\n") + 1:]
    exited = float(holder.makefile("rb").read().decode().strip())
    started = tb.open_session()
    started.invoke_subsystem("run")
    started.sendall(run_header("import time\nprint(repr(time.time()), flush=True)\n", ticket))
    began = float(started.makefile("rb").read().decode().strip())
    queue.close()
    holder.close()
    return granted_at - exited, began - exited


def reservation_work(rounds: int) -> float:
    """Seconds per begin_run + run_started + run_ended, in-process, on an idle box."""
    from box_agent.reservations import Reservations
    from box_agent.runs import Caller

    class NoRuns:
        def __init__(self) -> None:
            self.runs: dict[str, Any] = {}
            self.runs_dir = Path(tempfile.mkdtemp())

    async def work() -> float:
        idle = NoRuns()
        book = Reservations(idle.runs_dir, idle, enabled=True)  # type: ignore[arg-type]
        caller = Caller("bench", "bench", "SHA256:x", "key:SHA256:x")
        began = time.perf_counter()
        for _ in range(rounds):
            token = book.begin_run(caller, "bench", None)
            book.run_started(token)
            book.run_ended(None)  # type: ignore[arg-type]
        return (time.perf_counter() - began) / rounds

    return asyncio.run(work())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lager-resv-bench-"))
    on = Box(root / "on")
    off = Box(root / "off", "--reservations", "off")
    try:
        keys = [new_key(root / "key_a"), new_key(root / "key_b")]
        on_a, off_a = on.connect(keys[0]), off.connect(keys[0])
        on_b = on.connect(keys[1])
        script = "print('x')\n"
        for _ in range(3):  # warm both: imports, the simulated bench, the first run dirs
            start_to_first_byte(on_a, script)
            start_to_first_byte(off_a, script)
        with_on, with_off = alternated(on_a, off_a, args.rounds,
                                       lambda ssh: start_to_first_byte(ssh, script))
        det_on, det_off = alternated(on_a, off_a, args.rounds,
                                     lambda ssh: detached_start(ssh, script))
        grants, starts = [], []
        for _ in range(max(3, args.rounds // 8)):
            grant, start = handover(on_a, on_b)
            grants.append(grant)
            starts.append(start)
        work = reservation_work(20_000)
    finally:
        on.stop()
        off.stop()

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1e3:.1f} ms"

    def added(on_: list[float], off_: list[float]) -> str:
        paired = statistics.median(a - b for a, b in zip(on_, off_, strict=True))
        return (f"{(statistics.median(on_) - statistics.median(off_)) * 1e3:+.2f} ms "
                f"(paired {paired * 1e3:+.2f})")

    rows = [
        ("run start to the script's first byte, reservations on", ms(with_on), ""),
        ("run start to the script's first byte, --reservations off", ms(with_off), ""),
        ("  added by the reservation (median on - off)", added(with_on, with_off), "<= 2 ms"),
        ("run start to the run's id (--detach), reservations on", ms(det_on), ""),
        ("run start to the run's id (--detach), --reservations off", ms(det_off), ""),
        ("  added by the reservation (median on - off)", added(det_on, det_off), "<= 2 ms"),
        ("the reservation's own work per run", f"{work * 1e6:.1f} us", ""),
        ("box granted to the next waiter after the script's exit (median / max)",
         f"{statistics.median(grants) * 1e3:.0f} / {max(grants) * 1e3:.0f} ms", "<= 1 s"),
        ("next run's script starts after the script's exit (median / max)",
         f"{statistics.median(starts) * 1e3:.0f} / {max(starts) * 1e3:.0f} ms", "<= 2 s"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'':<{width}}  {'value':>28}  target")
    for what, value, target in rows:
        print(f"{what:<{width}}  {value:>28}  {target}")
    print(f"({args.rounds} run starts on each agent, alternated; {len(grants)} handovers)")


if __name__ == "__main__":
    main()
