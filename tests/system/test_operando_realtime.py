"""The same controller and plan on the wall clock: polls, rests and scans take real time."""

from __future__ import annotations

import time

import numpy as np
import pytest

from controller.experiment import run_protocol
from tests.system.operando_util import polls, runs_of

pytestmark = [pytest.mark.system]

PROTOCOL = """\
name: real-time
title: a few seconds on the wall clock
cell: {preset: si-nmc811-full, capacity: 0.033 mAh}
poll_period: 0.5 s
ocv_before_scan: 1 s
scan: {projections: 4, range: 180, exposure: 50 ms, flats: 1, darks: 1, preset: quick}
safety: {voltage: [0 V, 4.4 V], max_current: 1C, max_charge: 0.05 mAh, max_duration: 1 hour, debounce: 1 s}
steps:
  - Rest for 2 seconds
  - {do: scan, label: rt}
  - Charge at 1C for 2 seconds
"""


def test_protocol_runs_at_the_wall_clock_pace(tmp_path, data_dir) -> None:
    path = tmp_path / "rt.yaml"
    path.write_text(PROTOCOL, encoding="utf-8")
    wall = time.monotonic()
    result = run_protocol(path, data_dir=data_dir, progress=False, handle_sigint=False, real_time=True)
    wall = time.monotonic() - wall
    assert result.state == "done", result.fault
    ec, scans = runs_of(data_dir, result.experiment_id)
    p = polls(ec)
    elapsed = p["cell_time"][-1] - p["cell_time"][0]
    # 2 s rest + 1 s open circuit + 6 frames x 50 ms + 2 s charge, all on the wall clock
    assert elapsed >= 5.3
    assert wall >= elapsed
    steps = np.diff(p["cell_time"][p["state"] == "resting"])
    assert np.all(steps > 0.3)  # polls every 0.5 s of wall time, not as fast as possible
    assert len(scans) == 1 and scans[0].metadata["stop"]["exit_status"] == "success"
    charging = p["current"] > 0
    assert charging.sum() >= 2
