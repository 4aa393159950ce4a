"""Each step form of the protocol language parses into the model with SI values."""

from __future__ import annotations

import textwrap

import pytest

from controller.protocol import (Action, CycleStep, Loop, Protocol, ProtocolError, ScanStep,
                                 ScheduledBlock, describe_protocol, parse_protocol,
                                 stability_slope)

CAP = 0.033e-3  # Ah


def make(steps: str, header: str = "") -> Protocol:
    """A protocol around ``steps`` (YAML list items, indented by two spaces)."""
    head = header or "cell: {preset: si-nmc811-full, capacity: 0.033 mAh}\n"
    return parse_protocol(head + "steps:\n" + textwrap.indent(textwrap.dedent(steps), "  "),
                          "test.yaml")


def one(step: str, header: str = "") -> CycleStep:
    node = make(f"- {step}\n", header).steps[0]
    assert isinstance(node, CycleStep)
    return node


def test_pybamm_strings() -> None:
    cc = one("Charge at C/3 until 4.3 V")
    assert (cc.kind, cc.control) == ("charge", "current")
    assert cc.setpoint == pytest.approx(CAP / 3)
    assert cc.c_rate == pytest.approx(1 / 3)
    (lim,) = cc.limits
    assert (lim.kind, lim.op, lim.value, lim.action) == ("voltage", ">", 4.3, Action("next"))

    dis = one("Discharge at 0.04 mA until 3.0 V")
    assert dis.setpoint == pytest.approx(-4e-5)  # positive current charges the cell
    assert (dis.limits[0].op, dis.limits[0].value) == ("<", 3.0)

    cv = one("Hold at 4.3 V until C/10")
    assert (cv.control, cv.setpoint) == ("voltage", 4.3)
    assert (cv.limits[0].kind, cv.limits[0].op) == ("current", "<")
    assert cv.limits[0].value == pytest.approx(CAP / 10)

    rest = one("Rest for 1 minute")
    assert (rest.kind, rest.control, rest.setpoint, rest.duration_s) == ("rest", "ocv", 0.0, 60.0)

    timed = one("Charge at 1 uA for 2 hours")
    assert timed.duration_s == 7200.0 and timed.setpoint == pytest.approx(1e-6)


def test_case_and_whitespace_do_not_matter() -> None:
    step = one("  cHaRgE   AT c/3   UNTIL 4.3v  ")
    assert step.setpoint == pytest.approx(CAP / 3) and step.limits[0].value == 4.3


def test_for_or_until_and_or_ed_limits() -> None:
    step = one("Discharge at C/8 for 30 minutes or until 2.6 V")
    assert [(lim.kind, lim.value) for lim in step.limits] == [("time", 1800.0), ("voltage", 2.6)]
    step = one("Charge at C/3 until 4.3 V or 30 minutes or 0.01 mAh")
    assert [lim.kind for lim in step.limits] == ["voltage", "time", "charge"]
    assert step.limits[2].value == pytest.approx(1e-5)
    assert step.duration_s == 1800.0


def test_explicit_comparisons() -> None:
    step = one("Charge at C/3 until V > 4.3 V")
    assert (step.limits[0].op, step.limits[0].value) == (">", 4.3)
    step = one("Hold at 4.3 V until |I| < C/10 or I > 2C")
    assert [(lim.kind, lim.op) for lim in step.limits] == [("current", "<"), ("current", ">")]
    step = one("Rest until V < 3.5 V or > 4.0 V or t > 1 h")
    assert [(lim.kind, lim.op, lim.value) for lim in step.limits] == [
        ("voltage", "<", 3.5), ("voltage", ">", 4.0), ("time", ">", 3600.0)]


def test_stability_limits() -> None:
    rest = one("Rest until dV/dt < 1 mV/min")
    (lim,) = rest.limits
    assert (lim.kind, lim.op, lim.window_s) == ("dvdt", "<", 300.0)
    assert lim.value == pytest.approx(1e-3 / 60)
    hold = one("Hold at 4.2 V until |dI/dt| < 0.01 C/h over 10 minutes")
    assert (hold.limits[0].kind, hold.limits[0].window_s) == ("didt", 600.0)
    assert hold.limits[0].value == pytest.approx(0.01 * CAP / 3600)


def test_stability_slope_helper() -> None:
    times = [0.0, 1.0, 2.0, 3.0]
    assert stability_slope(times, [1.0, 1.5, 2.0, 2.5]) == pytest.approx(0.5)
    assert stability_slope([0.0], [1.0]) != stability_slope([0.0], [1.0])  # NaN: too few


def test_pybamm_period_suffix_and_radiography() -> None:
    half = "cell: {preset: si-li-half, capacity: 2.4 mAh}\n"
    step = one("Discharge at 0.07 mA for 18 hours or until 0.01 V (10 seconds period)", half)
    assert step.poll_period_s == 10.0 and step.duration_s == 18 * 3600
    step = one("Discharge at 0.07 mA until 0.01 V with radiography every 5 minutes", half)
    assert step.radiography_period_s == 300.0
    step = one("{do: Charge at 0.015 mA for 6.5 hours, radiography: every 5 minutes}", half)
    assert step.radiography_period_s == 300.0 and step.duration_s == 6.5 * 3600


def test_actions_and_labels() -> None:
    p = make("""
    - do: Charge at C/3 until 4.3 V or 30 minutes
      label: cc
      on: {30 minutes: scan then repeat, 4.3 V: next}
    - do: Hold at 4.3 V until C/10 or 30 min
      on: {C/10: goto cc, time: scan then stop}
    - {do: Rest for 1 min, on: {for 1 minute: scan then goto cc}}
    - {do: Rest for 2 min, on: {time: stop}}
    """)
    cc, cv, rest, rest2 = p.steps
    assert cc.label == "cc" and p.find("cc") == (0,)
    assert [str(lim.action) for lim in cc.limits] == ["next", "scan then repeat"]
    assert cv.limits[0].action == Action("goto", False, "cc")
    assert cv.limits[1].action == Action("stop", True)
    assert rest.limits[0].action == Action("goto", True, "cc")
    assert rest2.limits[0].action == Action("stop")


def test_scan_steps() -> None:
    p = make("""
    - scan
    - scan pristine
    - noise scan
    - 3 noise scans
    - {do: scan, label: t0, ocv_rest: 30 s, scan: {projections: 100, range: 360 deg,
       exposure: 20 ms, darks: 1, flats: 2, flats_at_end: true, interlaced: 4}}
    """)
    s1, s2, s3, s4, s5 = p.steps
    assert isinstance(s1, ScanStep) and (s1.count, s1.noise, s1.ocv_rest_s) == (1, False, 60.0)
    assert s1.scan == p.scan and s2.label == "pristine"
    assert (s3.count, s3.noise) == (2, True) and (s4.count, s4.noise) == (3, True)
    assert s5.ocv_rest_s == 30.0 and s5.label == "t0"
    st = s5.scan
    assert (st.projections, st.range_deg, st.exposure_s, st.darks, st.flats) == (
        100, 360.0, 0.02, 1, 2)
    assert st.flats_at_end and st.interlaced == 4
    assert p.scan.projections == 1500  # overrides stay local to the step


def test_protocol_defaults_and_overrides() -> None:
    p = make("- scan\n", "cell: {preset: si-li-half}\npoll_period: 2 s\n"
             "ocv_before_scan: 5 minutes\nscan: {projections: 2505, range: 360, "
             "exposure: 20 ms, flats: 20, darks: 21}\n")
    assert (p.poll_period_s, p.ocv_before_scan_s) == (2.0, 300.0)
    assert p.steps[0].ocv_rest_s == 300.0 and p.steps[0].scan.projections == 2505
    assert p.capacity_Ah is None and p.name == "test"  # name defaults to the file's stem


def test_loop() -> None:
    p = make("""
    - loop:
        label: charge
        count: 10
        until: 6 scans or |I| < C/50 or V > 4.25 V or 5 hours
        on: {6 scans: scan then next}
        steps:
          - Charge at C/3 until 4.3 V or 30 minutes
          - scan
    """)
    (loop,) = p.steps
    assert isinstance(loop, Loop) and loop.count == 10 and loop.label == "charge"
    assert [(u.kind, u.op) for u in loop.until] == [
        ("scans", ">"), ("current", "<"), ("voltage", ">"), ("time", ">")]
    assert loop.until[0].value == 6 and loop.until[0].action == Action("next", True)
    assert loop.until[1].value == pytest.approx(CAP / 50)
    assert p.at((0, 1)) is loop.steps[1]
    assert [path for path, _ in p.walk()] == [(0,), (0, 0), (0, 1)]


def test_count_only_loop_and_nesting() -> None:
    p = make("""
    - loop:
        count: 3
        steps:
          - loop: {count: 2, steps: [Rest for 1 s]}
          - Rest for 2 s
    """)
    outer = p.steps[0]
    assert outer.count == 3 and outer.until == () and outer.steps[0].count == 2


def test_schedule() -> None:
    p = make("""
    - schedule: scan every 15 minutes for 45 minutes, then every 30 minutes
      steps:
        - Discharge at C/8 until 2.6 V
        - Rest for 10 seconds
    """)
    (block,) = p.steps
    assert isinstance(block, ScheduledBlock)
    assert [(s.period_s, s.start_s, s.end_s) for s in block.segments] == [
        (900.0, 0.0, 2700.0), (1800.0, 2700.0, None)]
    minutes = [t / 60 for t in block.scan_times(3 * 3600)]
    assert minutes == [15, 30, 45, 75, 105, 135, 165]
    assert block.next_scan_time(0) == 900 and block.next_scan_time(2700) == 4500
    assert block.next_scan_time(2699) == 2700


def test_schedule_until_and_closed_end() -> None:
    p = make("""
    - schedule: scan every 10 min until 30 min; every 1 h for 2 h
      until: 20 scans or 10 hours
      steps: [Rest]
    """)
    block = p.steps[0]
    assert [t / 60 for t in block.scan_times(1e6)] == [10, 20, 30, 90, 150]
    assert block.next_scan_time(150 * 60) is None
    assert [u.kind for u in block.until] == ["scans", "time"]
    assert block.steps[0].limits == ()  # ended by the block's 'until'


def test_safety_defaults_and_explicit() -> None:
    p = make("- Charge at C/3 for 1 h\n")
    s = p.safety
    assert (s.v_min, s.v_max) == (0.0, 4.4)
    assert s.i_max == pytest.approx(2 * CAP) and s.q_max == pytest.approx(1.5 * CAP)
    assert s.t_max == 7 * 86400 and s.debounce_s == 2.0 and s.comm_timeout_s == 10.0
    p = make("- Charge at 1 mA for 1 h\n", "cell: {preset: si-li-half}\nsafety: {voltage: "
             "[0.1 V, 2 V], max_current: 2 mA, max_charge: 1 mAh, max_duration: 2 days, "
             "debounce: 0 s, comm_timeout: 30 s}\n")
    s = p.safety
    assert (s.v_min, s.v_max, s.i_max, s.q_max, s.t_max, s.debounce_s, s.comm_timeout_s) == (
        0.1, 2.0, pytest.approx(2e-3), pytest.approx(1e-3), 172800.0, 0.0, 30.0)
    assert s.violation(1.0, 1e-3, 0.0, 10.0) is None
    assert "above" in s.violation(2.5, 0.0, 0.0, 0.0)
    assert "current" in s.violation(1.0, -3e-3, 0.0, 0.0)
    assert s.violation(float("nan"), 0.0, 0.0, 0.0) is not None


def test_safety_current_default_without_capacity() -> None:
    p = make("- Discharge at 0.04 mA until 0.1 V\n", "cell: {preset: si-li-half}\n")
    assert p.safety.i_max == pytest.approx(1.5 * 4e-5) and p.safety.q_max is None


def test_capacity_from_specific_capacity() -> None:
    p = make("- Charge at C/8 for 1 h\n", "cell: {preset: si-li-half, specific_capacity: "
             "3579 mAh/g, active_mass: 0.13 mg}\n")
    assert p.capacity_Ah == pytest.approx(3.579 * 0.13e-3)


def test_describe_mentions_everything() -> None:
    p = make("""
    - {do: scan, label: t0}
    - loop:
        until: 6 scans
        steps:
          - {do: Charge at C/3 until 4.3 V or 30 minutes, on: {30 minutes: scan then repeat}}
    """)
    text = describe_protocol(p)
    for fragment in ("1. scan [t0]", "2. loop", "scans >= 6", "2.1 charge at 11 uA (C/3)",
                     "V >= 4.3 V -> next", "t >= 30 min -> scan then repeat", "safety:",
                     "0 V <= V <= 4.4 V", "positive current charges"):
        assert fragment in text, fragment


def test_loop_conditions_skip_the_controlled_quantity() -> None:
    p = make("""
    - loop:
        until: 3 scans or |I| < C/50 or V > 4.2 V or dV/dt < 1 mV/min or 2 hours
        steps: [scan, Rest for 1 s]
    """)
    scans, current, volts, dvdt, time = p.steps[0].until
    assert not scans.polled_during("current")
    assert current.polled_during("voltage") and not current.polled_during("current")
    assert not current.polled_during("ocv")
    assert volts.polled_during("current") and volts.polled_during("ocv")
    assert not volts.polled_during("voltage") and not dvdt.polled_during("voltage")
    assert all(time.polled_during(c) for c in ("current", "voltage", "ocv"))


def test_unlimited_steps_need_an_outer_limit_that_can_end_them() -> None:
    ok = make("- loop: {until: V > 4.2 V, steps: [Charge at C/3]}\n")
    assert ok.steps[0].steps[0].limits == ()
    for body in ("- loop: {until: V > 4.2 V, count: 2, steps: [Hold at 4.1 V]}\n",
                 "- loop: {until: 2 scans, count: 2, steps: [scan, Rest]}\n"):
        with pytest.raises(ProtocolError, match="never ends"):
            make(body)
    scheduled = make("- schedule: scan every 1 h\n  until: 2 scans\n  steps: [Rest]\n")
    assert scheduled.steps[0].steps[0].limits == ()
