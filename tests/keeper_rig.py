"""Shared by the connection-keeper tests (test_mux, test_run_keeper, test_own_pause,
test_keeper_restart): the three-pause script, the set-up behind a holding proxy, and what they
read of a laptop's keepers."""
from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from conftest import (
    LAGER,
    Agent,
    Client,
    LiveRun,
    make_client,
    start_agent,
    start_run,
    wait_for,
    write_script,
)
from holding_proxy import HoldingProxy

from client.config import Config
from client.mux import socket_path

PAUSES_THREE_TIMES = ("from lager import pause\nfor i in range(3):\n    pause('p', timeout=0)\n"
                      "print('done')\n")


def connections(client: Client) -> int:
    """SSH handshakes the laptop's box has accepted so far (a request over a keeper adds none)."""
    return client.agent.log().count(" succeeded")


def keeper_sockets(client: Client) -> list[Path]:
    mux = client.config_dir / "mux"
    return sorted(mux.glob("*.sock")) if mux.exists() else []


def keeper_socket_path(client: Client) -> Path:
    """Where the keeper for the laptop's box 'mybox' listens (there or not yet)."""
    config = Config(client.config_dir)
    return socket_path(config, config.box("mybox"))


def run_serving(client: Client) -> Path:
    """The attached run's keeper socket, once the connection behind it is up. A run over the
    quick client (client/quick_run.py) serves the socket from its first pause and makes that
    connection then, in the background; the first request waits for it. One request first,
    so the handshakes counted from here on are the other terminals' alone."""
    sock = wait_for(lambda: keeper_sockets(client), what="the run's keeper socket")[0]
    done = subprocess.run([LAGER, "python", "--list", "--box", client.box],
                          env={**client.env, "LAGER_MUX": "1"}, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and not done.stderr, done.stderr
    return sock


def run_to_first_pause(client: Client, tmp_path: Path, name: str = "p.py",
                       script: str = PAUSES_THREE_TIMES, *args: str) -> tuple[LiveRun, str]:
    """An attached `lager python` of script, at its first pause: the run and its id."""
    run = start_run(client, write_script(tmp_path, name, script), *args)
    return run, run.banner_id()


@contextlib.contextmanager
def laptop_behind_a_holding_proxy(
        tmp_path: Path) -> Iterator[tuple[Agent, HoldingProxy, Client]]:
    """A fresh agent, a HoldingProxy in front of it and a laptop that reaches it only through
    the proxy: (the agent, the proxy, the laptop). At the end the proxy closes and the agent the
    laptop points at is stopped (a restarted one, if the test swapped it into `laptop.agent`)."""
    box = start_agent(tmp_path / "state")
    proxy = HoldingProxy((box.host, box.port))
    laptop: Client | None = None
    try:
        laptop = make_client(tmp_path / "laptop", replace(box, port=proxy.port))
        yield box, proxy, laptop
    finally:
        proxy.close()
        (laptop.agent if laptop is not None else box).stop()


def pin_pause(path: Path, box_name: str, line: str) -> str:
    """What the keeper at `path` numbers a bare `--continue ID` as, asked the way a client
    asks it (a `list` request carrying `pin`): `ID#N` from a run serving as keeper (its own
    notices) or a standalone keeper (its `pauses` table), `FULLID#N` from the box's list
    otherwise; the line as it is when nobody can say."""
    from client import keeper_retry, mux
    from lager import protocol

    if keeper_retry.pinned(line) or not path.exists():
        return line
    outcome = mux.request(path, box_name, protocol.SUB_LIST, None, None, pin=line)
    answer, said = outcome.answer, outcome.pinned
    if said is not None and keeper_retry.pinned(said):
        return said
    if answer is None or answer[2] != 0 or outcome.notice:
        return line
    return keeper_retry.number_from_list(line, answer[0]) or line
