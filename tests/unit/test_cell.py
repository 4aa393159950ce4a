"""Unit tests for sim.cell: the equivalent-circuit cell behaves like the papers' cells."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.cell import (
    CELL_PRESETS,
    CellModel,
    CellParameters,
    CellState,
    get_preset,
    open_circuit_voltage,
)

HALF = get_preset("si-li-half")
FULL = get_preset("si-nmc811-full")
H = 3600.0


def run_until(cell: CellModel, done: Callable[[CellModel], bool], dt: float,
              limit_s: float) -> float:
    """Advance in steps of ``dt`` until ``done``; return the elapsed time (s)."""
    start = cell.time_s
    while not done(cell):
        assert cell.time_s - start < limit_s, f"not reached within {limit_s / H:.1f} h: {cell!r}"
        cell.advance(dt)
    return cell.time_s - start


def full_cell_at_cv_onset() -> CellModel:
    """Pristine full cell charged at C/3 until the terminal voltage reaches 4.3 V."""
    cell = CellModel(FULL)
    cell.set_current(FULL.current_at_c_rate(1 / 3))
    run_until(cell, lambda c: c.voltage >= 4.3, 1.0, 4 * H)
    return cell


# ------------------------------------------------------------------ presets
def test_preset_keys_and_capacities() -> None:
    assert set(CELL_PRESETS) == {"si-li-half", "si-li-half-deactivating", "si-nmc811-full", "si-nmc-cylindrical"}
    assert HALF.capacity_Ah == pytest.approx(0.9e-3 * 0.75 * 3.579)  # 000: ~2.4 mAh
    assert FULL.capacity_Ah == pytest.approx(3.5e-3 * math.pi * 0.055**2)  # 002: ~0.033 mAh
    assert (FULL.v_min, FULL.v_max) == (2.5, 4.3)
    for name, params in CELL_PRESETS.items():
        assert params.name == name and get_preset(name) is params


def test_unknown_preset_names_it_and_lists_valid_ones() -> None:
    with pytest.raises(ValueError) as err:
        get_preset("si-graphite")
    message = str(err.value)
    assert "'si-graphite'" in message
    assert "si-li-half" in message and "si-nmc811-full" in message


def test_invalid_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="capacity_Ah"):
        dataclasses.replace(FULL, capacity_Ah=0.0)
    with pytest.raises(ValueError, match="must not decrease"):
        dataclasses.replace(FULL, ocv_charge_V=FULL.ocv_charge_V[::-1])


def test_pristine_rest_voltages() -> None:
    assert 2.5 <= CellModel(HALF).voltage <= 3.0
    assert CellModel(FULL).voltage == pytest.approx(3.0, abs=0.05)
    assert open_circuit_voltage(FULL, 1.0, 0.0) == pytest.approx(4.2, abs=0.05)


def test_ocv_branches_match_silicon_plateaus() -> None:
    for x in (0.1, 0.3, 0.5, 0.7):  # Si lithiation x = 1 - soc in the half cell
        assert 0.09 <= open_circuit_voltage(HALF, 1 - x, -1.0) <= 0.27
    for x in (0.15, 0.3, 0.5, 0.7, 0.85):
        assert 0.28 <= open_circuit_voltage(HALF, 1 - x, 1.0) <= 0.52


@pytest.mark.parametrize("params", list(CELL_PRESETS.values()), ids=list(CELL_PRESETS))
def test_ocv_is_monotone_bounded_and_hysteretic(params: CellParameters) -> None:
    socs = [i / 200 - 0.05 for i in range(211)]
    for h in (-1.0, 0.0, 1.0):
        values = [open_circuit_voltage(params, s, h) for s in socs]
        assert all(b >= a - 1e-12 for a, b in zip(values, values[1:]))
        assert all(params.v_floor <= v <= params.v_ceiling for v in values)
    for s in (0.1, 0.5, 0.9):
        assert open_circuit_voltage(params, s, 1.0) > open_circuit_voltage(params, s, -1.0)
    with pytest.raises(ValueError):
        open_circuit_voltage(params, 0.5, 1.5)


# ------------------------------------------------------------ bounds, charge
segment = st.tuples(
    st.sampled_from(["cc", "cv", "ocv"]),
    st.floats(-1.0, 1.0),  # scaled per mode: +-5C, or the whole voltage span and beyond
    st.floats(0.0, 4 * H),
)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(CELL_PRESETS)), segments=st.lists(segment, max_size=6))
def test_voltage_stays_within_physical_bounds(name: str, segments: list) -> None:
    params = get_preset(name)
    cell = CellModel(params)
    peak = cell.si_lithiation_peak
    span = params.v_ceiling - params.v_floor
    for mode, x, duration in segments:
        if mode == "cc":
            cell.set_current(5 * params.capacity_Ah * x)
        elif mode == "cv":
            cell.set_voltage(params.v_floor + span * (0.5 + 0.6 * x))
        else:
            cell.open_circuit()
        for dt in (duration / 7, 2 * duration / 7, 4 * duration / 7):
            cell.advance(dt)
            state = cell.snapshot()
            assert params.v_floor <= state.voltage <= params.v_ceiling
            assert math.isfinite(state.current) and math.isfinite(state.charge_Ah)
            assert 0.0 <= state.soc <= 1.0 and 0.0 <= state.si_lithiation <= 1.0
            assert state.si_lithiation_peak >= max(peak, state.si_lithiation)
            peak = state.si_lithiation_peak


def test_cc_charge_is_current_times_time_even_past_empty() -> None:
    cell = CellModel(HALF)
    amps = -10 * HALF.capacity_Ah  # forced far past full lithiation
    cell.set_current(amps)
    for _ in range(100):
        cell.advance(72.0)
    assert cell.charge_Ah == pytest.approx(amps * 2.0, rel=1e-12)
    assert cell.soc == 0.0 and cell.si_lithiation == 1.0
    assert cell.voltage == HALF.v_floor
    state = cell.snapshot()
    lithium = HALF.capacity_Ah + state.sei_charge_Ah + state.side_charge_Ah
    assert lithium == pytest.approx(-cell.charge_Ah, rel=1e-9)  # charge is conserved


def test_cv_charge_matches_sampled_current_integral() -> None:
    cell = CellModel(FULL, soc=0.4)
    cell.set_voltage(4.1)
    integral, previous = 0.0, cell.current
    for _ in range(2 * 3600):
        cell.advance(0.5)
        integral += 0.5 * (previous + cell.current) / 2 / H
        previous = cell.current
    assert cell.charge_Ah > 0.05 * FULL.capacity_Ah
    assert cell.charge_Ah == pytest.approx(integral, rel=1e-3)


# ----------------------------------------------------------------- dynamics
def test_cv_hold_current_decays_monotonically_through_c_over_10() -> None:
    cell = full_cell_at_cv_onset()
    c10 = FULL.current_at_c_rate(0.1)
    cell.set_voltage(4.3)
    currents = [cell.current]
    while cell.current >= c10:
        cell.advance(10.0)
        currents.append(cell.current)
        assert len(currents) < 3 * 360, "CV current still above C/10 after 3 h"
    assert currents[0] >= 3 * c10  # starts several times C/10
    assert all(b <= a * (1 + 1e-9) for a, b in zip(currents, currents[1:]))
    assert 30 * 60 <= 10.0 * (len(currents) - 1) <= 90 * 60
    assert cell.voltage == 4.3


@pytest.mark.parametrize(("params", "amps"), [(FULL, FULL.capacity_Ah / 3), (HALF, -0.04e-3)],
                         ids=["full-after-charge", "half-after-lithiation"])
def test_open_circuit_voltage_relaxes_toward_ocv(params: CellParameters, amps: float) -> None:
    cell = CellModel(params, soc=0.3)
    cell.set_current(amps)
    cell.advance(H)
    cell.open_circuit()
    volts = [cell.voltage]
    for _ in range(360):  # 30 min
        cell.advance(5.0)
        volts.append(cell.voltage)
    steps = [b - a for a, b in zip(volts, volts[1:])]
    assert all(math.copysign(1.0, s) == -math.copysign(1.0, amps) for s in steps)
    assert all(abs(b) <= abs(a) for a, b in zip(steps, steps[1:]))
    rest = open_circuit_voltage(params, cell.soc, cell.hysteresis)
    assert abs(volts[-1] - rest) < 0.05 * abs(volts[0] - rest)


def test_current_limit_and_setpoints() -> None:
    cell = CellModel(FULL, soc=0.2)
    cell.set_voltage(4.3, current_limit=1e-6)
    assert cell.mode == "cv" and cell.setpoint == 4.3
    cell.advance(60.0)
    assert cell.current == pytest.approx(1e-6) and cell.voltage < 4.3
    cell.set_current(-2e-6)
    assert (cell.mode, cell.setpoint, cell.current) == ("cc", -2e-6, -2e-6)
    cell.open_circuit()
    assert (cell.mode, cell.setpoint, cell.current) == ("ocv", None, 0.0)
    with pytest.raises(ValueError):
        cell.set_voltage(4.0, current_limit=0.0)
    with pytest.raises(ValueError):
        cell.set_current(math.nan)


def test_time_only_moves_forward() -> None:
    cell = CellModel(FULL, time_s=100.0)
    cell.set_current(1e-5)
    cell.advance_to(50.0)  # earlier: a no-op
    assert cell.time_s == 100.0 and cell.charge_Ah == 0.0
    cell.advance_to(160.0)
    assert cell.time_s == 160.0
    assert cell.charge_Ah == pytest.approx(1e-5 * 60 / H, rel=1e-12)
    with pytest.raises(ValueError):
        cell.advance(-1.0)


# ---------------------------------------------------- the papers' protocols
def test_half_cell_reaches_000_thresholds_in_order() -> None:
    cell = CellModel(HALF)
    cell.set_current(-0.04e-3)
    lithiation_times = [run_until(cell, lambda c, v=v: c.voltage <= v, 60.0, 100 * H)
                        for v in (0.03, 0.02, 0.01, 0.0)]
    assert all(t > 0 for t in lithiation_times[1:])  # each threshold is a distinct stop
    assert cell.si_lithiation < 1.0  # 0 V comes before the Si is fully lithiated
    cell.set_current(0.01e-3)
    delithiation_times = [run_until(cell, lambda c, v=v: c.voltage >= v, 60.0, 400 * H)
                          for v in (0.5, 0.7, 1.0, 1.5, 2.0)]
    assert all(t > 0 for t in delithiation_times)
    assert cell.voltage <= HALF.v_ceiling


def test_full_cell_reaches_4v3_under_c_over_3_within_hours() -> None:
    cell = full_cell_at_cv_onset()
    assert 1.5 * H <= cell.time_s <= 3.0 * H
    assert 0.5 <= cell.soc <= 0.8  # 002: the CV stage starts near half charge


def test_002_first_cycle_takes_five_to_seven_hours() -> None:
    cell = full_cell_at_cv_onset()
    cell.set_voltage(4.3)
    hold_start = cell.time_s
    run_until(cell, lambda c: c.current < FULL.current_at_c_rate(0.1)
              or c.time_s - hold_start >= 1800, 1.0, 1800)
    cell.set_current(-FULL.current_at_c_rate(1 / 6))
    run_until(cell, lambda c: c.voltage <= 2.5, 1.0, 8 * H)
    assert 5 * H <= cell.time_s <= 7 * H


def test_half_cell_first_cycle_coulombic_efficiency() -> None:
    cell = CellModel(HALF)
    cell.set_current(-0.04e-3)
    run_until(cell, lambda c: c.voltage <= 0.0, 300.0, 100 * H)
    lithiation_Ah = -cell.charge_Ah
    cell.set_current(0.01e-3)
    run_until(cell, lambda c: c.voltage >= 2.0, 300.0, 400 * H)
    efficiency = (cell.charge_Ah + lithiation_Ah) / lithiation_Ah
    assert 0.80 <= efficiency <= 0.88


def test_full_cell_first_cycle_coulombic_efficiency() -> None:
    cell = CellModel(FULL)
    c10 = FULL.current_at_c_rate(0.1)
    cell.set_current(c10)
    run_until(cell, lambda c: c.voltage >= 4.3, 30.0, 12 * H)
    cell.set_voltage(4.3)
    run_until(cell, lambda c: c.current < c10 / 5, 30.0, 12 * H)
    charge_Ah = cell.charge_Ah
    cell.set_current(-c10)
    run_until(cell, lambda c: c.voltage <= 2.5, 30.0, 12 * H)
    efficiency = (charge_Ah - cell.charge_Ah) / charge_Ah
    assert 0.80 <= efficiency <= 0.88


@pytest.mark.parametrize(("params", "sign"), [(HALF, -1), (FULL, 1)], ids=["half", "full"])
def test_si_lithiation_tracks_charge_and_peak_is_running_max(
        params: CellParameters, sign: int) -> None:
    cell = CellModel(params, soc=0.5)
    start = cell.si_lithiation
    amps = sign * params.capacity_Ah / 5  # the current that lithiates Si
    cell.set_current(amps)
    cell.advance(H)
    gained = (abs(cell.charge_Ah) - cell.sei_charge_Ah) / params.capacity_Ah
    assert cell.si_lithiation == pytest.approx(start + gained, rel=1e-9)
    assert cell.si_lithiation_peak == cell.si_lithiation
    peak, charge = cell.si_lithiation, cell.charge_Ah
    cell.set_current(-amps / 2)
    cell.advance(H)
    assert cell.si_lithiation == pytest.approx(
        peak - abs(cell.charge_Ah - charge) / params.capacity_Ah, rel=1e-9)
    assert cell.si_lithiation_peak == peak


# -------------------------------------------------------- step independence
def _fields(state: CellState) -> dict[str, float]:
    return {k: v for k, v in dataclasses.asdict(state).items() if isinstance(v, float)}


@pytest.mark.parametrize("mode", ["cc", "ocv", "cv"])
def test_one_big_step_equals_many_small_ones(mode: str) -> None:
    cells = [full_cell_at_cv_onset() for _ in range(2)]
    for cell in cells:
        if mode == "cc":
            cell.set_current(-FULL.current_at_c_rate(1 / 2))
        elif mode == "ocv":
            cell.open_circuit()
        else:
            cell.set_voltage(4.3)
    for _ in range(3600):
        cells[0].advance(1.0)
    cells[1].advance(3600.0)
    small, big = _fields(cells[0].snapshot()), _fields(cells[1].snapshot())
    rel = 1e-9 if mode != "cv" else 2e-3  # CC and OCV updates are exact
    for key, value in small.items():
        assert big[key] == pytest.approx(value, rel=rel, abs=1e-12), key
