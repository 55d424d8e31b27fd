"""Vendor drivers, by the name a bench config gives, for each kind of net they can serve."""
from __future__ import annotations

from ..protocols import Driver
from .keithley_2281s import Keithley2281SBattery, Keithley2281SSupply
from .meters import KeithleyDAQ6510Input, Keysight34461AInput
from .rigol_dp821 import RigolDP821Supply

DRIVERS: dict[str, dict[str, type[Driver]]] = {
    "keithley_2281s": {"PowerSupply": Keithley2281SSupply, "Battery": Keithley2281SBattery},
    "rigol_dp821": {"PowerSupply": RigolDP821Supply},
    "keithley_daq6510": {"ADC": KeithleyDAQ6510Input},
    "keysight_34461a": {"ADC": Keysight34461AInput},
}
