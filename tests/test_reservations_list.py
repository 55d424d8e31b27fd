"""`lager boxes --status` (#19): the list of boxes with a LOCKED BY column, as the real lager
has it. Only when asked: the plain list stays offline. Every box is asked at once; one that
refuses or hangs is its own `?` cell and fails nothing else."""
from __future__ import annotations

import json
import select
import socket

import pytest
from conftest import Client
from sshclients import openssh
from two_keys import (
    Pair,
    fingerprint,
    pair_fixture,  # noqa: F401 (the fixture `pair`)
)


def add_entry(client: Client, name: str, port: int) -> None:
    """A box in the laptop's list at this port (as `boxes add` would have written it)."""
    path = client.config_dir / "boxes.json"
    known = json.loads(path.read_text())
    known[name] = {**known["mybox"], "name": name, "port": port}
    path.write_text(json.dumps(known))


def row(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line.split()[:1] == [name])


def cell(text: str, name: str) -> str:
    """The LOCKED BY cell: the last column, after NAME and ADDRESS."""
    return row(text, name).split(None, 2)[2]


def test_boxes_status_shows_who_holds_each_box(pair: Pair) -> None:
    a_key = fingerprint(pair.a)
    # A box that takes the connection and never says a word (a hung box), and one whose
    # port is closed (a box that is down).
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    down_port = closed.getsockname()[1]
    closed.close()
    add_entry(pair.b, "hung", hung.getsockname()[1])
    add_entry(pair.b, "down", down_port)
    try:
        # The plain list: offline, no column, and not one box was dialled.
        plain = pair.b.run("boxes", box=False)
        assert plain.returncode == 0, plain.stderr
        assert "LOCKED BY" not in plain.stdout and "hung" in plain.stdout
        assert not select.select([hung], [], [], 0)[0], "the plain list dialled a box"

        free = pair.b.run("boxes", "--status", box=False)
        assert free.returncode == 0, free.stderr
        assert free.stdout.splitlines()[0].split() == ["NAME", "ADDRESS", "LOCKED", "BY"]
        assert cell(free.stdout, "mybox") == "-"

        locked = pair.a.run("boxes", "lock", "--reason", "firmware bisect")
        assert locked.returncode == 0, locked.stderr
        shown = pair.b.run("boxes", "--status", box=False)
        assert shown.returncode == 0, shown.stderr
        assert a_key in cell(shown.stdout, "mybox") and "(lock)" in cell(shown.stdout, "mybox")
        assert cell(shown.stdout, "hung") == cell(shown.stdout, "down") == "?"
        assert select.select([hung], [], [], 0)[0], "--status did not ask the hung box"

        as_json = pair.b.run("boxes", "list", "--status", "--json", box=False)
        assert as_json.returncode == 0, as_json.stderr
        cells = {b["name"]: b["locked_by"] for b in json.loads(as_json.stdout)}
        assert cells["hung"] == cells["down"] == "?" and a_key in cells["mybox"]

        # Asked of a subcommand it does not belong to: one line, a usage error.
        wrong = pair.b.run("boxes", "--status", "status")
        assert wrong.returncode == 2 and "--status goes alone or after list" in wrong.stderr
    finally:
        hung.close()


@pytest.mark.parametrize(("line", "says"), [
    ('{"op": "unlock", "force": "yes"}', "force must be true or false, not 'yes'"),
    ('{"op": "wait", "wait": -1}', "wait must be 0 or more seconds"),
    ('{"op": "wait", "wait": Infinity}', "wait must be 0 or more seconds"),
    ('{"op": "lock", "reason": {"a": 1}}', "reason must be a string or null"),
    ('{"op": "grab"}', "op 'grab' is not one of status, lock, unlock, wait"),
    ("[[[[", "send one JSON object"),
])
def test_a_bad_reservation_request_over_openssh_is_one_line(pair: Pair, line: str,
                                                            says: str) -> None:
    """The typed decoder's line reaches an OpenSSH user as is: status 1, one line, and the
    box's lock untouched."""
    bad = openssh(pair.b, "reservation", line + "\n")
    assert bad.returncode == 1, (bad.returncode, bad.stderr)
    text = bad.stderr.decode().strip()
    assert len(text.splitlines()) == 1 and text.startswith("malformed reservation request")
    assert says in text, text
    state = openssh(pair.b, "reservation", '{"op": "status"}\n')
    assert state.returncode == 0 and json.loads(state.stdout)["lock"] is None
