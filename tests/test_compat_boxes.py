"""Compatibility tier, `lager boxes`: the real lager's spellings (`add --name N --ip IP`,
`delete --name N`) and what they leave behind in lager's pinned host keys, checked with OpenSSH
reading lager's own known_hosts file. Real parts only: a box of our own, OpenSSH's ssh."""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Client, cannot_run, laptop_on_a_new_box, make_client, start_agent, write_script


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with laptop_on_a_new_box(tmp_path_factory.mktemp("compat-boxes")) as laptop:
        yield laptop


def openssh_list(client: Client) -> subprocess.CompletedProcess[bytes]:
    """OpenSSH, trusting only lager's pins, asks the box for its runs (the `list` subsystem)."""
    ssh = shutil.which("ssh")
    if ssh is None:
        cannot_run("OpenSSH's ssh is not installed")
    assert ssh is not None
    return subprocess.run(
        [ssh, "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={client.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
         "-o", "IdentitiesOnly=yes", "-i", str(client.key_path), "-p", str(client.agent.port),
         "-s", f"lager@{client.agent.host}", "list"],
        capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


def test_deleting_one_name_keeps_the_pin_another_name_for_the_address_uses(
        box: Client, tmp_path: Path) -> None:
    assert openssh_list(box).returncode == 0  # so a failure afterwards means something
    added = box.run("boxes", "add", "--name", "b3", "--ip", box.agent.host, "--port",
                    str(box.agent.port), box=False)
    assert added.returncode == 0, added.stderr
    pins = box.known_hosts.read_text()
    deleted = box.run("boxes", "delete", "--name", "b3", "--yes", box=False)
    assert (deleted.returncode, deleted.stdout) == (0, "removed b3\n")
    assert box.known_hosts.read_text() == pins  # mybox still uses [host]:port
    script = write_script(tmp_path, "x.py", "print('still pinned')\n")
    ran = box.run("python", str(script))
    assert (ran.returncode, ran.stdout) == (0, "still pinned\n"), ran.stderr
    checked = openssh_list(box)
    assert checked.returncode == 0, checked.stderr
    assert b"Host key verification failed" not in checked.stderr


def test_deleting_the_last_name_for_an_address_drops_its_pin(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "state")
    try:
        laptop = make_client(tmp_path / "laptop", agent)
        assert f"[{agent.host}]:{agent.port} " in laptop.known_hosts.read_text()
        gone = laptop.run("boxes", "remove", "mybox", "--yes", box=False)
        assert (gone.returncode, gone.stdout) == (0, "removed mybox\n"), gone.stderr
        assert laptop.known_hosts.read_text() == ""
        refused = openssh_list(laptop)  # nothing pinned any more: OpenSSH will not go on
        assert refused.returncode == 255
        assert b"Host key verification failed" in refused.stderr
    finally:
        agent.stop()
