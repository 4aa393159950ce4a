"""A scan on the simulated beamline, stored in the embedded catalog and read back elsewhere."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from analysis.formats import read_dxfile, read_nxtomo
from controller.catalog import open_catalog
from controller.cli import main
from controller.engine import make_run_engine
from controller.runs import export_dxfile, list_runs
from controller.scan_job import run_sim_scan
from devices.beamline import make_sim_beamline
from plans.tomo import tomo_scan

pytestmark = pytest.mark.system

READER = textwrap.dedent("""
    import json, sys
    import numpy as np
    from controller.catalog import open_catalog
    client = open_catalog(sys.argv[1], create=False)
    run = client[sys.argv[2]]
    frames = np.asarray(run["primary"]["detector_image"].read())
    np.save(sys.argv[3], frames)
    out = {"angles": np.asarray(run["primary"]["rotation"].read()).tolist(),
           "keys": np.asarray(run["primary"]["detector_image_key"].read()).tolist(),
           "start": {k: run.metadata["start"][k] for k in ("plan_name", "scan", "preset", "seed")},
           "exit_status": run.metadata["stop"]["exit_status"]}
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def stored_scan(tmp_path_factory):
    data = tmp_path_factory.mktemp("scan") / "tomocycle-data"
    result = run_sim_scan(preset="quick", data_dir=data, projections=10, darks=2, flats=3,
                          progress=False, handle_sigint=False)
    return result


def test_second_process_reads_back_frames_bit_for_bit(stored_scan, tmp_path):
    out = tmp_path / "frames.npy"
    proc = subprocess.run([sys.executable, "-c", READER, str(stored_scan.data_dir), stored_scan.uid, str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    with h5py.File(stored_scan.frames_file, "r") as f:
        on_disk = f["/entry/instrument/detector/data"][()]
        angles = f["/entry/sample/rotation_angle"][()]
        keys = f["/entry/instrument/detector/image_key"][()]
    frames = np.load(out)
    assert frames.dtype == np.uint16 and frames.shape == on_disk.shape == (15, *on_disk.shape[1:])
    assert np.array_equal(frames, on_disk)
    np.testing.assert_allclose(got["angles"], angles)
    assert got["keys"] == keys.tolist() == [2, 2, 1, 1, 1] + [0] * 10
    assert got["start"]["plan_name"] == "tomo_scan" and got["start"]["preset"] == "quick"
    assert got["start"]["scan"]["projections"] == 10 and got["exit_status"] == "success"


def test_nxtomo_layout(stored_scan):
    with h5py.File(stored_scan.frames_file, "r") as f:
        assert f["/entry"].attrs["NX_class"] == "NXentry"
        assert f["/entry/definition"][()].decode() == "NXtomo"
        assert f["/entry/instrument/detector"].attrs["NX_class"] == "NXdetector"
        assert f["/entry/instrument/detector/data"].dtype == np.uint16
        assert f["/entry/sample/rotation_angle"].attrs["units"] == "degree"
        assert f["/entry/data"].attrs["NX_class"] == "NXdata" and f["/entry/data"].attrs["signal"] == "data"
        # NXdata holds links to the same datasets, not copies
        assert f["/entry/data/data"].id == f["/entry/instrument/detector/data"].id
        assert f["/entry/data/image_key"].id == f["/entry/instrument/detector/image_key"].id
    data = read_nxtomo(stored_scan.frames_file)
    assert data.projections.shape[0] == 10 and data.flats.shape[0] == 3 and data.darks.shape[0] == 2


def test_data_exchange_export_layout(stored_scan, tmp_path):
    client = open_catalog(stored_scan.data_dir, create=False)
    out = export_dxfile(client, stored_scan.uid[:8], tmp_path / "scan_dx.h5")
    with h5py.File(out, "r") as f:
        assert f["/exchange/data"].shape[0] == 10 and f["/exchange/data"].dtype == np.uint16
        assert f["/exchange/data_white"].shape[0] == 3 and f["/exchange/data_dark"].shape[0] == 2
        assert f["/exchange/theta"].attrs["units"] == "degrees"
        np.testing.assert_allclose(f["/exchange/theta"][()], np.arange(10) * 18.0)
    dx, nx = read_dxfile(out), read_nxtomo(stored_scan.frames_file)
    assert np.array_equal(dx.projections, nx.projections) and np.array_equal(dx.flats, nx.flats)


def test_cli_lists_the_run(stored_scan, capsys):
    assert main(["runs", "--data", str(stored_scan.data_dir)]) == 0
    out = capsys.readouterr().out
    assert stored_scan.uid[:8] in out and "tomo_scan" in out and "success" in out


@pytest.mark.parametrize("argv,names", [
    (["--preset", "nope"], "preset"),
    (["--projections", "0"], "projections"),
    (["--exposure", "-0.5"], "exposure"),
])
def test_bad_scan_input_is_one_line_and_leaves_nothing(tmp_path, capsys, argv, names):
    data = tmp_path / "d"
    assert main(["scan", "--sim", "--data", str(data), "-q", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and names in err and err.startswith("tomocycle scan: error:")
    assert not data.exists()


def test_unwritable_data_directory(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert main(["scan", "--sim", "--preset", "quick", "--data", str(blocker / "data"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--data" in err and "cannot write" in err


class _FailingSource:
    """Frames from the scene until ``n`` have been taken, then a camera error."""

    def __init__(self, inner, n):
        self.inner, self.n = inner, n
        self.frame_shape, self.dtype = inner.frame_shape, inner.dtype

    def acquire(self, exposure_s):
        if self.n == 0:
            raise RuntimeError("camera: frame timeout")
        self.n -= 1
        return self.inner.acquire(exposure_s)


def test_a_scan_that_fails_is_not_stored_as_complete(data_dir):
    client = open_catalog(data_dir)
    b = make_sim_beamline("quick", data_dir / "frames")
    b.detector.source = _FailingSource(b.detector.source, 7)
    engine = make_run_engine(client, progress=False, handle_sigint=False)
    with pytest.raises(RuntimeError, match="frame timeout"):
        engine(tomo_scan(b.detector, b.rotation, b.shutter, b.sample, projections=10, darks=2, flats=2,
                         exposure=0.01))
    [summary] = list_runs(client)
    assert summary.exit_status == "fail" and summary.num_events == 7
    with h5py.File(b.detector.last_file, "r") as f:  # what was taken before the fault is on disk
        assert f["/entry/instrument/detector/data"].shape[0] == 7
    assert b.shutter.state.get() == "closed"
    frames = client[summary.uid]["primary"]["detector_image"].read()
    assert np.asarray(frames).shape[0] == 7
