"""Shared by the connection-keeper tests (test_mux, test_run_keeper, test_own_pause): the
three-pause script they drive, and what they read of a laptop's keepers."""
from __future__ import annotations

from pathlib import Path

from conftest import Client, LiveRun, start_run, write_script

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


def run_to_first_pause(client: Client, tmp_path: Path, name: str = "p.py",
                       script: str = PAUSES_THREE_TIMES, *args: str) -> tuple[LiveRun, str]:
    """An attached `lager python` of script, at its first pause: the run and its id."""
    run = start_run(client, write_script(tmp_path, name, script), *args)
    return run, run.banner_id()
