"""Conformance: pymeasure's own drivers, as an outside client, run their normal flows against
the simulated bench, and their check_errors() ends (it reads SYST:ERR? down to "no error")."""
from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import simulator
from pymeasure.instruments.agilent import Agilent34410A
from pymeasure.instruments.keithley import Keithley2281S, KeithleyDAQ6510


@pytest.fixture(scope="module")
def ports() -> Iterator[dict[str, int]]:
    with simulator() as found:
        yield found


def socket_resource(ports: dict[str, int], device: str) -> dict[str, Any]:
    return {"adapter": f"TCPIP0::127.0.0.1::{ports[device]}::SOCKET", "visa_library": "@py",
            "read_termination": "\n", "write_termination": "\n", "timeout": 3000}


def hislip_resource(ports: dict[str, int], device: str) -> dict[str, Any]:
    """Framed: no read termination at all, as driver code written for USB-TMC/VXI-11 has."""
    return {"adapter": f"TCPIP0::127.0.0.1::hislip0,{ports[device + '_hislip']}::INSTR",
            "visa_library": "@py", "timeout": 3000}


@pytest.fixture(params=["socket", "hislip"])
def k2281s(request: pytest.FixtureRequest, ports: dict[str, int]) -> Iterator[Keithley2281S]:
    make = socket_resource if request.param == "socket" else hislip_resource
    inst = Keithley2281S(**make(ports, "keithley_2281s"))
    inst.reset()
    inst.clear()
    yield inst
    inst.adapter.close()


def test_2281s_power_supply_flow(k2281s: Keithley2281S) -> None:
    assert k2281s.id.startswith("KEITHLEY INSTRUMENTS,MODEL 2281S")
    assert k2281s.line_frequency == 50 and k2281s.complete == "1"
    k2281s.function_mode = "POWER"
    assert k2281s.function_mode == "POWER"
    ps = k2281s.ps
    ps.voltage_setpoint = 5
    ps.current_limit = 1
    ps.voltage_limit = 10
    ps.power_line_cycles = 2
    k2281s.buffer_points = 10
    ps.output_enabled = True
    assert (ps.voltage_setpoint, ps.current_limit, ps.voltage_limit) == (5, 1, 10)
    assert ps.output_enabled is True and ps.power_line_cycles == 2
    assert k2281s.buffer_points == 10
    assert not k2281s.reading_available and not k2281s.measurement_ongoing
    k2281s.start_buffer()  # :INIT takes a reading into the buffer
    assert k2281s.reading_available
    data = k2281s.buffer_data
    assert len(data) == 1
    assert abs(data["voltage"][0] - 5) < 0.01 and abs(data["current"][0] - 0.5) < 0.001
    assert k2281s.check_errors() == []
    ps.output_enabled = False
    k2281s.write(":SOUR:VOLT 25")  # beyond the 20 V rating: the queue reports it, then ends
    errors = k2281s.check_errors()
    assert [int(code) for code, _ in errors] == [-222]
    assert k2281s.check_errors() == []


def test_2281s_battery_simulator_flow(k2281s: Keithley2281S) -> None:
    k2281s.function_mode = "SIMULATOR"
    bs = k2281s.bs
    bs.select_model_internal = 1
    bs.dynamic_soc = False
    bs.capacity_limit = 2
    bs.current_limit = 1
    bs.resistance_offset = 0.05
    bs.voc_full = 4.2
    bs.voc_empty = 3.0
    bs.soc_setpoint = 80
    assert bs.dynamic_soc is False and bs.capacity_limit == 2 and bs.current_limit == 1
    assert (bs.voc_full, bs.voc_empty, bs.soc_setpoint) == (4.2, 3.0, 80)
    assert bs.voc_setpoint == 4.0 and bs.current_capacity == 1.6
    bs.output_enabled = True
    assert bs.output_enabled is True
    bs.voc_setpoint = 3.85  # Voc moves the SOC through the model, while it runs
    assert bs.soc_setpoint == 60
    k2281s.start_buffer()
    data = k2281s.buffer_data
    assert list(data["soc"]) == [60] and abs(data["current"][0] - 0.05) < 1e-6
    assert k2281s.check_errors() == []
    bs.capacity_limit = 5  # refused while the model runs: the instrument's own 704
    assert [int(code) for code, _ in k2281s.check_errors()] == [704]
    bs.output_enabled = False


def test_2281s_battery_test_settings(k2281s: Keithley2281S) -> None:
    k2281s.function_mode = "TEST"
    bt = k2281s.bt
    bt.charge_voltage_setpoint = 4.1
    bt.charge_voltage_limit = 4.2
    bt.charge_current_limit = 0.5
    bt.termination_current = 0.01
    assert (bt.charge_voltage_setpoint, bt.charge_voltage_limit) == (4.1, 4.2)
    assert (bt.charge_current_limit, bt.termination_current) == (0.5, 0.01)
    assert k2281s.check_errors() == []


@pytest.fixture
def daq(ports: dict[str, int]) -> Iterator[KeithleyDAQ6510]:
    inst = KeithleyDAQ6510(**socket_resource(ports, "keithley_daq6510"))
    inst.reset()
    inst.clear()
    yield inst
    inst.adapter.close()


def test_daq6510_flow(daq: KeithleyDAQ6510) -> None:
    assert daq.id.startswith("KEITHLEY INSTRUMENTS,MODEL DAQ6510")
    daq.measure_voltage(nplc=1, voltage=100, auto_range=False)  # runs check_errors() itself
    assert daq.voltage_range == 100 and daq.voltage_nplc == 1
    daq.close_channel(101)
    assert abs(daq.voltage + 10.6032) < 0.001  # the DUT's sensor on the card's channel 101
    daq.open_channels([101, 102])
    daq.close_channels([103])
    assert abs(daq.voltage + 10.6032) < 0.001
    daq.measure_voltage()
    daq.measure_current(nplc=2)
    assert abs(daq.current) < 1e-6 and daq.current_nplc == 2
    daq.measure_resistance()
    assert daq.resistance == 9.9e37  # nothing resistive is wired: an open input overflows
    daq.offset_compensated = "ON"
    assert daq.offset_compensated == "ON"
    daq.beep(440, 0.1)
    assert daq.check_errors() == []


@pytest.mark.parametrize("transport", [hislip_resource, socket_resource])
def test_34461a_through_the_34410a_driver(ports: dict[str, int], transport: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pymeasure: "SCPI support unknown"
        dmm = Agilent34410A(**transport(ports, "keysight_34461a"))
    try:
        dmm.reset()
        dmm.clear()
        assert dmm.id.startswith("Keysight Technologies,34461A")
        assert abs(dmm.voltage_dc) < 0.001  # its input is supply2, which is off
        assert abs(dmm.voltage_ac) < 0.001 and abs(dmm.current_dc) < 1e-6
        assert abs(dmm.current_ac) < 1e-6
        assert dmm.resistance == 9.9e37 and dmm.resistance_4w == 9.9e37
        assert dmm.check_errors() == []
        dmm.write("CONF:VOLT:DC 10")
        dmm.write("INIT")
        assert len(dmm.values("FETC?")) == 1
        assert dmm.values("CONF?") == ['"VOLT +1.00000000E+01', '+3.00000000E-06"']
        assert dmm.check_errors() == []
    finally:
        dmm.adapter.close()
