"""Running one script on five real agents: prefixed whole lines, stdout and stderr apart, the
recap, one exit code, --output-dir, --json, JUnit read by junitparser and junit2html, the
fleet id on each run, --detach, Ctrl-C; and the boxes that do not answer."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import StreamReader, cannot_run, write_script
from test_fleet_rig import Rig, black_hole, delay_proxy, free_port, start_rig

ALL = "bench[01-05]"
PREFIX = re.compile(rb"^bench0[1-5]: ")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    groups = {f"bench0{i}": ["line1"] + (["rack2"] if i >= 3 else []) for i in range(1, 6)}
    r = start_rig(tmp_path_factory.mktemp("fleet"), 5, groups)
    yield r
    r.stop()


def test_prefixed_whole_lines_and_streams_apart(rig: Rig, tmp_path: Path) -> None:
    script = write_script(tmp_path, "lines.py", (
        "import os, sys\n"
        "box, index = os.environ['LAGER_BOX'], os.environ['LAGER_FLEET_INDEX']\n"
        "print(f'out {box} {index}')\n"
        "print(f'err {box}', file=sys.stderr)\n"
        "sys.stdout.write('y' * 100000)\n"  # no newline: cut at 64 KiB, then the rest
        "sys.stdout.flush()\n"
        "sys.stdout.write('z' * 10 + '\\n')\n"))
    done = subprocess.run([*_lager(), "python", str(script), "--box", ALL], env=rig.laptop.env,
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(PREFIX.match(line) for line in lines), lines[:3]
    names = [f"bench0{i}" for i in range(1, 6)]
    for index, box in enumerate(names):
        assert f"{box}: out {box} {index}".encode() in lines
        assert f"{box}: err {box}".encode() in done.stderr.splitlines()
        mine = [ln[len(box) + 2:] for ln in lines if ln.startswith(f"{box}: ".encode())]
        body = b"".join(ln for ln in mine if ln.startswith((b"y", b"z")))
        assert body == b"y" * 100000 + b"z" * 10
        assert max(len(ln) for ln in mine) == 64 * 1024
    assert b"err " not in done.stdout and b"RECAP" not in done.stdout
    assert re.search(rb"lager: fleet f-[0-9a-f]{4}: \S*lines.py on bench\[01-05\] \(5 boxes\)",
                     done.stderr)
    assert len(re.findall(rb"^bench0[1-5] +ok +exit=0", done.stderr, re.M)) == 5


def _lager() -> list[str]:
    return [str(Path(sys.executable).parent / "lager")]


def test_exit_codes_recap_json_output_dir_and_junit(rig: Rig, tmp_path: Path) -> None:
    shared = write_script(tmp_path, "shared.py", "import os, sys\nprint('hi')\n"
                          "sys.exit(3 if os.environ['LAGER_BOX'] in ('bench02', 'bench04') "
                          "else 0)\n")
    done = rig.laptop.run("python", str(shared), "--box", ALL, "--json", "--output-dir",
                          str(tmp_path / "out"), "--junit-xml", str(tmp_path / "r.xml"))
    assert done.returncode == 3, done.stderr  # the code the failed boxes share
    recap = json.loads(done.stdout.splitlines()[-1])
    assert recap["exit"] == 3 and set(recap["boxes"]) == {f"bench0{i}" for i in range(1, 6)}
    states = {b: r["state"] for b, r in recap["boxes"].items()}
    assert states == {"bench01": "ok", "bench02": "failed", "bench03": "ok",
                      "bench04": "failed", "bench05": "ok"}
    for box in states:
        assert (tmp_path / "out" / f"{box}.stdout").read_text() == "hi\n"
        record = json.loads((tmp_path / "out" / f"{box}.json").read_text())
        assert record["fleet"] == recap["fleet"] and record["run_id"]
    _check_junit(tmp_path / "r.xml", recap)
    listed = rig.laptop.run("python", "--list", "--box", "bench02")
    assert f"fleet {recap['fleet']}" in listed.stdout
    rows = json.loads(rig.laptop.run("python", "--list", "--json", "--box", "bench02").stdout)
    assert recap["fleet"] in [r.get("fleet") for r in rows]
    differ = write_script(tmp_path, "differ.py", "import os, sys\n"
                          "sys.exit({'bench01': 3, 'bench02': 5}.get(os.environ['LAGER_BOX'], 0))\n")
    assert rig.laptop.run("python", str(differ), "--box", ALL).returncode == 1
    clean = write_script(tmp_path, "clean.py", "print('ok')\n")
    one_at_a_time = rig.laptop.run("python", str(clean), "--box", ALL, "--forks", "1")
    assert one_at_a_time.returncode == 0 and one_at_a_time.stdout.count(": ok") == 5
    gathered = rig.laptop.run("python", str(clean), "--box", ALL, "--gather")
    assert gathered.returncode == 0
    assert gathered.stdout.splitlines()[1] == "bench[01-05] (5)"
    assert gathered.stdout.count("ok") == 1
    assert re.search(r"^bench\[01-05\] +ok +exit=0", gathered.stderr, re.M)


def _check_junit(path: Path, recap: dict[str, object]) -> None:
    from junitparser import Failure, JUnitXml

    xml = JUnitXml.fromfile(str(path))
    suites = list(xml)
    assert len(suites) == 1
    suite = suites[0]
    props = {p.name: p.value for p in suite.properties()}
    assert props == {"fleet": recap["fleet"], "target": ALL}
    cases = list(suite)
    assert sorted(c.classname for c in cases) == [f"lager.line1.bench0{i}" for i in range(1, 6)]
    failed = sorted(c.classname for c in cases if any(isinstance(r, Failure) for r in c.result))
    assert failed == ["lager.line1.bench02", "lager.line1.bench04"]
    assert suite.tests == 5 and suite.failures == 2 and suite.errors == 0
    tool = shutil.which("junit2html", path=str(Path(sys.executable).parent))
    if tool is None:
        cannot_run("junit2html (a test dependency) is not installed")
    html = path.with_suffix(".html")
    subprocess.run([tool, str(path), str(html)], check=True, capture_output=True, timeout=60)
    page = html.read_text()
    assert "lager.line1.bench02" in page and "exit 3" in page


def test_boxes_that_do_not_answer_hold_no_other(rig: Rig, tmp_path: Path) -> None:
    """Down, black hole, wrong host key: one line each, 255 in their rows; a box behind a
    delay proxy finishes later than the rest and holds nothing up."""
    from client.config import Box, Config

    config = Config(rig.laptop.config_dir)
    with black_hole() as hole_port, delay_proxy(rig.agents["bench05"], 150) as slow_port:
        config.add_box(Box("down", "127.0.0.1", free_port()))
        config.add_box(Box("hole", "127.0.0.1", hole_port))
        # bench02's address under another name, pinned with bench01's key: a changed key.
        port2 = rig.agents["bench02"].port
        config.add_box(Box("wrongkey", "localhost", port2))
        pinned = config.pinned_line(config.box("bench01"))
        assert pinned is not None
        with config.known_hosts_path.open("a") as f:
            f.write(f"[localhost]:{port2} {' '.join(pinned.split()[1:3])}\n")
        rig.laptop.add("slow", "127.0.0.1", slow_port)
        # bench03's address (its host key pinned) with a key the box never authorized.
        stranger = tmp_path / "stranger_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                       check=True, capture_output=True, timeout=60)
        bench03 = rig.agents["bench03"]
        config.add_box(Box("badkey", bench03.host, bench03.port, identity=str(stranger)))
        script = write_script(tmp_path, "fine.py", "print('fine')\n")
        done = rig.laptop.run("python", str(script), "--box",
                              "bench0[1-3],down,hole,wrongkey,badkey,slow", "--json",
                              "--connect-timeout", "8", "--junit-xml", str(tmp_path / "j.xml"))
    assert done.returncode == 255, done.stderr  # no script failed; boxes were unreachable
    err = done.stderr.splitlines()
    for box, why in (("down", "refused the connection"), ("hole", "SSH handshake"),
                     ("wrongkey", "HOST KEY CHANGED"), ("badkey", "stranger_ed25519")):
        mine = [ln for ln in err if ln.startswith(f"{box}: unreachable: ")]
        assert len(mine) == 1 and why in mine[0], (box, err)
    recap = json.loads(done.stdout.splitlines()[-1])["boxes"]
    for box in ("down", "hole", "wrongkey", "badkey"):
        assert recap[box]["state"] == "unreachable" and recap[box]["exit"] == 255
    for box in ("bench01", "bench02", "bench03", "slow"):
        assert recap[box]["state"] == "ok" and recap[box]["exit"] == 0
    assert sorted(done.stdout.splitlines()[:-1]) == [
        "bench01: fine", "bench02: fine", "bench03: fine", "slow: fine"]
    fast = max(recap[b]["seconds"] for b in ("bench01", "bench02", "bench03"))
    assert fast < recap["slow"]["seconds"] and fast < recap["hole"]["seconds"]
    from junitparser import Error, JUnitXml

    cases = list(next(iter(JUnitXml.fromfile(str(tmp_path / "j.xml")))))
    errored = sorted(c.classname.split(".")[-1] for c in cases
                     if any(isinstance(r, Error) for r in c.result))
    assert errored == ["badkey", "down", "hole", "wrongkey"]


def test_ctrl_c_stops_every_run_and_still_recaps(rig: Rig, tmp_path: Path) -> None:
    script = write_script(tmp_path, "forever.py", "import time\nprint('ready', flush=True)\n"
                          "while True:\n    time.sleep(0.1)\n")
    proc = rig.laptop.popen("python", str(script), "--box", ALL)
    out, err = StreamReader(proc.stdout), StreamReader(proc.stderr)
    from conftest import wait_for

    try:
        wait_for(lambda: out.text.count("ready") == 5, 60, what=f"five runs ready: {out.text}")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.join()
    assert "sent SIGINT to every run" in text
    assert len(re.findall(r"^bench0[1-5] +killed +exit=130", text, re.M)) == 5, text
    rows = json.loads(rig.laptop.run("python", "--list", "--json", "--box", ALL).stdout)
    assert all(r["state"] == "exited" for runs in rows.values() for r in runs)


def test_detach_prints_fleet_and_run_ids(rig: Rig, tmp_path: Path) -> None:
    script = write_script(tmp_path, "quick.py", "print('x')\n")
    done = rig.laptop.run("python", str(script), "--box", "@rack2", "--detach")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"fleet f-[0-9a-f]{4}", lines[0])
    assert [ln.split(":")[0] for ln in lines[1:]] == ["bench03", "bench04", "bench05"]
    assert all(re.fullmatch(r"bench0[3-5]: run [0-9a-f]{16}", ln) for ln in lines[1:])


def test_clubak_reads_the_prefixed_output(rig: Rig, tmp_path: Path) -> None:
    """ClusterShell's own `clubak -b` gathers what the fleet prints (pdsh's line form)."""
    clubak = shutil.which("clubak", path=str(Path(sys.executable).parent))
    if clubak is None:
        cannot_run("clubak (ClusterShell, a dependency) is not installed")
    script = write_script(tmp_path, "same.py", "print('same line')\nprint('and another')\n")
    done = rig.laptop.run("python", str(script), "--box", ALL)
    assert done.returncode == 0, done.stderr
    folded = subprocess.run([clubak, "-b"], input=done.stdout, capture_output=True, text=True,
                            timeout=60, check=True).stdout
    assert "bench[01-05] (5)" in folded and folded.count("same line") == 1
    assert folded.index("same line") < folded.index("and another")  # lines kept in order


def test_instrument_commands_and_nets_over_a_set(rig: Rig) -> None:
    done = rig.laptop.run("supply", "supply2", "state", "--box", ALL)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:3] == ["-" * 15, "bench[01-05] (5)", "-" * 15]
    assert done.stdout.count("supply2") == 1  # five equal answers, printed once
    data = json.loads(rig.laptop.run("adc", "adc1", "--json", "--box", "@rack2").stdout)
    assert sorted(data) == ["bench03", "bench04", "bench05"]
    assert all("value" in str(answer) or answer for answer in data.values())
    nets = rig.laptop.run("nets", "--box", "bench0[1-2]", "--no-gather")
    lines = nets.stdout.splitlines()
    assert lines and all(ln.startswith(("bench01: ", "bench02: ")) for ln in lines)
    # A form only the click command takes (an option): it builds the request once, every
    # box gets it.
    limited = rig.laptop.run("supply", "supply2", "voltage", "2.5", "--ovp", "6", "--box", ALL)
    assert limited.returncode == 0, limited.stderr
    assert limited.stdout.splitlines()[1] == "bench[01-05] (5)"
    read = json.loads(rig.laptop.run("supply", "supply2", "voltage", "--json", "--box",
                                     ALL).stdout)
    assert sorted(read) == [f"bench0{i}" for i in range(1, 6)]
    assert len({json.dumps(answer, sort_keys=True) for answer in read.values()}) == 1
    assert "2.5" in json.dumps(next(iter(read.values())))
    bad = rig.laptop.run("supply", "supply2", "voltage", "2.5", "--ovp", "1", "--box", ALL)
    assert bad.returncode != 0 and "ovp" in bad.stderr.lower(), bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_junit_path_that_cannot_be_written(rig: Rig, tmp_path: Path) -> None:
    """Checked before any box starts (one line, exit 2); a report that becomes unwritable
    during the run loses neither the recap nor the scripts' exit code."""
    script = write_script(tmp_path, "three.py", "import sys\nprint('x')\nsys.exit(3)\n")
    before = json.loads(rig.laptop.run("python", "--list", "--json", "--box", ALL).stdout)
    for bad, why in (("/nonexistent/dir/r.xml", "no such directory"), (str(tmp_path), "is a "
                                                                       "directory")):
        done = rig.laptop.run("python", str(script), "--box", ALL, "--junit-xml", bad)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and why in lines[0], done.stderr
        assert done.stdout == ""
    after = json.loads(rig.laptop.run("python", "--list", "--json", "--box", ALL).stdout)
    assert {b: len(r) for b, r in after.items()} == {b: len(r) for b, r in before.items()}
    # The boxes are agents on this machine: the script itself removes the report's directory.
    gone = tmp_path / "reports"
    gone.mkdir()
    remover = write_script(tmp_path, "remove.py", "import os, shutil, sys\n"
                           f"if os.environ['LAGER_FLEET_INDEX'] == '0':\n"
                           f"    shutil.rmtree({str(gone)!r})\n"
                           "print('x')\nsys.exit(3)\n")
    done = rig.laptop.run("python", str(remover), "--box", ALL, "--junit-xml",
                          str(gone / "r.xml"))
    assert done.returncode == 3, done.stderr
    assert "RECAP" in done.stderr
    assert len(re.findall(r"^bench0[1-5] +failed +exit=3", done.stderr, re.M)) == 5
    assert re.search(r"^lager: --junit-xml \S+r\.xml: not written: ", done.stderr, re.M)
    assert done.stderr.index("RECAP") < done.stderr.index("not written")


def test_ctrl_c_to_scripts_that_catch_it_and_exit_0(rig: Rig, tmp_path: Path) -> None:
    """Exit 0 on a set, even of one box, as on one box: every run ended with a status."""
    from conftest import wait_for

    script = write_script(tmp_path, "calm.py", (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda *_: (print('caught', flush=True), sys.exit(0)))\n"
        "print('ready', flush=True)\n"
        "while True:\n    time.sleep(0.1)\n"))
    for box, count in (("bench01", 1), ("bench[01]", 1), (ALL, 5)):
        proc = rig.laptop.popen("python", str(script), "--box", box)
        out, err = StreamReader(proc.stdout), StreamReader(proc.stderr)
        try:
            wait_for(lambda n=count, o=out: o.text.count("ready") == n, 60,
                     what=f"{count} ready: {out.text}")
            proc.send_signal(signal.SIGINT)
            assert proc.wait(60) == 0, (box, err.join())
        finally:
            if proc.poll() is None:
                proc.kill()
        assert out.join().count("caught") == count, box


def test_twenty_boxes_under_a_soft_limit_of_32_files(rig: Rig, tmp_path: Path) -> None:
    """Five agents under four names each: 20 connections and their pipes do not fit in 32
    descriptors; the fleet raises its soft limit to the hard one and every box runs."""
    import resource

    from client.config import Box, Config

    config = Config(rig.laptop.config_dir)
    names = []
    for box, agent in rig.agents.items():
        for n in range(1, 5):
            name = f"{box}n{n}"
            config.add_box(Box(name, agent.host, agent.port))  # its address is pinned already
            names.append(name)
    script = write_script(tmp_path, "who.py", "import os\nprint(os.environ['LAGER_BOX'])\n")

    def small_limit() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (32, hard))

    done = subprocess.run([*_lager(), "python", str(script), "--box", ",".join(names)],
                          env=rig.laptop.env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, preexec_fn=small_limit)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(done.stdout.splitlines()) == sorted(f"{n}: {n}" for n in names)


def test_a_started_run_holds_no_fork(rig: Rig, tmp_path: Path) -> None:
    """--forks 1 and a rendezvous: each run waits until all five have started (the agents
    share this machine's disk). Had a started run kept its fork, the second box would never
    connect and the first would give up waiting."""
    meet = tmp_path / "meet"
    meet.mkdir()
    script = write_script(tmp_path, "meet.py", (
        "import os, pathlib, sys, time\n"
        f"meet = pathlib.Path({str(meet)!r})\n"
        "(meet / os.environ['LAGER_BOX']).touch()\n"
        "until = time.monotonic() + 120\n"
        "while len(list(meet.iterdir())) < 5:\n"
        "    if time.monotonic() > until:\n"
        "        print('alone'); sys.exit(1)\n"
        "    time.sleep(0.05)\n"
        "print('met')\n"))
    done = rig.laptop.run("python", str(script), "--box", ALL, "--forks", "1", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(done.stdout.splitlines()) == [f"bench0{i}: met" for i in range(1, 6)]


def test_timeout_is_a_junit_error(rig: Rig, tmp_path: Path) -> None:
    from junitparser import Error, JUnitXml

    script = write_script(tmp_path, "slow.py", "import time\nprint('started', flush=True)\n"
                          "time.sleep(600)\n")
    report = tmp_path / "t.xml"
    done = rig.laptop.run("python", str(script), "--box", "@rack2", "--timeout", "2",
                          "--junit-xml", str(report))
    assert done.returncode == 124, done.stderr
    assert len(re.findall(r"^bench0[3-5] +timeout +exit=124", done.stderr, re.M)) == 3
    cases = list(next(iter(JUnitXml.fromfile(str(report)))))
    errors = {c.classname: [r.message for r in c.result if isinstance(r, Error)] for c in cases}
    assert errors == {f"lager.line1.bench0{i}": ["exit 124"] for i in range(3, 6)}, errors


def test_fleet_commands_leave_no_keeper_behind(rig: Rig, tmp_path: Path) -> None:
    """With the connection keeper on (no LAGER_MUX=0): one box leaves its keeper (the control),
    a set leaves none."""
    from conftest import pids_with_cmdline, pids_with_env, wait_for

    laptop = tmp_path / "keeperlaptop"
    shutil.copytree(rig.laptop.config_dir, laptop)
    env = {k: v for k, v in rig.laptop.env.items() if k != "LAGER_MUX"}
    env["LAGER_CONFIG_DIR"] = str(laptop)

    def keepers() -> set[int]:
        return set(pids_with_env(f"LAGER_CONFIG_DIR={laptop}")) & \
            set(pids_with_cmdline("client.mux"))

    script = write_script(tmp_path, "k.py", "print('k')\n")
    for args in (("python", str(script), "--box", ALL), ("nets", "--box", ALL),
                 ("python", "--list", "--box", ALL)):
        done = subprocess.run([*_lager(), *args], env=env, capture_output=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
    assert keepers() == set()
    one = subprocess.run([*_lager(), "nets", "--box", "bench01"], env=env, capture_output=True,
                         timeout=120, stdin=subprocess.DEVNULL)
    assert one.returncode == 0, one.stderr
    left = wait_for(keepers, 60, what="the single box's keeper")
    for pid in left:  # ours: started by the command above
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not keepers(), 60, what="the keeper gone")
