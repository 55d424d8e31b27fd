"""The simulated bench speaks each instrument's SCPI: raw pyvisa against the real simulator.

The simulator runs as a real subprocess (`python -m box_agent.simbench`); each test resets the
instruments it uses (*RST;*CLS), so the tests do not depend on each other's order.
"""
from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pyvisa
from conftest import (
    Client,
    laptop_on_a_new_box,
    simulator,
    wait_for,
    write_script,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

Open = Callable[..., Any]


@pytest.fixture(scope="module")
def ports() -> Iterator[dict[str, int]]:
    with simulator() as found:
        yield found


@pytest.fixture(scope="module")
def rm() -> Iterator[Any]:
    manager = pyvisa.ResourceManager("@py")
    yield manager
    manager.close()


@pytest.fixture
def inst(ports: dict[str, int], rm: Any) -> Iterator[Open]:
    """open(device, hislip=False): a pyvisa session on a freshly reset instrument."""
    opened: list[Any] = []

    def open_(device: str, hislip: bool = False) -> Any:
        if hislip:  # framed: no read termination, as code written for USB-TMC/VXI-11 sets
            res = rm.open_resource(
                f"TCPIP0::127.0.0.1::hislip0,{ports[device + '_hislip']}::INSTR", timeout=3000)
        else:
            res = rm.open_resource(f"TCPIP0::127.0.0.1::{ports[device]}::SOCKET",
                                   read_termination="\n", write_termination="\n", timeout=3000)
        res.write("*RST;*CLS")
        opened.append(res)
        return res

    yield open_
    for res in opened:
        res.close()


def errors(res: Any, query: str = ":SYST:ERR?") -> list[str]:
    """Pop the error queue down to its no-error entry (which must come, as pymeasure needs)."""
    found = []
    for _ in range(50):
        entry = res.query(query).strip()
        if int(entry.split(",")[0]) == 0:
            return found
        found.append(entry)
    raise AssertionError(f"error queue never emptied: {found}")


# ------------------------------------------------------------------ syntax


@pytest.mark.parametrize("setter, query", [
    (":SOURce1:VOLTage:LEVel:IMMediate:AMPLitude 1.5", ":SOURce1:VOLTage:LEVel:IMMediate?"),
    (":SOUR1:VOLT 1.5", ":SOUR1:VOLT?"),
    ("sour1:volt 1.5", "sour1:volt:lev?"),
    ("SOUR1:VOLT:AMPL 1.5", "source1:voltage?"),
    (":INST CH1;:VOLT 1.5", ":VOLT:IMM:AMPL?"),
    (":APPL CH1,1.5", ":SOURce1:VOLTage?"),
])
def test_long_short_lower_case_and_optional_nodes(inst: Open, setter: str, query: str) -> None:
    dp = inst("rigol_dp821")
    dp.write(setter)
    assert dp.query(query) == "1.500"
    assert errors(dp) == []


def test_numbers_booleans_and_min_max_def(inst: Open) -> None:
    dp = inst("rigol_dp821")
    for text in ("5", "5.0", "5.0E+00", "+.5e1", "5000mV", "5V"):
        dp.write(f":SOUR2:VOLT {text}")
        assert dp.query(":SOUR2:VOLT?") == "5.000", text
    dp.write(":SOUR2:VOLT MAX")
    assert dp.query(":SOUR2:VOLT?") == "8.000"
    assert dp.query(":SOUR1:VOLT? MAX") == "60.000"
    assert dp.query(":SOUR1:CURR? MAX") == "1.0000"
    assert dp.query(":SOUR2:CURR? MAXimum") == "10.0000"
    dp.write(":SOUR2:VOLT MIN")
    assert dp.query(":SOUR2:VOLT?") == "0.000"
    for on, off in (("ON", "OFF"), ("1", "0"), ("on", "off")):
        dp.write(f":OUTP CH2,{on}")
        assert dp.query(":OUTP? CH2") == "ON"
        dp.write(f":OUTP CH2,{off}")
        assert dp.query(":OUTP? CH2") == "OFF"
    assert errors(dp) == []


def test_compound_messages_and_relative_paths(inst: Open) -> None:
    dp = inst("rigol_dp821")
    assert dp.query(":INST CH2;:VOLT 3.3;:VOLT?;:INST?") == "3.300;CH2"
    assert dp.query(":SOUR1:VOLT 2;CURR 0.5;:SOUR1:CURR?;VOLT?") == "0.5000;2.000"
    assert dp.query("*IDN?;:BOGUS?;*OPC?").endswith(",00.01.14;1")  # the bad unit answers nothing
    assert errors(dp) == ['-113,"Undefined header"']
    daq = inst("keithley_daq6510")
    daq.write(':SENS:FUNC "VOLT";:SENS:VOLT:NPLC 1;')  # a trailing ';' is pymeasure's habit
    assert daq.query(":SENS:FUNC?;:SENS:VOLT:NPLC?") == "VOLT:DC;1"


def test_unknown_query_sends_nothing_and_queues_113(inst: Open) -> None:
    dp = inst("rigol_dp821")
    dp.write(":MEASure:BOGUS? CH1")
    # Had the simulator answered the bad query, this read would get that answer instead.
    assert dp.query("*OPC?") == "1"
    assert dp.query(":SYST:ERR?") == '-113,"Undefined header"'
    assert dp.query(":SYSTem:ERRor:NEXT?") == '0,"No error"'
    dp.write(":NOPE 5")  # an unknown set command is not dropped either
    dp.write("*CLS")
    assert dp.query(":SYST:ERR?") == '0,"No error"'


@pytest.mark.parametrize("device, query, empty, refused", [
    ("keithley_2281s", ":SYST:ERR?", '0,"No error"', r'-113,"Undefined header"'),
    ("rigol_dp821", ":SYST:ERR?", '0,"No error"', r'-113,"Undefined header"'),
    ("keysight_34461a", "SYST:ERR?", '+0,"No error"', r'-113,"Undefined header"'),
    ("keithley_daq6510", ":SYST:ERR?", '0,"No error;0;0 0"',
     r'-113,"Undefined header;1;\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{3}"'),
])
def test_error_queue_in_each_instruments_format(inst: Open, device: str, query: str,
                                                empty: str, refused: str) -> None:
    res = inst(device)
    assert res.query(query) == empty
    res.write("BOGUS:HEADER")
    assert re.fullmatch(refused, res.query(query))
    assert res.query(query) == empty


@pytest.mark.parametrize("device, command, code", [
    ("rigol_dp821", ":SOUR2:VOLT 9", -222),           # CH2 is rated 8 V
    ("rigol_dp821", ":SOUR1:CURR 1.5", -222),         # CH1 is rated 1 A
    ("rigol_dp821", ":SOUR1:VOLT 61", -222),          # CH1 is rated 60 V
    ("rigol_dp821", ":OUTP CH3,ON", -224),            # no CH3 on a DP821
    ("rigol_dp821", ":SOUR3:VOLT 1", -114),           # nor a SOURce3
    ("rigol_dp821", ":OUTP CH1,MAYBE", -224),
    ("rigol_dp821", ":SOUR1:VOLT", -109),
    ("rigol_dp821", ":SOUR1:VOLT 1,2", -108),
    ("rigol_dp821", ":SOUR1:VOLT 5 A", -131),
    ("rigol_dp821", ":SOUR1:VOLT \"5\"", -104),
    ("keithley_2281s", ":ENTR:FUNC TOASTER", -224),
    ("keithley_2281s", ":SOUR:CURR 0.05", -222),       # the 2281S limit starts at 0.1 A
    ("keithley_2281s", ":BATT:SIM:SOC 101", -222),
    ("keysight_34461a", "MEAS:VOLT:DC? 5000", -222),
    ("keithley_daq6510", ":MEAS:VOLT? (@199)", -224),  # no channel 199 on the card
    ("rigol_dp821", "*RST?", -420),                   # a command asked as a query
])
def test_bad_parameters_queue_the_manuals_code(inst: Open, device: str, command: str,
                                               code: int) -> None:
    res = inst(device)
    res.write(command)
    entries = errors(res, "SYST:ERR?")
    assert [int(e.split(",")[0]) for e in entries] == [code], entries


def test_dp821_limits_are_per_channel(inst: Open) -> None:
    dp = inst("rigol_dp821")
    dp.write(":APPL CH1,60,1;:APPL CH2,8,10")
    assert dp.query(":APPL? CH1") == "CH1:60V/1A,60.000,1.0000"
    assert dp.query(":APPL? CH2") == "CH2:8V/10A,8.000,10.0000"
    assert dp.query(":APPL? CH2,VOLT") == "8.000"
    assert errors(dp) == []


def test_common_commands(inst: Open) -> None:
    dp = inst("rigol_dp821")
    assert dp.query("*IDN?") == "RIGOL TECHNOLOGIES,DP821,DP8B000000001,00.01.14"
    assert dp.query("*ESR?") == "0" and dp.query("*STB?") == "0"
    assert dp.query("*OPC?") == "1" and dp.query("*TST?") == "0"
    dp.write("*OPC;*WAI")
    assert dp.query("*ESR?") == "1"  # OPC, and reading it cleared it
    dp.write("BOGUS")
    assert int(dp.query("*STB?")) & 4  # EAV: the error queue is not empty
    assert dp.query("*ESR?") == "32"  # CME: a command error
    dp.write(":SOUR1:VOLT 99")
    assert dp.query("*ESR?") == "16"  # EXE: an execution error
    dp.write("*ESE 48;*SRE 32")
    assert dp.query("*ESE?;*SRE?") == "48;32"
    dp.write(":SOUR1:VOLT 3;:OUTP CH1,ON")
    dp.write("*RST")  # the manual's defaults: 0 V, CH2 10 A, outputs off
    assert dp.query(":SOUR1:VOLT?;:SOUR2:CURR?;:OUTP? CH1") == "0.000;10.0000;OFF"
    dp.write("*CLS")
    assert dp.query("*STB?") == "0" and errors(dp) == []


# ------------------------------------------------------------------ each command set


def test_dp821_readbacks_and_cc_mode(inst: Open) -> None:
    dp = inst("rigol_dp821")
    dp.write(":APPL CH1,5,1;:OUTP CH1,ON")  # into the wired 10 ohm load: 0.5 A, CV
    assert dp.query(":OUTP:MODE? CH1") == "CV"
    volts, amps, watts = (float(x) for x in dp.query(":MEAS:ALL? CH1").split(","))
    assert abs(volts - 5) < 0.01 and abs(amps - 0.5) < 0.001 and abs(watts - 2.5) < 0.02
    assert abs(float(dp.query(":MEAS? CH1")) - 5) < 0.01
    assert abs(float(dp.query(":MEAS:CURR? CH1")) - 0.5) < 0.001
    assert abs(float(dp.query(":MEAS:POWE? CH1")) - 2.5) < 0.02
    dp.write(":SOUR1:CURR 0.2")  # the load would draw 0.5 A: the supply limits, V = I*R
    assert dp.query(":OUTP:MODE? CH1") == "CC"
    assert abs(float(dp.query(":MEAS:VOLT? CH1")) - 2.0) < 0.01
    assert int(dp.query(":INST CH1;:STATus:QUEStionable:INSTrument:ISUMmary1:CONDition?")) & 1


@pytest.mark.parametrize("kind, level, clear", [
    ("OVP", ":OUTP:OVP:VAL CH1,4", ":OUTP:OVP:CLEAR CH1"),
    ("OCP", ":OUTP:OCP:VAL CH1,0.3", ":OUTP:OCP:CLEAR CH1"),
])
def test_dp821_protection_trips_and_latches(inst: Open, kind: str, level: str,
                                            clear: str) -> None:
    dp = inst("rigol_dp821")
    dp.write(f":APPL CH1,5,1;{level};:OUTP:{kind} CH1,ON")
    assert dp.query(f":OUTP:{kind}? CH1") == "ON" and dp.query(f":OUTP:{kind}:QUES? CH1") == "NO"
    dp.write(":OUTP CH1,ON")  # 5 V into 10 ohm: above 4 V, and 0.5 A above 0.3 A
    assert dp.query(f":OUTP:{kind}:QUES? CH1") == "YES"
    assert dp.query(":OUTP? CH1") == "OFF"
    dp.write(f":OUTP:{kind} CH1,OFF;:OUTP CH1,ON")  # latched: refused until cleared
    assert dp.query(":OUTP? CH1") == "OFF"
    assert errors(dp)[0].startswith(f'-221,"Settings conflict; {kind} tripped on CH1')
    dp.write(f"{clear};:OUTP CH1,ON")
    assert dp.query(f":OUTP? CH1;:OUTP:{kind}:QUES? CH1") == "ON;NO"
    assert errors(dp) == []


def test_2281s_functions_protection_and_status(inst: Open) -> None:
    k = inst("keithley_2281s")
    for form, reply in (("POWer", "POWER"), ("sim", "SIMULATOR"), ("TEST", "TEST"),
                        (":ENTRance:FUNCtion SIMulator", "SIMULATOR"), ("POW", "POWER")):
        k.write(form if form.startswith(":") else f":ENTR:FUNC {form}")
        assert k.query(":ENTR:FUNC?") == reply
    k.write(":SOUR:VOLT 5;:SOUR:CURR 1;:OUTP ON")
    amps, volts = (float(x) for x in k.query(":MEAS:CONC:DC?").split(","))
    assert abs(volts - 5) < 0.01 and abs(amps - 0.5) < 0.001
    bits = int(k.query(":STATus:QUEStionable:INSTrument:ISUMmary:CONDition?"))
    assert bits & 2 and bits & 64  # CV, output on
    k.write(":SOUR:CURR:PROT 0.3")
    assert k.query(":OUTP:PROT:TRIP?;:OUTP?") == "OCP;0"
    k.write(":OUTP ON")
    assert errors(k)[0].startswith('-221,"Settings conflict; OCP tripped')
    k.write(":SOUR:CURR:PROT 6;:OUTP:PROT:CLE;:OUTP ON;:ABOR;:INIT:CONT ON")
    assert k.query(":OUTP:PROT:TRIP?;:OUTP?;:INIT:CONT?") == "NONE;1;1"
    k.write(":SOUR:VOLT:PROT 4")
    assert k.query(":OUTP:PROT:TRIP?") == "OVP"
    assert errors(k) == []


def test_2281s_battery_simulator(inst: Open) -> None:
    k = inst("keithley_2281s")
    k.write(":ENTR:FUNC SIM;:BATT:MOD:RCL 1;:BATT:SIM:METH STAT")
    assert k.query(":BATT:MOD:RCL?;:BATT:SIM:METH?") == "1;STAT"
    k.write(":BATT:SIM:CAP:LIM 2;:BATT:SIM:CURR:LIM 1;:BATT:SIM:VOC:FULL 4.2;"
            ":BATT:SIM:VOC:EMPT 3.0;:BATT:SIM:TVOL:PROT 5;:BATT:SIM:CURR:PROT 2")
    assert k.query(":BATT:SIM:CAP:LIM?;:BATT:SIM:CURR:LIM?;:BATT:SIM:TVOL:PROT?") == \
        "2.0000;1.0000;5.0000"
    k.write(":BATT:SIM:SOC 100;:BATT:OUTP ON")
    assert k.query(":BATT:SIM:VOC?") == "4.2000"
    tvol, amps = float(k.query(":BATT:SIM:TVOL?")), float(k.query(":BATT:SIM:CURR?"))
    res = float(k.query(":BATT:SIM:RES?"))
    assert abs(tvol - (4.2 - amps * res)) < 0.001 and amps == 0.05  # the wired 50 mA load
    k.write(":BATT:SIM:VOC 3.74")  # Voc sets the SOC through the model
    assert k.query(":BATT:SIM:SOC?") == "40.0"
    k.write(":BATT:SIM:CAP:LIM 5")  # a model parameter while the simulation runs
    assert errors(k) == ['704,"Not permitted while battery model is running"']
    k.write(":BATT:OUTP OFF;:BATT:MOD:RCL NIMH1_2")
    assert k.query(":BATT:SIM:VOC:FULL?;:BATT:SIM:VOC:EMPT?") == "1.4500;1.0000"
    assert errors(k) == []


def test_2281s_dynamic_battery_discharges_with_the_current_drawn(inst: Open) -> None:
    k = inst("keithley_2281s")
    # 1 mAh drained by the wired 50 mA load: about 1.4 % of SOC a second.
    k.write(":ENTR:FUNC SIM;:BATT:SIM:METH DYN;:BATT:SIM:CAP:LIM 0.001;:BATT:SIM:SOC 100")
    assert k.query(":BATT:SIM:SOC?") == "100.0"
    k.write(":BATT:OUTP ON")
    wait_for(lambda: float(k.query(":BATT:SIM:SOC?")) < 99.0, what="SOC to fall", timeout=30)
    k.write(":BATT:OUTP OFF")
    resting = k.query(":BATT:SIM:SOC?")
    assert float(k.query(":BATT:SIM:CURR?")) == 0.0
    assert k.query("*OPC?;:BATT:SIM:SOC?") == f"1;{resting}"  # no current, no discharge


def test_daq6510_channels_and_wiring(inst: Open) -> None:
    daq, dp = inst("keithley_daq6510"), inst("rigol_dp821")
    daq.write(':SENS:FUNC "VOLT";:SENS:VOLT:NPLC 1;:SENS:VOLT:RANG:AUTO ON;:ROUT:CLOS (@101)')
    assert daq.query(":ROUT:CLOS?") == "(@101)"
    assert abs(float(daq.query(":READ?")) + 10.6032) < 0.001
    readings = [float(x) for x in daq.query(":MEAS:VOLT? (@101:103)").split(",")]
    assert len(readings) == 3 and all(abs(r + 10.6032) < 0.001 for r in readings)
    # Channel 104 is wired to the DP821's CH1 (*OPC?: the DP821 has taken the settings).
    assert dp.query(":APPL CH1,2.5,1;:OUTP CH1,ON;*OPC?") == "1"
    assert abs(float(daq.query(":MEAS:VOLT:DC? (@104)")) - 2.5) < 0.001
    daq.write(":ROUT:OPEN (@101);:SENS:VOLT:RANG 0.1")  # a manual range the input exceeds
    assert daq.query(":ROUT:CLOS?;:SENS:VOLT:RANG:AUTO?") == "(@);0"
    daq.write(":ROUT:CLOS (@104)")
    assert float(daq.query(":READ?")) == 9.9e37
    assert errors(daq) == [] and errors(dp) == []


def test_34461a_measure_configure_read_fetch(inst: Open) -> None:
    dmm, dp = inst("keysight_34461a"), inst("rigol_dp821")
    # The DMM's input is wired to CH1 (supply2). *OPC? waits for the DP821 to have taken the
    # settings: the DMM is another connection, which the simulator may serve first.
    assert dp.query(":APPL CH1,3.3,1;:OUTP CH1,ON;*OPC?") == "1"
    assert abs(float(dmm.query("MEAS:VOLT:DC? 10,DEF")) - 3.3) < 0.001
    dmm.write("CONF:VOLT:DC 100;VOLT:DC:NPLC 1")
    assert dmm.query("CONF?") == '"VOLT +1.00000000E+02,+3.00000000E-06"'
    assert dmm.query("VOLT:DC:NPLC?") == "+1.00000000E+00"
    dmm.write("FETC?")
    assert errors(dmm, "SYST:ERR?")[0].startswith("-230,")  # nothing measured yet
    dmm.write("INIT")
    fetched = float(dmm.query("FETC?"))
    assert abs(fetched - 3.3) < 0.001 and abs(float(dmm.query("READ?")) - 3.3) < 0.001
    assert errors(dmm, "SYST:ERR?") == []


def test_hislip_frames_messages_without_a_read_termination(inst: Open, ports: dict[str, int],
                                                           rm: Any) -> None:
    dmm = inst("keysight_34461a", hislip=True)
    assert dmm.read_termination is None
    assert dmm.query("*IDN?").startswith("Keysight Technologies,34461A")
    assert dmm.query("*OPC?;SYST:ERR?").strip() == '1;+0,"No error"'
    dmm.write("BOGUS")
    assert dmm.read_stb() & 4  # the status byte over HiSLIP's async channel: EAV
    dmm.clear()  # device clear over HiSLIP
    assert dmm.query("SYST:ERR?").strip() == '-113,"Undefined header"'
    # Garbage on the HiSLIP port gets a FatalError (poorly formed header) and ends that
    # connection only.
    with socket.create_connection(("127.0.0.1", ports["keysight_34461a_hislip"]),
                                  timeout=5) as junk:
        junk.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert junk.recv(100).startswith(b"HS\x02\x01")
    assert dmm.query("*OPC?").strip() == "1"


# ------------------------------------------------------------------ bad input


IDN_PREFIX = {"keithley_2281s": "KEITHLEY INSTRUMENTS,MODEL 2281S", "rigol_dp821": "RIGOL",
              "keithley_daq6510": "KEITHLEY INSTRUMENTS,MODEL DAQ6510",
              "keysight_34461a": "Keysight"}


def exchange(ports: dict[str, int], device: str, message: bytes) -> tuple[list[str], str]:
    """Send one message, then *IDN? as a marker, on a fresh raw socket. Returns the lines the
    message produced (the marker's arrival proves the instrument alive and in step) and the
    whole error queue afterwards."""
    with socket.create_connection(("127.0.0.1", ports[device]), timeout=10) as sock:
        stream = sock.makefile("rb")
        sock.sendall(b"*CLS\n" + message + b"\n*IDN?\n")
        lines = []
        while True:
            line = stream.readline().decode()
            assert line.endswith("\n"), "the simulator closed the connection"
            if line.startswith(IDN_PREFIX[device]):
                break
            lines.append(line.rstrip("\n"))
        sock.sendall(b":SYST:ERR:ALL?\n")
        return lines, stream.readline().decode().strip()


DEVICES = ("keithley_2281s", "rigol_dp821", "keithley_daq6510", "keysight_34461a")
HEADERS = [":SOUR1:VOLT", ":SOUR2:CURR", ":OUTP", ":OUTP:OVP:VAL", ":APPL", ":MEAS:ALL",
           ":ENTR:FUNC", ":BATT:SIM:SOC", ":BATT:SIM:METH", ":BATT:MOD:RCL", ":SENS:FUNC",
           ":ROUT:CLOS", ":MEAS:VOLT", "MEAS:VOLT:DC", "CONF:VOLT:DC", "READ", "FETC", "*OPC",
           "*ESR", "*STB", ":STAT:QUES:INST:ISUM:COND", ":INST", ":TRAC:POIN", ":ZZTOP"]
# Balanced quotes and parentheses only: an open quote or "(@" rightly swallows the rest of
# the message, ';' included (the garbage test below sends those).
PARAMS = st.sampled_from(["ON", "OFF", "1", "0", "MIN", "MAX", "DEF", "CH1", "CH2", "CH9",
                          "5", "-1", "1e3", "1e999", "#HFF", "#B12", "(@101:103)", "(@1:99999)",
                          '"VOLT"', "'x'", "POW", "SIM", "DYN", "500mV", "2A", "", "1.2.3"])


@st.composite
def units(draw: st.DrawFn) -> tuple[str, bool]:
    header = draw(st.sampled_from(HEADERS))
    header = draw(st.sampled_from([header, header.lower(), header.lstrip(":")]))
    query = draw(st.booleans())
    params = draw(st.lists(PARAMS, max_size=3))
    return header + ("?" if query else "") + (" " + ",".join(params) if params else ""), query


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(device=st.sampled_from(DEVICES), message=st.lists(units(), min_size=1, max_size=4))
def test_every_unit_executes_or_queues_an_error(ports: dict[str, int], device: str,
                                               message: list[tuple[str, bool]]) -> None:
    text = ";".join(unit for unit, _ in message)
    lines, queue = exchange(ports, device, text.encode())
    replies = lines[0].split(";") if lines else []
    queries = sum(query for _, query in message)
    errors_queued = 0 if re.fullmatch(r'\+?0,"No error.*"', queue) else \
        len(re.findall(r'(?:^|,)[+-]?\d+,"', queue))
    assert len(lines) <= 1 and len(replies) <= queries, (text, lines)
    # Each query unit answers or queues an error; a command unit executes or queues one.
    assert len(replies) + errors_queued >= queries, (text, lines, queue)
    assert "internal" not in queue


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(device=st.sampled_from(DEVICES),
       junk=st.binary(max_size=200).filter(lambda b: b"\n" not in b))
def test_garbage_never_crashes_the_simulator(ports: dict[str, int], device: str,
                                             junk: bytes) -> None:
    lines, queue = exchange(ports, device, junk)
    assert "internal" not in queue
    if b"?" not in junk:
        assert lines == []  # only a query may answer


def test_overlong_line_is_an_input_overrun(ports: dict[str, int]) -> None:
    lines, queue = exchange(ports, "rigol_dp821", b":SOUR1:VOLT " + b"1" * 70000)
    assert lines == [] and queue.startswith('-363,"Input buffer overrun')


# ------------------------------------------------------------------ our drivers, end to end


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """A box of our own (its own simulated bench), so nothing here leaks into other tests."""
    with laptop_on_a_new_box(tmp_path_factory.mktemp("scpi")) as laptop:
        yield laptop


@pytest.mark.parametrize("args, command, words", [
    (["supply", "supply3", "voltage", "9"], "':SOUR2:VOLT 9.000'", '-222,"Data out of range'),
    (["supply", "supply2", "current", "1.5"], "':SOUR1:CURR 1.5000'",
     '-222,"Data out of range'),
    (["supply", "supply1", "current", "0.05"], "':SOUR:CURR 0.0500'",
     '-222,"Data out of range'),
])
def test_refused_setting_names_net_command_and_instrument_words(box: Client, args: list[str],
                                                                command: str,
                                                                words: str) -> None:
    result = box.run(*args)
    assert result.returncode == 1, result
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert line.startswith(f"Error: {args[1]}: ") and f"refused {command}: {words}" in line


def test_script_sees_its_supply_on_its_adc_and_cc_mode(box: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "wired.py", """
from lager import Net, NetType
supply = Net.get("supply2", type=NetType.PowerSupply)
adc = Net.get("adc4", type=NetType.ADC)          # a 34461A over HiSLIP, wired to supply2
supply.set_voltage(5.0)
supply.set_current(1.0)
supply.enable()
print(round(adc.input(), 2), round(supply.current(), 3))
supply.set_current(0.2)                           # the 10 ohm load wants 0.5 A: CC at 2 V
print(round(adc.input(), 2), round(supply.voltage(), 2), round(supply.current(), 3))
supply.disable()
print(abs(adc.input()) < 0.001)
""")
    result = box.run("python", str(script))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["5.0 0.5", "2.0 2.0 0.2", "True"]


def test_battery_net_discharges_in_dynamic_mode(box: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "drain.py", """
import time
from lager import Net, NetType
battery = Net.get("battery1", type=NetType.Battery)
battery.disable()
battery._driver.set_mode(dynamic=True)
battery._driver.set_capacity(0.001)               # 1 mAh, drained by the wired 50 mA load
battery.set_soc(100)
battery.enable()
first = battery.state()
deadline = time.monotonic() + 30                  # about 1.4 %/s: a fall of 1 % takes ~0.7 s
while battery.state().soc > first.soc - 1 and time.monotonic() < deadline:
    pass
last = battery.state()
battery.disable()
print(first.current, last.soc <= first.soc - 1, last.open_circuit_voltage < 4.2)
""")
    result = box.run("python", str(script))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "0.05 True True\n"
