"""Whole user scenarios shared by the tiers (local agent and container)."""
from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import Client, start_run, write_script

SPEC_EXAMPLE = (Path(__file__).resolve().parents[1] / "examples" / "test.py").read_text()
READING = r"-10\.60\d\d"


def run_spec_example(client: Client, tmp_path: Path) -> None:
    """The spec's full example, with terminal 2's inspection while it is paused."""
    script = write_script(tmp_path, "test.py", SPEC_EXAMPLE)
    run = start_run(client, script)
    ident = run.banner_id()
    assert re.fullmatch(
        r"Running test\.\.\.\n  step 1/3 \.\.\.\n  step 2/3 \.\.\.\n  step 3/3 \.\.\.\n"
        rf"sensor readings: \{{'adc1': {READING}, 'adc2': {READING}, 'adc3': {READING}\}}\n",
        run.out.text), run.out.text
    assert f'=== lager breakpoint "inspect bench before final step" at {script}:19  (id {ident})' \
        in run.err.text

    # Terminal 2, while paused: shared and free instruments read fine...
    supply = client.run("supply", "supply2", "state")
    assert supply.returncode == 0 and supply.stdout.startswith("supply2: ")
    battery = client.run("battery", "battery1", "state", "--json")
    assert battery.returncode == 0 and {"enabled", "soc", "voltage", "current"} <= \
        json.loads(battery.stdout).keys()
    adc4 = client.run("adc", "adc4", "--json")
    assert adc4.returncode == 0 and json.loads(adc4.stdout)["net"] == "adc4"
    # ...the script's own ADCs answer busy, naming the holder and the remedy...
    busy = client.run("adc", "adc1")
    assert busy.returncode == 1
    assert "adc1" in busy.stderr and "daq6510" in busy.stderr and "busy" in busy.stderr
    assert f"run {ident}" in busy.stderr and "test.py" in busy.stderr and "pid " in busy.stderr
    assert 'paused at "inspect bench before final step"' in busy.stderr
    assert f"lager python --console {ident}" in busy.stderr
    # ...and read fine through the console, on the script's own handles.
    console = client.run("python", "--console", ident, input="readings\nread_adcs()\n")
    assert console.returncode == 0, console.stderr
    lines = console.stdout.splitlines()
    assert lines[0] == "Connected to interactive console (Ctrl+D to disconnect)"
    assert re.fullmatch(rf"\{{'adc1': {READING}, 'adc2': {READING}, 'adc3': {READING}\}}",
                        lines[2]) and re.fullmatch(rf"\{{'adc1': {READING}.*", lines[3])

    assert client.run("python", "--continue", ident).returncode == 0
    assert run.finish() == 0
    assert run.out.text.endswith("Resuming - running final step.\nDone.\n")
    assert run.err.text.endswith("=== resumed\n")
    assert client.run("adc", "adc1").returncode == 0  # released when the script ended
