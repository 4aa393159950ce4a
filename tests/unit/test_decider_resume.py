"""Resuming from every checkpoint a scan writes takes exactly the scans of an uninterrupted run."""

from __future__ import annotations

import json

import pytest

from controller.decider import ProtocolController
from controller.protocol_parse import parse_protocol
from plans.operando_api import Reading, ScanOutcome

PROTOCOL = """\
name: resume-test
cell: {preset: si-nmc811-full, capacity: 0.033 mAh}
poll_period: 10 s
ocv_before_scan: 1 minute
steps:
  - {do: scan, label: pristine}
  - Rest for 2 minutes
  - {do: 2 noise scans, label: noise}
  - Rest for 1 minute
"""


def _drive(ctl: ProtocolController, t: float, crash_after: int | None = None) -> tuple[float, bool]:
    """Run ``ctl`` on a resting cell until done; with ``crash_after`` stop once that many
    checkpoints have been written (a kill -9 there). Returns (cell time, whether it crashed)."""
    reading = Reading(time_s=t, voltage=3.7, current=0.0, charge_Ah=0.0)
    decision = ctl.begin(reading)
    while not (decision.done or decision.fault):
        if crash_after is not None and len(CHECKPOINTS) >= crash_after:
            return t, True
        if decision.scan is not None:
            decision = ctl.scan_finished(decision.scan, ScanOutcome(ok=True, uid="u", attempts=1),
                                         reading)
            continue
        t += max(decision.wait_s, 1.0)
        reading = Reading(time_s=t, voltage=3.7, current=0.0, charge_Ah=0.0)
        decision = ctl.poll(reading)
    assert decision.done, decision.fault
    return t, False


CHECKPOINTS: list[dict] = []


def _controller() -> ProtocolController:
    return ProtocolController(parse_protocol(PROTOCOL, "resume-test.yaml"), experiment_id="x",
                              checkpoint=lambda d: CHECKPOINTS.append(json.loads(json.dumps(d))))


def _uninterrupted() -> list[str]:
    CHECKPOINTS.clear()
    ctl = _controller()
    _drive(ctl, 0.0)
    return [s.label for s in ctl.scans]


def test_uninterrupted_run_scans() -> None:
    assert _uninterrupted() == ["T0", "T1", "T2"]
    # the parametrisation below kills the run after each of these but the last ("done")
    assert len(CHECKPOINTS) == 11 and CHECKPOINTS[-1]["state"] == "done"
    states = [c["state"] for c in CHECKPOINTS]
    assert {"scan_rest", "scanning", "resting"} <= set(states), states


@pytest.mark.parametrize("crash_at", range(1, 11))
def test_resume_from_any_checkpoint_takes_the_same_scans(crash_at: int) -> None:
    want = _uninterrupted()
    CHECKPOINTS.clear()
    t, crashed = _drive(_controller(), 0.0, crash_after=crash_at)
    last = CHECKPOINTS[crash_at - 1]
    resumed = _controller()
    resumed.restore(last)
    _drive(resumed, t + 5.0)
    assert crashed
    assert [s.label for s in resumed.scans] == want, (crash_at, last["state"])
