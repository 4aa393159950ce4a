"""End to end through the real wire protocols: SCPI on a pty, Channel Access on loopback.

The short CC-CV protocol runs twice: on the in-process simulator, and with the potentiostat
behind the simulated Keithley 2400 (pyserial on a pty) and the rotation and sample stages behind
a caproto motor IOC (ophyd.EpicsMotor over Channel Access on 127.0.0.1). Both share one kind of
scene on a virtual clock, so the two runs must agree: same states at the same cell times, same
scans, V and I within the tolerances below. Then each fault (no reply, garbled reply, instrument
error, disconnect mid-CC, motor IOC killed mid-scan) must end with the simulated instrument's
output off, an alarm naming the cause, and everything recorded before the fault in the catalog.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import controller.experiment as experiment
from controller.catalog import open_catalog
from controller.cli import main
from devices.beamline_config import BeamlineConfigError

pytestmark = [pytest.mark.system, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "tests" / "system" / "protocols" / "short-cccv.yaml"
EXAMPLE = ROOT / "beamlines" / "sim-serial-epics.yaml"
FRAMES_PER_SCAN = 2 + 2 + 16  # darks, flats, projections of short-cccv.yaml
#: Tolerances of "the same result": cell times and states exactly equal (one virtual timeline);
#: V and I as measured (the cell model is advanced in a different pattern of calls); charge is
#: counted by the driver (I dt between polls) against the cell model's exact integral.
V_TOL, I_TOL, Q_REL = 1e-3, 1e-9, 0.01


def write_config(folder: Path, **potentiostat: Any) -> Path:
    """A simulate-mode config with PV prefixes of its own (no stale CA search results)."""
    tag = f"T{uuid.uuid4().hex[:8]}"
    config = {"name": "test", "simulate": True, "epics": {"connect_timeout": "3 s"},
              "devices": {
                  "potentiostat": {"backend": "serial", "port": "auto", "timeout": "200 ms", "retries": 1,
                                   "reconnect_attempts": 2, "reconnect_delay": "20 ms",
                                   "safe_state_attempts": 250, **potentiostat},
                  "rotation": {"backend": "epics", "prefix": f"{tag}:ROT", "limits": [-720, 720],
                               "move_timeout": "1 s"},
                  "sample": {"backend": "epics", "prefix": f"{tag}:SAMX", "limits": [-25, 25],
                             "move_timeout": "1 s"}}}
    path = folder / "beamline.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def fresh_data_dir(tmp_path_factory, template: Path, name: str) -> Path:
    root = tmp_path_factory.mktemp(name) / "tomocycle-data"
    root.mkdir()
    shutil.copy(template, root / "catalog.db")
    return root


def run(data: Path, beamline: Path | None = None, hook=None, monkeypatch=None) -> experiment.ExperimentResult:
    """Run the short protocol; ``hook(beamline)`` sees the configured beamline before the plan."""
    if hook is not None:
        real = experiment.configure_beamline

        def capture(config, bl):
            hook(real(config, bl))
            return bl

        monkeypatch.setattr(experiment, "configure_beamline", capture)
    return experiment.run_protocol(PROTOCOL, data_dir=data, progress=False, handle_sigint=False,
                                   beamline=beamline)


def stored(data: Path, experiment_id: str) -> dict[str, Any]:
    """The experiment's runs in the catalog: the electrochemistry streams and the scans."""
    client = open_catalog(data, create=False)
    out: dict[str, Any] = {"scans": {}}
    for _, r in client.items():
        start = r.metadata["start"]
        if start.get("experiment_id") != experiment_id and start.get("experiment") != experiment_id:
            continue
        if start.get("plan_name") == "operando":
            out["ec"] = {k: np.asarray(r["primary"][k].read()) for k in
                         ("cell_time", "voltage", "current", "charge", "state")}
            has_alarms = "alarms" in r and "message" in list(r["alarms"])  # declared even when empty
            out["alarms"] = [str(m) for m in np.asarray(r["alarms"]["message"].read())] if has_alarms else []
            out["ec_exit"] = r.metadata["stop"]["exit_status"]
        elif start.get("timestep"):
            n = len(r["primary"]["detector_image_key"].read()) if "primary" in r else 0
            frames = np.asarray(r["primary"]["detector_image"].read()) if n else None
            out["scans"][start["timestep"]] = {"frames": n, "images": frames,
                                               "exit": r.metadata["stop"]["exit_status"]}
    return out


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("template")
    open_catalog(root)
    return root / "catalog.db"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, template):
    data = fresh_data_dir(tmp_path_factory, template, "inproc")
    result = run(data)
    return result, stored(data, result.experiment_id)


@pytest.fixture(scope="module")
def wired(tmp_path_factory, template):
    """The same protocol through the CLI with the shipped sim-serial-epics.yaml."""
    data = fresh_data_dir(tmp_path_factory, template, "wired")
    seen: dict[str, Any] = {}
    mp = pytest.MonkeyPatch()
    real = experiment.configure_beamline

    def capture(config, bl):
        real(config, bl)
        seen["beamline"] = bl
        return bl

    mp.setattr(experiment, "configure_beamline", capture)
    real_run = experiment.run_protocol

    def keep(*args, **kwargs):
        seen["result"] = real_run(*args, **kwargs)
        return seen["result"]

    mp.setattr(experiment, "run_protocol", keep)
    try:
        code = main(["run", str(PROTOCOL), "--beamline", str(EXAMPLE), "--data", str(data), "-q"])
    finally:
        mp.undo()
    result = seen["result"]
    return code, result, stored(data, result.experiment_id), seen["beamline"]


def test_serial_and_epics_match_the_in_process_simulator(reference, wired):
    ref, ref_data = reference
    code, res, data, beamline = wired
    assert code == 0 and res.state == ref.state == "done"
    assert [(s.label, s.step, s.time_s, s.ok) for s in res.scans] == \
        [(s.label, s.step, s.time_s, s.ok) for s in ref.scans]
    a, b = ref_data["ec"], data["ec"]
    assert len(a["cell_time"]) == len(b["cell_time"]) > 50
    np.testing.assert_array_equal(b["cell_time"], a["cell_time"])
    np.testing.assert_array_equal(b["state"], a["state"])
    np.testing.assert_allclose(b["voltage"], a["voltage"], atol=V_TOL, rtol=0)
    np.testing.assert_allclose(b["current"], a["current"], atol=I_TOL, rtol=0)
    dq_ref, dq = a["charge"][-1] - a["charge"][0], b["charge"][-1] - b["charge"][0]
    assert dq == pytest.approx(dq_ref, rel=Q_REL)
    for label in ("T0", "T1", "T2"):
        assert data["scans"][label]["frames"] == ref_data["scans"][label]["frames"] == FRAMES_PER_SCAN
    # The frames were taken at the angles the IOC moved to: same images, within Poisson noise.
    img, img_ref = data["scans"]["T1"]["images"].astype(float), ref_data["scans"]["T1"]["images"].astype(float)
    assert abs(img.mean() - img_ref.mean()) < 0.01 * img_ref.mean()
    # It really went over the wires, and ended with the output off.
    inst = beamline.simulators["scpi"]
    assert sum(line == ":READ?" for line in inst.received) >= len(b["cell_time"])
    assert not inst.smu.output_on and inst.received[-2:] == [":OUTP OFF", ":OUTP?"]
    assert sum(axis.moves for axis in beamline.simulators["motor_ioc"].group.axes.values()) >= 12


def _unplug_watch(bl) -> None:
    """Pull the cable mid-CC; plug it back only once the driver has given up (it then still
    owes the instrument its safe state, and reaches it)."""
    inst, backend = bl.simulators["scpi"], bl.potentiostat.backend
    inst.arm("unplug", after_reads=10)

    def replug_when_lost() -> None:
        for _ in range(2000):
            if backend.link == "lost":
                inst.replug()
                return
            threading.Event().wait(0.005)

    threading.Thread(target=replug_when_lost, daemon=True).start()


FAULTS = {
    "no_reply": (lambda bl: bl.simulators["scpi"].arm("no_reply", after_reads=10), "no reply within 0.2 s"),
    "garble": (lambda bl: bl.simulators["scpi"].arm("garble", after_reads=10), "garbled reply"),
    "error": (lambda bl: bl.simulators["scpi"].arm("error", after_reads=10), '-221,"Settings conflict"'),
    "disconnect": (_unplug_watch, "disconnected"),
    "ioc_killed": (None, "scan T1 failed"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_ends_at_open_circuit_with_alarm_and_records_kept(fault, reference, tmp_path, tmp_path_factory,
                                                                template, monkeypatch):
    ref, ref_data = reference
    data = fresh_data_dir(tmp_path_factory, template, f"fault-{fault}")
    config = write_config(tmp_path)
    arm, message = FAULTS[fault]
    seen: dict[str, Any] = {}

    def hook(bl):
        seen["bl"] = bl
        if fault == "ioc_killed":
            ioc = bl.simulators["motor_ioc"]
            # T0 moves the rotation twice (start, end of the sweep); T1's first move kills it,
            # after T1's darks and flats are on disk.
            ioc.die_after_moves(bl.rotation.prefix, 2)
        else:
            arm(bl)

    result = run(data, config, hook, monkeypatch)
    got = stored(data, result.experiment_id)
    inst = seen["bl"].simulators["scpi"]
    assert result.state == "fault"
    assert message in result.fault and message in " ".join(got["alarms"])
    assert not inst.smu.output_on, "the simulated 2400 still has its output on"
    assert got["ec_exit"] == "fail"
    # Every poll before the fault is in the catalog, identical to the healthy run's.
    a, b = ref_data["ec"], got["ec"]
    n = len(b["cell_time"])
    if b["state"][-1] == "fault":
        # The reading that went with the fault decision (after a refused command, or after the
        # failed scan, which took less time than a whole one) is not in the healthy run.
        n -= 1
    np.testing.assert_array_equal(b["cell_time"][:n], a["cell_time"][:n])
    np.testing.assert_allclose(b["voltage"][:n], a["voltage"][:n], atol=V_TOL, rtol=0)
    charging = np.flatnonzero(a["state"] == "charging")
    assert n > charging[10], "polls of the CC step before the fault are missing"
    assert got["scans"]["T0"]["frames"] == FRAMES_PER_SCAN
    if fault == "ioc_killed":
        t1 = got["scans"]["T1"]
        assert t1["exit"] == "fail" and t1["frames"] == 4  # darks and flats taken before the IOC died
        assert "rotation is not connected" in " ".join(got["alarms"])


def test_unreachable_serial_port_fails_before_anything_is_recorded(tmp_path, data_dir):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"devices": {"potentiostat": {"backend": "serial",
                                                                "port": str(tmp_path / "ttyUSB9")}}}))
    with pytest.raises(BeamlineConfigError, match=r"potentiostat at serial port .*ttyUSB9 does not answer"):
        experiment.run_protocol(PROTOCOL, data_dir=data_dir, progress=False, handle_sigint=False, beamline=bad)
    assert list(open_catalog(data_dir, create=False).keys()) == []
    assert not any((data_dir / "experiments").glob("*")) if (data_dir / "experiments").exists() else True


def test_unreachable_pv_names_device_and_address(tmp_path, data_dir, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"epics": {"connect_timeout": "300 ms"}, "devices": {
        "rotation": {"backend": "epics", "prefix": "NOWHERE:ROT", "limits": [-360, 360]}}}))
    code = main(["run", str(PROTOCOL), "--beamline", str(bad), "--data", str(data_dir), "-q"])
    err = capsys.readouterr().err
    assert code != 0
    assert "rotation at EPICS motor NOWHERE:ROT" in err and "does not answer" in err
    assert list(open_catalog(data_dir, create=False).keys()) == []


def test_resume_rebuilds_the_configured_beamline(tmp_path, tmp_path_factory, template):
    """Interrupted at the start of T1 (a pause, as Ctrl-C makes), resumed from the checkpoint in
    the same process: the simulators and devices are rebuilt from the configuration file, the
    CA client finds the new IOC, and the protocol completes with T1 taken again."""
    from bluesky.utils import RunEngineInterrupted

    data = fresh_data_dir(tmp_path_factory, template, "resume")
    config = write_config(tmp_path)
    engines = []

    def pause_at_t1(engine):
        engines.append(engine)

        def watch(name, doc):
            if name == "start" and doc.get("timestep") == "T1":
                # request_pause from the RunEngine's own thread would wait on itself
                threading.Thread(target=engine.request_pause, kwargs={"defer": False}).start()

        engine.subscribe(watch)

    with pytest.raises(RunEngineInterrupted):
        experiment.run_protocol(PROTOCOL, data_dir=data, progress=False, handle_sigint=False,
                                beamline=config, configure_engine=pause_at_t1)
    engines[0].halt()  # the interrupted process would exit here
    result = experiment.resume_experiment(data, progress=False, handle_sigint=False)
    assert result.state == "done"
    assert [s.label for s in result.scans] == ["T0", "T1", "T2"] and all(s.ok for s in result.scans)
