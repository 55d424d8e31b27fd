"""The command-line side of issue 12: `lager boxes add NAME --ssh HOST` and `lager -F FILE`
(they need the wiring in client/commands/boxes.py and client/cli.py)."""
from __future__ import annotations

import json

from openssh_rig import Sshd, box_host_key, keygen, one_line
from test_openssh import Rig, rig, with_config

__all__ = ["rig"]  # the module-scoped rig of test_openssh, one of its own here


def test_boxes_add_ssh_pins_unknown_hops_then_the_box_is_a_lager_box(rig: Rig) -> None:
    j3 = Sshd(rig.root / "add" / "j3", [rig.key])
    enc = keygen(rig.root / "add" / "id_enc", passphrase="sesame")
    laptop = rig.laptop
    try:
        with_config(rig, rig.host("fresh", "HostName 127.0.0.1", f"Port {rig.box.port}",
                                  "HostKeyAlias freshbox", f"IdentityFile {rig.key}",
                                  f"ProxyJump root@127.0.0.1:{j3.port}"))
        locked = laptop.lager("boxes", "add", "lab", "--ssh", "fresh", "--identity", str(enc))
        one_line(locked, 255, "passphrase-protected", f"ssh-add {enc}")
        assert not (laptop.config_dir / "boxes.json").exists() or \
            "lab" not in json.loads((laptop.config_dir / "boxes.json").read_text())
        one_line(laptop.lager("boxes", "add", "lab", "--ssh", "fresh", "--port", "22"), 2,
                 "--ssh USER@HOST:PORT")
        unknown = laptop.lager("python", "--list", "--box", "fresh")
        hint = one_line(unknown, 255, f"jump host root@127.0.0.1:{j3.port}").split(
            "pin it with: ")[1]
        assert hint == "lager boxes add fresh --ssh fresh"
        added = laptop.lager(*hint.split()[1:])
        assert added.returncode == 0, added.stderr
        assert f"pinned host key of jump host root@127.0.0.1:{j3.port}" in added.stdout
        assert "is ready" in added.stdout
        pins = (laptop.config_dir / "known_hosts").read_text()
        assert f"freshbox {box_host_key(rig.box)}" in pins  # keyed by HostKeyAlias
        assert laptop.lager("python", "--list", "--box", "fresh").returncode == 0
        listed = laptop.lager("boxes", "list")
        assert "ssh fresh" in listed.stdout
    finally:
        j3.stop()


def test_dash_f_names_the_ssh_config(rig: Rig) -> None:
    other = rig.root / "dash_f_config"
    other.write_text(rig.host("elsewhere", "HostName 127.0.0.1", f"Port {rig.box.port}",
                              "HostKeyAlias labbox", f"IdentityFile {rig.key}",
                              "ProxyJump jump1")
                     + rig.host("jump1", "HostName 127.0.0.1", f"Port {rig.j1.port}",
                                "User root"))
    listed = rig.laptop.lager("-F", str(other), "python", "--list", "--box", "elsewhere")
    assert listed.returncode == 0, listed.stderr
    one_line(rig.laptop.lager("python", "--list", "--box", "elsewhere"), 2, "unknown box")
