"""Deploying a lab (issue 19): the real `ansible-playbook` applies deploy/ansible's role to three
"bare host" containers over OpenSSH, a second run changes nothing, and the real `lager` runs
the spec's example on every box with host keys from the known_hosts the role collected.

The boxes run systemd as PID 1 when this machine lets a container do so; then the unit the role
wrote is what runs the agent, and an upgrade goes through `systemctl reload` (`lager-box
reload`, which starts `serve --replace` and returns once it serves). Where systemd cannot be PID 1, the test says so and starts the unit's ExecStart as
the unit's User itself (LAGER_DEPLOY_NO_SYSTEMD=1 takes that path on purpose). In CI
(CI=true) a missing Docker engine fails this tier.

The first test needs no container: the agent's readiness messages to a NOTIFY_SOCKET that
stands in for systemd's.
"""
from __future__ import annotations

import array
import configparser
import json
import os
import re
import shlex
import socket
import struct
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    BIN,
    CI_VARIABLES,
    Client,
    LiveRun,
    cannot_run,
    start_agent,
    start_run,
    wait_for,
    write_script,
)
from scenarios import run_spec_example

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOK = ROOT / "deploy" / "ansible" / "site.yml"
BOXES = ("box1", "box2", "box3")
UNIT = "/etc/systemd/system/lager-box.service"
# Privilege separation's capabilities (the unit's CapabilityBoundingSet): CHOWN 0,
# DAC_OVERRIDE 1, DAC_READ_SEARCH 2, FOWNER 3, FSETID 4, KILL 5, SETGID 6, SETUID 7.
AGENT_CAPS = sum(1 << bit for bit in (0, 1, 2, 3, 4, 5, 6, 7))


# --- sd_notify, against a stand-in for systemd's socket ------------------------------------

def _receive(sock: socket.socket) -> tuple[dict[str, str], int]:
    """One notification: its fields, and the sender's pid as the kernel vouches for it."""
    data, ancdata, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
    pid = -1
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = array.array("i", payload[:12])[0]
    fields = dict(line.split("=", 1) for line in data.decode().splitlines())
    return fields, pid


def test_ready_and_replace_tell_the_service_manager_who_the_main_process_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent says READY=1 once it listens; on `serve --replace` the running agent (the
    main process, the only one NotifyAccess=main hears) names its successor the main PID
    before it exits, and the successor then says READY=1 itself."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify"))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    listener.settimeout(60)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    old = start_agent(tmp_path / "state")
    new = None
    try:
        fields, sender = _receive(listener)
        assert fields["READY"] == "1" and sender == old.proc.pid
        assert fields["MAINPID"] == str(old.proc.pid)
        assert f":{old.port}" in fields["STATUS"]

        new = start_agent(tmp_path / "state", "--replace")
        fields, sender = _receive(listener)
        assert sender == old.proc.pid  # from the unit's main process, which systemd hears
        assert fields["MAINPID"] == str(new.proc.pid), fields
        fields, sender = _receive(listener)
        assert sender == new.proc.pid and fields["READY"] == "1"
        assert old.proc.wait(30) == 0
    finally:
        if new is not None:
            new.stop()
        old.stop()
        listener.close()


# --- the container tier ---------------------------------------------------------------------

def _run(*cmd: str, input: str | None = None, timeout: float = 300,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), input=input, capture_output=True, text=True,
                          timeout=timeout, env=env)


def _docker_problem() -> str | None:
    try:
        probe = _run("docker", "info", timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if probe.returncode == 0 else (probe.stderr.strip().splitlines() or ["?"])[-1]


@dataclass
class Host:
    name: str
    container: str
    address: str

    def sh(self, command: str, input: str | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return _run("docker", "exec", "-i", self.container, "sh", "-c", command, input=input,
                    timeout=timeout)


@dataclass
class Lab:
    hosts: list[Host]
    systemd: bool  # systemd is PID 1 in the boxes, and runs the unit
    work: Path
    inventory: Path
    laptop_dir: Path  # where the role writes known_hosts and ssh_config
    laptop: Path  # a lager config dir: its key is authorized on every box, it pins nothing
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]

    def playbook(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return _playbook(self.work, self.inventory, *extra)

    def client(self, box: str) -> Client:
        client = Client(self.laptop, agent=None, box=box)  # type: ignore[arg-type]
        client.env["LAGER_SSH_CONFIG"] = str(self.laptop_dir / "ssh_config")
        return client


def _playbook(work: Path, inventory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in CI_VARIABLES}
    env.update(ANSIBLE_HOME=str(work / "ansible-home"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(work / "ansible-tmp"), ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_PYTHON_INTERPRETER="auto_silent", PATH=f"{BIN}:{env['PATH']}",
               ANSIBLE_SSH_CONTROL_PATH_DIR=str(work / "cp"))
    # LAGER_ANSIBLE_PLAYBOOK: another ansible-core's (Debian's 2.14) instead of the test
    # dependency's.
    playbook = os.environ.get("LAGER_ANSIBLE_PLAYBOOK", str(BIN / "ansible-playbook"))
    return _run(playbook, "-i", str(inventory), str(PLAYBOOK), *extra, env=env, timeout=900)


def recap(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, int]]:
    """PLAY RECAP's counts per host: {'box1': {'ok': 12, 'changed': 0, ...}}."""
    counts = {}
    for line in result.stdout.split("PLAY RECAP", 1)[-1].splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
        if match:
            counts[match.group(1)] = {k: int(v) for k, v in
                                      re.findall(r"(\w+)=(\d+)", match.group(2))}
    return counts


def _start_container(image: str, name: str, systemd: bool) -> str:
    common = ["docker", "run", "-d", "--name", name, "--hostname", name.rsplit("-", 1)[-1]]
    if systemd:
        # SYS_ADMIN for systemd (PID 1) alone: it builds each unit's mount namespace (the
        # sandbox); the agent's own bound leaves it out.
        cmd = [*common, "--cap-add", "SYS_ADMIN", "--tmpfs", "/run", "--tmpfs", "/run/lock",
               "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro", image]
    else:
        cmd = [*common, "--init", image, "sh", "-c",
               "ssh-keygen -A >/dev/null && exec /usr/sbin/sshd -D -e"]
    started = _run(*cmd, timeout=120)
    assert started.returncode == 0, started.stderr
    return started.stdout.strip()


def _systemd_up(container: str) -> str | None:
    """None when systemd runs as PID 1 in the container, else why not."""
    try:
        state = _run("docker", "exec", container, "systemctl", "is-system-running", "--wait",
                     timeout=90)
    except subprocess.TimeoutExpired:
        return "systemd did not finish booting within 90 s"
    if state.stdout.strip() in ("running", "degraded"):
        return None
    logs = _run("docker", "logs", "--tail", "5", container)
    return (f"systemd cannot be PID 1 in a container here ({state.stdout.strip() or '?'}: "
            f"{(state.stderr or logs.stdout + logs.stderr).strip()[-300:]})")


def _build_wheelhouse(into: Path) -> Path:
    """The agent's wheel and every dependency's, built once for the session (an offline
    lab's wheelhouse: the boxes install with no package index)."""
    built = _run(str(BIN / "python"), "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                 "-w", str(into), str(ROOT), timeout=900)
    assert built.returncode == 0, built.stderr
    assert list(into.glob("lager_over_ssh-*.whl")), built.stdout
    return into


def _start_unit_by_hand(host: Host) -> None:
    """Without systemd: the unit's ExecStart as its User, from the unit the role wrote."""
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read_string(host.sh(f"cat {UNIT}").stdout)
    argv = shlex.split(unit["Service"]["ExecStart"])
    user = unit["Service"].get("User", "root")
    started = _run("docker", "exec", "-d", "-u", user, host.container, "sh", "-c",
                   f"exec {shlex.join(argv)} >/var/log/lager-box.log 2>&1")
    assert started.returncode == 0, started.stderr
    wait_for(lambda: "listening" in host.sh("cat /var/log/lager-box.log").stdout, 60,
             what=f"the agent on {host.name}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    problem = _docker_problem()
    if problem is not None:
        cannot_run(f"no Docker engine ({problem}); start one with scripts/docker-up.sh")
    built = _run("bash", str(ROOT / "tests" / "deploy" / "build.sh"), timeout=900)
    assert built.returncode == 0, built.stderr
    image = built.stdout.strip()
    work = tmp_path_factory.mktemp("deploy")
    prefix = f"lagerdeploy{uuid.uuid4().hex[:8]}"
    containers: list[str] = []
    try:
        systemd = True
        for box in BOXES:
            containers.append(_start_container(image, f"{prefix}-{box}", systemd))
        why_not = ("LAGER_DEPLOY_NO_SYSTEMD is set" if os.environ.get("LAGER_DEPLOY_NO_SYSTEMD")
                   else _systemd_up(containers[0]))
        if why_not is not None:
            print(f"\n{why_not}: the test starts the unit's ExecStart as its User instead")
            _run("docker", "rm", "-f", *containers)
            systemd, containers = False, []
            for box in BOXES:
                containers.append(_start_container(image, f"{prefix}-{box}", systemd))
        hosts = []
        for box, container in zip(BOXES, containers, strict=True):
            address = _run("docker", "inspect", "-f",
                           "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                           container).stdout.strip()
            hosts.append(Host(box, container, address))
        yield _deploy(work, hosts, systemd, tmp_path_factory)
    finally:
        if containers:
            _run("docker", "rm", "-f", *containers)


def _deploy(work: Path, hosts: list[Host], systemd: bool,
            tmp_path_factory: pytest.TempPathFactory) -> Lab:
    from client.config import Config

    wheelhouse = _build_wheelhouse(work / "wheelhouse")
    laptop = tmp_path_factory.mktemp("deploy-laptop")
    Config(laptop).ensure_default_key()
    # Ansible's own key, and the boxes' sshd host keys read through Docker: Ansible's leg
    # trusts nothing on first use either.
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "ansible_key"))
    ansible_known = []
    for host in hosts:
        put = host.sh("cat >> /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys",
                      input=(work / "ansible_key.pub").read_text())
        assert put.returncode == 0, put.stderr
        key = wait_for(lambda h=host: h.sh("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout, 60,
                       what=f"sshd's host key on {host.name}")
        ansible_known.append(f"{host.address} {' '.join(key.split()[:2])}\n")
    (work / "ansible_known_hosts").write_text("".join(ansible_known))
    laptop_dir = work / "lab"
    inventory = work / "inventory.yml"
    inventory.write_text(json.dumps({"lager_boxes": {  # JSON is YAML
        "hosts": {h.name: {"ansible_host": h.address} for h in hosts},
        "vars": {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(work / "ansible_key"),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={work / 'ansible_known_hosts'}"
                                       " -o StrictHostKeyChecking=yes",
            "ansible_python_interpreter": "/usr/bin/python3",
            "lager_box_wheelhouse": str(wheelhouse),
            "lager_box_laptop_dir": str(laptop_dir),
            "lager_box_authorized_keys": [(laptop / "id_ed25519.pub").read_text().strip()],
            "lager_box_systemd": "auto" if systemd else "false",
        }}}, indent=2))
    first = _playbook(work, inventory)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    second = _playbook(work, inventory)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-2000:]
    if not systemd:
        for host in hosts:
            _start_unit_by_hand(host)
    return Lab(hosts, systemd, work, inventory, laptop_dir, laptop, first, second)


@pytest.mark.container
@pytest.mark.timeout(1800)
def test_the_role_deploys_three_boxes_and_a_second_run_changes_nothing(lab: Lab) -> None:
    first, second = recap(lab.first), recap(lab.second)
    assert set(first) >= set(BOXES) and set(second) >= set(BOXES), lab.second.stdout[-2000:]
    for box in BOXES:
        assert first[box]["failed"] == 0 and first[box]["changed"] > 0, first
        assert second[box]["failed"] == 0 and second[box]["unreachable"] == 0, second
        assert second[box]["changed"] == 0, lab.second.stdout  # idempotent
    known = (lab.laptop_dir / "known_hosts").read_text()
    for host in lab.hosts:
        box_key = host.sh("cat /var/lib/lager-box/ssh_host_ed25519_key.pub").stdout.split()[:2]
        assert f"[{host.address}]:2222 {' '.join(box_key)}" in known


@pytest.mark.container
@pytest.mark.timeout(1800)
def test_spec_example_runs_on_every_box_with_the_collected_host_keys(
        lab: Lab, tmp_path: Path) -> None:
    for box in BOXES:
        run_spec_example(lab.client(box), tmp_path / box)
    # Trusted through the collected known_hosts alone: lager pinned nothing of its own.
    pins = lab.laptop / "known_hosts"
    assert not pins.exists() or pins.read_text().strip() == ""

    # The same laptop, with a known_hosts that lacks the box: refused, no prompt, no pin.
    config = (lab.laptop_dir / "ssh_config").read_text()
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    stranger = tmp_path / "ssh_config"
    stranger.write_text(config.replace(str(lab.laptop_dir / "known_hosts"), str(empty)))
    client = lab.client("box1")
    client.env["LAGER_SSH_CONFIG"] = str(stranger)
    refused = client.run("python", "--list")
    assert refused.returncode == 255, refused
    assert "host key lager does not know" in refused.stderr, refused.stderr
    assert not pins.exists() or pins.read_text().strip() == ""


@pytest.mark.container
@pytest.mark.timeout(600)
def test_scripts_on_a_deployed_box_hold_no_privilege(lab: Lab, tmp_path: Path) -> None:
    """The unit's agent switches each run to a uid of its own, and the script keeps none of
    the agent's capabilities and cannot gain any (NoNewPrivileges)."""
    script = write_script(tmp_path, "who.py", """
import os
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(os.getuid(), *(status[k].strip() for k in ("CapEff", "CapPrm", "CapAmb", "NoNewPrivs")))
""")
    result = lab.client("box2").run("python", str(script))
    assert result.returncode == 0, result.stderr
    uid, eff, prm, amb, nnp = result.stdout.split()
    assert int(uid) >= 2_000_000, result.stdout
    assert int(eff, 16) == int(prm, 16) == int(amb, 16) == 0, result.stdout
    if lab.systemd:
        assert nnp == "1", result.stdout


@pytest.mark.container
@pytest.mark.timeout(600)
def test_the_unit_passes_systemd_analyze_verify(lab: Lab) -> None:
    """With or without systemd as PID 1: the unit the role wrote, as systemd parses it."""
    for host in lab.hosts:
        if host.sh("command -v systemd-analyze").returncode != 0:
            cannot_run("no systemd-analyze in the box image")
        verify = host.sh(f"systemd-analyze verify {UNIT}")
        assert verify.returncode == 0 and "lager-box" not in verify.stderr, verify.stderr


@pytest.mark.container
@pytest.mark.timeout(600)
def test_the_unit_runs_the_agent_sandboxed(lab: Lab) -> None:
    if not lab.systemd:
        cannot_run("systemd is not PID 1 in these containers (said when the lab started)")
    host = lab.hosts[0]
    show = host.sh("systemctl show lager-box -p ActiveState -p MainPID -p Type -p KillMode")
    props = dict(line.split("=", 1) for line in show.stdout.split())
    assert props["ActiveState"] == "active" and props["Type"] == "notify", props
    assert props["KillMode"] == "process"
    def status(pid: str) -> dict[str, str]:
        text = host.sh(f"cat /proc/{pid}/status").stdout
        return {k: v.strip() for k, v in (line.split(":", 1) for line in text.splitlines())}

    fields = status(props["MainPID"])
    # The unit's set, within what the container itself may have (Docker leaves some out).
    container_caps = int(status("1")["CapBnd"], 16)
    assert int(fields["CapBnd"], 16) == AGENT_CAPS & container_caps, fields["CapBnd"]
    assert fields["NoNewPrivs"] == "1"
    sandbox = host.sh("systemctl show lager-box -p ProtectSystem -p PrivateTmp "
                      "-p ReadWritePaths -p NoNewPrivileges").stdout.split()
    assert sorted(sandbox) == ["NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectSystem=strict",
                               "ReadWritePaths=/var/lib/lager-box"], sandbox
    namespace = host.sh(f"readlink /proc/1/ns/mnt /proc/{props['MainPID']}/ns/mnt").stdout
    if len(set(namespace.split())) == 1:
        # systemd skips mount namespaces where the container may not make them (as it does
        # ProtectHostname's UTS namespace): nothing to look at here, say so.
        print(f"\n{host.name}: systemd could not set up mount namespaces in this container; "
              "ProtectSystem and PrivateTmp are in the unit but not in force here")
    else:
        # ProtectSystem=strict: the agent's view of / is read-only, the state dir writable.
        mounts = [line.split() for line in
                  host.sh(f"cat /proc/{props['MainPID']}/mountinfo").stdout.splitlines()]
        options = {fields[4]: fields[5].split(",") for fields in mounts}
        assert "ro" in options["/"] and "rw" in options["/var/lib/lager-box"], options
    security = host.sh("systemd-analyze security --no-pager lager-box.service")
    overall = security.stdout.strip().splitlines()[-1]
    print(f"\n{host.name}: {overall}")
    assert "Overall exposure level for lager-box.service" in overall, security.stdout


def _main_pid(host: Host) -> int:
    return int(host.sh("systemctl show lager-box -p MainPID --value").stdout.strip())


def _paused_under_systemd(lab: Lab, index: int, tmp_path: Path, label: str
                          ) -> tuple[Host, Client, LiveRun, str, int]:
    """A run paused at `label` on the lab's box `index`, and the unit's main pid then."""
    if not lab.systemd:
        cannot_run("systemd is not PID 1 in these containers (said when the lab started)")
    host = lab.hosts[index]
    client = lab.client(host.name)
    script = write_script(tmp_path, "paused.py", "from lager import pause\nprint('before', "
                          f"flush=True)\npause({label!r})\nprint('after')\n")
    run = start_run(client, script)
    return host, client, run, run.banner_id(60), _main_pid(host)


def _still_paused(client: Client) -> None:
    """The run is listed, paused, by the agent that runs now. Asked first because the
    laptop's connection keeper may still hold a connection to the agent that left, and a
    `--continue` in flight on it is not re-sent (client/mux.py): it fails once with 255."""
    listed = wait_for(lambda: (r := client.run("python", "--list")).returncode == 0 and r, 60,
                      what="the run listed by the new agent")
    assert "paused" in listed.stdout, listed.stdout


def _handed_over(host: Host, before: int) -> int:
    """Wait until the unit's main process is a new agent that said READY, and the old one
    has gone; the unit stayed active throughout. The new main PID."""
    after: int = wait_for(lambda: (pid := _main_pid(host)) not in (0, before) and pid, 60,
                          what="a new main process")
    wait_for(lambda: host.sh(f"kill -0 {before}").returncode != 0, 60,
             what="the old agent's exit")
    wait_for(lambda: host.sh("systemctl show lager-box -p StatusText --value").stdout
             .startswith("listening on"), 60, what="READY=1 from the new agent")
    assert host.sh("systemctl is-active lager-box").stdout.strip() == "active"
    return after


@pytest.mark.container
@pytest.mark.timeout(900)
def test_an_upgrade_through_the_role_replaces_the_agent_and_keeps_the_paused_run(
        lab: Lab, tmp_path: Path) -> None:
    """A changed unit (here: one more serve option) makes the role reload the unit: the new
    agent takes over with `serve --replace`, becomes the unit's main process, and the run that
    was paused on the old one goes on."""
    host, client, run, ident, before = _paused_under_systemd(lab, 2, tmp_path, "upgrade here")

    upgrade = lab.playbook("--limit", host.name, "-e", "lager_box_laptop_dir="
                           f"{tmp_path / 'lab'}", "-e", '{"lager_box_extra_args": '
                           '["--max-auth-tries", "5"]}')
    assert upgrade.returncode == 0, upgrade.stdout[-4000:]
    assert "RUNNING HANDLER [lager_box : Replace the agent]" in upgrade.stdout
    assert recap(upgrade)[host.name]["changed"] > 0

    after = _handed_over(host, before)
    assert "--max-auth-tries 5" in host.sh(f"tr '\\0' ' ' < /proc/{after}/cmdline").stdout
    # The new agent can hand over in turn: a second upgrade, by hand this time. `systemctl
    # reload` returns once the new agent serves: no waiting before the checks.
    assert host.sh("systemctl reload lager-box").returncode == 0
    third = _main_pid(host)
    assert third not in (0, after)
    assert "--replace" in host.sh(f"tr '\\0' ' ' < /proc/{third}/cmdline").stdout
    assert host.sh("systemctl show lager-box -p StatusText --value").stdout.startswith(
        "listening on")
    listed = _direct(client).run("python", "--list")  # a new login, at once
    assert listed.returncode == 0 and ident in listed.stdout and "paused" in listed.stdout, \
        listed
    # The main PID is the very agent `lager-box reload` (ExecReload) saw become ready.
    served = wait_for(lambda: [line for line in host.sh(
        "journalctl -u lager-box --no-pager -o cat").stdout.splitlines()
        if line.startswith("lager-box reload: the new agent (pid")], 60,
        what="reload's line in the journal")
    assert served[-1] == f"lager-box reload: the new agent (pid {third}) serves", served
    _handed_over(host, after)
    _still_paused(client)  # on the third agent
    assert client.run("python", "--continue", ident).returncode == 0
    assert run.finish(60) == 0 and run.out.text == "before\nafter\n"


def _venv_of(host: Host, pid: int) -> str:
    """The venv an agent runs from: its argv is VENV/bin/python VENV/bin/lager-box serve ..."""
    argv = host.sh(f"tr '\\0' '\\n' < /proc/{pid}/cmdline").stdout.splitlines()
    return argv[1].rsplit("/bin/", 1)[0]


def _tree_sum(host: Host, path: str) -> str:
    """One hash of every file under path but bytecode and the built C monitor (which the
    agent itself may add)."""
    summed = host.sh(f"cd {path} && find . -type f ! -name '*.pyc' ! -path './libexec/*' "
                     "-print0 | sort -z | xargs -0 sha256sum | sha256sum")
    assert summed.returncode == 0, summed.stderr
    return summed.stdout.split()[0]


@pytest.mark.container
@pytest.mark.timeout(900)
def test_a_new_wheel_goes_to_a_new_venv_and_the_running_agent_keeps_its_own(
        lab: Lab, tmp_path: Path) -> None:
    """An upgrade to another wheel installs into a venv of its own while the old agent runs
    on from its venv, untouched; then `lager-box reload` moves the unit to the new one under
    a paused run."""
    import hashlib
    import shutil
    import zipfile

    if not lab.systemd:
        cannot_run("systemd is not PID 1 in these containers (said when the lab started)")
    host = lab.hosts[2]
    client = lab.client(host.name)
    run = start_run(client, write_script(tmp_path, "w.py", "from lager import pause\nprint("
                                         "'before', flush=True)\npause('new wheel')\n"
                                         "print('after')\n"))
    ident = run.banner_id(60)
    before = _main_pid(host)
    old_venv = _venv_of(host, before)
    old_sum = _tree_sum(host, old_venv)
    # Another wheel of the same code: the same files, another archive (its zip comment), so
    # another sha256, as a rebuild would be.
    wheelhouse = tmp_path / "wheelhouse"
    shutil.copytree(lab.work / "wheelhouse", wheelhouse)
    (wheel,) = wheelhouse.glob("lager_over_ssh-*.whl")
    with zipfile.ZipFile(wheel, "a") as archive:
        archive.comment = b"rebuilt"
    new_sum = hashlib.sha256(wheel.read_bytes()).hexdigest()

    upgrade = lab.playbook("--limit", host.name, "-e", f"lager_box_wheelhouse={wheelhouse}",
                           "-e", f"lager_box_laptop_dir={tmp_path / 'lab'}")
    assert upgrade.returncode == 0, upgrade.stdout[-4000:]
    assert "RUNNING HANDLER [lager_box : Replace the agent]" in upgrade.stdout
    after = _main_pid(host)  # `systemctl reload` returned: the new agent is the main process
    assert after != before
    new_venv = _venv_of(host, after)
    assert new_venv != old_venv and new_venv.endswith(new_sum[:12]), (old_venv, new_venv)
    assert host.sh("readlink /opt/lager").stdout.strip() == new_venv
    assert _tree_sum(host, old_venv) == old_sum  # nothing written under the old agent
    _still_paused(client)
    assert client.run("python", "--continue", ident).returncode == 0
    assert run.finish(60) == 0 and run.out.text == "before\nafter\n"


def _direct(client: Client) -> Client:
    """The same laptop without its connection keeper: each command is a new login."""
    direct = Client(client.config_dir, client.agent, client.box)
    direct.env.update(LAGER_SSH_CONFIG=client.env["LAGER_SSH_CONFIG"], LAGER_MUX="0")
    return direct


@pytest.mark.container
@pytest.mark.timeout(900)
def test_a_broken_upgrade_fails_the_reload_and_the_old_agent_serves_on(
        lab: Lab, tmp_path: Path) -> None:
    """The unit's ExecReload with a serve option the new agent refuses (a drop-in, as a typo
    in an upgrade would be): `systemctl reload` fails, the journal says why in one line, and
    the old agent stays the main process with its paused run."""
    host, client, run, ident, before = _paused_under_systemd(lab, 1, tmp_path,
                                                             "broken upgrade")
    dropin = "/etc/systemd/system/lager-box.service.d"
    broken = host.sh(f"mkdir -p {dropin} && {{ echo '[Service]'; echo 'ExecReload='; "
                     f"grep '^ExecReload=' {UNIT} | sed 's/$/ --run-log-limit lots/'; }} "
                     f"> {dropin}/broken.conf && systemctl daemon-reload")
    assert broken.returncode == 0, broken.stderr
    try:
        reload = host.sh("systemctl reload lager-box")
        assert reload.returncode != 0, reload
        # journald may file the line a moment after systemctl returns.
        said = wait_for(lambda: [line for line in host.sh(
            "journalctl -u lager-box --no-pager -o cat").stdout.splitlines()
            if line.startswith("lager-box reload:")], 60, what="reload's line in the journal")
        journal = host.sh("journalctl -u lager-box --no-pager -o cat -n 20").stdout
        assert "exited (status 2) before it took over" in said[-1], journal[-20:]
        assert "the running agent keeps serving" in said[-1]
        assert _main_pid(host) == before
        assert host.sh("systemctl is-active lager-box").stdout.strip() == "active"
        listed = _direct(client).run("python", "--list")
        assert listed.returncode == 0 and ident in listed.stdout, listed
        assert "paused" in listed.stdout, listed.stdout
    finally:
        host.sh(f"rm -rf {dropin} && systemctl daemon-reload")
    assert client.run("python", "--continue", ident).returncode == 0
    assert run.finish(90) == 0 and run.out.text == "before\nafter\n"


@pytest.mark.container
@pytest.mark.timeout(900)
def test_a_limited_run_keeps_every_box_in_the_laptop_files(lab: Lab, tmp_path: Path) -> None:
    """`--limit box2` with one more box in the group that cannot be reached: the laptops'
    known_hosts and ssh_config still list every box; box2's key is collected again, box1's
    and box3's lines are kept from the last run, the unreachable box is listed as not reached,
    and the laptop's lager still reaches box3 (not in the play) through them."""
    laptop_dir = tmp_path / "lab"
    laptop_dir.mkdir()
    for name in ("known_hosts", "ssh_config"):
        text = (lab.laptop_dir / name).read_text()
        # Where the laptop files live is part of their text (UserKnownHostsFile).
        (laptop_dir / name).write_text(text.replace(str(lab.laptop_dir), str(laptop_dir)))
    before = (laptop_dir / "known_hosts").read_text()
    inventory = json.loads(lab.inventory.read_text())
    inventory["lager_boxes"]["hosts"]["box4"] = {"ansible_host": "127.0.0.1", "ansible_port": 1}
    wider = tmp_path / "inventory.yml"
    wider.write_text(json.dumps(inventory))
    limited = _playbook(lab.work, wider, "--limit", "box2,box4",
                        "-e", f"lager_box_laptop_dir={laptop_dir}")
    counts = recap(limited)
    assert counts["box4"]["unreachable"] == 1 and counts["box2"]["failed"] == 0, limited.stdout
    assert set(counts) == {"box2", "box4"}, counts
    known = (laptop_dir / "known_hosts").read_text()
    config = (laptop_dir / "ssh_config").read_text()
    assert known == before + \
        "# box box4\n# (not reached yet: its key comes with the first run that reaches it)\n", \
        known
    for host in lab.hosts:
        assert f"# box {host.name}\nHost {host.name}\n    HostName {host.address}\n" in config
    assert "# box box4\n# (not reached yet" in config
    client = lab.client("box3")
    client.env["LAGER_SSH_CONFIG"] = str(laptop_dir / "ssh_config")
    listed = client.run("python", "--list")
    assert listed.returncode == 0, listed.stderr


@pytest.mark.container
@pytest.mark.timeout(900)
def test_a_venv_of_the_role_before_versioned_venvs_is_moved_aside(lab: Lab,
                                                                   tmp_path: Path) -> None:
    """A box deployed when /opt/lager was the venv itself: the role moves that directory
    aside (after any reload) and makes /opt/lager the link to the current venv."""
    host = lab.hosts[0]
    current = host.sh("readlink /opt/lager").stdout.strip()
    assert current.startswith("/opt/lager-venvs/lager-"), current
    legacy = host.sh(f"rm /opt/lager && cp -a {current} /opt/lager && test -d /opt/lager")
    assert legacy.returncode == 0, legacy.stderr
    again = lab.playbook("--limit", host.name, "-e", f"lager_box_laptop_dir={tmp_path / 'lab'}")
    assert again.returncode == 0, again.stdout[-4000:]
    assert host.sh("readlink /opt/lager").stdout.strip() == current
    assert host.sh("test -x /opt/lager-venvs/lager-before-versioned/bin/lager-box").returncode \
        == 0
    if lab.systemd:
        assert host.sh("systemctl is-active lager-box").stdout.strip() == "active"


@pytest.mark.container
@pytest.mark.timeout(600)
def test_restarting_the_unit_ends_the_agent_alone(lab: Lab, tmp_path: Path) -> None:
    """KillMode=process: `systemctl restart` takes the agent down and up again; the paused
    run stays with its monitor, and the new agent adopts it."""
    if not lab.systemd:
        cannot_run("systemd is not PID 1 in these containers (said when the lab started)")
    host = lab.hosts[1]
    client = lab.client(host.name)
    script = write_script(tmp_path, "r.py", "from lager import pause\nprint('before', "
                          "flush=True)\npause('restart here')\nprint('after')\n")
    run = start_run(client, script)
    ident = run.banner_id(60)
    before = _main_pid(host)
    assert host.sh("systemctl restart lager-box").returncode == 0
    assert _main_pid(host) not in (0, before)
    assert host.sh("systemctl is-active lager-box").stdout.strip() == "active"
    _still_paused(client)
    assert client.run("python", "--continue", ident).returncode == 0
    assert run.finish(90) == 0 and run.out.text == "before\nafter\n"


@pytest.mark.container
@pytest.mark.timeout(900)
def test_with_a_host_ca_the_laptops_trust_the_ca_not_each_key(lab: Lab, tmp_path: Path) -> None:
    """lager_box_host_ca_key: the role signs the box's host key on the controller, the agent
    shows the certificate, and the laptops' known_hosts holds only the CA's line."""
    host = lab.hosts[0]
    ca = tmp_path / "host_ca"
    made = _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lab-host-ca", "-f", str(ca))
    assert made.returncode == 0, made.stderr
    laptop_dir = tmp_path / "lab"
    signed = lab.playbook("--limit", host.name, "-e", f"lager_box_laptop_dir={laptop_dir}",
                          "-e", f"lager_box_host_ca_key={ca}")
    assert signed.returncode == 0, signed.stdout[-4000:]
    known = (laptop_dir / "known_hosts").read_text()
    ca_line = " ".join((tmp_path / "host_ca.pub").read_text().split()[:2])
    assert f"@cert-authority [{host.address}]:2222 {ca_line}" in known, known
    assert "AAAA" not in known.replace(ca_line, "")  # the CA's key alone, no box key

    client = lab.client(host.name)
    client.env["LAGER_SSH_CONFIG"] = str(laptop_dir / "ssh_config")
    if lab.systemd:
        wait_for(lambda: "--host-cert" in host.sh(
            f"tr '\\0' ' ' < /proc/{_main_pid(host)}/cmdline").stdout, 60,
            what="the agent with its host certificate")
    else:
        cannot_run("without systemd nothing restarts the agent with --host-cert here")
    script = write_script(tmp_path, "hi.py", "print('signed box')\n")
    result = wait_for(lambda: (r := client.run("python", str(script))).returncode == 0 and r,
                      60, what="a run on the box that shows its certificate")
    assert result.stdout == "signed box\n"
    assert not (lab.laptop / "known_hosts").exists() or \
        not (lab.laptop / "known_hosts").read_text().strip()
