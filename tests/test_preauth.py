"""Limits before login, as sshd has them: floods of unauthenticated peers, MaxAuthTries, the
login grace time, the fd limit, and the key algorithms OpenSSH 8.8+ accepts.

Every flood here is real TCP from this process: idle connections that never speak, and
connections that stop right after the SSH version exchange. Sources other than 127.0.0.1 are
other loopback addresses (127.0.0.0/8 is all loopback on Linux).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import selectors
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from conftest import (
    LAGER_BOX,
    READY,
    Agent,
    Client,
    agent_log_path,
    cannot_run,
    make_client,
    start_agent,
    wait_for,
)
from sshclients import openssh, paramiko_subsystem


def start_limited_agent(state_dir: Path, nofile: tuple[int, int], *extra: str) -> Agent:
    """start_agent, with the open-file limit an operator's box might have."""
    log_path = agent_log_path(state_dir)
    proc = subprocess.Popen(
        [LAGER_BOX, "serve", "--listen", "127.0.0.1:0", "--state-dir", str(state_dir),
         "--name", "testbox", "-v", *extra], stdout=subprocess.PIPE,
        stderr=open(log_path, "w"), text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile))
    assert proc.stdout is not None
    match = READY.match(proc.stdout.readline().strip())
    if not match:
        proc.kill()
        raise RuntimeError(f"agent did not get ready:\n{log_path.read_text()}")
    return Agent(proc, state_dir, match.group(1), int(match.group(2)), match.group(3), log_path)


@pytest.fixture()
def enough_fds() -> None:
    """The floods below hold over a thousand sockets in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        cannot_run(f"the hard open-file limit ({hard}) is too low for the flood")
    if soft != resource.RLIM_INFINITY and soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Flood:
    """Unauthenticated peers: `idle` never send a byte, `stalled` stop after the version line."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.socks: list[socket.socket] = []

    def open(self, count: int, source: str = "127.0.0.1", stalled: bool = False) -> None:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((source, 0))
            sock.connect((self.agent.host, self.agent.port))
            if stalled:
                sock.sendall(b"SSH-2.0-flood_1.0\r\n")
            self.socks.append(sock)

    def settle(self, timeout: float = 60) -> int:
        """Wait until the agent has taken up every peer (sent its version line) or dropped
        it; returns how many it holds."""
        pending = {s for s in self.socks if s.fileno() >= 0}
        held = 0
        with selectors.DefaultSelector() as sel:
            for sock in pending:
                sel.register(sock, selectors.EVENT_READ)
            wait_for(lambda: self._drain(sel, pending) == 0, timeout,
                     what="the agent to take up or drop every flood connection")
        for sock in self.socks:
            held += self.is_open(sock)
        return held

    @staticmethod
    def _drain(sel: selectors.BaseSelector, pending: set[socket.socket]) -> int:
        for key, _ in sel.select(timeout=0.2):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            with contextlib.suppress(OSError):  # a reset: dropped, as EOF would say
                sock.recv(65536)  # the version line (and KEXINIT), or EOF when dropped
            sel.unregister(sock)
            pending.discard(sock)
        return len(pending)

    @staticmethod
    def is_open(sock: socket.socket) -> bool:
        """Still connected: nothing to read (the agent is waiting for us) and no EOF."""
        sock.setblocking(False)
        try:
            while sock.recv(65536):
                pass
            return False
        except BlockingIOError:
            return True
        except OSError:
            return False

    def held(self) -> int:
        return sum(self.is_open(s) for s in self.socks)

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


@pytest.fixture()
def flood_box(tmp_path: Path) -> Iterator[tuple[Agent, Client, Flood]]:
    agent = start_agent(tmp_path / "state")
    client = make_client(tmp_path / "laptop", agent)
    flood = Flood(agent)
    yield agent, client, flood
    flood.close()
    agent.stop()


def key_holder_gets_in(client: Client) -> None:
    listed = openssh(client, "list")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    status, _, err = paramiko_subsystem(client, "list", None)
    assert status == 0, err


def assert_quiet_log(agent: Agent, before: int, limit: int = 40) -> None:
    log = agent.log()
    assert "Traceback" not in log, log[log.index("Traceback") - 200:][:2000]
    added = log.count("\n") - before
    assert added <= limit, f"{added} log lines for one flood:\n{log[-3000:]}"


@pytest.mark.usefixtures("enough_fds")
def test_a_key_holder_gets_in_through_a_flood_of_idle_peers(
        flood_box: tuple[Agent, Client, Flood]) -> None:
    agent, client, flood = flood_box
    before = agent.log().count("\n")
    flood.open(300)  # one address, idle
    flood.open(100, stalled=True)  # the same address, stopped after the version exchange
    for n in range(100):  # a hundred other addresses, three each
        flood.open(3, source=f"127.0.1.{n + 1}", stalled=n % 2 == 0)
    held = flood.settle()
    assert held >= 10  # below MaxStartups' start nothing is ever dropped
    key_holder_gets_in(client)
    still_held = flood.held()
    assert still_held >= 10
    print(f"\nflood of {len(flood.socks)} unauthenticated connections: the agent held {held}; "
          f"a key holder logged in twice with {still_held} still connected")
    assert "dropped unauthenticated connection" in agent.log()
    assert_quiet_log(agent, before)


@pytest.mark.usefixtures("enough_fds")
def test_one_address_cannot_starve_the_rest(flood_box: tuple[Agent, Client, Flood]) -> None:
    agent, client, flood = flood_box
    neighbour = Flood(agent)
    neighbour.open(5, source="127.0.2.1", stalled=True)  # a slow but honest peer, first in
    try:
        assert neighbour.settle() == 5
        flood.open(400, source="127.0.2.2")
        assert 0 < flood.settle() <= 30  # --per-source-max-startups (30)
        assert neighbour.held() == 5  # the flood only ever dropped its own connections
        key_holder_gets_in(client)
    finally:
        neighbour.close()


@pytest.mark.usefixtures("enough_fds")
def test_a_flood_over_a_1024_fd_soft_limit(tmp_path: Path) -> None:
    soft_limit = (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    agent = start_limited_agent(tmp_path / "state", soft_limit)
    flood = Flood(agent)
    try:
        limits = Path(f"/proc/{agent.proc.pid}/limits").read_text()
        line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
        assert line.split()[3] == line.split()[4] != "1024"  # soft raised to the hard limit
        client = make_client(tmp_path / "laptop", agent)
        before = agent.log().count("\n")
        flood.open(1000)
        flood.open(100, stalled=True)
        assert flood.settle() >= 10
        key_holder_gets_in(client)
        assert_quiet_log(agent, before)
    finally:
        flood.close()
        agent.stop()


@pytest.mark.usefixtures("enough_fds")
def test_out_of_fds_drops_the_oldest_unauthenticated_peer(tmp_path: Path) -> None:
    # No MaxStartups drops (start = full = 1000) and no per-source cap: only the fd limit bites.
    agent = start_limited_agent(tmp_path / "state", (64, 64), "--max-startups", "1000",
                                "--per-source-max-startups", "1000")
    flood = Flood(agent)
    try:
        client = make_client(tmp_path / "laptop", agent)
        before = agent.log().count("\n")
        flood.open(300)
        held = flood.settle()
        assert 20 <= held < 64
        key_holder_gets_in(client)
        assert "open-file limit" in agent.log()
        assert_quiet_log(agent, before)
    finally:
        flood.close()
        agent.stop()


async def _logins(client: Client, count: int) -> list[asyncssh.SSHClientConnection]:
    conns = []
    for _ in range(count):
        try:
            conns.append(await asyncssh.connect(
                client.agent.host, client.agent.port, username="lab", known_hosts=None,
                client_keys=[str(client.key_path)], agent_path=None, config=None))
        except (OSError, asyncssh.Error):
            break
    return conns


def test_out_of_fds_with_nothing_to_drop_refuses_cleanly(tmp_path: Path) -> None:
    agent = start_limited_agent(tmp_path / "state", (48, 48))
    try:
        client = make_client(tmp_path / "laptop", agent)

        async def scenario() -> tuple[int, bytes, bool]:
            conns = await _logins(client, 60)  # authenticated: nothing the agent may drop
            try:
                sock = socket.create_connection((agent.host, agent.port), timeout=20)
                try:
                    answer = sock.recv(100)  # refused at once: EOF or reset, not a hang
                except ConnectionResetError:
                    answer = b""
                sock.close()
            finally:
                for conn in conns[: len(conns) // 2]:
                    conn.close()
                    await conn.wait_closed()
            # Room again once the agent has seen those go: logins work.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            fresh = await _logins(client, 1)
            while not fresh and loop.time() < deadline:
                await asyncio.sleep(0.1)
                fresh = await _logins(client, 1)
            for conn in conns[len(conns) // 2:] + fresh:
                conn.close()
            return len(conns), answer, bool(fresh)

        logged_in, answer, recovered = asyncio.run(scenario())
        assert logged_in < 60 and answer == b"" and recovered
        assert "refusing a new connection" in agent.log()
        assert_quiet_log(agent, 0, limit=60)
    finally:
        agent.stop()


def test_login_grace_time(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "state", "--login-grace", "2")
    flood = Flood(agent)
    try:
        flood.open(3)
        flood.open(2, stalled=True)
        flood.settle()
        wait_for(lambda: flood.held() == 0, 20, what="the login grace time to close them")
        assert "Traceback" not in agent.log()
    finally:
        flood.close()
        agent.stop()


def keygen(path: Path, kind: str, bits: str | None = None) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, *(["-b", bits] if bits else []), "-N", "",
                    "-C", f"{kind} test key", "-f", str(path)], check=True, capture_output=True)
    return path


def authorize(agent: Agent, pub: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LAGER_BOX, "authorize", "--state-dir", str(agent.state_dir),
                           str(pub)], capture_output=True, text=True)


def ssh_list(client: Client, *options: str) -> subprocess.CompletedProcess[bytes]:
    """OpenSSH with only the identities given in options (-i), nothing from an agent."""
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-o", "IdentityAgent=none", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={client.known_hosts}", "-p", str(client.agent.port),
         *options, "-T", "-s", f"lab@{client.agent.host}", "list"],
        capture_output=True, timeout=30)


@pytest.fixture()
def key_box(tmp_path: Path) -> Iterator[tuple[Agent, Client, Path]]:
    agent = start_agent(tmp_path / "state")
    client = make_client(tmp_path / "laptop", agent)
    yield agent, client, tmp_path / "keys"
    agent.stop()


def test_max_auth_tries_is_six(key_box: tuple[Agent, Client, Path]) -> None:
    agent, client, keys = key_box
    keys.mkdir()
    strangers = [keygen(keys / f"k{n}", "ed25519") for n in range(10)]
    tries = [opt for key in strangers for opt in ("-i", str(key))]
    mine = ("-i", str(client.key_path))
    cut_off = ssh_list(client, *tries, *mine)  # ten refused keys, then the right one
    assert cut_off.returncode == 255
    assert b"Too many authentication failures" in cut_off.stderr
    seventh = ssh_list(client, *tries[:12], *mine)  # six refused, the seventh would fit
    assert seventh.returncode == 255 and b"Too many authentication failures" in seventh.stderr
    sixth = ssh_list(client, *tries[:10], *mine)  # five refused, then in
    assert sixth.returncode == 0, sixth.stderr

    async def offered() -> int:
        """An asyncssh client that offers keys one by one: how many before it is cut off?"""
        count = 0
        pairs = [asyncssh.read_private_key(str(k)) for k in strangers]

        class Counting(asyncssh.SSHClient):
            def public_key_auth_requested(self) -> asyncssh.SSHKey | None:
                nonlocal count
                count += 1
                return pairs.pop(0) if pairs else None

        with pytest.raises(asyncssh.PermissionDenied, match="Too many authentication"):
            await asyncssh.connect(agent.host, agent.port, username="lab", known_hosts=None,
                                   client_factory=Counting, client_keys=None, agent_path=None,
                                   config=None)
        return count

    assert asyncio.run(offered()) == 7  # six refused, the seventh answered by a disconnect
    assert "Traceback" not in agent.log()


def test_dsa_keys_are_refused(key_box: tuple[Agent, Client, Path]) -> None:
    agent, client, keys = key_box
    keys.mkdir()
    try:
        dsa = keygen(keys / "dsa", "dsa")
    except subprocess.CalledProcessError:
        cannot_run("this ssh-keygen cannot make DSA keys")
    refused = authorize(agent, dsa.with_suffix(".pub"))
    assert refused.returncode == 1 and "ssh-dss keys are not accepted" in refused.stderr
    # Even written straight into authorized_keys, a DSA key does not log in.
    with (agent.state_dir / "authorized_keys").open("a") as f:
        f.write(dsa.with_suffix(".pub").read_text())
    denied = ssh_list(client, "-i", str(dsa), "-o", "PubkeyAcceptedAlgorithms=+ssh-dss")
    assert denied.returncode == 255 and b"Permission denied" in denied.stderr
    assert "ssh-dss keys are not accepted" in agent.log()
    assert ssh_list(client, "-i", str(client.key_path)).returncode == 0


def test_rsa_logs_in_with_sha2_but_not_sha1(key_box: tuple[Agent, Client, Path]) -> None:
    agent, client, keys = key_box
    keys.mkdir()
    rsa = keygen(keys / "rsa", "rsa", "3072")
    assert authorize(agent, rsa.with_suffix(".pub")).returncode == 0
    for alg in ("rsa-sha2-256", "rsa-sha2-512"):
        ok = ssh_list(client, "-i", str(rsa), "-o", f"PubkeyAcceptedAlgorithms={alg}")
        assert ok.returncode == 0, (alg, ok.stderr)
    sha1 = ssh_list(client, "-i", str(rsa), "-o", "PubkeyAcceptedAlgorithms=ssh-rsa")
    assert sha1.returncode == 255 and b"Permission denied" in sha1.stderr

    async def sha1_signature() -> None:
        # asyncssh signs with ssh-rsa when told to, whatever the server advertises: this is
        # the agent's own check, not a client's politeness.
        await asyncssh.connect(agent.host, agent.port, username="lab", known_hosts=None,
                               client_keys=[str(rsa)], signature_algs=["ssh-rsa"],
                               agent_path=None, config=None)

    with pytest.raises(asyncssh.PermissionDenied):
        asyncio.run(sha1_signature())
    assert "Traceback" not in agent.log()
