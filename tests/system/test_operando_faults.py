"""Fail-safes: each fault ends at open circuit with an alarm, and nothing acquired is lost."""

from __future__ import annotations

import numpy as np
import pytest

from controller.experiment import run_protocol
from devices.potentiostat import CommunicationError, Measurement
from tests.system.operando_util import TINY_SCANS, polls, runs_of, write_protocol

pytestmark = [pytest.mark.system]

CHARGE_THEN_REST = """\
  - {do: scan, label: pristine}
  - do: Charge at C/3 until 4.3 V or 30 minutes
    label: cc
    on: {30 minutes: scan then next}
  - Charge at C/3 until 4.3 V or 30 minutes
  - Rest for 10 minutes
"""


class FaultyBackend:
    """Wraps the simulated potentiostat backend and misbehaves from cell time ``after_s`` on.

    ``kind``: ``"overvoltage"`` reads 1 V high (a failing cell) for ``duration_s``;
    ``"silent"`` raises CommunicationError (no answer) on every measurement; ``"compliance"``
    reports a compliance trip.
    """

    def __init__(self, inner, kind: str, after_s: float, duration_s: float = np.inf) -> None:
        self.inner, self.kind, self.after_s, self.duration_s = inner, kind, after_s, duration_s
        self.applied: list[str] = []
        self.t0: float | None = None

    def identify(self) -> str:
        return self.inner.identify()

    def apply(self, command) -> None:
        self.applied.append(command.mode)
        self.inner.apply(command)

    def measure(self) -> Measurement:
        m = self.inner.measure()
        if self.t0 is None:
            self.t0 = m.time_s
        if not (self.after_s <= m.time_s - self.t0 < self.after_s + self.duration_s):
            return m
        if self.kind == "silent":
            raise CommunicationError("no answer within 10 s (simulated cable pulled)")
        if self.kind == "overvoltage":
            return Measurement(m.time_s, m.voltage + 1.0, m.current, m.charge_Ah, m.mode, m.setpoint,
                               m.output_on, compliance=m.compliance)
        return Measurement(m.time_s, m.voltage, m.current, m.charge_Ah, m.mode, m.setpoint, m.output_on,
                           compliance=True)


class FailingSource:
    """A camera that stops delivering frames after ``good_frames`` frames, for ``failures`` calls."""

    def __init__(self, inner, good_frames: int, failures: float) -> None:
        self.inner, self.good_frames, self.failures = inner, good_frames, failures
        self.frame_shape, self.dtype = inner.frame_shape, inner.dtype
        self.frames = 0

    def _check(self, count: int) -> None:
        if self.frames >= self.good_frames and self.failures > 0:
            self.failures -= 1
            raise RuntimeError("camera: frame timeout (simulated)")
        self.frames += count

    def acquire(self, exposure_s: float):
        self._check(1)
        return self.inner.acquire(exposure_s)

    def acquire_many(self, exposure_s: float, count: int, angles_deg):
        self._check(count)
        return self.inner.acquire_many(exposure_s, count, angles_deg)


def _run(tmp_path, data_dir, steps: str = CHARGE_THEN_REST, *, backend=None, source=None, extra: str = ""):
    path = write_protocol(tmp_path, steps, extra=extra)
    box = {}

    def configure(bl) -> None:
        if backend is not None:
            box["backend"] = bl.potentiostat.backend = backend(bl.potentiostat.backend)
        if source is not None:
            box["source"] = bl.detector.source = source(bl.detector.source)
        box["beamline"] = bl

    result = run_protocol(path, data_dir=data_dir, progress=False, handle_sigint=False,
                          configure_beamline=configure)
    ec, scans = runs_of(data_dir, result.experiment_id)
    return result, ec, scans, box


def _assert_safe_and_recorded(result, ec, box, reason: str, *, last_poll_faulted: bool = True) -> dict:
    assert result.state == "fault"
    assert reason in result.fault
    backend = box["beamline"].potentiostat.backend
    if hasattr(backend, "applied"):
        assert backend.applied[-1] == "ocv"
    cell = box["beamline"].scene.cell
    assert cell.current == 0.0  # the simulated cell is at open circuit
    stop = ec.metadata["stop"]
    assert stop["exit_status"] == "fail" and reason in stop["reason"]
    alarms = ec["alarms"].read()
    assert any(reason in str(m) for m in alarms["message"].values)
    p = polls(ec)
    # the poll that faulted is recorded, unless the fault is that no poll came back
    assert (p["state"][-1] == "fault") == last_poll_faulted
    assert stop["num_events"]["primary"] == len(p["state"])  # every poll made it to the catalog
    return p


def test_voltage_outside_the_safety_window_faults_to_open_circuit(tmp_path, data_dir) -> None:
    result, ec, scans, box = _run(tmp_path, data_dir,
                                  backend=lambda b: FaultyBackend(b, "overvoltage", after_s=20 * 60))
    p = _assert_safe_and_recorded(result, ec, box, "safety envelope")
    # tripped after the debounce (2 s) at a 10 s poll: the first poll over 4.4 V plus one
    high = np.flatnonzero(p["voltage"] > 4.4)
    assert len(high) == 2 and p["state"][high[0]] == "charging"
    assert [s.label for s in result.scans] == ["T0"] and len(scans) == 1  # the pristine scan is kept


def test_a_single_glitch_shorter_than_the_debounce_does_not_fault(tmp_path, data_dir) -> None:
    result, ec, scans, box = _run(tmp_path, data_dir,
                                  backend=lambda b: FaultyBackend(b, "overvoltage", after_s=20 * 60,
                                                                  duration_s=9.0))
    assert result.state == "done", result.fault
    assert np.sum(polls(ec)["voltage"] > 4.4) == 1


def test_lost_potentiostat_faults_and_keeps_the_polls(tmp_path, data_dir) -> None:
    result, ec, scans, box = _run(tmp_path, data_dir,
                                  backend=lambda b: FaultyBackend(b, "silent", after_s=40 * 60))
    p = _assert_safe_and_recorded(result, ec, box, "lost the potentiostat", last_poll_faulted=False)
    assert "no answer" in result.fault
    assert p["cell_time"][-1] - p["cell_time"][0] >= 40 * 60 - 10  # polls up to the loss are kept
    assert [s.label for s in result.scans] == ["T0", "T1"]


def test_compliance_trip_faults(tmp_path, data_dir) -> None:
    result, ec, scans, box = _run(tmp_path, data_dir,
                                  backend=lambda b: FaultyBackend(b, "compliance", after_s=15 * 60))
    p = _assert_safe_and_recorded(result, ec, box, "compliance trip")
    assert p["compliance"][-1]


def test_scan_failure_is_retried_once(tmp_path, data_dir) -> None:
    good = sum(TINY_SCANS.values())  # T0 (8 projections, 2 darks, 2 flats) goes through
    result, ec, scans, box = _run(tmp_path, data_dir, source=lambda s: FailingSource(s, good, failures=1))
    assert result.state == "done", result.fault
    t1 = result.scans[1]
    assert t1.ok and t1.attempts == 2
    attempts = [r for r in scans if r.metadata["start"]["timestep"] == "T1"]
    assert [r.metadata["start"]["attempt"] for r in attempts] == [1, 2]
    assert [r.metadata["stop"]["exit_status"] for r in attempts] == ["fail", "success"]
    assert t1.uid == attempts[1].metadata["start"]["uid"]


def test_failed_scan_is_recorded_and_cycling_continues(tmp_path, data_dir) -> None:
    good = sum(TINY_SCANS.values())
    result, ec, scans, box = _run(tmp_path, data_dir, source=lambda s: FailingSource(s, good, failures=2))
    assert result.state == "done", result.fault
    t1 = result.scans[1]
    assert not t1.ok and t1.attempts == 2 and "frame timeout" in t1.error
    assert any("scan T1 failed" in a for a in result.alarms)
    p = polls(ec)
    after = p["cell_time"] > t1.time_s + 60
    assert np.any(p["state"][after] == "charging")  # the second CC step ran
    # the pristine scan's frames are still there
    t0 = [r for r in scans if r.metadata["start"]["timestep"] == "T0"][0]
    frames = t0["primary"].read()["detector_image"]
    assert frames.shape[0] == good


def test_failed_scan_stops_the_experiment_when_the_protocol_says_so(tmp_path, data_dir) -> None:
    good = sum(TINY_SCANS.values())
    result, ec, scans, box = _run(tmp_path, data_dir, source=lambda s: FailingSource(s, good, failures=2),
                                  extra="on_scan_failure: stop")
    _assert_safe_and_recorded(result, ec, box, "scan T1 failed")
