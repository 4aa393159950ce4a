"""The live pipeline: 0MQ publisher/proxy, the consumer process, gap recovery, offline and Dask analysis.

One short protocol (three 8-projection scans of the ``quick`` instrument) is run several times.
Every consumer's results are compared with the offline analysis of the same stored experiment
(``tomocycle analyze``), file by file: the per-timestep volumes and numbers and the series tables.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from controller.experiment_analysis import (ANALYSIS_DIR, analysis_root, analyze_experiment,
                                            runs_of_experiment)
from tests.system.operando_util import write_protocol

pytestmark = [pytest.mark.system]

STEPS = """\
  - {do: scan, label: pristine}
  - {do: Charge at C/3 until 4.3 V or 20 minutes, label: cc1, on: {20 minutes: scan then next}}
  - {do: Charge at C/3 until 4.3 V or 20 minutes, label: cc2, on: {20 minutes: scan then next}}
"""
TIMESTEPS = ["T0", "T1", "T2"]
REPO = Path(__file__).resolve().parents[2]
#: Upper bound for a consumer to finish after its experiment (generous: 2 shared cores in CI).
CONSUMER_TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def snapshot(root: Path) -> dict[str, Any]:
    """What must agree between two analyses of one experiment (not timestamps, not previews)."""
    from analysis.volume_io import read_volume_h5

    out: dict[str, Any] = {}
    for name in ("particles.csv", "electrode.csv", "summary.txt"):
        out[name] = (root / name).read_text()
    summary = json.loads((root / "summary.json").read_text())
    out["summary.timesteps"] = summary["timesteps"]
    for step in TIMESTEPS:
        out[f"{step}/result.json"] = json.loads((root / step / "result.json").read_text())
        out[f"{step}/class_fractions.json"] = json.loads((root / step / "class_fractions.json").read_text())
        out[f"{step}/volume"] = read_volume_h5(root / step / "volume.h5")[0].tobytes()
        with np.load(root / step / "slices.npz") as z:
            out[f"{step}/slices"] = {k: z[k].tobytes() for k in sorted(z.files)}
    return out


def assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key], f"{key} differs"


def _analysis_runs(data_dir: Path, experiment_id: str) -> list[dict]:
    from controller.catalog import open_catalog

    client = open_catalog(data_dir, create=False)
    return [run.metadata["start"] for _, run in runs_of_experiment(client, experiment_id)
            if run.metadata["start"].get("kind") == "analysis"]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A finished experiment with every document it emitted, and its offline analysis."""
    from controller.experiment import run_protocol

    tmp = tmp_path_factory.mktemp("live")
    data = tmp / "data"
    docs: list[tuple[str, dict]] = []
    result = run_protocol(write_protocol(tmp, STEPS), data_dir=data, progress=False, handle_sigint=False,
                          configure_engine=lambda RE: RE.subscribe(lambda n, d: docs.append((n, d))))
    assert result.ok and [s.label for s in result.scans] == TIMESTEPS
    root = analyze_experiment(data, result.experiment_id)
    reference = snapshot(root)
    runs = _analysis_runs(data, result.experiment_id)
    shutil.move(root, tmp / "offline")
    return {"data": data, "id": result.experiment_id, "docs": docs, "reference": reference, "runs": runs}


def test_offline_analysis_writes_files_and_analysis_runs(stored: dict[str, Any]) -> None:
    ref = stored["reference"]
    steps = ref["summary.timesteps"]
    assert [s["timestep"] for s in steps] == TIMESTEPS
    thick = [s["thickness_um"] for s in steps]
    # The electrode swells as the cell charges (Si lithiates): thickness grows scan by scan.
    assert all(np.isfinite(thick)) and thick[0] < thick[1] < thick[2]
    for s in steps:
        assert set(s["class_fractions"]) == {"active", "deactivated", "inactive", "lithiated", "unresolved"}
        assert set(s["slices"]) == {"npz", "xy", "xz", "yz"}
    runs = sorted(stored["runs"], key=lambda r: r["timestep"])
    assert [r["timestep"] for r in runs] == TIMESTEPS
    assert [r["thickness_um"] for r in runs] == thick
    assert all(r["class_fractions"] == s["class_fractions"] for r, s in zip(runs, steps))


def test_dask_path_gives_identical_results(stored: dict[str, Any], tmp_path: Path) -> None:
    root = analyze_experiment(stored["data"], stored["id"], scheduler="local", record=False)
    try:
        got = snapshot(root)
        for name in ("particles.csv", "electrode.csv"):
            assert got[name] == stored["reference"][name]
        assert_same(got, stored["reference"])
    finally:
        shutil.rmtree(root)


def test_late_consumer_catches_up_on_a_finished_experiment(stored: dict[str, Any]) -> None:
    from controller.live_consumer import LiveConsumer

    consumer = LiveConsumer(stored["data"], exit_when_finished=True)
    stats = consumer.run()
    root = analysis_root(stored["data"], stored["id"])
    try:
        assert stats.timesteps_done == 3 and stats.documents == 0
        assert_same(snapshot(root), stored["reference"])
        # The offline analysis recorded the analysis runs already: not written twice.
        assert len(_analysis_runs(stored["data"], stored["id"])) == 3
    finally:
        shutil.rmtree(root)


def test_consumer_recovers_dropped_documents(stored: dict[str, Any]) -> None:
    """Documents lost as 0MQ loses them (a start, a stop, event pages) are found in the catalog."""
    from controller.live_consumer import LiveConsumer

    docs = stored["docs"]
    scan_starts = [d["uid"] for n, d in docs if n == "start" and d.get("plan_name") == "tomo_scan"]
    dropped = set()
    for i, (name, doc) in enumerate(docs):
        if ((name == "start" and doc["uid"] == scan_starts[1])
                or (name == "stop" and doc["run_start"] == scan_starts[2])
                or (name == "event_page" and i % 3 == 0)):
            dropped.add(i)
    consumer = LiveConsumer(stored["data"], exit_when_finished=True, catchup_s=3600)
    # No start-up reconciliation: only what the documents (and the detected gaps) trigger.
    consumer._dirty.clear()
    for i, (name, doc) in enumerate(docs):
        if i not in dropped:
            consumer.handle(name, doc)
    assert consumer.stats.missed_starts >= 1 and consumer.stats.seq_gaps >= 1
    consumer.reconcile()
    root = analysis_root(stored["data"], stored["id"])
    try:
        assert consumer.stats.timesteps_done == 3
        assert_same(snapshot(root), stored["reference"])
    finally:
        shutil.rmtree(root)


def _start_experiment(tmp: Path, data: Path, in_port: int) -> subprocess.Popen:
    protocol = write_protocol(tmp, STEPS)
    code = ("from controller.experiment import run_protocol; from controller.live_publish import attach_publisher; "
            f"r = run_protocol({str(protocol)!r}, data_dir={str(data)!r}, progress=False, handle_sigint=False, "
            f"configure_engine=lambda RE: attach_publisher(RE, '127.0.0.1:{in_port}')); print(r.experiment_id)")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=_env(), cwd=tmp)


def _start_consumer(data: Path, out_port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "controller.cli", "consume", "--data", str(data),
                             "--proxy", f"127.0.0.1:{out_port}", "--exit-when-finished", "--catchup", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())


def _offline_reference(data: Path, experiment_id: str, live_root: Path, tmp: Path) -> dict[str, Any]:
    """The offline analysis of the experiment (``tomocycle analyze``), made while the live results
    wait beside it; they are put back afterwards."""
    aside = tmp / "live-results"
    shutil.move(live_root, aside)
    try:
        ref = snapshot(analyze_experiment(data, experiment_id, record=False))
        shutil.rmtree(live_root)
    finally:
        shutil.move(aside, live_root)
    return ref


def _live_run(tmp_path: Path, *, kill: bool) -> tuple[Path, str]:
    """Run the protocol publishing over 0MQ with a consumer alongside (killed and restarted once
    it has written anything of T0, when ``kill``); return the data directory and experiment id."""
    from controller.live_publish import start_proxy

    data = tmp_path / "data"
    in_port, out_port = _free_port(), _free_port()
    with start_proxy(in_port=in_port, out_port=out_port):
        consumer = _start_consumer(data, out_port)
        experiment = _start_experiment(tmp_path, data, in_port)
        if kill:
            # A live preview during the first scan, or T0's results: the experiment is running,
            # T1 and T2 are still to come.
            deadline = time.monotonic() + CONSUMER_TIMEOUT_S
            while not list((data / ANALYSIS_DIR).glob("*/T0/*")):
                assert time.monotonic() < deadline and consumer.poll() is None, "the consumer wrote nothing of T0"
                time.sleep(0.2)
            consumer.send_signal(signal.SIGKILL)
            consumer.communicate()
            consumer = _start_consumer(data, out_port)
        out, _ = experiment.communicate(timeout=CONSUMER_TIMEOUT_S)
        assert experiment.returncode == 0
        log, _ = consumer.communicate(timeout=CONSUMER_TIMEOUT_S)
        assert consumer.returncode == 0, log
    return data, out.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The protocol run with an uninterrupted consumer following it over 0MQ."""
    tmp = tmp_path_factory.mktemp("live-uninterrupted")
    data, experiment_id = _live_run(tmp, kill=False)
    return {"tmp": tmp, "data": data, "id": experiment_id, "root": analysis_root(data, experiment_id)}


def _check_matches_offline(data: Path, experiment_id: str, tmp: Path) -> None:
    root = analysis_root(data, experiment_id)
    summary = json.loads((root / "summary.json").read_text())
    assert [s["timestep"] for s in summary["timesteps"]] == TIMESTEPS
    assert summary["experiment_finished"] is True
    live = snapshot(root)
    runs = _analysis_runs(data, experiment_id)
    assert sorted(r["timestep"] for r in runs) == TIMESTEPS
    assert_same(live, _offline_reference(data, experiment_id, root, tmp))


def test_live_consumer_matches_offline(live: dict[str, Any]) -> None:
    """A consumer follows a running experiment over 0MQ and ends with exactly the offline results
    and one analysis run per timestep."""
    # The live view was written while scans were acquired.
    assert all((live["root"] / step / "preview_slices.npz").exists() for step in TIMESTEPS)
    _check_matches_offline(live["data"], live["id"], live["tmp"])


def test_killed_and_restarted_consumer_matches_offline(tmp_path: Path) -> None:
    """Killed (SIGKILL) mid-experiment and restarted, the consumer still ends with the offline results."""
    data, experiment_id = _live_run(tmp_path, kill=True)
    _check_matches_offline(data, experiment_id, tmp_path)


def test_replay_through_the_live_pipeline_matches_live(live: dict[str, Any], tmp_path: Path) -> None:
    """``tomocycle replay --to DIR --publish`` with a consumer following the replay over 0MQ gives
    the files, numbers and analysis runs that the live consumer wrote during the experiment."""
    from controller.live_publish import start_proxy

    out = tmp_path / "replayed"
    in_port, out_port = _free_port(), _free_port()
    with start_proxy(in_port=in_port, out_port=out_port):
        consumer = _start_consumer(out, out_port)
        replay = subprocess.run([sys.executable, "-m", "controller.cli", "replay", live["id"], "--data",
                                 str(live["data"]), "--to", str(out), "--publish", f"127.0.0.1:{in_port}"],
                                capture_output=True, text=True, timeout=CONSUMER_TIMEOUT_S, env=_env())
        log, _ = consumer.communicate(timeout=CONSUMER_TIMEOUT_S)
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert consumer.returncode == 0, log
    # It followed the replay's documents (not only the catalog), and analysed every timestep.
    stats = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", log.rsplit("ConsumerStats(", 1)[1])}
    assert stats["documents"] > 0 and stats["timesteps_done"] == len(TIMESTEPS), log
    first, again = snapshot(live["root"]), snapshot(analysis_root(out, live["id"]))
    for step in TIMESTEPS:
        # Each copy reads its own frame files: the replay links them into its data directory.
        original = Path(first[f"{step}/result.json"]["frames_file"])
        copied = Path(again[f"{step}/result.json"]["frames_file"])
        assert copied.parent == (out / "frames").resolve() and copied.name == original.name
    assert_same(_without_frame_paths(again), _without_frame_paths(first))
    # Analysis runs: written by the replay's consumer (the original's are results, not documents
    # of the experiment, and are not replayed), one per timestep, with the live numbers.
    live_runs = {r["timestep"]: r for r in _analysis_runs(live["data"], live["id"])}
    replay_runs = {r["timestep"]: r for r in _analysis_runs(out, live["id"])}
    assert sorted(replay_runs) == TIMESTEPS and len(_analysis_runs(out, live["id"])) == len(TIMESTEPS)
    for step, run in replay_runs.items():
        assert run["uid"] != live_runs[step]["uid"]
        for key in ("scan_uid", "class_fractions", "thickness_um", "n_particles", "lithiated_at", "slices"):
            assert run[key] == live_runs[step][key], (step, key)


def _without_frame_paths(snap: dict[str, Any]) -> dict[str, Any]:
    return {k: ({f: v for f, v in value.items() if f != "frames_file"} if k.endswith("result.json") else value)
            for k, value in snap.items()}
