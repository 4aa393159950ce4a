"""The state machine's shape, and the poll timing's predictions."""

from __future__ import annotations

import math

import pytest

from controller.limit_checks import time_to_limit
from controller.machine import CYCLING, TRANSITIONS, State, attach_machine
from controller.protocol_model import Limit


class _Model:
    def __init__(self) -> None:
        self.changes: list[str] = []
        self.errors: list[Exception] = []

    def after_state_change(self, event) -> None:
        self.changes.append(self.state.value)

    def on_machine_exception(self, event) -> None:
        self.errors.append(event.error)


def _model(initial: State = State.IDLE) -> _Model:
    m = _Model()
    attach_machine(m, initial)
    return m


TRIGGERS = sorted({t["trigger"] for t in TRANSITIONS})


def test_fault_is_reachable_from_every_live_state() -> None:
    for state in State:
        m = _model(state)
        assert m.may_fault() is (state not in (State.DONE, State.FAULT)), state


@pytest.mark.parametrize("final", [State.DONE, State.FAULT])
def test_done_and_fault_are_final(final: State) -> None:
    m = _model(final)
    assert not any(getattr(m, f"may_{t}")() for t in TRIGGERS)


def test_a_scan_always_rests_at_open_circuit_first() -> None:
    for state in State:
        m = _model(state)
        assert not m.may_start_scan() or state in (State.SCAN_REST, State.SCANNING)
    m = _model()
    m.charge()
    m.prepare_scan()
    m.start_scan()
    m.start_scan()  # the next scan of a group
    m.discharge()
    assert m.changes == ["charging", "scan_rest", "scanning", "scanning", "discharging"]


def test_cycling_states_re_enter_for_a_new_step() -> None:
    m = _model()
    m.charge()
    m.charge()  # a CC step after a CC step, or `repeat`, re-applies the setpoint
    assert m.changes == ["charging", "charging"]
    for state in CYCLING:
        assert _model(state).may_prepare_scan()


def test_undeclared_transitions_are_refused() -> None:
    from transitions import MachineError

    m = _model(State.DONE)
    try:
        m.charge()
    except MachineError:
        pass
    else:  # the model's on_machine_exception got it (the controller turns it into a fault)
        assert isinstance(m.errors[-1], MachineError)
    assert m.state == State.DONE and m.changes == []
    assert not hasattr(m, "to_charging")  # no auto transitions around the table


def _limit(kind: str, op: str, value: float) -> Limit:
    return Limit(kind=kind, op=op, value=value)  # type: ignore[arg-type]


def test_time_to_limit_extrapolates_towards_the_threshold() -> None:
    # rising 1 mV/s towards 4.3 V from 4.2 V: 100 s
    assert time_to_limit(_limit("voltage", ">", 4.3), 4.2, 4.19, 10.0) == pytest.approx(100.0)
    # falling current towards C/10 in a CV hold
    assert time_to_limit(_limit("current", "<", 1.0e-3), 2.0e-3, 2.5e-3, 50.0) == pytest.approx(100.0)


@pytest.mark.parametrize("x, prev", [(4.2, 4.21), (4.2, 4.2)])
def test_time_to_limit_is_infinite_when_not_approaching(x: float, prev: float) -> None:
    assert time_to_limit(_limit("voltage", ">", 4.3), x, prev, 10.0) == math.inf


def test_time_to_limit_ignores_unpredictable_kinds() -> None:
    assert time_to_limit(_limit("dvdt", "<", 1e-6), 1.0, 2.0, 1.0) == math.inf
    assert time_to_limit(_limit("voltage", ">", 4.3), 4.2, math.nan, 1.0) == math.inf
    assert time_to_limit(_limit("voltage", ">", 4.3), 4.2, 4.1, 0.0) == math.inf
