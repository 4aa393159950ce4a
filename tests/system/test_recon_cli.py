"""``tomocycle recon`` end to end: our own scan, and hand-written NXtomo / Data Exchange files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile

from analysis.volume_io import read_volume_h5
from benchmarks.shepp import phantom_image
from controller.cli import main
from controller.scan_job import run_sim_scan
from sim.artefacts import AcquisitionModel, simulate_frame
from sim.projector import project_parallel

pytestmark = pytest.mark.system

N, NA, ROWS, OFFSET = 64, 120, 4, 3.3


def _truth() -> np.ndarray:
    return np.repeat(phantom_image(N, scale=0.02)[None], ROWS, axis=0)  # (ROWS, N, N), mu per voxel


@pytest.fixture(scope="module")
def frames():
    """Counts of a 180-degree scan: 3 darks, 5 flats, projections, 5 flats; axis 3.3 px right."""
    angles = np.linspace(0, 180, NA, endpoint=False)
    lint = project_parallel(_truth(), np.radians(angles), center_offset=OFFSET)
    model = AcquisitionModel(photons=2e4, blur_sigma_px=0.0, ring_fraction=0.0, zinger_rate=0.0)
    rng = np.random.default_rng(7)
    empty = np.zeros((ROWS, N))
    darks = [simulate_frame(empty, "dark", model, rng) for _ in range(3)]
    flats = [simulate_frame(empty, "flat", model, rng) for _ in range(10)]
    proj = [simulate_frame(lint[i], "projection", model, rng) for i in range(NA)]
    return np.stack(darks), np.stack(flats), np.stack(proj), angles


def _write_nxtomo(path, frames) -> None:
    darks, flats, proj, angles = frames
    data = np.concatenate([darks, flats[:5], proj, flats[5:]])
    keys = np.repeat([2, 1, 0, 1], [3, 5, NA, 5])
    rot = np.concatenate([np.zeros(8), angles, np.full(5, 180.0)])
    with h5py.File(path, "w") as f:
        det = f.create_group("entry/instrument/detector")
        det.create_dataset("data", data=data)
        det.create_dataset("image_key", data=keys)
        det.create_dataset("x_pixel_size", data=0.65).attrs["units"] = "um"
        f.create_dataset("entry/sample/rotation_angle", data=rot).attrs["units"] = "degree"


def _write_dx(path, frames) -> None:
    darks, flats, proj, angles = frames
    with h5py.File(path, "w") as f:
        f.create_dataset("exchange/data", data=proj)
        f.create_dataset("exchange/data_white", data=flats)
        f.create_dataset("exchange/data_dark", data=darks)
        f.create_dataset("exchange/theta", data=np.radians(angles)).attrs["units"] = "rad"


def _mask(margin: int = 3) -> np.ndarray:
    yy, xx = np.indices((N, N)) - N // 2
    return np.hypot(yy, xx) < N / 2 - margin


@pytest.mark.parametrize("layout", ["nxtomo", "dx"])
def test_recon_hand_written_files(tmp_path, frames, layout: str, capsys) -> None:
    raw = tmp_path / f"scan_{layout}.h5"
    (_write_nxtomo if layout == "nxtomo" else _write_dx)(raw, frames)
    out, tiffs = tmp_path / "vol.h5", tmp_path / "tiff"
    assert main(["recon", str(raw), "-o", str(out), "--tiff", str(tiffs), "-q"]) == 0
    vol, attrs = read_volume_h5(out)
    assert vol.dtype == np.float32 and vol.shape == (ROWS, N, N)
    assert attrs["center_px"] == pytest.approx(N // 2 + OFFSET, abs=0.5)  # found automatically
    if layout == "nxtomo":
        assert attrs["voxel_size_um"] == pytest.approx(0.65)
    truth = _truth()
    m = _mask()
    err = np.sqrt(np.mean((vol[:, m] - truth[:, m]) ** 2))
    # 10 % of the phantom's contrast (0.02); photon noise at 2e4 counts leaves about 7 %.
    assert err < 0.002
    assert abs(vol[:, m].mean() - truth[:, m].mean()) < 0.02 * 0.02
    assert len(list(tiffs.glob("slice_*.tif"))) == ROWS
    np.testing.assert_array_equal(tifffile.imread(tiffs / "slice_00001.tif"), vol[1])
    assert "volume:" in capsys.readouterr().out


def test_recon_options_bin_rings_paganin_manual_centre(tmp_path, frames) -> None:
    raw = tmp_path / "scan.nx"
    _write_nxtomo(raw, frames)
    out = tmp_path / "vol.h5"
    args = ["recon", str(raw), "-o", str(out), "-q", "--bin", "2", "--rings", "--zingers",
            "--paganin", "35", "--center", str(N // 2 + OFFSET), "--filter", "hann"]
    assert main(args) == 0
    vol, attrs = read_volume_h5(out)
    assert vol.shape == (ROWS // 2, N // 2, N // 2)
    assert attrs["center_px"] == pytest.approx(N // 2 + OFFSET)
    assert attrs["voxel_size_um"] == pytest.approx(1.3) and attrs["bin"] == 2
    assert attrs["delta_beta"] == 35.0 and np.all(np.isfinite(vol))


def test_recon_of_our_own_simulated_scan(tmp_path) -> None:
    scan = run_sim_scan(preset="quick", data_dir=tmp_path / "data", projections=60, darks=2, flats=3,
                        progress=False, handle_sigint=False)
    out = tmp_path / "vol.h5"
    assert main(["recon", str(scan.frames_file), "-o", str(out), "-q", "--bin", "2"]) == 0
    vol, attrs = read_volume_h5(out)
    with h5py.File(scan.frames_file) as f:
        rows, cols = f["/entry/data/data"].shape[1:]
    assert vol.dtype == np.float32 and vol.shape == (rows // 2, cols // 2, cols // 2)
    assert attrs["voxel_size_um"] == pytest.approx(1.0)  # 0.5 um voxels binned 2x
    assert attrs["center_px"] == pytest.approx(cols // 2, abs=0.5)  # the simulator's axis
    assert np.all(np.isfinite(vol)) and vol.std() > 0
