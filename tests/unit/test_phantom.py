"""Phantom: determinism, statistics of the preset, swelling, fading and lithiation modes.

Most tests use the nano preset at its default 0.25 µm voxels (particles 12-28 voxels across),
or a "sparse" variant whose particles are spaced so that they never touch, even fully swollen,
so that each can be measured on the rendered volume in isolation.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from sim.phantom import (CLASSES, PHANTOM_PRESETS, Attenuation, axial_displacement_um,
                         electrode_thickness_um, layer_boundaries_um, make_phantom,
                         particle_lithiation, particle_truth, render_volume)

NANO = PHANTOM_PRESETS["nano"]
# Gap >= cbrt(3) - 1 between pristine particles: swollen particles (radius x 1.44) never touch.
SPARSE = dataclasses.replace(NANO, min_gap_fraction=0.5)
# Only the particles attenuate: their outline is then a plain threshold.
BARE = dataclasses.replace(SPARSE, mu=Attenuation(si=NANO.mu.si, lixsi=NANO.mu.lixsi, matrix=0.0,
                                                  pore=0.0, collector=0.0, separator=0.0,
                                                  electrolyte=0.0))
STATES = [(0.0, 0.0), (0.5, 0.5), (1.0, 1.0), (0.0, 1.0)]


def _ball_mask(shape: tuple[int, ...], centre: np.ndarray, radius: float) -> np.ndarray:
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 < radius**2


@pytest.fixture(scope="module")
def sparse():
    ph = make_phantom(SPARSE, 0, n_particles=6)
    return ph, {s: render_volume(ph, *s) for s in STATES}


def test_presets_and_unknown_name():
    assert set(PHANTOM_PRESETS) == {"micro", "nano"}
    micro = PHANTOM_PRESETS["micro"]
    assert micro.voxel_size_um == 5.76 and micro.diameter_range_um == (125.0, 180.0)
    assert NANO.paper_voxel_size_um == 0.05 and NANO.diameter_range_um == (3.0, 7.0)
    assert NANO.electrode_um == 20.7
    for p in PHANTOM_PRESETS.values():
        assert math.isclose(sum(p.class_fractions), 1.0)
        assert p.mu.lixsi < p.mu.si  # lithiation lowers attenuation
    with pytest.raises(ValueError, match="valid presets: micro, nano"):
        make_phantom("mega")


def test_impossible_parameters_raise():
    with pytest.raises(ValueError, match="electrode thickness"):
        make_phantom(dataclasses.replace(NANO, diameter_range_um=(3.0, 30.0)))
    with pytest.raises(ValueError, match="could not place"):
        make_phantom("nano", n_particles=2000)
    with pytest.raises(ValueError, match="swollen electrode"):
        make_phantom("nano", shape=(90, 128, 128))
    with pytest.raises(ValueError, match="too coarse"):
        make_phantom("nano", voxel_size_um=2.0)


def test_deterministic_for_seed_and_different_for_another():
    a, b, c = make_phantom("nano", 7), make_phantom("nano", 7), make_phantom("nano", 8)
    assert a == b and a != c
    np.testing.assert_array_equal(render_volume(a, 0.3, 0.6), render_volume(b, 0.3, 0.6))


def test_voxel_override_keeps_physical_sizes():
    coarse = make_phantom("nano", voxel_size_um=0.5)
    assert coarse.shape == (80, 64, 64)  # same 40 x 32 x 32 um field of view
    d = 2 * np.array([q.radius_um for q in coarse.particles])
    assert d.min() >= 3.0 and d.max() <= 7.0
    micro = make_phantom("micro")
    assert micro.shape == (128, 128, 128) and len(micro.particles) >= 5


def test_class_and_mode_fractions_for_many_particles():
    n = 220
    ph = make_phantom("nano", 1, voxel_size_um=0.5, shape=(80, 160, 160), n_particles=n)
    assert len(ph.particles) == n
    classes = [q.true_class for q in ph.particles]
    for name, f in zip(CLASSES, NANO.class_fractions):
        # binomial 3-sigma band; the stratified draw in fact lands within one particle
        assert abs(classes.count(name) - n * f) <= max(1.0, 3 * math.sqrt(n * f * (1 - f)))
        assert abs(classes.count(name) - n * f) <= 1.0
    n_cs = sum(q.mode == "core-shell" for q in ph.particles)
    assert abs(n_cs - n * NANO.core_shell_fraction) <= 1.0
    # classes are not ordered by size or position
    r = np.array([q.radius_um for q in ph.particles])
    act = np.array([c == "active" for c in classes])
    assert abs(r[act].mean() - r.mean()) < 0.3


def test_particles_inside_layer_and_not_overlapping():
    ph = make_phantom("nano", 3)
    assert len(ph.particles) > 30
    c = np.array([q.centre_um for q in ph.particles])
    r = np.array([q.radius_um for q in ph.particles])
    bottom = ph.collector_top_um
    assert np.all(c[:, 0] - r >= bottom - 1e-9)
    assert np.all(c[:, 0] + r <= bottom + NANO.electrode_um + 1e-9)
    rho = np.hypot(c[:, 1] - ph.axis_um[0], c[:, 2] - ph.axis_um[1])
    assert np.all(rho + r <= ph.sample_radius_um + 1e-9)
    dist = np.linalg.norm(c[:, None] - c[None], axis=2) + np.eye(len(r)) * 1e9
    assert np.all(dist >= r[:, None] + r[None])


def test_particle_lithiation_follows_classes():
    ph = make_phantom("nano", 0)
    cls = np.array([q.true_class for q in ph.particles])
    for lit, peak in STATES:
        x = particle_lithiation(ph, lit, peak)
        assert np.all(x[cls == "active"] == lit)
        assert np.all(x[cls == "deactivated"] == peak)
        assert np.all(x[cls == "inactive"] == 0.0)
    with pytest.raises(ValueError, match="peak"):
        particle_lithiation(ph, 0.8, 0.5)


def test_render_is_float32_and_inside_sample_circle():
    ph = make_phantom("micro", 0)
    vol = render_volume(ph, 0.5, 1.0)
    assert vol.dtype == np.float32 and vol.shape == ph.shape
    nz, ny, nx = vol.shape
    yy, xx = np.ogrid[:ny, :nx]
    outside = (yy - ny // 2) ** 2 + (xx - nx // 2) ** 2 > (nx // 2) ** 2
    assert not np.any(vol[:, outside])  # scikit-image's radon(circle=True) precondition
    assert vol.min() >= 0.0


def test_swelling_volume_measured_on_rendered_volume():
    ph = make_phantom(BARE, 0, n_particles=6)
    v = ph.voxel_size_um
    measured = {}
    for state in [(0.0, 0.0), (1.0, 1.0)]:
        vol = render_volume(ph, *state)
        truth = particle_truth(ph, *state)
        # threshold at half the surface phase's value: the outline at partial volume 0.5
        thr = 0.5 * v * np.where(truth["lithiation"] > 0, NANO.mu.lixsi, NANO.mu.si)
        measured[state] = np.array([
            np.count_nonzero((vol > h) & _ball_mask(vol.shape, t["centre_vox"],
                                                    t["radius_vox"] + 2)) * v**3
            for t, h in zip(truth, thr)])
        np.testing.assert_allclose(measured[state], truth["volume_um3"], rtol=0.01)
    ratio = measured[(1.0, 1.0)] / measured[(0.0, 0.0)]
    lithiating = np.array([q.true_class != "inactive" for q in ph.particles])
    np.testing.assert_allclose(ratio[lithiating], NANO.expansion, rtol=0.015)
    np.testing.assert_allclose(ratio[~lithiating], 1.0, rtol=0.01)


def _interior_mean(vol, t) -> float:
    return float(vol[_ball_mask(vol.shape, t["centre_vox"], t["radius_vox"] - 1.0)].mean())


def test_attenuation_fades_and_recovers_by_class(sparse):
    ph, vols = sparse
    means = {s: np.array([_interior_mean(vols[s], t) for t in particle_truth(ph, *s)])
             for s in STATES}
    cls = np.array([q.true_class for q in ph.particles])
    mu_si = NANO.mu.si * ph.voxel_size_um
    for i, c in enumerate(cls):
        m = [means[s][i] for s in STATES]  # pristine, half, full, delithiated
        if c == "active":
            assert m[0] > m[1] > m[2] and m[2] < 0.7 * m[0]
            assert m[3] == pytest.approx(m[0], rel=1e-6)  # recovers on delithiation
        elif c == "deactivated":
            assert m[0] > m[1] > m[2]
            assert m[3] == pytest.approx(m[2], rel=1e-6)  # stays lithiated
        else:
            assert m == pytest.approx([mu_si] * 4, rel=1e-6)  # never changes
    assert {"active", "deactivated", "inactive"} <= set(cls)


def test_rendered_attenuation_matches_truth():
    ph = make_phantom(BARE, 0, n_particles=6)  # same placement as SPARSE, nothing around
    for s in STATES:
        vol = render_volume(ph, *s)
        truth = particle_truth(ph, *s)
        # total attenuation of each particle / its true volume in voxels = its mean attenuation
        total = np.array([vol[_ball_mask(vol.shape, t["centre_vox"], t["radius_vox"] + 2)].sum()
                          for t in truth])
        mean = total / (truth["volume_um3"] / ph.voxel_size_um**3)
        np.testing.assert_allclose(mean, truth["mean_attenuation"], rtol=0.01)


def test_core_shell_and_network_differ_inside():
    # find a lithiating core-shell particle (seeds are cheap; placement is deterministic)
    for seed in range(20):
        ph = make_phantom(SPARSE, seed, n_particles=6)
        cs = [q.index for q in ph.particles
              if q.mode == "core-shell" and q.true_class != "inactive"]
        if cs:
            break
    vol = render_volume(ph, 0.5, 0.5)
    truth = particle_truth(ph, 0.5, 0.5)
    v = ph.voxel_size_um
    mid = 0.5 * (NANO.mu.si + NANO.mu.lixsi) * v
    r0 = np.array([q.radius_um for q in ph.particles]) / v
    zz, yy, xx = np.indices(vol.shape)
    for t in truth:
        if t["true_class"] == "inactive":
            continue
        d = np.sqrt((zz - t["centre_vox"][0]) ** 2 + (yy - t["centre_vox"][1]) ** 2
                    + (xx - t["centre_vox"][2]) ** 2)
        core = r0[t["index"]] * np.cbrt(1 - t["lithiation"])
        is_si = vol > mid
        if t["mode"] == "core-shell":
            assert is_si[d < core - 1].all()  # an intact crystalline core
            assert not is_si[(d > core + 1) & (d < t["radius_vox"] - 1)].any()  # a clean shell
        else:
            shell = (d > 0.5 * t["radius_vox"]) & (d < t["radius_vox"] - 1)
            assert 0.1 < is_si[shell].mean() < 0.9  # both phases near the surface: pathways
            assert is_si[(d > core + 1) & (d < t["radius_vox"] - 1)].any()  # not a shell
            e = NANO.expansion
            f_lit = 0.5 * e / (1 + (e - 1) * 0.5)
            assert 1 - is_si[d < t["radius_vox"] - 0.5].mean() == pytest.approx(f_lit, abs=0.05)
    assert cs, "no lithiating core-shell particle in 20 seeds"


def test_electrode_thickens_more_on_separator_side():
    ph = make_phantom("nano", 0)
    t0 = electrode_thickness_um(ph, 0.0, 0.0)
    assert t0 == pytest.approx(20.7)
    ts = [electrode_thickness_um(ph, s, s) for s in (0.25, 0.5, 1.0)]
    assert t0 < ts[0] < ts[1] < ts[2]
    x = particle_lithiation(ph, 1.0, 1.0)
    w = np.array([q.radius_um for q in ph.particles]) ** 3
    m = float(w @ x / w.sum())
    assert ts[2] == pytest.approx(20.7 * (1 + m * (0.34 + 0.55) / 2))
    # residual strain: deactivated particles keep the electrode swollen after delithiation
    assert t0 < electrode_thickness_um(ph, 0.0, 1.0) < ts[2]
    # local axial strain at the separator side exceeds that at the collector side
    base, h = ph.collector_top_um, 1.0
    u = lambda z: float(axial_displacement_um(ph, z, 1.0, 1.0))  # noqa: E731
    strain_cc = (u(base + h) - u(base)) / h
    strain_sep = (u(base + 20.7) - u(base + 20.7 - h)) / h
    assert strain_cc == pytest.approx(0.34 * m, rel=0.05)
    assert strain_sep == pytest.approx(0.55 * m, rel=0.05)
    assert u(base - 2.0) == 0.0  # the collector is the fixed reference
    # particles ride the displacement field: near-separator ones move further up
    t_0, t_1 = particle_truth(ph, 0.0, 0.0), particle_truth(ph, 1.0, 1.0)
    inactive = t_0["true_class"] == "inactive"
    dz = (t_1["centre_vox"][:, 0] - t_0["centre_vox"][:, 0])[inactive]
    z = t_0["centre_vox"][inactive, 0]
    assert np.all(dz >= 0) and np.corrcoef(z, dz)[0, 1] > 0.9
    np.testing.assert_allclose(t_1["centre_vox"][:, 1:], t_0["centre_vox"][:, 1:])


def test_rendered_layers_match_truth_boundaries():
    ph = make_phantom(dataclasses.replace(NANO, porosity=0.0, separator_porosity=0.0), 0,
                      n_particles=0)
    v = ph.voxel_size_um
    for state in [(0.0, 0.0), (1.0, 1.0)]:
        vol = render_volume(ph, *state)
        profile = vol[:, vol.shape[1] // 2, vol.shape[2] // 2] / v  # back to 1/um
        b = layer_boundaries_um(ph, *state)
        # between collector and separator top, each voxel mixes matrix and separator: the
        # integrated matrix occupancy locates the electrode top to sub-voxel precision
        start = int(b["collector_top"] / v) + 2
        stop = min(len(profile), int(b["separator_top"] / v) - 2)
        matrix = (NANO.mu.separator - profile[start:stop]) / (NANO.mu.separator - NANO.mu.matrix)
        assert start * v + matrix.sum() * v == pytest.approx(b["electrode_top"], abs=0.05 * v)
        # collector occupancy (air below it is 0, matrix above it is the other end member)
        cc = np.clip((profile - NANO.mu.matrix) / (NANO.mu.collector - NANO.mu.matrix), 0, 1)
        assert cc.sum() * v == pytest.approx(NANO.collector_um, abs=0.05 * v)


def test_render_time_128_cube():
    ph = make_phantom("nano", 0, shape=(128, 128, 128), voxel_size_um=0.3125)
    assert 60 <= len(ph.particles) <= 200
    render_volume(ph, 0.3, 0.3)  # compile
    import time

    t = time.perf_counter()
    render_volume(ph, 0.5, 0.8)
    assert time.perf_counter() - t < 2.0  # ~0.1 s measured; generous for a shared machine


def test_series_drift_shift_matches_scipy_inside_the_volume():
    from scipy import ndimage as ndi

    from sim.series import shift_cubic

    rng = np.random.default_rng(0)
    vol = ndi.gaussian_filter(rng.standard_normal((60, 50, 40)), 2).astype(np.float32)
    shift = (1.2, 2.4, -1.8)
    want = ndi.shift(vol, shift, order=3, mode="constant", cval=0.0)
    got = shift_cubic(vol, shift)
    inner = (slice(6, -6),) * 3
    assert got.dtype == np.float32
    assert np.abs(got - want)[inner].max() < 1e-5 * np.abs(want).max()
    # faces: samples from beyond the input are 0, as in mode="constant"
    assert np.all(got[:1] == 0) and np.all(got[:, :2] == 0) and np.all(got[:, :, -1:] == 0)
    assert np.abs(got - want).max() < 0.15 * np.abs(want).max()
