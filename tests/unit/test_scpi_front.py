"""The simulated bench's SCPI front end (box_agent/simbench/scpi.py), without a socket: program
messages split on ';' (not inside quotes), headers in long and short form, numeric parameters
(NR1, NR2, NR3, units, MIN/MAX/DEF), and the error codes the manuals give. Hypothesis feeds it
generated messages: whatever comes in, the answer is a parsed unit or a ScpiError, never
another exception (which would drop the instrument's connection)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from box_agent.simbench.scpi import (
    CommandTable,
    Limits,
    Params,
    ScpiError,
    compile_pattern,
    mnemonic_forms,
    parse_number,
    parse_unit,
    split_params,
    split_units,
)


def _code(call: object, *args: object) -> int:
    with pytest.raises(ScpiError) as exc:
        call(*args)  # type: ignore[operator]
    return exc.value.code


# ---------------------------------------------------------------- program messages

@pytest.mark.parametrize(("message", "units"), [
    (":SOUR:VOLT 5;:MEAS:VOLT?", [":SOUR:VOLT 5", ":MEAS:VOLT?"]),
    ("*RST;*CLS;", ["*RST", "*CLS", ""]),
    (':DISP:TEXT "a;b";*OPC?', [':DISP:TEXT "a;b"', "*OPC?"]),
    (":DISP:TEXT 'it''s;here';X", [":DISP:TEXT 'it''s;here'", "X"]),
    (':DISP:TEXT "say ""hi;"" now";Y', [':DISP:TEXT "say ""hi;"" now"', "Y"]),
    (":ROUT:SCAN (@101:103,105);INIT", [":ROUT:SCAN (@101:103,105)", "INIT"]),
    ("", [""]),
])
def test_a_message_splits_into_units(message: str, units: list[str]) -> None:
    assert split_units(message) == units


@pytest.mark.parametrize(("raw", "header", "query", "common", "absolute", "params"), [
    (":MEASure:VOLTage?", "MEASURE:VOLTAGE", True, False, True, ""),
    ("meas:volt?", "MEAS:VOLT", True, False, False, ""),
    ("  :SOUR2:VOLT:LEV 5.0 V ", "SOUR2:VOLT:LEV", False, False, True, "5.0 V"),
    ("*IDN?", "IDN", True, True, False, ""),
    ("*rst", "RST", False, True, False, ""),
    (":OUTP CH1,ON", "OUTP", False, False, True, "CH1,ON"),
])
def test_a_unit_parses(raw: str, header: str, query: bool, common: bool, absolute: bool,
                       params: str) -> None:
    unit = parse_unit(raw)
    assert unit is not None
    assert (unit.header, unit.query, unit.common, unit.absolute, unit.params) == \
        (header, query, common, absolute, params)


def test_an_empty_unit_is_none() -> None:
    assert parse_unit("") is None and parse_unit("   ") is None


@pytest.mark.parametrize(("raw", "code"), [
    ("1VOLT 5", -102), ("*1", -102), ("*I-DN?", -113), (":VOLT::LEV 5", -113),
    ("VOLT?? 1", -113), ("?", -102),
])
def test_bad_headers(raw: str, code: int) -> None:
    assert _code(parse_unit, raw) == code


# ---------------------------------------------------------------- headers and the tree

def test_mnemonic_forms() -> None:
    assert mnemonic_forms("VOLTage") == ("VOLT", "VOLTAGE")
    assert mnemonic_forms("IMMediate") == ("IMM", "IMMEDIATE")
    assert mnemonic_forms("INIT") == ("INIT", "INIT")
    nodes = compile_pattern("[SOURce#]:VOLTage[:LEVel]")
    assert [(n.short, n.long, n.optional, n.suffix) for n in nodes] == [
        ("SOUR", "SOURCE", True, True), ("VOLT", "VOLTAGE", False, False),
        ("LEV", "LEVEL", True, False)]


@pytest.fixture
def table() -> CommandTable:
    table = CommandTable()
    table.add("[SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]")
    table.add("MEASure[:SCALar]:CURRent[:DC]")
    table.add("OUTPut#[:STATe]")
    return table


@pytest.mark.parametrize(("header", "pattern", "suffixes"), [
    ("VOLT", "[SOURce#]", (None,)),
    ("VOLTAGE", "[SOURce#]", (None,)),
    ("SOUR:VOLT:LEV:IMM:AMPL", "[SOURce#]", (None,)),
    ("SOURCE2:VOLTAGE:LEVEL", "[SOURce#]", (2,)),
    ("SOUR:VOLT:IMM", "[SOURce#]", (None,)),
    ("MEAS:CURR:DC", "MEASure", ()),
    ("MEASURE:SCALAR:CURRENT", "MEASure", ()),
    ("OUTP3:STAT", "OUTPut#", (3,)),
])
def test_long_and_short_forms_find_one_command(table: CommandTable, header: str, pattern: str,
                                               suffixes: tuple[int | None, ...]) -> None:
    found = table.find(header)
    assert found is not None
    command, got = found
    assert command.pattern.startswith(pattern) and got == suffixes


@pytest.mark.parametrize("header", [
    "VOLTA",  # neither the short nor the long form
    "SOURC:VOLT",
    "VOLT2",  # a suffix on a node that takes none
    "MEAS2:CURR",
    "VOLT:LEV:LEV",
    "MEAS:VOLT",
    "",
    "SOUR:",
])
def test_headers_that_name_nothing(table: CommandTable, header: str) -> None:
    assert table.find(header) is None


# ---------------------------------------------------------------- parameters

@pytest.mark.parametrize(("token", "unit", "value"), [
    ("5", "", 5.0), ("-2", "", -2.0), ("+7", "", 7.0),  # NR1
    ("5.25", "", 5.25), (".5", "", 0.5), ("3.", "", 3.0),  # NR2
    ("1.5E-3", "", 0.0015), ("2e2", "", 200.0), ("-1.25e+1", "", -12.5),  # NR3
    ("500mV", "V", 0.5), ("5 V", "V", 5.0), ("2KOHM", "OHM", 2000.0), ("10uA", "A", 1e-5),
    ("#H1F", "", 31.0), ("#b101", "", 5.0), ("#Q17", "", 15.0),
])
def test_numbers(token: str, unit: str, value: float) -> None:
    assert parse_number(token, unit) == pytest.approx(value)


@pytest.mark.parametrize(("token", "unit", "code"), [
    ("abc", "", -224), ("1e999", "", -123), ("5V", "", -138), ("5 A", "V", -131),
    ("#H1G", "", -121), ("#H", "", -121), ('"5"', "", -104), ("5..1", "", -121),
])
def test_bad_numbers(token: str, unit: str, code: int) -> None:
    assert _code(parse_number, token, unit) == code


LIMITS = Limits(low=0.0, high=30.0, default=1.0, unit="V")


@pytest.mark.parametrize(("token", "value"), [
    ("MIN", 0.0), ("minimum", 0.0), ("MAX", 30.0), ("Maximum", 30.0), ("DEF", 1.0),
    ("default", 1.0), ("12.5", 12.5), ("30", 30.0), ("300mV", 0.3),
])
def test_min_max_def(token: str, value: float) -> None:
    assert Params.parse(token).number(0, LIMITS) == pytest.approx(value)


def test_out_of_range_names_the_range() -> None:
    with pytest.raises(ScpiError) as exc:
        Params.parse("31").number(0, LIMITS)
    assert exc.value.code == -222 and "31 not in 0 to 30" in exc.value.text


def test_parameter_lists_and_strings() -> None:
    assert split_params('1, "a,b" ,CH2') == ["1", '"a,b"', "CH2"]
    assert split_params("(@101,102),5") == ["(@101,102)", "5"]
    assert split_params("") == []
    assert _code(split_params, '"open, 1') == -151
    assert _code(split_params, "(@101,102") == -102
    assert Params.parse('"say ""hi"""').string(0) == 'say "hi"'
    assert Params.parse("'it''s'").string(0) == "it's"
    assert Params.parse("CH1").string(0) == "CH1"


def test_booleans_choices_channels() -> None:
    assert [Params.parse(t).boolean(0) for t in ("ON", "off", "1", "0", "0.4", "2")] == \
        [True, False, True, False, False, True]
    assert _code(Params.parse("maybe").boolean, 0) == -224
    words = ("CURRent", "VOLTage")
    assert Params.parse("curr").choice(0, words) == "CURRENT"
    assert Params.parse("Voltage").choice(0, words) == "VOLTAGE"
    assert _code(Params.parse("5").choice, 0, words) == -104
    assert _code(Params.parse('"CURR"').choice, 0, words) == -104
    assert _code(Params.parse("POW").choice, 0, words) == -224
    assert Params.parse("(@101:103,105)").channels(0) == [101, 102, 103, 105]
    assert Params.parse("(@103:101)").channels(0) == [103, 102, 101]
    assert _code(Params.parse("(@1:5000)").channels, 0) == -222
    assert _code(Params.parse("101").channels, 0) == -104


def test_parameter_counts() -> None:
    Params.parse("1,2").expect(2)
    assert _code(Params.parse("1").expect, 2) == -109
    assert _code(Params.parse("1,,3").expect, 3) == -109
    assert _code(Params.parse("1,2,3").expect, 1, 2) == -108


# ---------------------------------------------------------------- generated input

_SCPI_TEXT = st.text(alphabet=st.sampled_from(list(":;*?,\"'()@#. -+eE") +
                                              list("VOLTmeasSOUR0123456789HBQ")) |
                     st.characters(), max_size=60)


@settings(max_examples=400, deadline=None)
@given(_SCPI_TEXT)
def test_any_message_parses_or_is_a_scpi_error(message: str) -> None:
    table = CommandTable()
    table.add("[SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]")
    for raw in split_units(message):
        try:
            unit = parse_unit(raw)
            if unit is None:
                continue
            table.find(unit.header)
            params = Params.parse(unit.params)
            for i in range(len(params)):
                if params.has(i):
                    params.number(i, LIMITS)
        except ScpiError as exc:
            assert str(exc).startswith(str(exc.code)) and exc.code < 0
