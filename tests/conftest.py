"""Real parts only: a real agent on 127.0.0.1 port 0 with keys in a temp dir, the real `lager`
command as a subprocess, the real simulated bench, OpenSSH and paramiko as clients."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
LAGER = str(BIN / "lager")
LAGER_BOX = str(BIN / "lager-box")
READY = re.compile(r"^lager-box listening on ([\d.]+):(\d+) \(host key (SHA256:\S+)\)$")
BANNER_ID = re.compile(r"\(id (\S+)\)")
CI_VARIABLES = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILDKITE", "CIRCLECI",
                "TRAVIS", "TF_BUILD", "TEAMCITY_VERSION", "BITBUCKET_BUILD_NUMBER")

# A CI started as a shell's background job (`.ci/run &`) runs with SIGINT ignored, and every
# process the tests start would inherit that: a lager whose Ctrl-C is ignored, not 130, and a
# Ctrl-C test waiting out its timeout. A handler is not inherited across exec, an ignore is.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass
class Agent:
    proc: subprocess.Popen[str]
    state_dir: Path
    host: str
    port: int
    fingerprint: str
    log_path: Path

    def stop(self, keep_runs: bool = False) -> int:
        """SIGTERM, as an upgrade would: the agent goes, its runs stay with their monitors.
        Unless keep_runs, the runs are then ended too, so no test leaves processes behind."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not keep_runs:
            self.end_runs()
        return self.proc.returncode

    def end_runs(self) -> None:
        """Test hygiene: end every run this box's state dir still holds (a monitor killed
        outright hands its script one SIGINT, and sweeps nothing, so kill the scripts too)."""
        for pid in pids_with_cmdline("box_agent.monitor", str(self.state_dir)):
            for child in [pid, *descendants_of(pid)]:
                try:
                    os.kill(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        # The simulated bench outlives the agent too (its runs may still use it).
        for pid in pids_with_cmdline("box_agent.simbench", str(self.state_dir)):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def log(self) -> str:
        return self.log_path.read_text()


def agent_log_path(state_dir: Path) -> Path:
    """A log file of its own for each agent started on `state_dir`: an agent started again on
    it (a restart, `--replace`) while the old one still writes would truncate the file under
    it, and the old one's later lines would land over the new one's (a test reading the old
    agent's hand-over line failed so, once in a CI run)."""
    path = state_dir.parent / f"{state_dir.name}-agent.log"
    n = 1
    while path.exists():
        path = state_dir.parent / f"{state_dir.name}-agent.{n}.log"
        n += 1
    return path


def start_agent(state_dir: Path, *extra: str, listen: str = "127.0.0.1:0") -> Agent:
    log_path = agent_log_path(state_dir)
    log = open(log_path, "w")
    proc = subprocess.Popen([LAGER_BOX, "serve", "--listen", listen, "--state-dir",
                             str(state_dir), "--name", "testbox", "-v", *extra],
                            stdout=subprocess.PIPE, stderr=log, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    match = READY.match(line)
    if not match:
        proc.kill()
        raise RuntimeError(f"agent did not get ready: {line!r}\n{log_path.read_text()}")
    return Agent(proc, state_dir, match.group(1), int(match.group(2)), match.group(3), log_path)


@dataclass
class Client:
    """One developer laptop: its own config dir, its own key, box 'mybox' pinned."""

    config_dir: Path
    agent: Agent
    box: str = "mybox"
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = {**os.environ, "LAGER_CONFIG_DIR": str(self.config_dir)}
        self.env.pop("LAGER_BOX", None)
        # The suite itself runs in CI with CI=true; a laptop client here is not a CI job
        # (ISSUE-NOTES 5). Tests of CI behaviour set it back themselves.
        for name in CI_VARIABLES:
            self.env.pop(name, None)

    def run(self, *args: str, input: str | None = None, timeout: float = 60,
            box: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [LAGER, *args] + (["--box", self.box] if box else [])
        return subprocess.run(cmd, env=self.env, input=input, capture_output=True, text=True,
                              timeout=timeout, stdin=None if input is not None else
                              subprocess.DEVNULL)

    def popen(self, *args: str, **kwargs: object) -> subprocess.Popen[str]:
        kwargs.setdefault("stdin", subprocess.PIPE)
        return subprocess.Popen([LAGER, *args, "--box", self.box], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                **kwargs)  # type: ignore[call-overload]

    @property
    def key_path(self) -> Path:
        return self.config_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.config_dir / "known_hosts"


def make_client(tmp: Path, agent: Agent, authorize: bool = True) -> Client:
    client = Client(tmp, agent)
    added = client.run("boxes", "add", "mybox", "--host", agent.host, "--port",
                       str(agent.port), box=False)
    assert added.returncode == 0, added.stderr
    if authorize:
        subprocess.run([LAGER_BOX, "authorize", "--state-dir", str(agent.state_dir),
                        str(client.key_path) + ".pub"], check=True, capture_output=True)
    return client


@pytest.fixture(scope="session")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    a = start_agent(tmp_path_factory.mktemp("box") / "state")
    yield a
    a.stop()


@pytest.fixture(scope="session")
def client(agent: Agent, tmp_path_factory: pytest.TempPathFactory) -> Client:
    return make_client(tmp_path_factory.mktemp("laptop"), agent)


@contextlib.contextmanager
def laptop_on_a_new_box(tmp_path: Path, *agent_args: str) -> Iterator[Client]:
    """A fresh agent (state in tmp_path/state, extra serve arguments agent_args) and a laptop
    that knows it as 'mybox'; the agent the laptop points at when the block ends is stopped
    (a test may swap in a restarted one through `laptop.agent`)."""
    box = start_agent(tmp_path / "state", *agent_args)
    laptop: Client | None = None
    try:
        laptop = make_client(tmp_path / "laptop", box)
        yield laptop
    finally:
        (laptop.agent if laptop is not None else box).stop()


def runs_by_id(client: Client) -> dict[str, dict]:
    """The box's runs as `lager python --list --json` gives them, by run id."""
    listed = client.run("python", "--list", "--json")
    assert listed.returncode == 0, listed.stderr
    return {row["id"]: row for row in json.loads(listed.stdout)}


def write_script(tmp: Path, name: str, body: str) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


def numbered_output(lines: int, digits: int, filler: str, err_every: int,
                    last_line: str) -> tuple[str, str]:
    """What the tests' streaming scripts print: `out NNNN<filler>` lines on stdout then
    last_line, and `err NNNN` on stderr every err_every lines."""
    out = "".join(f"out {i:0{digits}d} {filler}\n" for i in range(lines)) + last_line + "\n"
    err = "".join(f"err {i:0{digits}d}\n" for i in range(0, lines, err_every))
    return out, err


def script_gated_on_a_file(tmp: Path) -> tuple[Path, Path]:
    """A script that prints `ready`, waits until the gate file exists, prints `finished`:
    (the script, the gate)."""
    gate = tmp / "go"
    script = write_script(tmp, "gated.py", "import os, time\nprint('ready', flush=True)\n"
                          f"while not os.path.exists({str(gate)!r}):\n    time.sleep(0.05)\n"
                          "print('finished')\n")
    return script, gate


def wait_for(predicate, timeout: float = 20, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


class StreamReader:
    """Collects a Popen stream on a thread so tests can wait for text without deadlocks."""

    def __init__(self, stream) -> None:
        import threading

        self.text = ""
        self._stream = stream
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for chunk in iter(lambda: self._stream.read(1), ""):
            self.text += chunk

    def wait_for(self, needle: str, timeout: float = 20) -> str:
        wait_for(lambda: needle in self.text, timeout, what=f"{needle!r} in output:\n{self.text}")
        return self.text

    def join(self, timeout: float = 10) -> str:
        self._thread.join(timeout)
        return self.text


@dataclass
class LiveRun:
    proc: subprocess.Popen[str]
    out: StreamReader
    err: StreamReader

    def banner_id(self, timeout: float = 20) -> str:
        self.err.wait_for("=== lager breakpoint", timeout)
        wait_for(lambda: BANNER_ID.search(self.err.text), timeout, what="banner id")
        return BANNER_ID.search(self.err.text).group(1)  # type: ignore[union-attr]

    def finish(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout)
        self.out.join()
        self.err.join()
        return code


def start_run(client: Client, script: Path, *args: str, **kwargs: object) -> LiveRun:
    proc = client.popen("python", str(script), *args, **kwargs)
    return LiveRun(proc, StreamReader(proc.stdout), StreamReader(proc.stderr))


def pids_with_env(marker: str) -> list[int]:
    """Processes whose environment holds marker: how tests find a run's children."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def pids_with_cmdline(*needles: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if all(n.encode() in cmdline for n in needles):
                found.append(int(entry.name))
    return found


def keeper_processes(client: Client) -> list[int]:
    """The connection keepers (client/mux.py) of this laptop, by its config dir."""
    return sorted(set(pids_with_cmdline("client.mux"))
                  & set(pids_with_env(f"LAGER_CONFIG_DIR={client.config_dir}\0")))


def descendants_of(root: int) -> list[int]:
    from box_agent.monitor.process import descendants

    return descendants(root)


@contextlib.contextmanager
def simulator() -> Iterator[dict[str, int]]:
    """The simulated bench on its own (no agent): {device: port}; it ends when stdin closes."""
    sim = subprocess.Popen([sys.executable, "-m", "box_agent.simbench"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    assert sim.stdout is not None and sim.stdin is not None
    try:
        yield json.loads(sim.stdout.readline())
    finally:
        sim.stdin.close()
        assert sim.wait(10) == 0


def cannot_run(reason: str) -> None:
    """A tier this machine cannot run: skipped on a laptop, a failure in CI (CI=true), where
    every tier must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def binary() -> Path:
    """The C run monitor, built as the agent builds it (a tier that needs it cannot run
    without a compiler)."""
    from box_agent import monitor_build

    try:
        return monitor_build.build()
    except OSError as exc:
        cannot_run(f"the C monitor cannot be built here: {exc}")
        raise
