"""The C run monitor's CPU per MB of script output, for builds of several source trees.

Each tree's box_agent/monitor/*.c is compiled as box_agent/monitor_build.py does, then the
runs alternate between the builds (A B A B ...), so that the machine's load moves them alike.
This process is the monitor's agent: it answers each `output` with a window, as the
supervisor does, after reading the new records through runlog.LogReader (so the log's pages
are read as an agent reads them), and checks that every byte the script wrote came through.
The monitor's CPU is its own on-CPU time (/proc/PID/schedstat, ns), taken when it reports
the script's exit: the script's CPU is not in it.

    .venv/bin/python bench/monitor_cpu.py --tree /work/main --tree . --runs 9

Prints a table: median (and min, max) CPU ms per run and per MB, and the monitor's context
switches (its wakeups).
"""
from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from box_agent.monitor_build import _CFLAGS
from box_agent.runlog import LogReader

WINDOW = 4 << 20  # monitor/loop.py's window_for(64 MiB)


@dataclass
class Sample:
    cpu_ms: float
    switches: int


@dataclass
class Build:
    label: str
    binary: Path
    samples: list[Sample] = field(default_factory=list)


def build(tree: Path, out: Path) -> Path:
    sources = sorted((tree / "box_agent" / "monitor").glob("*.c"))
    subprocess.run(["cc", *_CFLAGS, "-o", str(out), *map(str, sources)], check=True)
    return out


def flood_script(directory: Path, megabytes: int, chunk: int) -> Path:
    script = directory / "flood.py"
    script.write_text(
        "import sys\n"
        f"chunk = b'x' * {chunk}\n"
        "out = sys.stdout.buffer\n"
        f"for _ in range({megabytes * (1 << 20) // chunk}):\n"
        "    out.write(chunk)\n"
        "out.flush()\n")
    return script


def _cpu_and_switches(pid: int) -> Sample:
    ns = int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    switches = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if "ctxt_switches:" in line:  # voluntary and not
            switches += int(line.split()[1])
    return Sample(ns / 1e6, switches)


def run_once(binary: Path, script: Path, root: Path, expect: int) -> Sample:
    monitor_dir = Path(tempfile.mkdtemp(dir=root))
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc = subprocess.Popen([str(binary), str(theirs.fileno()), str(monitor_dir), str(root),
                             "-", "--", sys.executable, str(script)], pass_fds=[theirs.fileno()])
    theirs.close()
    reader = LogReader(monitor_dir)
    seen, stdout_bytes, sample = 0, 0, None
    try:
        while sample is None:
            data = ours.recv(1 << 17)
            if not data:
                raise RuntimeError("the monitor went without its exit")
            msg = json.loads(data)
            if msg["op"] not in ("output", "exit"):
                continue
            for chunk in reader.read(seen, msg["end"], budget=1 << 62):
                stdout_bytes += len(chunk.data) if chunk.stream == 1 else 0
                seen = chunk.end
            if msg["op"] == "exit":
                sample = _cpu_and_switches(proc.pid)
            else:
                ours.send(json.dumps({"op": "window", "until": seen + WINDOW,
                                      "seen": seen}).encode() + b"\n")
    finally:
        ours.close()
        proc.wait()
        shutil.rmtree(monitor_dir)
    if stdout_bytes != expect:
        raise RuntimeError(f"{binary}: {stdout_bytes} bytes of stdout logged, not {expect}")
    return sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", required=True, type=Path,
                        help="a source tree whose box_agent/monitor to build (repeat)")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--mb", type=int, default=200, help="MiB the script writes")
    parser.add_argument("--chunk", type=int, default=1 << 20, help="bytes per write")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="monitor-cpu-"))
    try:
        builds = [Build(str(tree), build(tree, root / f"monitor-{i}"))
                  for i, tree in enumerate(args.tree)]
        script = flood_script(root, args.mb, args.chunk)
        expect = args.mb * (1 << 20) // args.chunk * args.chunk
        for b in builds:  # a warm-up each: page cache, the interpreter's files
            run_once(b.binary, script, root, expect)
        for _ in range(args.runs):
            for b in builds:
                b.samples.append(run_once(b.binary, script, root, expect))
        mb = expect / 1e6
        print(f"{args.mb} MiB in {args.chunk}-byte writes, {args.runs} runs each, interleaved")
        print(f"{'tree':40} {'CPU ms median':>14} {'min':>7} {'max':>7} {'ms/MB':>7} "
              f"{'switches':>9}")
        for b in builds:
            cpu = [s.cpu_ms for s in b.samples]
            switches = statistics.median(s.switches for s in b.samples)
            print(f"{b.label[-40:]:40} {statistics.median(cpu):14.1f} {min(cpu):7.1f} "
                  f"{max(cpu):7.1f} {statistics.median(cpu) / mb:7.3f} {switches:9.0f}")
        # Each round ran every build back to back: the per-round differences move less with
        # the machine's load than the medians do.
        base = builds[0]
        for b in builds[1:]:
            diffs = [s.cpu_ms - t.cpu_ms for s, t in zip(b.samples, base.samples, strict=True)]
            fewer = sum(d < 0 for d in diffs)
            print(f"{b.label[-40:]} - {base.label[-40:]}: median "
                  f"{statistics.median(diffs):+.1f} ms per run, less CPU in {fewer} of "
                  f"{len(diffs)} rounds")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
