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


def _drive(ctl: ProtocolController, t: float, saved: list[dict],
           crash_after: int | None = None) -> tuple[float, bool]:
    """Run ``ctl`` on a resting cell until done; with ``crash_after`` stop once ``saved`` holds
    that many checkpoints (a kill -9 there). Returns (cell time, whether it crashed)."""
    reading = Reading(time_s=t, voltage=3.7, current=0.0, charge_Ah=0.0)
    decision = ctl.begin(reading)
    while not (decision.done or decision.fault):
        if crash_after is not None and len(saved) >= crash_after:
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


def _controller(saved: list[dict]) -> ProtocolController:
    return ProtocolController(parse_protocol(PROTOCOL, "resume-test.yaml"), experiment_id="x",
                              checkpoint=lambda d: saved.append(json.loads(json.dumps(d))))


def _uninterrupted() -> tuple[list[str], list[dict]]:
    saved: list[dict] = []
    ctl = _controller(saved)
    _drive(ctl, 0.0, saved)
    return [s.label for s in ctl.scans], saved


def test_uninterrupted_run_scans() -> None:
    labels, saved = _uninterrupted()
    assert labels == ["T0", "T1", "T2"]
    # the parametrisation below kills the run after each of these but the last ("done")
    assert len(saved) == 11 and saved[-1]["state"] == "done"
    states = [c["state"] for c in saved]
    assert {"scan_rest", "scanning", "resting"} <= set(states), states


@pytest.mark.parametrize("crash_at", range(1, 11))
def test_resume_from_any_checkpoint_takes_the_same_scans(crash_at: int) -> None:
    want, _ = _uninterrupted()
    saved: list[dict] = []
    t, crashed = _drive(_controller(saved), 0.0, saved, crash_after=crash_at)
    last = saved[crash_at - 1]
    resumed = _controller([])
    resumed.restore(last)
    _drive(resumed, t + 5.0, [])
    assert crashed
    assert [s.label for s in resumed.scans] == want, (crash_at, last["state"])
