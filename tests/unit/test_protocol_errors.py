"""Every class of protocol error names the file, the line, the step and what is wrong."""

from __future__ import annotations

import pickle

import pytest

from controller.protocol import ProtocolError, load_protocol, parse_protocol

HEAD = "cell: {preset: si-nmc811-full, capacity: 0.033 mAh}\nsteps:\n"  # steps start on line 3


def error_of(text: str, source: str = "protocols/x.yaml") -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_protocol(text, source)
    err = info.value
    assert err.file == source and str(err).startswith(source)
    return err


STEP_ERRORS = [
    # (steps, line, step, fragment of the reason)
    ("- Charge at C/3 until 4.3 Q", 3, "Charge at C/3 until 4.3 Q", "unknown unit 'Q'"),
    ("- Charge at 1 uA until 5 V", 3, "Charge at 1 uA until 5 V",
     "can never be met: 5 V is above the safety window"),
    ("- Rest for 1 s\n- Charge at 1 uA until V < 3 V", 4, "Charge at 1 uA until V < 3 V",
     "rises while charging"),
    ("- Discharge at 1 uA until V > 3 V", 3, "Discharge at 1 uA until V > 3 V",
     "falls while discharging"),
    ("- Hold at 5 V for 1 h", 3, "Hold at 5 V for 1 h", "outside the safety window"),
    ("- Rest for 0 s", 3, "Rest for 0 s", "must be positive"),
    ("- Rest for -1 minute", 3, "Rest for -1 minute", "must be positive"),
    ("- Charge at C/3 until 4.3 V\n- {do: Rest for 1 s, on: {time: goto nowhere}}", 4,
     "Rest for 1 s", "goto 'nowhere': no step has that label"),
    ("- {do: Rest for 1 s, label: a}\n- {do: Rest for 2 s, label: a}", 4, "Rest for 2 s",
     "duplicate label 'a' (first used on line 3)"),
    ("- {do: Charge at C/3 until 4.3 V, on: {30 minutes: next}}", 3,
     "Charge at C/3 until 4.3 V", "'on' key '30 minutes' matches none of its limits"),
    ("- {do: Charge at C/3 until 4.3 V, on: {4.3 V: next, voltage: stop}}", 3,
     "Charge at C/3 until 4.3 V", "names the limit '4.3 V' twice"),
    ("- Charge at C/3", 3, "Charge at C/3", "never ends"),
    ("- Jump at 3 V for 1 s", 3, "Jump at 3 V for 1 s", "unknown step 'Jump at 3 V'"),
    ("- Charge at 4.2 V for 1 h", 3, "Charge at 4.2 V for 1 h", "use 'Hold at 4.2 V'"),
    ("- Charge at 0 mA for 1 h", 3, "Charge at 0 mA for 1 h", "must be positive"),
    ("- Discharge at -1 mA for 1 h", 3, "Discharge at -1 mA for 1 h", "must be positive"),
    ("- Charge at 1 W for 1 h", 3, "Charge at 1 W for 1 h", "power (W)"),
    ("- Charge at 1 uA until C/10", 3, "Charge at 1 uA until C/10", "current is fixed"),
    ("- Hold at 4 V until 4.1 V", 3, "Hold at 4 V until 4.1 V", "voltage is held constant"),
    ("- Hold at 4 V until dV/dt < 1 mV/min", 3, "Hold at 4 V until dV/dt < 1 mV/min",
     "dV/dt can never change"),
    ("- Rest until dI/dt < 1 uA/min", 3, "Rest until dI/dt < 1 uA/min", "dI/dt can never change"),
    ("- Rest until 3 V", 3, "Rest until 3 V", "needs a direction"),
    ("- Rest until 2 scans", 3, "Rest until 2 scans", "scan count is a loop or schedule"),
    ("- Rest until dV/dt 1 mV/min", 3, "Rest until dV/dt 1 mV/min", "needs '<'"),
    ("- Rest until dV/dt < 1 mV/min over 2 s", 3, "Rest until dV/dt < 1 mV/min over 2 s",
     "slope window"),
    ("- Charge at 1 uA until 1 Ah", 3, "Charge at 1 uA until 1 Ah", "max_charge"),
    ("- Charge at 1 uA for 30 days", 3, "Charge at 1 uA for 30 days", "max_duration"),
    ("- Charge at 1 A for 1 s", 3, "Charge at 1 A for 1 s", "exceeds the safety max_current"),
    ("- Charge at 3C for 1 s", 3, "Charge at 3C for 1 s", "exceeds the safety max_current"),
    ("- Rest until", 3, "Rest until", "'until' must be followed"),
    ("- {do: Rest for 1 s, on: {time: repeat}}", 3, "Rest for 1 s", "only 'scan then repeat'"),
    ("- {do: Rest for 1 s, on: {time: jump}}", 3, "Rest for 1 s", "unknown action 'jump'"),
    ("- 1 noise scan", 3, "1 noise scan", "at least 2 scans"),
    ("- {do: scan, on: {time: next}}", 3, "scan", "applies to cycling steps"),
    ("- {do: Rest for 1 s, label: next}", 3, "Rest for 1 s", "reserved word"),
    ("- {do: Rest for 1 s, on_failure: stop}", 3, "Rest for 1 s", "scan steps only"),
    ("- {do: scan, scan: {projections: 100, interlaced: 3}}", 3, "scan",
     "cannot be split into 3"),
    ("- {do: scan, scan: {projectons: 100}}", 3, "scan", "did you mean 'projections'"),
    ("- {do: scan, scan: {range: 400}}", 3, "scan", "(0, 360]"),
    ("- {do: Rest for 1 s, radiography: every 0 s}", 3, "Rest for 1 s", "must be positive"),
    ("- {do: scan, label: pristine, colour: red}", 3, "scan", "unknown key 'colour'"),
]


@pytest.mark.parametrize("steps, line, step, fragment", STEP_ERRORS)
def test_step_errors_name_file_line_step(steps: str, line: int, step: str, fragment: str) -> None:
    err = error_of(HEAD + steps)
    assert (err.line, err.step) == (line, step), str(err)
    assert fragment in err.reason, str(err)
    assert str(err) == f"protocols/x.yaml:{line}: step '{step}': {err.reason}"


def test_the_message_format_of_the_design() -> None:
    err = error_of(HEAD + "- Charge at C/3 until 4.3 Q")
    assert str(err) == ("protocols/x.yaml:3: step 'Charge at C/3 until 4.3 Q': unknown unit 'Q' "
                        "(expected V, mV, A, mA, uA, nA, C-rate, s, min, h, Ah, mAh, uAh)")


def test_missing_capacity_names_the_step() -> None:
    for step in ("Charge at C/3 until 4.3 V", "Hold at 4.2 V until C/10",
                 "Hold at 4.2 V until dI/dt < 0.05 C/h"):
        err = error_of(f"cell: {{preset: si-nmc811-full}}\nsteps:\n  - {step}\n")
        assert (err.line, err.step) == (3, step)
        assert "needs the cell's nominal capacity" in err.reason


LOOP = HEAD + "- loop:\n    label: L\n"


@pytest.mark.parametrize("body, line, step, fragment", [
    ("    steps: [Rest for 1 s]\n", 4, "loop L", "never ends"),
    ("    until: 2 scans\n    steps: [Rest for 1 s]\n", 4, "loop L", "nothing in it scans"),
    ("    until: 3 V\n    steps: [Rest for 1 s]\n", 5, "loop L", "needs a direction"),
    ("    count: 0\n    steps: [Rest for 1 s]\n", 5, "loop L", "between 1 and"),
    ("    count: 2\n    on: {3 scans: next}\n    steps: [Rest for 1 s]\n", 6, "loop L",
     "has no 'until'"),
    ("    until: 2 scans\n    on: {2 scans: scan then repeat}\n    steps: [scan]\n", 6,
     "loop L", "applies to a step"),
    ("    count: 2\n    steps: []\n", 6, None, "non-empty list"),
    ("    count: 2\n    steps:\n      - {do: Rest for 1 s, label: inner}\n"
     "- {do: Rest for 1 s, on: {time: goto inner}}\n", 8, "Rest for 1 s", "jumps into a loop"),
    ("    until: 2 scans\n    on: {2 scans: goto inner}\n    steps:\n"
     "      - {do: scan, label: inner}\n", 4, "loop L", "jumps into a loop"),
])
def test_loop_errors(body: str, line: int, step: str | None, fragment: str) -> None:
    err = error_of(LOOP + body)
    assert (err.line, err.step) == (line, step), str(err)
    assert fragment in err.reason, str(err)


@pytest.mark.parametrize("text, line, fragment", [
    (HEAD + "- schedule: every 15 minutes\n  steps: [Rest]\n", 3, "a schedule reads"),
    (HEAD + "- schedule: scan every 15 minutes, then every 30 minutes\n  steps: [Rest for 1 h]\n",
     3, "only the last schedule segment"),
    (HEAD + "- schedule: scan every 15 minutes for 0 s\n  steps: [Rest for 1 h]\n", 3,
     "must be positive"),
    (HEAD + "- schedule: scan every 1 h\n  steps:\n    - schedule: scan every 1 h\n"
     "      steps: [Rest for 1 h]\n", 5, "cannot be nested"),
    (HEAD + "- schedule: scan every 0.5 s\n  steps: [Rest for 1 h]\n", 3, "shorter than the poll"),
])
def test_schedule_errors(text: str, line: int, fragment: str) -> None:
    err = error_of(text)
    assert err.line == line and fragment in err.reason, str(err)


@pytest.mark.parametrize("text, line, fragment", [
    ("cell: {preset: si-nmc811-full}\nstpes: [Rest for 1 s]\n", 2, "did you mean 'steps'"),
    ("cell: {preset: si-lithium}\nsteps: [Rest for 1 s]\n", 1, "unknown cell preset"),
    ("cell: {preset: si-li-half, capacity: 1 mAh, active_mass: 1 mg}\nsteps: [Rest for 1 s]\n",
     1, "either 'capacity'"),
    ("cell: {capacity: 1 mAh}\nsteps: [Rest for 1 s]\n", 1,
     "safety.voltage [min, max] is required"),
    ("cell: {preset: si-li-half}\nsafety: {voltage: [2 V, 1 V]}\nsteps: [Rest for 1 s]\n", 2,
     "minimum must be below"),
    ("cell: {preset: si-li-half}\nsafety: {voltage: 2 V}\nsteps: [Rest for 1 s]\n", 2,
     "list [min, max]"),
    ("cell: {preset: si-li-half}\nsafety: {debounce: 5 min}\nsteps: [Rest for 1 s]\n", 2,
     "debounce longer"),
    ("cell: {capacity: 1 mAh}\nsafety: {voltage: [2 V, 4 V]}\nsteps: [Hold at 3 V for 1 h]\n",
     None, None),  # valid: 2C from the capacity
    ("safety: {voltage: [2 V, 4 V]}\nsteps: [Hold at 3 V for 1 h]\n", 1, "max_current is required"),
    ("cell: {preset: si-li-half}\npoll_period: 0 s\nsteps: [Rest for 1 s]\n", 2,
     "must be positive"),
    ("cell: {preset: si-li-half}\ncapacity: 1 mAh\nsteps: [Rest for 1 s]\n", 2, "unknown key"),
    ("cell: {preset: si-li-half, capacity: 0.033}\nsteps: [Rest for 1 s]\n", 1, "needs a unit"),
    ("cell: {preset: si-li-half}\nsteps: Rest for 1 s\n", 2, "non-empty list"),
    ("cell: {preset: si-li-half}\n", 1, "needs a non-empty 'steps'"),
    ("cell: {preset: si-li-half}\nsteps:\n  - 42\n", 3, "a step must be a string"),
    ("cell: {preset: si-li-half}\nsteps:\n  - {label: x}\n", 3, "needs 'do', 'loop'"),
    ("cell: {preset: si-li-half}\nsteps:\n  - Rest for 1 s\nsteps: []\n", 4, "duplicate key"),
    ("cell: {preset: si-li-half}\nsteps:\n  - Rest for 1 s\n  - {do: scan\n", 5,
     "YAML syntax error"),
    ("cell: {preset: si-li-half}\nsteps:\n  - Rest for 1 s\n   - scan\n", 3, "unknown unit"),
    ("cell: {preset: si-li-half}\nname: 'a b'\nsteps: [Rest for 1 s]\n", 2, "must be a word"),
    ("cell: {preset: si-li-half}\non_scan_failure: retry\nsteps: [Rest for 1 s]\n", 2,
     "'continue' or 'stop'"),
    ("cell: {preset: si-li-half}\nscan_retries: true\nsteps: [Rest for 1 s]\n", 2,
     "whole number"),
    ("cell: {preset: si-li-half}\nscan: {flats_at_end: 1}\nsteps: [Rest for 1 s]\n", 2,
     "true or false"),
    ("- Rest for 1 s\n", 1, "must be a mapping"),
    ("", 1, "empty"),
])
def test_document_errors(text: str, line: int | None, fragment: str | None) -> None:
    if fragment is None:
        parse_protocol(text)
        return
    err = error_of(text)
    assert err.line == line and fragment in err.reason, str(err)


def test_user_extension_keys_are_ignored() -> None:
    p = parse_protocol("x-operator: Ada\ncell: {preset: si-li-half}\nsteps: [Rest for 1 s]\n")
    assert p.steps[0].duration_s == 1.0


def test_load_protocol_reports_unreadable_files(tmp_path) -> None:
    missing = tmp_path / "none.yaml"
    with pytest.raises(ProtocolError, match="cannot read"):
        load_protocol(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ProtocolError) as info:
        load_protocol(bad)
    assert info.value.file == str(bad)


def test_error_survives_pickling() -> None:
    err = error_of(HEAD + "- Charge at C/3 until 4.3 Q")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.file, copy.line, copy.step, str(copy)) == (err.file, err.line, err.step, str(err))
    assert isinstance(copy, ValueError)
