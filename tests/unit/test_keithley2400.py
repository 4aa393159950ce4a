"""The Keithley 2400 driver against the simulated 2400 on a pty.

Every line the driver sends is checked against the command syntax of the 2400 User's Manual
(SCPI command reference: short or long mnemonics, bracketed nodes optional), written out here
independently of the simulator's parser; the error paths (instrument errors, silence, line
noise, over-range values, a pulled cable) each end in the documented exception.
"""

from __future__ import annotations

import re
import threading

import pytest

from devices.keithley2400 import Keithley2400Backend
from devices.potentiostat import Command, CommunicationError, InstrumentReportedError
from sim.presets import build_scene, get_beamline_preset
from sim.scpi_server import SimSCPIInstrument

pytestmark = pytest.mark.timeout(60)

_NUM = r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?"
_ELEM = r"(VOLT|CURR|RES|TIME|STAT)"
#: The documented subset (2400 manual, SCPI reference); numbers checked separately for range.
DOCUMENTED = {
    "*RST": r"\*RST",
    "*IDN?": r"\*IDN\?",
    "*CLS": r"\*CLS",
    ":SYST:ERR?": r":SYST(EM)?:ERR(OR)?(:NEXT)?\?",
    ":SOUR:FUNC": r":SOUR(CE)?:FUNC(TION)?(:MODE)? (CURR(ENT)?|VOLT(AGE)?)",
    ":SOUR:CURR:LEV": rf":SOUR(CE)?:CURR(ENT)?(:LEV(EL)?)?(:IMM(EDIATE)?)?(:AMPL(ITUDE)?)? (?P<amps>{_NUM})",
    ":SOUR:VOLT:LEV": rf":SOUR(CE)?:VOLT(AGE)?(:LEV(EL)?)?(:IMM(EDIATE)?)?(:AMPL(ITUDE)?)? (?P<volts>{_NUM})",
    ":SENS:FUNC": r":SENS(E)?:FUNC(TION)?(:ON)? (\"(VOLT|CURR)(:DC)?\"|'(VOLT|CURR)(:DC)?')",
    ":SENS:VOLT:PROT": rf":SENS(E)?:VOLT(AGE)?(:DC)?:PROT(ECTION)?(:LEV(EL)?)? (?P<vprot>{_NUM})",
    ":SENS:CURR:PROT": rf":SENS(E)?:CURR(ENT)?(:DC)?:PROT(ECTION)?(:LEV(EL)?)? (?P<iprot>{_NUM})",
    ":SENS:VOLT:PROT:TRIP?": r":SENS(E)?:VOLT(AGE)?(:DC)?:PROT(ECTION)?:TRIP(PED)?\?",
    ":FORM:ELEM": rf":FORM(AT)?:ELEM(ENTS)?(:SENS(E)?1?)? {_ELEM}(,{_ELEM})*",
    ":OUTP": r":OUTP(UT)?(:STAT(E)?)? (ON|OFF|1|0)",
    ":OUTP?": r":OUTP(UT)?(:STAT(E)?)?\?",
    ":OUTP:SMOD": r":OUTP(UT)?:SMOD(E)? (HIMP|NORM(AL)?|ZERO|GUAR(D)?)",
    ":READ?": r":READ\?",
}
#: 2400 source and compliance ranges (manual, specifications): 21 V / 1.05 A ranges,
#: compliance up to 210 V / 1.05 A.
_RANGES = {"amps": 1.05, "volts": 21.0, "vprot": 210.0, "iprot": 1.05}


def documented(line: str) -> str:
    """The documented command ``line`` is an instance of (raises AssertionError otherwise)."""
    for name, pattern in DOCUMENTED.items():
        match = re.fullmatch(pattern, line)
        if match:
            for key, value in match.groupdict().items():
                if value is not None:
                    assert abs(float(value)) <= _RANGES[key], f"{line!r}: {key} out of the 2400's range"
            return name
    raise AssertionError(f"undocumented command sent: {line!r}")


@pytest.fixture(scope="module")
def scene():
    return build_scene(get_beamline_preset("quick"), seed=0, coarsen=2.0)


@pytest.fixture
def instrument(scene):
    inst = SimSCPIInstrument(scene).start()
    yield inst
    inst.close()


def driver(inst: SimSCPIInstrument, **kwargs) -> Keithley2400Backend:
    opts = {"timeout_s": 0.2, "retries": 1, "reconnect_attempts": 2, "reconnect_delay_s": 0.02,
            "safe_state_attempts": 200, **kwargs}
    backend = Keithley2400Backend(inst.port, clock=inst.smu.scene.clock, **opts)
    backend.connect()
    return backend


def test_every_command_sent_follows_the_documented_syntax(instrument):
    k = driver(instrument)
    k.identify()
    k.measure()  # at open circuit: a 0 A current source
    k.apply(Command.cc(20e-6, voltage_limit=4.4))
    k.measure()
    k.apply(Command.cc(-20e-6, voltage_limit=2.5))
    k.measure()
    k.apply(Command.cv(4.0, current_limit=50e-6))
    k.measure()
    k.apply(Command.ocv())
    k.measure()
    k.apply(Command.cc(1e-3, voltage_limit=0.5))  # the cell is above 0.5 V: compliance at once
    assert k.measure().compliance
    k.safe_state()
    k.close()
    used = {documented(line) for line in instrument.received}
    assert used == set(DOCUMENTED), f"not exercised: {set(DOCUMENTED) - used}"
    assert instrument.errors == []
    assert not instrument.smu.output_on


def test_the_modes_drive_the_cell_as_documented(instrument):
    k = driver(instrument)
    k.apply(Command.cc(33e-6, voltage_limit=4.4))
    m = k.measure()
    assert (m.mode, m.current, m.compliance) == ("cc", pytest.approx(33e-6), False)
    assert (instrument.smu.source, instrument.smu.voltage_compliance) == ("CURR", 4.4)
    k.apply(Command.cv(3.9, current_limit=40e-6))
    assert (instrument.smu.source, instrument.smu.voltage_level, instrument.smu.current_compliance) == \
        ("VOLT", 3.9, 40e-6)
    k.apply(Command.ocv())
    assert (instrument.smu.source, instrument.smu.current_level, instrument.smu.output_on) == ("CURR", 0.0, True)
    k.safe_state()
    assert not instrument.smu.output_on and instrument.output_off_mode == "HIMP"


def test_charge_is_integrated_on_the_experiment_clock(instrument):
    k = driver(instrument)
    clock = instrument.smu.scene.clock
    k.apply(Command.cc(10e-6, voltage_limit=4.4))
    q0 = k.measure().charge_Ah
    clock.sleep(1800.0)
    q1 = k.measure().charge_Ah
    assert q1 - q0 == pytest.approx(10e-6 * 0.5, rel=1e-9)  # 10 uA for half an hour
    k.safe_state()


@pytest.mark.parametrize("terminator, wire", [("CR", "\r"), ("CRLF", "\r\n"), ("LF", "\n")])
def test_configurable_line_terminator(scene, terminator, wire):
    with SimSCPIInstrument(scene, terminator=wire) as inst:
        k = driver(inst, terminator=terminator, baudrate=57600)
        assert k.identify().startswith("KEITHLEY INSTRUMENTS INC.,MODEL 2400")
        k.close()


def test_instrument_error_becomes_a_clear_exception(instrument):
    k = driver(instrument)
    instrument.arm("error", error_code=-222, error_message="Data out of range")
    instrument.faults.active = True
    with pytest.raises(InstrumentReportedError, match=r'-222,"Data out of range".*setting cc'):
        k.apply(Command.cc(1e-5, voltage_limit=4.4))


@pytest.mark.parametrize("fault, message", [("no_reply", "no reply within 0.2 s to :READ"),
                                            ("garble", "garbled reply")])
def test_silence_and_line_noise_are_communication_errors(instrument, fault, message):
    k = driver(instrument)
    k.apply(Command.cc(1e-5, voltage_limit=4.4))
    instrument.arm(fault)
    with pytest.raises(CommunicationError, match=message):
        k.measure()
    k.safe_state()  # write-only: still gets through
    assert not instrument.smu.output_on


def test_garbage_once_is_retried(instrument):
    k = driver(instrument, retries=2)
    k.apply(Command.cc(1e-5, voltage_limit=4.4))
    real_send, calls = instrument._send, {"n": 0}

    def garble_first(text: str) -> None:
        calls["n"] += 1
        instrument.faults.mode, instrument.faults.active = "garble", calls["n"] == 1
        real_send(text)

    instrument._send = garble_first  # type: ignore[method-assign]
    assert k.measure().current == pytest.approx(1e-5)
    assert calls["n"] == 2


def test_not_measured_value_is_an_error(instrument):
    k = driver(instrument)
    k.apply(Command.cc(1e-5, voltage_limit=4.4))
    instrument.arm("overrange")
    with pytest.raises(InstrumentReportedError, match=r"over range \(\+9.91e37\)"):
        k.measure()


def test_pulled_cable_reconnects_within_the_budget(instrument):
    k = driver(instrument, reconnect_attempts=50, reconnect_delay_s=0.02)
    k.apply(Command.cc(1e-5, voltage_limit=4.4))
    instrument.unplug()
    timer = threading.Timer(0.1, instrument.replug)
    timer.start()
    m = k.measure()
    timer.join()
    assert k.link == "connected" and m.current == pytest.approx(1e-5)
    assert instrument.smu.output_on  # the instrument kept sourcing through the pull


def test_pulled_cable_gives_up_then_safe_state_reaches_the_instrument(instrument):
    k = driver(instrument)
    k.apply(Command.cc(1e-5, voltage_limit=4.4))
    instrument.unplug()
    with pytest.raises(CommunicationError, match="disconnected.*gave up after 2 reconnect attempts"):
        k.measure()
    assert k.link == "lost"
    with pytest.raises(CommunicationError, match="line lost"):
        k.apply(Command.ocv())  # no more retries in the middle of a fault
    instrument.replug()
    k.safe_state()
    assert not instrument.smu.output_on and k.link == "connected"


def test_unreachable_port_names_the_port(tmp_path):
    from sim.clock import VirtualClock

    k = Keithley2400Backend(str(tmp_path / "no-such-port"), clock=VirtualClock(), timeout_s=0.1)
    with pytest.raises(CommunicationError, match="no-such-port: cannot open the port"):
        k.connect()
