"""Fleet targets: node sets over lager's own groups and Ansible inventories (read by the real
`ansible-inventory`), and bad input: one line, exit 2, nothing started."""
from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Agent, cannot_run, start_agent, write_script
from test_fleet_rig import Laptop, authorize

LINE1 = ["bench01", "bench02", "bench03"]
RACK2 = ["bench03", "bench04", "bench05"]
BOXES = [f"bench0{i}" for i in range(1, 6)]


def _need_ansible() -> str:
    tool = shutil.which("ansible-inventory", path=str(Path(sys.executable).parent)) or \
        shutil.which("ansible-inventory")
    if tool is None:
        cannot_run("ansible-inventory (ansible-core, a test dependency) is not installed")
    return str(tool)


@pytest.fixture(scope="module")
def one_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = start_agent(tmp_path_factory.mktemp("fleetbox") / "state")
    yield agent
    agent.stop()


@pytest.fixture(scope="module")
def laptop(one_box: Agent, tmp_path_factory: pytest.TempPathFactory) -> Laptop:
    """Five lager boxes (one agent under five names: only the sets matter here), grouped."""
    lap = Laptop(tmp_path_factory.mktemp("laptop"))
    for name in BOXES:
        groups = [g for g, members in (("line1", LINE1), ("rack2", RACK2)) if name in members]
        lap.add(name, one_box.host, one_box.port, *groups)
    authorize(one_box, lap)
    return lap


def _inventories(where: Path, agent: Agent) -> dict[str, Path]:
    host, port = agent.host, agent.port
    hosts = {b: {"ansible_host": host, "lager_port": port} for b in BOXES}
    yaml_lines = ["all:", "  children:"]
    for group, members in (("line1", LINE1), ("rack2", RACK2)):
        yaml_lines += [f"    {group}:", "      hosts:"]
        yaml_lines += [f"        {m}:\n          ansible_host: {host}\n          lager_port: {port}"
                       for m in members]
    ini = ["[line1]", *(f"{m} ansible_host={host} lager_port={port}" for m in LINE1),
           "", "[rack2]", *(f"{m} ansible_host={host} lager_port={port}" for m in RACK2)]
    data = {"line1": {"hosts": LINE1}, "rack2": {"hosts": RACK2},
            "_meta": {"hostvars": hosts}}
    script = write_script(where, "inventory.py", f"#!{sys.executable}\nimport json, sys\n"
                          f"print(json.dumps({data!r}) if '--list' in sys.argv else '{{}}')\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {"yaml": write_script(where, "inventory.yml", "\n".join(yaml_lines) + "\n"),
            "ini": write_script(where, "inventory.ini", "\n".join(ini) + "\n"),
            "script": script}


def test_inventories_of_every_kind_give_lager_groups_sets(laptop: Laptop, one_box: Agent,
                                                          tmp_path: Path) -> None:
    _need_ansible()
    own = laptop.run("groups", "--json")
    assert own.returncode == 0, own.stderr
    expected = json.loads(own.stdout)
    assert expected == {"line1": LINE1, "rack2": RACK2}
    empty = Laptop(tmp_path / "fresh")  # no lager groups: the inventory alone
    for kind, path in _inventories(tmp_path, one_box).items():
        done = empty.run("groups", "--json", "--inventory", str(path))
        assert done.returncode == 0, (kind, done.stderr)
        assert json.loads(done.stdout) == expected, kind
    human = laptop.run("groups")
    assert "@line1" in human.stdout and "bench[01-03]" in human.stdout


def test_intersection_and_exclusion(laptop: Laptop) -> None:
    for expression, boxes in (("@line1&@rack2", ["bench03"]),
                              ("@line1!bench02", ["bench01", "bench03"]),
                              ("bench0[4-5],bench01", ["bench01", "bench04", "bench05"])):
        done = laptop.run("python", "--list", "--json", "--box", expression)
        assert done.returncode == 0, done.stderr
        assert sorted(json.loads(done.stdout)) == boxes, expression


def test_inventory_boxes_run_after_import(one_box: Agent, tmp_path: Path) -> None:
    """`boxes import` pins what the inventory names; the boxes then run like lager's own."""
    _need_ansible()
    lap = Laptop(tmp_path / "laptop")
    inventory = _inventories(tmp_path, one_box)["yaml"]
    done = lap.run("boxes", "import", "--inventory", str(inventory))
    authorize(one_box, lap)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("pinned host key") == 5
    script = write_script(tmp_path, "hi.py", "import os\nprint(os.environ['LAGER_BOX'])\n")
    ran = lap.run("python", str(script), "--box", "@rack2")
    assert ran.returncode == 0, ran.stderr
    assert sorted(ran.stdout.splitlines()) == [f"{b}: {b}" for b in RACK2]
    listed = json.loads(lap.run("groups", "--json").stdout)
    assert listed == {"line1": LINE1, "rack2": RACK2}


def _bad(laptop: Laptop, *args: str, env: dict[str, str] | None = None) -> str:
    done = laptop.run(*args, env=env)
    assert done.returncode == 2, (args, done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    assert done.stdout == ""
    return lines[0]


def test_bad_input_is_one_line_exit_2_and_nothing_starts(laptop: Laptop, one_box: Agent,
                                                         tmp_path: Path) -> None:
    tool = _need_ansible()
    before = json.loads(laptop.run("python", "--list", "--json", "--box", "bench01").stdout)
    script = write_script(tmp_path, "touch.py", "print('ran')\n")
    run = ("python", str(script), "--box")
    assert "unknown group @nope" in _bad(laptop, *run, "@nope")
    assert "unknown group @nope" in _bad(laptop, *run, "@line1&@nope")
    assert "not a box set" in _bad(laptop, *run, "bench[1-")
    assert "unknown box" in _bad(laptop, *run, "bench0[1-9]")
    assert "--connect-timeout" in _bad(laptop, *run, "@line1", "--connect-timeout", "soon")
    empty_inv = write_script(tmp_path, "empty.yml", "all:\n  children:\n    empty:\n"
                                                    "      hosts: {}\n")
    assert "names no hosts" in _bad(laptop, *run, "@line1", "--inventory", str(empty_inv))
    group_inv = write_script(tmp_path, "hollow.yml",
                             "all:\n  hosts:\n    bench01: {}\n  children:\n    hollow:\n"
                             "      hosts: {}\n")
    assert "empty" in _bad(laptop, *run, "@hollow", "--inventory", str(group_inv))
    garbage = write_script(tmp_path, "garbage.ini", "[line1\nthis is : not { an inventory\n")
    assert "cannot read it" in _bad(laptop, *run, "@line1", "--inventory", str(garbage))
    both = write_script(tmp_path, "both.yml", "line1:\n  hosts:\n    bench09: {}\n")
    assert "defined both" in _bad(laptop, *run, "@line1", "--inventory", str(both))
    no_tool = {**laptop.env, "PATH": "/nonexistent"}
    inv = write_script(tmp_path, "any.yml", "all:\n  hosts:\n    bench01: {}\n")
    assert "ansible-inventory" in _bad(laptop, *run, "@line1", "--inventory", str(inv),
                                       env=no_tool)
    env_inv = {**laptop.env, "LAGER_INVENTORY": str(garbage)}
    assert "cannot read it" in _bad(laptop, *run, "@line1", env=env_inv)
    assert os.path.exists(tool)
    after = json.loads(laptop.run("python", "--list", "--json", "--box", "bench01").stdout)
    assert len(after) == len(before), "a bad set started a run"


def test_single_box_forms_stay_on_todays_path(laptop: Laptop, tmp_path: Path) -> None:
    """A plain name prints no fleet id and no recap; `a,b` (even one box, `bench01,`) does."""
    script = write_script(tmp_path, "code.py", "import sys\nprint('x')\nsys.exit(4)\n")
    single = laptop.run("python", str(script), "--box", "bench01")
    assert single.returncode == 4 and single.stdout == "x\n"
    assert "fleet" not in single.stderr
    one_set = laptop.run("python", str(script), "--box", "bench[01]")
    assert one_set.returncode == 4, one_set.stderr
    assert one_set.stdout == "bench01: x\n"
    assert "RECAP" in one_set.stderr and "lager: fleet f-" in one_set.stderr
    assert "on bench01 (1 box)" in one_set.stderr


def test_adding_a_known_box_again_updates_its_groups(one_box: Agent, tmp_path: Path) -> None:
    lap = Laptop(tmp_path / "laptop")
    lap.add("benchA", one_box.host, one_box.port, "line1", "rack2")
    lap.add("benchB", one_box.host, one_box.port, "line1")
    assert json.loads(lap.run("groups", "--json").stdout) == \
        {"line1": ["benchA", "benchB"], "rack2": ["benchA"]}
    lap.add("benchA", one_box.host, one_box.port, "rack3")
    assert json.loads(lap.run("groups", "--json").stdout) == \
        {"line1": ["benchB"], "rack3": ["benchA"]}
    removed = lap.run("boxes", "remove", "benchB", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert json.loads(lap.run("groups", "--json").stdout) == {"rack3": ["benchA"]}
    bad = lap.run("boxes", "add", "benchC", "--host", one_box.host, "--group", "no good")
    assert bad.returncode == 2 and "group name" in bad.stderr


def test_an_ssh_config_host_in_a_set(laptop: Laptop, one_box: Agent, tmp_path: Path) -> None:
    """A set may name a host as OpenSSH would reach it (#12): an ssh_config Host, with its own
    known_hosts file; it is one box among lager's own."""
    known = tmp_path / "known_hosts"
    pinned = (laptop.config_dir / "known_hosts").read_text().splitlines()[0]
    known.write_text(pinned + "\n")
    config = write_script(tmp_path, "ssh_config", (
        f"Host sshbox\n  HostName {one_box.host}\n  Port {one_box.port}\n  User lab\n"
        f"  IdentityFile {laptop.config_dir / 'id_ed25519'}\n  UserKnownHostsFile {known}\n"))
    done = laptop.run("-F", str(config), "python", "--list", "--json", "--box", "sshbox,bench01")
    assert done.returncode == 0, done.stderr
    assert sorted(json.loads(done.stdout)) == ["bench01", "sshbox"]


def test_inventory_boxes_run_with_lagers_key(laptop: Laptop, one_box: Agent,
                                             tmp_path: Path) -> None:
    """Boxes only the inventory names: lager's key logs in, the host key is the one pinned for
    that address; `lager_user` is the name the box's audit keeps."""
    _need_ansible()
    inventory = write_script(tmp_path, "duts.yml", (
        "duts:\n  hosts:\n"
        + "".join(f"    dut{i}:\n      ansible_host: {one_box.host}\n"
                  f"      lager_port: {one_box.port}\n      lager_user: tester\n"
                  for i in (1, 2))))
    script = write_script(tmp_path, "who.py", "import os\nprint(os.environ['LAGER_BOX'])\n")
    done = laptop.run("python", str(script), "--box", "@duts", "--inventory", str(inventory))
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == ["dut1: dut1", "dut2: dut2"]
    rows = json.loads(laptop.run("python", "--list", "--json", "--box", "dut1",
                                 "--inventory", str(inventory)).stdout)
    assert rows[-1]["started_by"]["user"] == "tester"


def test_a_plain_inventory_name_stays_on_todays_path(laptop: Laptop, one_box: Agent,
                                                     tmp_path: Path) -> None:
    """ISSUE-NOTES 15: `--box dut1` is one box whether the inventory comes by `--inventory` or
    by $LAGER_INVENTORY: today's output and exit code, no fleet line, no recap."""
    _need_ansible()
    inventory = write_script(tmp_path, "inv.yml", (
        f"duts:\n  hosts:\n    dut1:\n      ansible_host: {one_box.host}\n"
        f"      lager_port: {one_box.port}\n"))
    script = write_script(tmp_path, "code.py", "import os, sys\nprint(os.environ['LAGER_BOX'])\n"
                          "sys.exit(3)\n")
    by_env = {**laptop.env, "LAGER_INVENTORY": str(inventory)}
    for how, args, env in (("flag", ("--inventory", str(inventory)), None),
                           ("joined flag", (f"--inventory={inventory}",), None),
                           ("env", (), by_env)):
        done = laptop.run("python", str(script), "--box", "dut1", *args, env=env)
        assert done.returncode == 3, (how, done.stderr)
        assert done.stdout == "dut1\n", how
        assert "fleet" not in done.stderr and "RECAP" not in done.stderr, (how, done.stderr)
        nets = laptop.run("nets", "--box", "dut1", *args, env=env)
        assert nets.returncode == 0 and "dut1:" not in nets.stdout, (how, nets.stderr)
    # Lager's config wins: bench01 is no inventory name, and an unknown one is still unknown.
    assert laptop.run("nets", "--box", "bench01", env=by_env).returncode == 0
    unknown = laptop.run("nets", "--box", "dut9", env=by_env)
    assert unknown.returncode == 2 and "unknown box 'dut9'" in unknown.stderr


def test_list_over_a_set_is_gathered_by_default(laptop: Laptop) -> None:
    """Five names for one agent list the same runs: printed once, under the folded set."""
    done = laptop.run("python", "--list", "--box", "bench0[1-5]")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1] == "bench[01-05] (5)"
    apart = laptop.run("python", "--list", "--box", "bench0[1-2]", "--no-gather")
    assert apart.returncode == 0, apart.stderr
    assert {ln.split(":")[0] for ln in apart.stdout.splitlines()} == {"bench01", "bench02"}


def test_lagers_config_wins_over_the_inventory(laptop: Laptop, one_box: Agent,
                                               tmp_path: Path) -> None:
    """The inventory names bench01 at a port where nothing listens: lager's own bench01
    is the one reached, in a set and alone."""
    _need_ansible()
    from test_fleet_rig import free_port

    inventory = write_script(tmp_path, "wrong.yml", (
        f"duts:\n  hosts:\n    bench01:\n      ansible_host: {one_box.host}\n"
        f"      lager_port: {free_port()}\n"))
    script = write_script(tmp_path, "who.py", "import os\nprint(os.environ['LAGER_BOX'])\n")
    in_set = laptop.run("python", str(script), "--box", "@duts", "--inventory", str(inventory))
    assert in_set.returncode == 0, in_set.stderr
    assert in_set.stdout == "bench01: bench01\n"
    alone = laptop.run("python", str(script), "--box", "bench01", "--inventory", str(inventory))
    assert alone.returncode == 0 and alone.stdout == "bench01\n", alone.stderr


def test_ansibles_all_and_a_user_at_host_in_a_set(laptop: Laptop, one_box: Agent,
                                                  tmp_path: Path) -> None:
    """`@all` and `@ungrouped` mean what they mean to Ansible users; `lab@HOST:PORT` (#12)
    beside a name is one box, not a group."""
    _need_ansible()
    inventory = write_script(tmp_path, "mixed.yml", (
        "all:\n  hosts:\n    loose:\n"
        f"      ansible_host: {one_box.host}\n      lager_port: {one_box.port}\n"
        "  children:\n    duts:\n      hosts:\n        bench01: {}\n        bench02: {}\n"))
    for expression, boxes in (("@all", ["bench01", "bench02", "loose"]),
                              ("@ungrouped", ["loose"]), ("@all!@duts", ["loose"])):
        done = laptop.run("python", "--list", "--json", "--box", expression, "--inventory",
                          str(inventory))
        assert done.returncode == 0, (expression, done.stderr)
        assert sorted(json.loads(done.stdout)) == boxes, expression
    listed = json.loads(laptop.run("groups", "--json", "--inventory", str(inventory)).stdout)
    assert "all" not in listed and "ungrouped" not in listed and "duts" in listed
    direct = f"lab@{one_box.host}:{one_box.port}"
    done = laptop.run("python", "--list", "--json", "--box", f"{direct},bench02")
    assert done.returncode == 0, done.stderr
    assert sorted(json.loads(done.stdout)) == sorted([direct, "bench02"])


def test_an_inventory_box_with_an_unknown_host_key(laptop: Laptop, one_box: Agent,
                                                   tmp_path: Path) -> None:
    """Lager's key, but no pin for the address: the hint is the inventory's import."""
    _need_ansible()
    fresh = Laptop(tmp_path / "fresh")
    fresh.config_dir.mkdir(parents=True)
    for name in ("id_ed25519", "id_ed25519.pub"):  # the authorized key, without its pins
        shutil.copy(laptop.config_dir / name, fresh.config_dir / name)
    inventory = write_script(tmp_path, "duts.yml", (
        f"duts:\n  hosts:\n    dut1:\n      ansible_host: {one_box.host}\n"
        f"      lager_port: {one_box.port}\n"))
    hint = f"lager boxes import --inventory {inventory}"
    in_set = fresh.run("python", "--list", "--box", "@duts", "--inventory", str(inventory))
    assert in_set.returncode == 255, in_set.stderr
    assert in_set.stderr.startswith("dut1: unreachable: ") and hint in in_set.stderr
    alone = fresh.run("python", "--list", "--box", "dut1", "--inventory", str(inventory))
    assert alone.returncode == 255 and hint in alone.stderr, alone.stderr
    assert len(alone.stderr.strip().splitlines()) == 1, alone.stderr
    assert fresh.run("boxes", "import", "--inventory", str(inventory)).returncode == 0
    assert fresh.run("python", "--list", "--box", "dut1", "--inventory",
                     str(inventory)).returncode == 0
