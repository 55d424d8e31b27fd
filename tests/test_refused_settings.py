"""A setting the instrument refuses changes nothing, and a bad value is one line.

`lager load load1 cr 0` once switched the load to CR before the level was refused; `lager
supply supply2 voltage 5 --ocp 5` set the voltage before the OCP was refused. The instrument's
own state is read back here with plain pyvisa (raw SCPI, code we did not write), straight from
the simulated bench the agent runs, not through lager.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Client, make_client, start_agent


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, dict[str, Any]]]:
    import pyvisa

    state = tmp_path_factory.mktemp("refused-box") / "state"
    agent = start_agent(state)
    rm = pyvisa.ResourceManager("@py")
    opened: dict[str, Any] = {}
    try:
        client = make_client(tmp_path_factory.mktemp("refused-laptop"), agent)
        assert client.run("nets").returncode == 0  # the bench is up, its ports recorded
        ports = json.loads((state / "simbench.json").read_text())["ports"]
        for name, device in (("load", "rigol_dl3021"), ("dp821", "rigol_dp821")):
            opened[name] = rm.open_resource(
                f"TCPIP0::127.0.0.1::{ports[device]}::SOCKET", timeout=5000,
                read_termination="\n", write_termination="\n")
        yield client, opened
    finally:
        for res in opened.values():
            res.close()
        agent.stop()


def _one_line_error(result: Any, code: int, words: str) -> None:
    assert result.returncode == code, result
    assert words in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr


def test_a_refused_level_leaves_the_load_mode_and_set_points(bench: Any) -> None:
    client, res = bench
    load = res["load"]
    assert client.run("load", "load1", "cc", "0.2").returncode == 0
    assert client.run("load", "load1", "cr", "25").returncode == 0  # a CR level to keep
    assert client.run("load", "load1", "cc", "0.2").returncode == 0
    before = load.query(":SOUR:FUNC?;:SOUR:CURR:LEV:IMM?;:SOUR:RES:LEV:IMM?")
    assert before == "CC;0.2000;25.0000"
    _one_line_error(client.run("load", "load1", "cr", "0"), 1,
                    "refused ':SOUR:RES:LEV:IMM 0.0000'")
    assert load.query(":SOUR:FUNC?;:SOUR:CURR:LEV:IMM?;:SOUR:RES:LEV:IMM?") == before
    assert client.run("load", "load1", "mode").stdout == "load1: CC\n"
    load.write("*CLS")


def test_cw_is_the_real_lagers_constant_power(bench: Any) -> None:
    client, res = bench
    result = client.run("eload", "load1", "cw", "2")
    assert result.returncode == 0, result.stderr
    assert res["load"].query(":SOUR:FUNC?;:SOUR:POW:LEV:IMM?") == "CP;2.0000"
    assert client.run("eload", "load1", "cw").stdout == "load1: CW 2 W\n"
    assert client.run("load", "load1", "cc", "0.2").returncode == 0


def test_a_refused_limit_puts_back_what_went_before_it(bench: Any) -> None:
    client, res = bench
    dp821 = res["dp821"]
    assert client.run("supply", "supply2", "voltage", "3", "--yes").returncode == 0

    def settings() -> list[str]:
        return [dp821.query(q) for q in (":APPL? CH1", ":OUTP:OCP:VAL? CH1", ":OUTP:OVP:VAL? CH1",
                                         ":OUTP:OCP? CH1", ":OUTP:OVP? CH1")]

    before = settings()
    # CH1 is a 1 A channel. The voltage is set first (no OVP given), then the OCP, which the
    # instrument refuses; with --ovp, the OVP goes first (the voltage rises), then the voltage.
    for extra in ((), ("--ovp", "7")):
        result = client.run("supply", "supply2", "voltage", "5", *extra, "--ocp", "50")
        _one_line_error(result, 1, "refused")
        assert settings() == before, extra
    dp821.write("*CLS")


@pytest.mark.parametrize(("args", "code", "words"), [
    (("supply", "supply2", "voltage", "-1"), 1, "voltage -1 V is out of range"),
    (("load", "load1", "cc", "-1"), 1, "current -1 A is out of range"),
    (("load", "load1", "cc", "-0.5e1"), 1, "current -5 A is out of range"),
    (("battery", "battery1", "soc", "-3"), 1, "out of range"),
    (("load", "load1", "cc", "--bogus"), 2, "No such option '--bogus'"),
    (("load", "load1", "-x"), 2, "No such option '-x'"),
    (("eload", "load1", "sideways", "2"), 2, "'sideways' is not one of"),
])
def test_bad_values_are_one_line(bench: Any, args: tuple[str, ...], code: int,
                                 words: str) -> None:
    client, res = bench
    before = res["load"].query(":SOUR:FUNC?;:SOUR:CURR:LEV:IMM?")
    result = client.run(*args)
    assert result.returncode == code, result
    assert words in result.stderr, result.stderr
    if code == 1:  # ours: one line; click's usage errors keep their "Try --help" lines
        assert len(result.stderr.splitlines()) == 1, result.stderr
    assert res["load"].query(":SOUR:FUNC?;:SOUR:CURR:LEV:IMM?") == before
