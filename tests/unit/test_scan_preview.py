"""The live consumer's preview path: an NXtomo file read while written, in chunks, into files."""

from __future__ import annotations

import numpy as np
import pytest

import controller.scan_preview as sp
from analysis.fbp import fbp_orthogonal, fbp_volume
from analysis.live_preview import correct_and_bin, flat_gain
from analysis.prep import bin_frames, minus_log, normalise
from devices.nxtomo_file import NXtomoWriter

ROWS, COLS, N = 16, 32, 40


def _write(path, n_written: int) -> tuple[np.ndarray, np.ndarray]:
    """An NXtomo file of a disc: 2 darks, 3 flats, then ``n_written`` of N projections."""
    rng = np.random.default_rng(3)
    x = np.arange(COLS) - COLS / 2 + 0.5
    chord = 2 * np.sqrt(np.clip(81.0 - x**2, 0, None)) * 0.05
    proj = rng.poisson(4000 * np.exp(-np.broadcast_to(chord, (N, ROWS, COLS)))) + 100
    angles = np.linspace(0.0, 180.0, N, endpoint=False)
    w = NXtomoWriter(path, (ROWS, COLS))
    for _ in range(2):
        w.append(rng.poisson(100, (ROWS, COLS)).astype(np.uint16), image_key=2, angle_deg=0.0, count_time=0.1)
    for _ in range(3):
        w.append(rng.poisson(4100, (ROWS, COLS)).astype(np.uint16), image_key=1, angle_deg=0.0, count_time=0.1)
    for i in range(n_written):
        w.append(proj[i].astype(np.uint16), image_key=0, angle_deg=angles[i], count_time=0.1)
    w.close()
    return proj, angles


def test_preview_of_a_file_equals_batch_fbp_of_its_corrected_projections(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(sp, "READ_CHUNK", 7)  # several reads per advance, as a late consumer does
    path = tmp_path / "scan.h5"
    _write(path, N)
    preview = sp.ScanPreview(path, tmp_path / "T0", bin=2)
    assert sp.frames_in(path) == 5 + N
    assert preview.advance(20) == 20 and preview.view.n_projections == 15
    assert preview.advance(5 + N) == N - 15 and preview.view.n_projections == N
    names = preview.write(final=True)
    assert set(names) == {"npz", "xy", "xz", "yz", "volume"}
    assert all((tmp_path / "T0" / name).stat().st_size > 0 for name in names.values())

    frames, keys, angles = sp.read_frames(path, 0, 5 + N)
    lint = minus_log(normalise(frames[keys == 0], frames[keys == 1], frames[keys == 2]))
    axial, xz, yz = fbp_orthogonal(lint, np.deg2rad(angles[keys == 0]))
    with np.load(tmp_path / "T0" / names["npz"]) as got:
        scale = np.abs(axial).max()
        np.testing.assert_allclose(got["xy"], axial, atol=2e-4 * scale)
        np.testing.assert_allclose(got["xz"], xz, atol=2e-4 * scale)
        np.testing.assert_allclose(got["yz"], yz, atol=2e-4 * scale)
    coarse = fbp_volume(minus_log(bin_frames(normalise(frames[keys == 0], frames[keys == 1], frames[keys == 2]), 2)),
                        np.deg2rad(angles[keys == 0]))
    np.testing.assert_allclose(np.load(tmp_path / "T0" / names["volume"]), coarse, atol=2e-4 * np.abs(coarse).max())


def test_writes_are_throttled_until_final_and_unflushed_frames_wait(tmp_path) -> None:
    path = tmp_path / "scan.h5"
    _write(path, 10)
    preview = sp.ScanPreview(path, tmp_path / "T0", min_write_s=60.0)
    assert preview.write() is None  # nothing read yet
    with pytest.raises(OSError, match="holds 15 frames, 20 announced"):
        preview.advance(20)
    assert preview.read == 0  # nothing half-read: the next datum tries again
    preview.advance(15)
    assert preview.write() is not None
    assert preview.write() is None  # within min_write_s of the last write
    assert "volume" in preview.write(final=True)
    assert sp.frames_in(tmp_path / "missing.h5") == 0


def test_correction_matches_the_batch_chain_and_keeps_bad_pixels_finite() -> None:
    rng = np.random.default_rng(0)
    raw = rng.poisson(3000, (3, 12, 20)).astype(np.uint16)
    raw[0, 0, 0], raw[1, 5, 7] = 0, 60000  # below the dark; above the flat
    dark = np.full((12, 20), 100.0, np.float32)
    flat = np.full((12, 20), 4000.0, np.float32)
    flat[2, 3] = 50.0  # a dead flat pixel (below the dark): transmission 0
    full, binned = correct_and_bin(raw, dark, flat_gain(dark, flat), 4)
    trans = normalise(raw, flat[None], dark[None])
    np.testing.assert_allclose(full, minus_log(trans), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(binned, minus_log(bin_frames(trans, 4)), rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(full)) and binned.shape == (3, 3, 5)
    with pytest.raises(ValueError, match="out must be float32 arrays"):
        correct_and_bin(raw, dark, flat_gain(dark, flat), 4, out=(full, np.empty((3, 3, 4), np.float32)))


def test_a_view_that_falls_behind_pairs_the_volume_until_it_catches_up(tmp_path, monkeypatch) -> None:
    path = tmp_path / "scan.h5"
    _write(path, N)
    clock = {"t": 0.0}
    monkeypatch.setattr(sp.time, "monotonic", lambda: clock["t"])
    monkeypatch.setattr(sp, "READ_CHUNK", 5)
    preview = sp.ScanPreview(path, tmp_path / "T0")
    preview.advance(6)  # darks, flats and one projection; no arrival rate known yet
    clock["t"] = 10.0
    preview.advance(8)  # 0.2 frames a second so far: nothing waits
    assert preview.view.paired == 0
    clock["t"] = 12.0
    preview.advance(5 + N)  # 37 frames in 2 s: ~6 s of backlog at the smoothed rate
    assert 0 < preview.view.paired < N - 10  # paired while behind, exact again once caught up
    assert preview.view.n_projections == N


def test_a_timestep_wider_than_max_side_is_reconstructed_binned(tmp_path) -> None:
    from analysis.reconstruction import ReconOptions
    from analysis.timestep import reconstruct_file

    path = tmp_path / "scan.h5"
    _write(path, N)
    opts = ReconOptions(center=COLS / 2)
    binned = reconstruct_file(path, opts, max_side=16)  # 32 columns -> binned 2x
    assert binned.volume.shape == (ROWS // 2, COLS // 2, COLS // 2)
    np.testing.assert_array_equal(binned.volume, reconstruct_file(path, ReconOptions(center=COLS / 2, bin=2)).volume)
    assert reconstruct_file(path, opts, max_side=32).volume.shape == (ROWS, COLS, COLS)  # narrow enough
    assert reconstruct_file(path, ReconOptions(center=COLS / 2, bin=4), max_side=16).volume.shape[0] == ROWS // 4
