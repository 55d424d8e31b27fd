"""The ADC kind's declaration (`lager adc NET`). Import-light (see spec.py): the Net API and its
drivers are in adc.py, by name here."""
from __future__ import annotations

from .spec import Kind, Verb

KIND = Kind(
    name="adc", net_type="ADC", summary="ADC net (a voltage input)",
    net_api="lager.bench.kinds.adc:ADCNet", default_verb="read",
    verbs=(Verb("read", "read the input's voltage (V)"),),
    drivers={"keithley_daq6510": "lager.bench.drivers.meters:KeithleyDAQ6510Input",
             "keysight_34461a": "lager.bench.drivers.meters:Keysight34461AInput"},
    snapshot=lambda net: net.read_state().as_dict(),
    line=lambda s: f"{s['net']}: {s['voltage']:.4f} V",
)
