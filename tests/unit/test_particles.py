"""Particle analysis against simulated series with known truth (small phantoms, both scales).

Tolerances are the issue's: class accuracy >= 95 %, mode accuracy >= 90 % (over particles that
lithiate), thickness within 2 %. Strain is held to its stated error (docs/particles.md): the
half-electrode axial strains within 0.03 of the phantom's imposed strain (0.02 on the bench's
>= 200-particle series, 0.024 measured on this 10-particle one), the DVC map means within 0.25
of the window-averaged imposed field (0.17 on the bench series, 0.11 here).
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.classify import STATES, score

pytestmark = pytest.mark.slow


def _series(preset: str, shape: tuple[int, int, int], seed: int):
    from sim.phantom import make_phantom
    from sim.series import simulate_series

    ph = make_phantom(preset, seed, shape=shape)
    drift = [[0.0, 0.0, 0.0]] + [[0.4 * k, 0.8 * k, -0.6 * k] for k in range(1, len(STATES))]
    return simulate_series(ph, STATES, drift_vox=drift, seed=seed)


@pytest.fixture(scope="module")
def micro():
    from analysis.particle_series import analyze_volumes

    s = _series("micro", (64, 160, 160), 3)
    return s, analyze_volumes(s.volumes, s.phantom.voxel_size_um, s.lithiated_at,
                              s.charges_mAh_g)


@pytest.fixture(scope="module")
def nano():
    from analysis.particle_series import analyze_volumes

    s = _series("nano", (160, 112, 112), 4)
    return s, analyze_volumes(s.volumes, s.phantom.voxel_size_um, s.lithiated_at,
                              s.charges_mAh_g, dvc=False)


@pytest.mark.parametrize("which", ["micro", "nano"])
def test_classes_modes_thickness(which, request) -> None:
    s, res = request.getfixturevalue(which)
    sc = score(s, res)
    assert sc["class_n"] == len(s.truth[0].particles) >= 8
    assert sc["class_correct"] / sc["class_n"] >= 0.95
    assert sc["mode_n"] > 0 and sc["mode_correct"] / sc["mode_n"] >= 0.90


def test_thickness_micro(micro) -> None:
    assert score(*micro)["thickness_err_max"] <= 0.02


def test_thickness_nano(nano) -> None:
    assert score(*nano)["thickness_err_max"] <= 0.02


def test_dvc_strain_within_stated_error(micro) -> None:
    # Half-electrode axial strains (mid-plane displacement from DVC, collector fixed, electrode
    # top from the layers) against the phantom's imposed axial strain of each half; DVC map
    # means against the imposed field averaged as the windows see it
    # (benchmarks.classify.dvc_truth). See the module docstring for the stated errors.
    s, res = micro
    sc = score(s, res)
    assert len(sc["strain_err"]) == len(sc["strain_map_err"]) == 2 * (len(STATES) - 1)
    assert max(sc["strain_err"]) <= 0.03
    assert max(sc["strain_map_err"]) <= 0.25


def test_registration_recovers_drift(micro) -> None:
    s, res = micro
    for row, t in zip(res.electrode, s.truth):
        got = np.array([row["shift_z_vox"], row["shift_y_vox"], row["shift_x_vox"]])
        assert np.allclose(got, t.drift_vox, atol=0.25)


def test_summary_reproduces_paper_form(micro) -> None:
    s, res = micro
    summ = res.summary
    assert summ["sentence"].startswith(f"{summ['n_above']} particles above 50 um:")
    assert summ["inactive_pct"] + summ["lithiated_pct"] == pytest.approx(100.0)
    # class fractions by Si volume agree with the capacities, as 000 checked them
    assert summ["lithiated_volume_pct"] == pytest.approx(
        100 * s.truth[s.lithiated_at].capacity_mAh_g / 3579.0 / 0.95, abs=5.0)


def test_classify_thresholds_and_noise_floor() -> None:
    from analysis.classify import Thresholds, classify_particles, noise_floor

    drop = np.array([[0.0, 0.0, 0.0, 0.0], [0.8, 0.8, 0.01, 0.12], [0.2, 0.79, 0.0, 0.1],
                     [0.21, 0.8, 0.02, 0.1]])
    r2 = np.array([[0.0] * 4, [0.9, 0.1, 0.0, 0.0], [0.8, 0.1, 0.0, 0.0], [0.8, 0.1, 0.0, 0.0]])
    classes, modes = classify_particles(drop, r2, np.full(4, 20.0), 1)
    assert list(classes) == ["active", "deactivated", "inactive", "inactive"]
    assert list(modes) == ["core-shell", "network", "", ""]
    assert noise_floor(drop, (2, 3)) < 0.02
    # a noisier scan pair raises the lithiation threshold above the particles' 0.12 drop
    classes, _ = classify_particles(drop, r2, np.full(4, 20.0), 1, Thresholds(lithiation_min=0.05),
                                    noise=0.03)
    assert classes[3] == "inactive"
    classes, _ = classify_particles(drop, r2, np.array([20.0, 4.0, 20.0, 20.0]), 1)
    assert classes[1] == "unresolved"


def test_cli_classify_writes_tables_and_plots(micro, tmp_path) -> None:
    import csv

    import h5py
    import tifffile

    from controller.cli import main

    s, _ = micro
    paths = []
    for k, vol in enumerate(s.volumes[:3]):
        if k == 1:
            p = tmp_path / f"t{k}.tif"
            tifffile.imwrite(p, vol)
        else:
            p = tmp_path / f"t{k}.h5"
            with h5py.File(p, "w") as f:
                f.create_dataset("volume", data=vol).attrs["voxel_size_um"] = 5.76
        paths.append(str(p))
    out = tmp_path / "out"
    rc = main(["classify", *paths, "--lithiated-at", "2", "--no-dvc", "-o", str(out),
               "--charges", ",".join(str(q) for q in s.charges_mAh_g[:3])])
    assert rc == 0
    for name in ("particles.csv", "electrode.csv", "summary.txt", "class_fractions.png",
                 "grey_histograms.png", "thickness_vs_charge.png", "slice_classes.png"):
        assert (out / name).stat().st_size > 0
    with open(out / "particles.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(s.truth[0].particles)
    assert {"id", "cz_t0", "volume_t0_vox", "class", "mode", "drop_T2"} <= set(rows[0])
    assert {r["class"] for r in rows} <= {"lithiated", "inactive"}


def test_cli_classify_bad_input(tmp_path, capsys) -> None:
    from controller.cli import main

    bad = tmp_path / "x.h5"
    bad.write_text("not hdf5")
    assert main(["classify", str(bad), "--lithiated-at", "0", "--voxel-size", "1"]) != 0
    assert "x.h5" in capsys.readouterr().err


def test_uncracked_electrode_no_false_cracks_and_strain_histograms(micro) -> None:
    # planted cracks: tests/unit/test_cracks.py
    s, res = micro
    assert max(row["crack_fraction"] for row in res.electrode) <= 0.005
    row = res.electrode[s.lithiated_at]
    for side in ("collector_side", "separator_side"):
        counts = [int(c) for c in row[f"dvc_axial_{side}_hist"].split(";")]
        assert len(counts) == 40 and sum(counts) > 0
        assert row[f"dvc_axial_{side}_p10"] <= row[f"dvc_axial_{side}_p50"] <= row[f"dvc_axial_{side}_p90"]


def test_a_growing_series_with_a_cache_gives_the_uncached_results(nano) -> None:
    from analysis.particle_series import analyze_volumes

    s, full = nano
    cache: dict = {}
    for k in range(1, len(s.volumes) + 1):  # as the live consumer does after every scan
        vols = [None if i in cache else v for i, v in enumerate(s.volumes[:k])]
        part = analyze_volumes(vols, s.phantom.voxel_size_um, min(s.lithiated_at, k - 1), s.charges_mAh_g[:k],
                               dvc=False, cache=cache)
        assert set(cache) == {"ref", *range(k)}
    np.testing.assert_array_equal(part.features, full.features)
    np.testing.assert_array_equal(part.classes, full.classes)
    assert [r["thickness_um"] for r in part.electrode] == [r["thickness_um"] for r in full.electrode]
