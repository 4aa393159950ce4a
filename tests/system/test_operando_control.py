"""Pause, resume, abort and suspenders on a running experiment; kill -9 and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from bluesky.utils import RunEngineInterrupted

from controller.experiment import resume_experiment, run_protocol
from tests.system.operando_util import polls, runs_of, write_protocol

pytestmark = [pytest.mark.system]

STEPS = """\
  - {do: scan, label: pristine}
  - do: Charge at C/3 until 4.3 V or 30 minutes
    label: cc
    on: {30 minutes: scan then repeat}
  - {do: Hold at 4.3 V until C/10 or 30 minutes, label: cv, on: {30 minutes: scan then next}}
  - {do: Discharge at C/3 until 3.5 V, label: discharge}
  - {do: scan, label: end}
"""


class _PauseOnCharging:
    """Subscriber that calls ``act(RE)`` once, when the first charging poll is published.

    ``act`` runs on its own thread, as an operator's Ctrl-C or a beamline PV would: asking the
    RunEngine to pause from its own callback thread would wait on itself.
    """

    def __init__(self, act) -> None:
        self.act, self.done, self.RE = act, False, None

    def configure(self, RE) -> None:
        self.RE = RE
        RE.subscribe(self)

    def __call__(self, name: str, doc: dict) -> None:
        if self.done or name != "event_page" or "state" not in doc["data"]:
            return
        if "charging" in list(doc["data"]["state"]):
            self.done = True
            threading.Thread(target=self.act, args=(self.RE,), daemon=True).start()


def _start(tmp_path, data_dir, hook: _PauseOnCharging, box: dict | None = None):
    path = write_protocol(tmp_path, STEPS)
    box = {} if box is None else box
    try:
        run_protocol(path, data_dir=data_dir, progress=False, handle_sigint=False,
                     configure_engine=hook.configure, configure_beamline=lambda bl: box.setdefault("bl", bl))
    except RunEngineInterrupted:
        box["interrupted"] = True
    return box


def test_pause_leaves_the_cell_at_open_circuit_and_resume_carries_on(tmp_path, data_dir) -> None:
    hook = _PauseOnCharging(lambda RE: RE.request_pause(defer=False))
    box = _start(tmp_path, data_dir, hook)
    assert box.get("interrupted") and hook.RE.state == "paused"
    bl = box["bl"]
    assert bl.potentiostat.backend.measure().output_on is False  # paused: nobody watches the cell
    assert bl.scene.cell.current == 0.0
    t_paused = bl.scene.clock.now()
    hook.RE.resume()
    assert hook.RE.state == "idle"
    assert bl.scene.clock.now() > t_paused + 3600  # the protocol went on charging and scanning
    from controller.catalog import open_catalog

    client = open_catalog(data_dir, create=False)
    ec = [client[u] for u in client if client[u].metadata["start"].get("plan_name") == "operando"][0]
    assert ec.metadata["stop"]["exit_status"] == "success"
    p = polls(ec)
    assert p["state"][-1] == "done" and np.any(p["current"] > 0)
    labels = sorted(client[u].metadata["start"]["timestep"] for u in client
                    if client[u].metadata["start"].get("plan_name") == "tomo_scan")
    assert labels[0] == "T0" and len(labels) >= 4


def test_abort_leaves_output_off_and_records_the_abort(tmp_path, data_dir) -> None:
    hook = _PauseOnCharging(lambda RE: RE.request_pause(defer=False))
    box = _start(tmp_path, data_dir, hook)
    assert box.get("interrupted")
    hook.RE.abort("operator abort (test)")
    assert hook.RE.state == "idle"
    bl = box["bl"]
    m = bl.potentiostat.backend.measure()
    assert m.output_on is False and m.mode == "ocv" and bl.scene.cell.current == 0.0
    from controller.catalog import open_catalog

    client = open_catalog(data_dir, create=False)
    ec = [client[u] for u in client if client[u].metadata["start"].get("plan_name") == "operando"][0]
    assert ec.metadata["stop"]["exit_status"] == "abort"
    assert ec.metadata["stop"]["num_events"]["primary"] == len(polls(ec)["state"]) > 1


def test_suspender_puts_the_cell_at_open_circuit_until_it_clears(tmp_path, data_dir) -> None:
    from bluesky.suspenders import SuspendBoolHigh
    from ophyd import Signal

    beam_lost = Signal(name="beam_lost", value=0)
    seen: dict = {}
    box: dict = {}

    def trip(RE) -> None:
        beam_lost.put(1)

        def clear() -> None:
            # Wait for the suspension to take hold (a loaded machine may take a while), not a
            # fixed time: the RunEngine suspends at its next message and stops the charging cell.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and box["bl"].potentiostat.backend.measure().mode != "ocv":
                time.sleep(0.05)
            time.sleep(0.2)
            clock = box["bl"].scene.clock
            before = clock.now()
            seen["mode"] = box["bl"].potentiostat.backend.measure().mode
            time.sleep(0.3)
            seen["cell time frozen"] = clock.now() == before
            beam_lost.put(0)

        threading.Thread(target=clear, daemon=True).start()

    hook = _PauseOnCharging(trip)
    original = hook.configure

    def configure(RE) -> None:
        original(RE)
        RE.install_suspender(SuspendBoolHigh(beam_lost, sleep=0.1))

    hook.configure = configure
    _start(tmp_path, data_dir, hook, box)
    assert not box.get("interrupted")
    assert seen == {"mode": "ocv", "cell time frozen": True}  # suspended, at open circuit
    from controller.catalog import open_catalog

    client = open_catalog(data_dir, create=False)
    ec = [client[u] for u in client if client[u].metadata["start"].get("plan_name") == "operando"][0]
    assert ec.metadata["stop"]["exit_status"] == "success"
    assert np.any(polls(ec)["current"] > 0)  # charging resumed after the suspension


def _scan_table(data_dir: Path) -> list[tuple[str, str, float]]:
    from controller.catalog import open_catalog

    client = open_catalog(data_dir, create=False)
    rows = []
    for uid in client:
        start = client[uid].metadata["start"]
        stop = client[uid].metadata.get("stop") or {}
        if start.get("plan_name") == "tomo_scan" and stop.get("exit_status") == "success":
            rows.append((start["timestep"], start["step"], round(start["trigger"]["time_s"], 3)))
    return sorted(rows)


@pytest.mark.slow
def test_kill_9_then_resume_takes_the_same_scans(tmp_path, data_dir, _catalog_template) -> None:
    import shutil

    path = write_protocol(tmp_path, STEPS)
    reference = tmp_path / "reference"
    reference.mkdir()
    shutil.copy(_catalog_template, reference / "catalog.db")
    expected = run_protocol(path, data_dir=reference, progress=False, handle_sigint=False)
    assert expected.state == "done"

    code = ("import sys; from controller.experiment import run_protocol; "
            f"run_protocol({str(path)!r}, data_dir={str(data_dir)!r}, progress=False, handle_sigint=False)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            checkpoints = list((data_dir / "experiments").glob("*/checkpoint.json"))
            if checkpoints:
                try:
                    state = json.loads(checkpoints[0].read_text())
                except ValueError:
                    state = {}
                if len(state.get("controller", {}).get("scans", [])) >= 3:
                    break
            if proc.poll() is not None:
                pytest.fail("the experiment finished before it could be killed")
            time.sleep(0.02)
        else:
            pytest.fail("no checkpoint with 3 scans within 120 s")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    resumed = resume_experiment(data_dir, progress=False, handle_sigint=False)
    assert resumed.state == "done", resumed.fault
    assert [s.label for s in resumed.scans] == [s.label for s in expected.scans]
    assert [s.step for s in resumed.scans] == [s.step for s in expected.scans]
    got, want = _scan_table(data_dir), _scan_table(reference)
    assert [r[:2] for r in got] == [r[:2] for r in want]  # no scan repeated or skipped
    # Resumed from the last checkpoint, the step restarts its poll rhythm: a limit met after the
    # resume can be met at a slightly different poll, never more than a poll period (10 s) apart.
    assert np.allclose([r[2] for r in got], [r[2] for r in want], atol=10.0)
    ec_runs, _ = runs_of(data_dir, resumed.experiment_id)
    assert ec_runs.metadata["start"]["segment"] == 2
