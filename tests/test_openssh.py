"""Reaching boxes the way OpenSSH users do (issue 12), with real OpenSSH parts on loopback:
sshd jump hosts (one and two ProxyJump hops), a real ssh-agent, ssh-keygen user and host
certificates, known_hosts with hashed names and @cert-authority lines, and ssh_config aliases.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    BANNER_ID,
    LAGER,
    Agent,
    StreamReader,
    descendants_of,
    start_agent,
    wait_for,
    write_script,
)
from openssh_rig import (
    Laptop,
    SshAgent,
    Sshd,
    authorize,
    box_host_key,
    free_port,
    keygen,
    one_line,
    public_line,
    sign,
)

PAUSER = """import sys
from lager import pause
probe = [41]
pause("through the bastion", interactive=True, timeout=0)
print("after", probe, flush=True)
sys.exit(3)
"""


@dataclass
class Rig:
    root: Path
    box: Agent
    laptop: Laptop
    key: Path  # the user's ordinary key: authorized on the jump hosts and the box
    j1: Sshd
    j2: Sshd
    ca: Path  # an SSH CA: user certificates (box side), host certificates (laptop side)

    def host(self, alias: str, *lines: str) -> str:
        return f"Host {alias}\n" + "".join(f"  {line}\n" for line in lines)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("openssh")
    box = start_agent(root / "state")
    laptop = Laptop(root / "laptop")
    key = keygen(laptop.ssh_dir / "id_ed25519")
    j1, j2 = Sshd(root / "j1", [key]), Sshd(root / "j2", [key])
    ca = keygen(root / "ca" / "ca")
    try:
        assert authorize(box, f"{key}.pub").returncode == 0
        laptop.known_host(f"[127.0.0.1]:{j1.port} {j1.public_key}", hashed=True)
        laptop.known_host(f"[127.0.0.1]:{j2.port} {j2.public_key}")
        laptop.known_host(f"labbox {box_host_key(box)}", hashed=True)
        rig = Rig(root, box, laptop, key, j1, j2, ca)
        laptop.ssh_config(base_config(rig))
        yield rig
    finally:
        for part in (j1, j2, box):
            part.stop()


def base_config(rig: Rig, extra: str = "") -> str:
    box_port = rig.box.port
    key = "IdentityFile ~/.ssh/id_ed25519"
    return "".join([
        rig.host("jump1", "HostName 127.0.0.1", f"Port {rig.j1.port}", "User root"),
        rig.host("jump2", "HostName 127.0.0.1", f"Port {rig.j2.port}", "User root"),
        rig.host("labbox", "HostName 127.0.0.1", f"Port {box_port}", "HostKeyAlias labbox",
                 key, "ProxyJump jump1"),
        rig.host("labbox2", "HostName 127.0.0.1", f"Port {box_port}", "HostKeyAlias labbox",
                 key, "ProxyJump jump1,jump2"),
        # The same two hops, written as ssh users do: the second jump host has its own.
        rig.host("jump2via1", "HostName 127.0.0.1", f"Port {rig.j2.port}", "User root",
                 "HostKeyAlias [127.0.0.1]:" + str(rig.j2.port), "ProxyJump jump1"),
        rig.host("labbox3", "HostName 127.0.0.1", f"Port {box_port}", "HostKeyAlias labbox",
                 key, "ProxyJump jump2via1"),
        rig.host("*.wild", "HostName 127.0.0.1"),
        extra,
    ])


def with_config(rig: Rig, extra: str) -> None:
    rig.laptop.ssh_config(base_config(rig, extra))


def start_pauser(rig: Rig, alias: str, name: str) -> tuple[subprocess.Popen[str], StreamReader,
                                                            StreamReader, str]:
    script = write_script(rig.root / name, "pauser.py", PAUSER)
    proc = rig.laptop.popen("python", str(script), "--box", alias)
    out, err = StreamReader(proc.stdout), StreamReader(proc.stderr)
    wait_for(lambda: BANNER_ID.search(err.text) or proc.poll() is not None,
             what="the banner's id")
    match = BANNER_ID.search(err.text)
    assert match is not None, err.join()
    return proc, out, err, match.group(1)


def keeper_up(rig: Rig, alias: str) -> bool:
    """The alias's connection keeper answers (found as fastpath finds it: no ssh_config read,
    no paramiko). Printed: whether it is up, and whether paramiko got imported."""
    probe = ("import sys; from client.config import Config; from client import mux; "
             f"box = Config().cached_box({alias!r}); "
             "print(box is not None and mux.socket_path(Config(), box).exists(), "
             "'paramiko' in sys.modules)")
    found = subprocess.run([sys.executable, "-c", probe], env=rig.laptop.env, text=True,
                           capture_output=True, timeout=30)
    assert found.stdout.split()[1:] == ["False"], found.stderr
    return found.stdout.split()[0] == "True"


@pytest.mark.parametrize("alias, hops", [("labbox", ["j1"]), ("labbox2", ["j1", "j2"]),
                                         ("labbox3", ["j1", "j2"])])
def test_a_paused_run_through_jump_hosts_with_console_and_continue(
        rig: Rig, alias: str, hops: list[str]) -> None:
    proc, out, err, ident = start_pauser(rig, alias, f"run-{alias}")
    assert f"--box {alias}" in err.text  # the banner's commands work as printed
    console = rig.laptop.lager("python", "--console", ident, "--box", alias,
                               input="probe[0] + 1\nprobe.append(99)\n")
    assert console.returncode == 0, console.stderr
    assert "42" in console.stdout.splitlines()
    resumed = rig.laptop.lager("python", "--continue", ident, "--box", alias)
    assert resumed.returncode == 0, resumed.stderr
    assert proc.wait(30) == 3
    assert out.join() == "after [41, 99]\n"  # the console's change reached the script
    # It really went through the jump hosts: each sshd opened the next leg.
    path = [getattr(rig, h) for h in hops]
    for hop, nxt in zip(path, [*path[1:], None], strict=True):
        assert hop.forwarded_to(nxt.port if nxt else rig.box.port)


def test_a_second_continue_goes_through_the_keeper_without_a_new_login(rig: Rig) -> None:
    proc, _, err, ident = start_pauser(rig, "labbox2", "keeper")
    try:
        first = rig.laptop.lager("python", "--list", "--box", "labbox2")
        assert first.returncode == 0, first.stderr
        wait_for(lambda: keeper_up(rig, "labbox2"), what="the keeper for labbox2")
        logins = rig.box.log().count(" succeeded")
        assert rig.laptop.lager("python", "--continue", ident, "--box", "labbox2").returncode == 0
        assert proc.wait(30) == 3
        assert rig.box.log().count(" succeeded") == logins  # no new SSH login to the box
    finally:
        if proc.poll() is None:
            proc.kill()
    # The resolution is cached under the literal target, keyed by the config's mtime, so the
    # keeper's path finds the keeper without reading ssh_config or importing paramiko.
    cache = json.loads((rig.laptop.config_dir / "ssh_targets.json").read_text())
    assert cache["labbox2"]["box"]["jumps"][1]["port"] == rig.j2.port
    # The run served as the keeper while attached (client/run_keeper.py) and took its socket
    # with it; the next request leaves a keeper of its own.
    assert rig.laptop.lager("python", "--list", "--box", "labbox2").returncode == 0
    wait_for(lambda: keeper_up(rig, "labbox2"), what="a keeper after the run")
    config = rig.laptop.ssh_dir / "config"
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 10**9))
    assert not keeper_up(rig, "labbox2")  # a changed config is read again, not trusted
    assert "Traceback" not in err.text


def test_continue_through_a_jump_host_takes_the_click_free_path(rig: Rig) -> None:
    """client/fastpath.py finds the keeper through the cached resolution: no click, no
    paramiko, for a box two hops away."""
    with_config(rig, "")
    proc, _, _, ident = start_pauser(rig, "labbox", "fast")
    try:
        assert rig.laptop.lager("python", "--list", "--box", "labbox").returncode == 0
        wait_for(lambda: keeper_up(rig, "labbox"), what="the keeper for labbox")
        probe = ("import sys; from client.fastpath import try_fast; "
                 f"code = try_fast(['python', '--continue', {ident!r}, '--box', 'labbox']); "
                 "print(code, 'click' in sys.modules, 'paramiko' in sys.modules)")
        fast = subprocess.run([sys.executable, "-c", probe], env=rig.laptop.env, text=True,
                              capture_output=True, timeout=30)
        assert fast.stdout.split()[-3:] == ["0", "False", "False"], fast.stderr
        assert proc.wait(30) == 3
    finally:
        if proc.poll() is None:
            proc.kill()


def test_proxycommand_and_a_config_named_by_lager_ssh_config(rig: Rig) -> None:
    other = rig.root / "other_config"
    ssh = (f"ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -i {rig.key} "
           f"-o UserKnownHostsFile={rig.j1.root / 'kh'} -p {rig.j1.port} -W %h:%p root@127.0.0.1")
    (rig.j1.root / "kh").write_text(f"[127.0.0.1]:{rig.j1.port} {rig.j1.public_key}\n")
    other.write_text(rig.host("viacmd", "HostName 127.0.0.1", f"Port {rig.box.port}",
                              "HostKeyAlias labbox", f"IdentityFile {rig.key}",
                              f"ProxyCommand {ssh}"))
    rig.laptop.env["LAGER_SSH_CONFIG"] = str(other)
    try:
        listed = rig.laptop.lager("python", "--list", "--json", "--box", "viacmd")
        assert listed.returncode == 0, listed.stderr
        assert isinstance(json.loads(listed.stdout), list)
        unknown = rig.laptop.lager("python", "--list", "--box", "labbox")  # not in that file
        one_line(unknown, 2, "unknown box 'labbox'")
    finally:
        del rig.laptop.env["LAGER_SSH_CONFIG"]


def test_ssh_agent_keys_log_in_and_identities_only_keeps_them_out(rig: Rig) -> None:
    agent = SshAgent(rig.root / "agent")
    in_agent = keygen(rig.root / "agent" / "only_in_agent")
    stranger = keygen(rig.root / "agent" / "stranger")
    try:
        agent.add(in_agent)
        in_agent.unlink()  # the agent holds the only copy
        assert authorize(rig.box, f"{in_agent}.pub").returncode == 0
        with_config(rig, rig.host("byagent", "HostName 127.0.0.1", f"Port {rig.box.port}",
                                  "HostKeyAlias labbox", f"IdentityFile {stranger}")
                    + rig.host("strict", "HostName 127.0.0.1", f"Port {rig.box.port}",
                               "HostKeyAlias labbox", f"IdentityFile {stranger}",
                               "IdentitiesOnly yes"))
        rig.laptop.use_agent(agent)
        listed = rig.laptop.lager("python", "--list", "--box", "byagent")
        assert listed.returncode == 0, listed.stderr
        fp = public_line(in_agent).split()[1][:12]
        assert fp  # the agent's key is the one the box let in
        assert re.search(r"succeeded with key SHA256:\S+ only_in_agent", rig.box.log())
        one_line(rig.laptop.lager("python", "--list", "--box", "strict"), 255,
                 "refused key", str(stranger))
    finally:
        rig.laptop.use_agent(None)
        agent.stop()


def test_a_passphrase_key_fails_in_one_line_asks_on_a_terminal_or_uses_the_agent(
        rig: Rig) -> None:
    enc = keygen(rig.root / "enc" / "id_enc", passphrase="sesame")
    assert authorize(rig.box, f"{enc}.pub").returncode == 0
    with_config(rig, rig.host("enc", "HostName 127.0.0.1", f"Port {rig.box.port}",
                              "HostKeyAlias labbox", f"IdentityFile {enc}",
                              "IdentitiesOnly yes", "ProxyJump jump1"))
    one_line(rig.laptop.lager("python", "--list", "--box", "enc"), 255,
             "needs its passphrase", f"ssh-add {enc}")
    # On a terminal it is asked for (the session's controlling terminal, as ssh reads it).
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(["setsid", "-w", "-c", LAGER, "python", "--list", "--json",
                             "--box", "enc"], env=rig.laptop.env, stdin=slave, stdout=slave,
                            stderr=slave)
    os.close(slave)
    seen = b""
    try:
        while b"passphrase" not in seen:
            seen += os.read(master, 4096)
        os.write(master, b"sesame\n")
        code = proc.wait(30)
        while select.select([master], [], [], 0)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal's other side is gone and drained
                break
            if not chunk:
                break
            seen += chunk
        assert code == 0, seen
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    agent = SshAgent(rig.root / "enc-agent")
    try:
        agent.add(enc, passphrase="sesame")
        rig.laptop.use_agent(agent)
        listed = rig.laptop.lager("python", "--list", "--box", "enc")
        assert listed.returncode == 0, listed.stderr
    finally:
        rig.laptop.use_agent(None)
        agent.stop()


def test_user_certificates_from_a_cert_authority_line(rig: Rig) -> None:
    certs = rig.root / "certs"
    added = authorize(rig.box, "--ca", f"{rig.ca}.pub")
    assert added.returncode == 0 and "certificates from CA" in added.stdout, added.stderr
    team_ca = keygen(certs / "team_ca")
    assert authorize(rig.box, "--ca", f"{team_ca}.pub", "--principals", "lab-team,ops") \
        .returncode == 0
    auth_keys = (rig.box.state_dir / "authorized_keys").read_text()
    assert f'cert-authority,principals="lab-team,ops" {public_line(team_ca)}' in auth_keys

    def holder(name: str, ca: Path, principal: str, *validity: str) -> Path:
        key = keygen(certs / name)
        sign(ca, Path(f"{key}.pub"), f"{name}-id", principal, *validity)
        return key

    alice = holder("alice", rig.ca, "alice")
    team = holder("team", team_ca, "lab-team")
    expired = holder("old", rig.ca, "alice", "-V", "20200101:20200201")
    early = holder("early", rig.ca, "alice", "-V", "+52w:+53w")
    hosts = [("alice", alice, "alice"), ("bob", alice, "bob"), ("team", team, "anyone"),
             ("old", expired, "alice"), ("early", early, "alice")]
    with_config(rig, "".join(
        rig.host(f"cert-{name}", "HostName 127.0.0.1", f"Port {rig.box.port}",
                 "HostKeyAlias labbox", f"User {user}", f"IdentityFile {key}",
                 "IdentitiesOnly yes", "ProxyJump jump1") for name, key, user in hosts))
    script = write_script(certs, "who.py", "print('in')\n")
    ran = rig.laptop.lager("python", str(script), "--box", "cert-alice")
    assert ran.returncode == 0 and ran.stdout == "in\n", ran.stderr
    rows = json.loads(rig.laptop.lager("python", "--list", "--json", "--box", "cert-alice").stdout)
    mine = [r for r in rows if r["script"].endswith("who.py")]
    assert mine and mine[0]["started_by"]["key"] == "certificate 'alice-id'"
    assert "succeeded with certificate 'alice-id'" in rig.box.log()
    team_run = rig.laptop.lager("python", "--list", "--box", "cert-team")  # principals= line
    assert team_run.returncode == 0, team_run.stderr
    for host, key_id, why in (("bob", "alice-id", "wrong principal: it is for alice, not 'bob'"),
                              ("old", "old-id", "expired"), ("early", "early-id", "not yet valid")):
        one_line(rig.laptop.lager("python", "--list", "--box", f"cert-{host}"), 255,
                 "refused key", "certificate")
        wait_for(lambda k=key_id, w=why: re.search(
            rf"refused certificate '{k}' .*: {re.escape(w)}", rig.box.log()),
            what=f"{why!r} in the log")


def test_a_host_certificate_is_trusted_without_pinning(rig: Rig) -> None:
    root = rig.root / "hostcert"
    state = root / "state"
    # Authorizing first creates the state dir and its host key, which the CA then signs.
    assert authorize(state, f"{rig.key}.pub").returncode == 0
    host_pub = state / "ssh_host_ed25519_key.pub"
    good = sign(rig.ca, host_pub, "bench7", "bench7.lab", "-h")
    box = start_agent(state, "--host-cert", str(good))
    jump = Sshd(root / "j3", [rig.key], host_cert_ca=rig.ca, principal="127.0.0.1")
    laptop = Laptop(root / "laptop")
    try:
        # No pin anywhere: one CA line vouches for the jump host and the box.
        laptop.known_host(f"@cert-authority * {public_line(rig.ca)}")
        laptop.ssh_config(
            rig.host("j3", "HostName 127.0.0.1", f"Port {jump.port}", "User root",
                     f"IdentityFile {rig.key}")
            # As with ssh, the certificate must name the HostKeyAlias, else the HostName.
            + rig.host("bench7.lab", "HostName 127.0.0.1", f"Port {box.port}",
                       "HostKeyAlias bench7.lab", f"IdentityFile {rig.key}", "ProxyJump j3")
            + rig.host("wrongname", "HostName 127.0.0.1", f"Port {box.port}",
                       f"IdentityFile {rig.key}"))
        listed = laptop.lager("python", "--list", "--json", "--box", "bench7.lab")
        assert listed.returncode == 0, listed.stderr
        assert not (laptop.config_dir / "known_hosts").exists()
        assert jump.forwarded_to(box.port)
        # The certificate names bench7.lab, not 127.0.0.1: refused, and nothing falls back.
        one_line(laptop.lager("python", "--list", "--box", "wrongname"), 255,
                 "box wrongname", "is for bench7.lab")
    finally:
        jump.stop()
        box.stop()


def test_from_expiry_command_restrict_and_environment_options(rig: Rig) -> None:
    """On a box of its own: its log must hold every refusal (the box throttles those)."""
    keys = rig.root / "opts"
    keys.mkdir()
    box = start_agent(keys / "state")
    try:
        options_on(rig, box, keys)
    finally:
        box.stop()


def options_on(rig: Rig, box: Agent, keys: Path) -> None:
    cases = {"from_other": 'from="10.9.9.9"', "from_here": 'from="127.0.0.*"',
             "expired": 'expiry-time="20200101"', "current": 'expiry-time="29990101"',
             "forced": 'command="/bin/true"', "env": 'environment="PATH=/nowhere"',
             "restricted": "restrict"}
    lines = []
    for name, option in cases.items():
        key = keygen(keys / name)
        lines.append(f"{option} {public_line(key)} {name}\n")
    with (box.state_dir / "authorized_keys").open("a") as f:
        f.writelines(lines)
    rig.laptop.known_host(f"optbox {box_host_key(box)}")
    with_config(rig, "".join(rig.host(f"opt-{n}", "HostName 127.0.0.1", f"Port {box.port}",
                                      "HostKeyAlias optbox", f"IdentityFile {keys / n}",
                                      "IdentitiesOnly yes") for n in cases))
    for name in ("from_here", "current", "env", "restricted"):
        result = rig.laptop.lager("python", "--list", "--box", f"opt-{name}")
        assert result.returncode == 0, (name, result.stderr)
    for name, logged in (("from_other", "from= does not allow 127.0.0.1"),
                         ("expired", "expired at 2020-01-01"),
                         ("forced", "it has command=")):
        one_line(rig.laptop.lager("python", "--list", "--box", f"opt-{name}"), 255,
                 "refused key")
        wait_for(lambda w=logged: w in box.log(), what=f"{logged!r} in the box log")
    # restrict: no terminal (ssh -tt insists on one, so it gives up); a plain key gets one.
    known = keys / "known_hosts"
    known.write_text(f"[127.0.0.1]:{box.port} {box_host_key(box)}\n")
    ssh = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
           "-o", f"UserKnownHostsFile={known}", "-p", str(box.port), "-tt"]
    no_pty = subprocess.run([*ssh, "-i", str(keys / "restricted"), "-s", "lab@127.0.0.1",
                             "list"], capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert no_pty.returncode == 255 and b"PTY allocation request failed" in no_pty.stderr
    with_pty = subprocess.run([*ssh, "-i", str(keys / "from_here"), "-s", "lab@127.0.0.1",
                               "list"], capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert with_pty.returncode == 0 and b"PTY allocation" not in with_pty.stderr


def test_every_failure_is_one_line_naming_the_host_with_255(rig: Rig) -> None:
    stranger = keygen(rig.root / "fail" / "stranger")
    other_kh = rig.root / "fail" / "known_hosts"
    other_kh.write_text(f"[127.0.0.1]:{rig.j1.port} {public_line(stranger)}\n")
    j3 = Sshd(rig.root / "fail" / "j3", [rig.key])  # nobody knows its host key
    dead = free_port()
    try:
        with_config(rig, "".join([
            rig.host("newjump", "HostName 127.0.0.1", f"Port {j3.port}", "User root"),
            rig.host("via-new", "HostName 127.0.0.1", f"Port {rig.box.port}",
                     "HostKeyAlias labbox", "ProxyJump newjump"),
            rig.host("via-dead", "HostName 127.0.0.1", f"Port {rig.box.port}",
                     "HostKeyAlias labbox", f"ProxyJump root@127.0.0.1:{dead}"),
            rig.host("badkeyjump", "HostName 127.0.0.1", f"Port {rig.j1.port}", "User root",
                     f"IdentityFile {stranger}", "IdentitiesOnly yes"),
            rig.host("via-badkey", "HostName 127.0.0.1", f"Port {rig.box.port}",
                     "HostKeyAlias labbox", "ProxyJump jump1,badkeyjump"),
            rig.host("nobox", "HostName 127.0.0.1", f"Port {dead}", "HostKeyAlias labbox",
                     "ProxyJump jump1"),
            rig.host("swappedjump", "HostName 127.0.0.1", f"Port {rig.j1.port}", "User root",
                     f"UserKnownHostsFile {other_kh}"),
            rig.host("via-swapped", "HostName 127.0.0.1", f"Port {rig.box.port}",
                     "HostKeyAlias labbox", "ProxyJump swappedjump"),
            rig.host("unpinned", "HostName 127.0.0.1", f"Port {rig.box.port}",
                     "ProxyJump jump1"),
            rig.host("nokey", "HostName 127.0.0.1", f"Port {rig.box.port}",
                     "HostKeyAlias labbox", "ProxyJump jump1"),
        ]))
        cases = [
            ("via-new", "jump host newjump", "shows a host key lager does not know",
             "pin it with: lager boxes add via-new --ssh via-new"),
            ("via-dead", f"jump host root@127.0.0.1:{dead}", "refused the connection"),
            ("via-badkey", "jump host badkeyjump", "refused key", str(stranger)),
            ("nobox", "jump host jump1", f"cannot reach box nobox (127.0.0.1:{dead})"),
            ("via-swapped", "HOST KEY CHANGED for jump host swappedjump", "ssh-keygen -R"),
            ("unpinned", "box unpinned", "shows a host key lager does not know"),
            # No IdentityFile: lager's own key is the default, and this laptop has none yet.
            ("nokey", "box nokey", "no key to offer", "id_ed25519 does not exist"),
            (f"lager@127.0.0.1:{dead}", "box lager@127.0.0.1", "refused the connection"),
        ]
        for target, *needles in cases:
            one_line(rig.laptop.lager("python", "--list", "--box", target), 255, *needles)
        # Names that are neither boxes nor hosts: usage errors, exit 2.
        for name in ("nosuchbox", "x.wild"):
            one_line(rig.laptop.lager("python", "--list", "--box", name), 2,
                     f"unknown box {name!r}")
        one_line(rig.laptop.lager("python", "--list", "--box", "lab@"), 2, "no host name")
    finally:
        j3.stop()


def test_add_box_by_ssh_pins_unknown_hops_and_checks_the_key_first(rig: Rig) -> None:
    """The logic behind `lager boxes add NAME --ssh HOST` (client/enroll.py)."""
    j3 = Sshd(rig.root / "enroll" / "j3", [rig.key])
    enc = keygen(rig.root / "enroll" / "id_enc", passphrase="sesame")
    laptop = rig.laptop
    try:
        with_config(rig, rig.host("fresh", "HostName 127.0.0.1", f"Port {rig.box.port}",
                                  "HostKeyAlias freshbox", f"IdentityFile {rig.key}",
                                  f"ProxyJump root@127.0.0.1:{j3.port}"))

        def add(*args: str) -> subprocess.CompletedProcess[str]:
            code = ("import sys; from client.config import Config; from client.enroll import "
                    "add_box; from lager.errors import LagerError\n"
                    "try:\n    add_box(Config(), 'fresh', ssh='fresh'" + "".join(args) + ")\n"
                    "except LagerError as e:\n    print('Error:', e, file=sys.stderr); "
                    "sys.exit(e.exit_code)\n")
            return subprocess.run([sys.executable, "-c", code], env=laptop.env, text=True,
                                  capture_output=True, stdin=subprocess.DEVNULL, timeout=60)

        locked = add(f", identity={str(enc)!r}")
        one_line(locked, 255, "passphrase-protected", f"ssh-add {enc}")
        boxes = laptop.config_dir / "boxes.json"
        assert not boxes.exists() or "fresh" not in boxes.read_text()  # nothing saved
        added = add()
        assert added.returncode == 0, added.stderr
        assert f"pinned host key of jump host root@127.0.0.1:{j3.port}" in added.stdout
        assert "pinned host key of fresh" in added.stdout and "is ready" in added.stdout
        pins = (laptop.config_dir / "known_hosts").read_text()
        assert f"[127.0.0.1]:{j3.port} {j3.public_key}" in pins
        assert f"freshbox {box_host_key(rig.box)}" in pins  # keyed by HostKeyAlias
        listed = laptop.lager("python", "--list", "--box", "fresh")
        assert listed.returncode == 0, listed.stderr
    finally:
        j3.stop()


def test_server_alive_notices_a_dead_jump_host_and_the_run_goes_on(rig: Rig) -> None:
    """ServerAliveInterval 1, ServerAliveCountMax 2: a jump host that stops answering is given
    up on after about 2 s (without it lager would wait forever), and the run, which lives on
    the box, is followed again through a fresh session of the same jump host."""
    jump = Sshd(rig.root / "alive" / "j4", [rig.key])
    go = rig.root / "alive" / "go"
    script = write_script(rig.root / "alive", "ticker.py",
                          "import pathlib, time\nprint('tick', flush=True)\n"
                          f"while not pathlib.Path({str(go)!r}).exists():\n"
                          "    time.sleep(0.05)\nprint('done', flush=True)\n")
    stopped: list[int] = []
    try:
        with_config(rig, rig.host("j4", "HostName 127.0.0.1", f"Port {jump.port}", "User root")
                    + rig.host("alive", "HostName 127.0.0.1", f"Port {rig.box.port}",
                               "HostKeyAlias labbox", f"IdentityFile {rig.key}",
                               "ProxyJump j4", "ServerAliveInterval 1",
                               "ServerAliveCountMax 2"))
        rig.laptop.known_host(f"[127.0.0.1]:{jump.port} {jump.public_key}")
        proc = rig.laptop.popen("python", str(script), "--box", "alive")
        out, err = StreamReader(proc.stdout), StreamReader(proc.stderr)
        out.wait_for("tick")
        stopped = descendants_of(jump.proc.pid)  # the session's sshd processes, not the listener
        assert stopped
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        err.wait_for("lost; reconnecting")
        err.wait_for("reconnected to alive")
        go.touch()
        assert proc.wait(30) == 0, err.join()
        assert out.join() == "tick\ndone\n"
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        jump.stop()
