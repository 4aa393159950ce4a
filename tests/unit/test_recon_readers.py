"""NXtomo and Data Exchange readers on files written by hand with h5py, foreign layouts included."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from analysis.formats import TomoFileError
from analysis.readers import read_tomo
from controller.cli import main

FRAME = (3, 5)


def _frames(n: int, value: float) -> np.ndarray:
    return np.full((n, *FRAME), value, np.uint16)


def _nxtomo(path, *, entry="entry", in_nxdata_only=False, key_name="image_key", keys=None,
            angles=None, angle_units="degree"):
    keys = np.array([2, 1, 0, 0, 0, 0, 1]) if keys is None else np.asarray(keys)
    angles = np.array([0, 0, 0, 45, 90, 135, 0.0]) if angles is None else np.asarray(angles)
    data = np.concatenate([_frames(1, 100), _frames(1, 1000), _frames(4, 600), _frames(len(keys) - 6, 1100)])
    with h5py.File(path, "w") as f:
        e = f.create_group(entry)
        e.attrs["NX_class"] = "NXentry"
        group = e.create_group("data") if in_nxdata_only else e.create_group("instrument/detector")
        group.create_dataset("data", data=data)
        group.create_dataset(key_name, data=keys)
        where = e["data"] if in_nxdata_only else e.create_group("sample")
        rot = where.create_dataset("rotation_angle", data=angles)
        if angle_units:
            rot.attrs["units"] = angle_units
        if not in_nxdata_only:
            e["instrument/detector"].create_dataset("x_pixel_size", data=6.5e-7).attrs["units"] = "m"
            e.create_dataset("instrument/source/energy", data=29.6)
    return path


def test_nxtomo_standard_layout(tmp_path) -> None:
    d = read_tomo(_nxtomo(tmp_path / "a.nx"))
    assert d.projections.shape == (4, *FRAME) and len(d.flats) == 2 and len(d.darks) == 1
    np.testing.assert_allclose(d.angles_deg, [0, 45, 90, 135])
    np.testing.assert_array_equal(d.flat_index, [1, 6])  # before and after: interpolated later
    assert d.metadata["pixel_size_um"] == pytest.approx(0.65)
    assert d.metadata["energy_kev"] == pytest.approx(29.6)


def test_nxtomo_foreign_layouts(tmp_path) -> None:
    # ESRF-style: entry0000, frames only in NXdata, image_key_control with -1 (alignment),
    # angles in radians with units.
    keys = [2, 1, 0, 0, 0, 0, -1]
    path = _nxtomo(tmp_path / "b.nx", entry="entry0000", in_nxdata_only=True, key_name="image_key_control",
                   keys=keys, angles=np.radians([0, 0, 0, 45, 90, 135, 0]), angle_units="rad")
    d = read_tomo(path)
    assert len(d.projections) == 4 and len(d.flats) == 1 and len(d.darks) == 1
    np.testing.assert_allclose(d.angles_deg, [0, 45, 90, 135])
    with pytest.warns(UserWarning, match="look like radians"):
        d = read_tomo(_nxtomo(tmp_path / "c.nx", angles=np.radians([0, 0, 0, 45, 90, 135, 0]), angle_units=None))
    np.testing.assert_allclose(d.angles_deg, [0, 45, 90, 135])


def _dx(path, *, theta=None, theta_units="degrees", white=True):
    with h5py.File(path, "w") as f:
        ex = f.create_group("exchange")
        ex.create_dataset("data", data=_frames(4, 600))
        if white:
            ex.create_dataset("data_white", data=_frames(2, 1000))
        ex.create_dataset("data_dark", data=_frames(1, 100)[0])  # one 2-D dark frame
        if theta is not None:
            t = ex.create_dataset("theta", data=theta)
            if theta_units:
                t.attrs["units"] = theta_units
    return path


def test_data_exchange_layouts(tmp_path) -> None:
    d = read_tomo(_dx(tmp_path / "a.h5", theta=np.array([0, 45, 90, 135.0])))
    assert d.projections.shape == (4, *FRAME) and d.flats.shape == (2, *FRAME) and d.darks.shape == (1, *FRAME)
    np.testing.assert_allclose(d.angles_deg, [0, 45, 90, 135])
    d = read_tomo(_dx(tmp_path / "b.h5", theta=np.radians([0, 45, 90, 135.0]), theta_units="radians"))
    np.testing.assert_allclose(d.angles_deg, [0, 45, 90, 135])
    with pytest.warns(UserWarning, match="evenly spaced over 0-180"):
        d = read_tomo(_dx(tmp_path / "c.h5"))
    np.testing.assert_allclose(d.angles_deg, [0, 45, 90, 135])


BAD = {
    "not-hdf5": (lambda p: p.write_text("hello"), "cannot read as HDF5"),
    "neither": (lambda p: h5py.File(p, "w").close(), "neither NXtomo"),
    "counts": (lambda p: _nxtomo(p, angles=np.arange(6.0)), "7 frames in instrument/detector/data but 7 image keys and 6"),
    "no-projections": (lambda p: _nxtomo(p, keys=[2, 1, 1, 1, 1, 1, 1]), "no projections"),
    "dx-theta": (lambda p: _dx(p, theta=np.arange(3.0)), "4 projections but 3 angles"),
    "units": (lambda p: _nxtomo(p, angle_units="grad"), "unknown angle units 'grad'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_raise_one_line_naming_file_and_problem(tmp_path, case: str) -> None:
    make, message = BAD[case]
    path = tmp_path / f"{case}.h5"
    make(path)
    with pytest.raises(TomoFileError) as err:
        read_tomo(path)
    text = str(err.value)
    assert str(path) in text and message in text and "\n" not in text


def test_cli_reports_bad_file_in_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "broken.h5"
    _dx(path, theta=np.arange(3.0))
    assert main(["recon", str(path), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err and "3 angles" in err
    assert main(["recon", str(tmp_path / "missing.h5"), "-q"]) == 2
    assert "no such file" in capsys.readouterr().err
    # Raw counts without flats cannot be normalised: refused, naming the file.
    _dx(tmp_path / "noflat.h5", theta=np.array([0, 45, 90, 135.0]), white=False)
    assert main(["recon", str(tmp_path / "noflat.h5"), "-q"]) == 2
    assert "no flat fields" in capsys.readouterr().err


def test_frames_are_binned_and_cleaned_as_they_are_read(tmp_path, monkeypatch) -> None:
    import analysis.readers as readers
    from analysis.prep import bin_frames, remove_zingers
    from analysis.reconstruction import ReconOptions, reconstruct

    monkeypatch.setattr(readers, "READ_FRAMES", 3)  # several chunks, one across the flats in the middle
    rng = np.random.default_rng(1)
    n, rows, cols = 13, 8, 12
    keys = np.array([2, 1] + [0] * 5 + [1] + [0] * 5)
    frames = rng.poisson(3000, (n, rows, cols)).astype(np.uint16)
    frames[keys == 2] = 100
    frames[4, 3, 5] = 60000  # a zinger in a projection
    angles = np.linspace(0, 180, n, endpoint=False)
    path = tmp_path / "scan.nx"
    with h5py.File(path, "w") as f:
        det = f.create_group("entry/instrument/detector")
        f["entry"].attrs["NX_class"] = "NXentry"
        det.create_dataset("data", data=frames)
        det.create_dataset("image_key", data=keys)
        f.create_dataset("entry/sample/rotation_angle", data=angles).attrs["units"] = "degree"
    whole = read_tomo(path)
    assert whole.projections.dtype == np.uint16 and whole.binned == 1
    binned = read_tomo(path, bin=2, zingers=True)
    assert binned.binned == 2 and binned.zingers_removed and binned.projections.shape == (10, 4, 6)
    np.testing.assert_allclose(binned.projections, bin_frames(remove_zingers(whole.projections), 2), rtol=1e-6)
    np.testing.assert_allclose(binned.flats, bin_frames(whole.flats, 2), rtol=1e-6)
    np.testing.assert_array_equal(binned.projection_index, whole.projection_index)
    opts = ReconOptions(center=6.0, bin=2, zingers=True)
    np.testing.assert_allclose(reconstruct(binned, opts).volume, reconstruct(whole, opts).volume, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="read binned 2x; cannot bin them 3x"):
        reconstruct(binned, ReconOptions(center=6.0, bin=3))


def test_data_exchange_frames_binned_as_read(tmp_path) -> None:
    d = read_tomo(_dx(tmp_path / "a.h5", theta=np.array([0, 45, 90, 135.0])), bin=2)  # 3 x 5 frames -> 1 x 2
    assert d.binned == 2 and d.projections.shape == (4, 1, 2) and d.flats.shape == (2, 1, 2)
    assert d.darks.shape == (1, 1, 2) and d.projections.dtype == np.float32
    np.testing.assert_allclose(d.projections, 600.0) and np.testing.assert_allclose(d.darks, 100.0)
