"""The operando plan's potentiostat reading, message by message (no RunEngine)."""

from __future__ import annotations

from types import SimpleNamespace

from plans.operando import _measure


def _reading(name: str, voltage: float) -> dict:
    values = {"cell_time": 60.0, "voltage": voltage, "current": 1e-6, "charge": 2e-9, "compliance": False}
    return {f"{name}_{k}": {"value": v, "timestamp": 0.0} for k, v in values.items()}


def test_a_read_interrupted_by_a_suspension_is_taken_again() -> None:
    # bluesky answers a read with None when a suspension or pause cancels it in flight (the
    # RunEngine resumes the plan with the response it had, None); that is no lost potentiostat.
    pot = SimpleNamespace(name="potentiostat")
    plan = _measure(pot, timeout=5.0)
    commands = [next(plan).command]
    commands.append(plan.send(None).command)   # trigger answered with no status: straight to read
    commands.append(plan.send(None).command)   # the read came back empty: trigger again
    commands.append(plan.send(None).command)
    try:
        plan.send(_reading("potentiostat", 3.9))
    except StopIteration as stop:
        reading = stop.value
    else:
        raise AssertionError("the plan did not return its reading")
    assert commands == ["trigger", "read", "trigger", "read"]
    assert (reading.voltage, reading.time_s, reading.current) == (3.9, 60.0, 1e-6)
