"""The four preset protocols, run end to end on the simulated beamline.

Scans are cut to a few projections and polls to a coarser period so each preset runs in
seconds; the controller's poll timing still lands on every limit and schedule (that is what
these tests check), and the catalog holds what an experiment must leave behind.
"""

from __future__ import annotations

import numpy as np
import pytest

from controller.experiment import run_protocol
from tests.system.operando_util import TINY_SCANS, polls, runs_of

pytestmark = [pytest.mark.system, pytest.mark.slow]

MIN = 60.0


def _run(name: str, data_dir, poll: float):
    result = run_protocol(name, data_dir=data_dir, scan_overrides=TINY_SCANS, poll_period=poll,
                          progress=False, handle_sigint=False)
    ec, scans = runs_of(data_dir, result.experiment_id)
    return result, ec, scans, polls(ec)


@pytest.fixture(scope="module")
def store(tmp_path_factory, _catalog_template):
    import shutil

    root = tmp_path_factory.mktemp("operando-presets") / "data"
    root.mkdir()
    shutil.copy(_catalog_template, root / "catalog.db")
    return root


def _spells(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) row index of each run of True in ``mask``."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))


def _ocv_before_each_scan(p: dict[str, np.ndarray], scans, rest_s: float) -> None:
    """In the rest before every scan the cell is at open circuit (I = 0) for ``rest_s``."""
    for run in scans:
        t_scan = run.metadata["start"]["at_scan"]["time_s"]
        t_trigger = run.metadata["start"]["trigger"]["time_s"]
        # (the second scan of a group, like T9 after T8, rests again after the first)
        assert t_scan - t_trigger >= rest_s - 1e-6
        rest = (p["cell_time"] > t_scan - rest_s + 1e-6) & (p["cell_time"] <= t_scan + 1e-6)
        if rest_s > 0:
            assert rest.sum() >= 1
            assert np.all(p["current"][rest] == 0.0)
            assert set(p["state"][rest]) <= {"scan_rest", "scanning"}


def test_000_thresholds_reached_within_millivolts(store) -> None:
    result, ec, scans, p = _run("000", store, poll=60.0)
    assert result.state == "done", result.fault
    labels = [s.label for s in result.scans]
    assert labels == [f"T{i}" for i in range(10)]
    volts = [s.voltage for s in result.scans[1:]]
    # 0.03, 0.02, 0.01, 0 V on lithiation; 0.5, 0.7, 1.0, 1.5, 2.0 V on delithiation
    assert volts == pytest.approx([0.03, 0.02, 0.01, 0.0, 0.5, 0.7, 1.0, 1.5, 2.0], abs=5e-3)
    currents = [s.current for s in result.scans[1:]]
    assert currents[:4] == pytest.approx([-40e-6] * 4, rel=1e-6)
    assert currents[4:] == pytest.approx([10e-6] * 5, rel=1e-6)
    # "Cycling is stopped during each scan": open circuit while scanning
    assert len(scans) == 10
    for run in scans:
        assert run.metadata["start"]["cell_at_start"]["current"] == 0.0
    # scan runs carry the timestep label and link to the experiment
    assert [r.metadata["start"]["timestep"] for r in scans] == labels
    assert ec.metadata["stop"]["exit_status"] == "success"


def test_002_cccv_timeouts_and_noise_scans(store) -> None:
    result, ec, scans, p = _run("002", store, poll=10.0)
    assert result.state == "done", result.fault
    steps = [s.step for s in result.scans]
    assert steps[0].startswith("step 1 [pristine]")
    assert all("[cc]: 30 minutes" in s for s in steps[1:5]), steps      # T1-T4: CC timeouts
    assert all("[cv]" in s for s in steps[5:7]), steps                  # T5-T6: CV
    assert "[discharge]" in steps[7]                                    # T7: during discharge
    assert [s.noise for s in result.scans] == [False] * 8 + [True, True]  # T8, T9 noise scans
    t = [s.time_s for s in result.scans]
    # CC timeouts every 30 minutes of CC: the time limit excludes nothing but the scan itself
    cc_gaps = np.diff(t[1:5])
    scan_time = cc_gaps[0] - 30 * MIN - 1 * MIN
    assert scan_time > 0
    assert cc_gaps == pytest.approx(cc_gaps[0], abs=1.0)
    # the noise scans follow each other with no electrochemistry in between
    assert result.scans[9].time_s - result.scans[8].time_s < 1.0
    assert result.scans[8].charge_Ah == pytest.approx(result.scans[9].charge_Ah, abs=1e-12)
    # CV at 4.3 V, discharge to 2.5 V
    assert result.scans[5].voltage == pytest.approx(4.3, abs=1e-3)
    assert result.scans[8].voltage == pytest.approx(2.5, abs=5e-3)
    _ocv_before_each_scan(p, scans, 1 * MIN)
    # the electrochemistry stream: a row per poll with time, V, I, Q, state and step
    assert {"cell_time", "voltage", "current", "charge", "state", "step", "scans", "soc"} <= set(p)
    assert np.all(np.diff(p["cell_time"]) > 0)
    # a row holds the reading of a poll and the state decided at it: the first row of a
    # charging spell is the reading taken before the charge command
    charging = (p["state"] == "charging") & (np.roll(p["state"], 1) == "charging")
    assert charging.any() and np.all(p["current"][charging] > 0)
    assert p["voltage"].max() <= 4.3 + 1e-3
    # SoC at the trigger of each scan is recorded with the scan run
    for run, rec in zip(scans, result.scans):
        trig = run.metadata["start"]["trigger"]
        assert trig["soc"] == pytest.approx(rec.soc)
        assert trig["voltage"] == pytest.approx(rec.voltage)


def test_003_scheduled_scans(store) -> None:
    result, ec, scans, p = _run("003", store, poll=60.0)
    assert result.state == "done", result.fault
    rest = 2 * 3600.0
    scheduled = [s for s in result.scans if s.step.startswith("schedule")]
    assert len(scheduled) >= 6
    # relative to the block's start: 15, 30, 45 min, then every 30 min (75, 105, ...)
    first = scheduled[0].time_s
    offsets = np.array([s.time_s - first for s in scheduled]) + 15 * MIN
    expected = [15, 30, 45] + [45 + 30 * k for k in range(1, len(scheduled) - 2)]
    assert offsets / MIN == pytest.approx(expected[:len(offsets)], abs=0.05)
    assert scheduled[0].time_s - result.t0 >= rest
    # OCV during each acquisition, cycling resumes after it (0 s rest before a scan here)
    for run in scans:
        assert run.metadata["start"]["cell_at_start"]["current"] == 0.0


def test_004_stability_limits_and_interlaced_scans(store) -> None:
    result, ec, scans, p = _run("004", store, poll=10.0)
    assert result.state == "done", result.fault
    steps = [s.step for s in result.scans]
    assert steps[0].startswith("step 1 [discharged]")
    assert any("[charged]" in s for s in steps) and steps[-1].startswith("step 9 [discharged-end]")
    # the CC scans come every 10 minutes of CC
    cc = [s for s in result.scans if "[cc-charge]" in s.step]
    assert len(cc) >= 2
    # CV ended by a stable current, rest by a stable voltage (dI/dt, dV/dt), before their 2 h caps
    for state in ("holding", "resting"):
        spells = _spells(p["state"] == state)
        assert len(spells) == 2, state
        for a, b in spells:
            duration = p["cell_time"][b] - p["cell_time"][a]
            assert 10 * MIN <= duration < 2 * 3600 - 60, (state, duration)
    # interlaced acquisition: each scan has 3 sub-scans with offset start angles
    for run in scans:
        assert run.metadata["start"]["plan_args"]["interlaced"] == 3
        ds = run["primary"].read()
        angles = np.asarray(ds["detector_angle"].values)[np.asarray(ds["detector_image_key"].values) == 0]
        assert len(np.unique(angles)) == len(angles) == TINY_SCANS["projections"]
        assert np.any(np.diff(angles) < 0)  # the second sub-scan starts again near 0 deg, offset


def test_radiography_during_cycling(tmp_path, data_dir) -> None:
    from tests.system.operando_util import write_protocol

    steps = """\
  - Charge at 0.5C for 20 minutes with radiography every 5 minutes
  - Rest for 10 minutes
"""
    path = write_protocol(tmp_path, steps, name="radio")
    result = run_protocol(path, data_dir=data_dir, progress=False, handle_sigint=False)
    assert result.state == "done", result.fault
    from controller.catalog import open_catalog

    client = open_catalog(data_dir, create=False)
    radios = [client[u] for u in client if client[u].metadata["start"].get("plan_name") == "radiography"]
    assert len(radios) == 1  # one run for the step's radiographs
    ds = radios[0]["primary"].read()
    t = np.asarray(ds["cell_clock"].values if "cell_clock" in ds else ds["potentiostat_cell_time"].values)
    # at the start of the step and every 5 minutes while it runs (0, 5, 10, 15 min; 20 ends it)
    assert len(t) == 4 and np.diff(t) == pytest.approx([300.0] * 3, abs=0.2)
    assert np.all(np.asarray(ds["potentiostat_current"].values) > 0)  # cycling went on meanwhile
    assert ds["detector_image"].shape[0] == 4
