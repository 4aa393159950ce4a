"""Projectors against scikit-image and analytic line integrals; artefact injectors' statistics.

Tolerances (measured values in brackets, for the record):
* parallel vs ``skimage.transform.radon``: relative RMS < 0.3 % on a smooth phantom [0.06 %],
  < 0.5 % on rendered phantom slices [0.15 %], over 180 and 360 degrees;
* Gaussian blob (sigma 5 voxels, analytic projection): max error / peak < 0.6 % parallel
  [0.3 %], < 1.5 % cone [0.8 %] (linear-interpolation smoothing);
* uniform ball vs analytic chords, rays with impact < 0.9 R: max error < 1.5 % of the diameter
  [0.7 % parallel, 1.1 % cone] (the voxelised surface, not the projector, dominates);
* cone -> parallel at unit magnification: relative RMS < 0.2 % at SOD = 100 mm [0.07 %],
  < 1e-4 at SOD = 10 m.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.transform import radon

from sim.phantom import make_phantom, render_volume
from sim.projector import (AcquisitionModel, ConeGeometry, add_blur, add_poisson, add_zingers,
                           dark_frame, flat_field, project_cone, project_cone_angle,
                           project_parallel, project_parallel_angle, ring_gains, simulate_frame)

N = 64
C = N // 2


def _rel_rms(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - ref) ** 2) / np.mean(ref**2)))


def _smooth_image(seed: int, n: int = N) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    img = np.zeros((n, n))
    for _ in range(12):
        cy, cx = rng.uniform(0.3 * n, 0.7 * n, 2)
        s = rng.uniform(2, 6)
        img += rng.uniform(0.2, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    img[(yy - n // 2) ** 2 + (xx - n // 2) ** 2 > (0.45 * n) ** 2] = 0  # radon's circle
    return img


def _skimage_sinogram(img: np.ndarray, angles: np.ndarray) -> np.ndarray:
    return radon(img, theta=np.degrees(angles), circle=True).T  # (angle, pixel)


@pytest.mark.parametrize("span_deg", [180, 360])
def test_parallel_matches_skimage_on_smooth_phantom(span_deg):
    angles = np.linspace(0, np.deg2rad(span_deg), 90, endpoint=False)
    for seed in (0, 1):
        img = _smooth_image(seed)
        ours = project_parallel(img[None].astype(np.float32), angles)[:, 0]
        assert _rel_rms(ours, _skimage_sinogram(img, angles)) < 0.003


@pytest.mark.parametrize("span_deg", [180, 360])
def test_parallel_matches_skimage_on_rendered_phantom(span_deg):
    ph = make_phantom("nano", 2, voxel_size_um=0.5)
    vol = render_volume(ph, 0.5, 0.8)
    angles = np.linspace(0, np.deg2rad(span_deg), 60, endpoint=False)
    ours = project_parallel(vol, angles)
    for z in (6, 20, 30, 45):  # collector, electrode, electrode, separator
        ref = _skimage_sinogram(vol[z].astype(np.float64), angles)
        assert _rel_rms(ours[:, z], ref) < 0.005


def test_center_offset_shifts_sinogram():
    img = _smooth_image(3)[None].astype(np.float32)
    angles = np.linspace(0, np.pi, 30, endpoint=False)
    base = project_parallel(img, angles)[:, 0]
    shifted = project_parallel(img, angles, center_offset=3.0)[:, 0]
    np.testing.assert_allclose(shifted[:, 3:], base[:, :-3], atol=1e-5)
    half = project_parallel(img, angles, center_offset=2.5)[:, 0]
    i = np.arange(N)
    com = lambda s: (s * i).sum(1) / s.sum(1)  # noqa: E731
    np.testing.assert_allclose(com(half) - com(base), 2.5, atol=0.01)
    wide = project_parallel(img, angles, n_det=N + 10)[:, 0]  # centred on the wider detector
    np.testing.assert_allclose(wide[:, 5:-5], base, atol=1e-6)


def test_single_angle_equals_stack_and_shapes():
    vol = render_volume(make_phantom("nano", 0, voxel_size_um=0.5), 0.2, 0.2)
    angles = np.array([0.1, 1.3])
    stack = project_parallel(vol, angles)
    assert stack.shape == (2, 80, 64) and stack.dtype == np.float32
    np.testing.assert_array_equal(project_parallel_angle(vol, 1.3), stack[1])
    g = ConeGeometry(source_object_mm=5.0, source_detector_mm=20.0, detector_shape=(90, 70),
                     detector_pixel_mm=0.002, voxel_size_mm=0.0005)
    cone = project_cone(vol, angles, g)
    assert cone.shape == (2, 90, 70) and cone.dtype == np.float32
    np.testing.assert_array_equal(project_cone_angle(vol, 0.1, g), cone[0])
    with pytest.raises(ValueError, match="3-D"):
        project_parallel(vol[0], angles)


def _gaussian_blob(sigma: float, centre: np.ndarray) -> np.ndarray:
    zz, yy, xx = np.mgrid[:N, :N, :N].astype(np.float64)
    r2 = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2
    return np.exp(-r2 / (2 * sigma**2)).astype(np.float32)


def _line_distance(src: np.ndarray, direction: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Distance of ``point`` from lines through ``src`` along ``direction`` ((..., 3), z y x)."""
    w = point - src
    dn = direction / np.linalg.norm(direction, axis=-1, keepdims=True)
    along = (w * dn).sum(-1)
    return np.sqrt(np.maximum((w * w).sum(-1) - along**2, 0.0))


def _parallel_rays(theta: float):
    iz, i = np.mgrid[:N, :N].astype(np.float64)
    t = i - C
    s, c = math.sin(theta), math.cos(theta)
    src = np.stack([iz, C - t * s, C + t * c], -1)
    return src, np.broadcast_to(np.array([0.0, c, s]), src.shape)


# cone geometry in voxel units: SOD 150, SDD 600, 3-voxel pixels (magnification 4, +-13 deg)
CONE = ConeGeometry(source_object_mm=1.5, source_detector_mm=6.0, detector_shape=(96, 96),
                    detector_pixel_mm=0.03, voxel_size_mm=0.01)


def _cone_rays(theta: float):
    nv, nu = CONE.detector_shape
    iv, iu = np.mgrid[:nv, :nu].astype(np.float64)
    u, v = (iu - nu // 2) * 3.0, (iv - nv // 2) * 3.0
    s, c = math.sin(theta), math.cos(theta)
    src = np.array([C, C - 150.0 * c, C - 150.0 * s])
    return src, np.stack([v, 600.0 * c - u * s, 600.0 * s + u * c], -1)


ANGLES = np.array([0.0, 0.4, 1.0, 2.5, 3.9])


def test_gaussian_blob_matches_analytic_projection():
    sigma, centre = 5.0, np.array([C + 5.3, C - 7.1, C + 3.7])
    vol = _gaussian_blob(sigma, centre)
    par, cone = project_parallel(vol, ANGLES), project_cone(vol, ANGLES, CONE)
    peak = math.sqrt(2 * math.pi) * sigma
    for a, theta in enumerate(ANGLES):
        for proj, rays, tol in ((par, _parallel_rays, 0.006), (cone, _cone_rays, 0.015)):
            d = _line_distance(*rays(theta), centre)
            ref = peak * np.exp(-(d**2) / (2 * sigma**2))
            assert np.abs(proj[a] - ref).max() / peak < tol


def test_uniform_ball_matches_analytic_chords():
    radius = 20.0
    zz, yy, xx = np.mgrid[:N, :N, :N]
    d = np.sqrt((zz - C) ** 2 + (yy - C) ** 2 + (xx - C) ** 2)
    ball = np.clip(radius + 0.5 - d, 0, 1).astype(np.float32)  # partial-volume edge
    par, cone = project_parallel(ball, ANGLES), project_cone(ball, ANGLES, CONE)
    for a, theta in enumerate(ANGLES):
        for proj, rays in ((par, _parallel_rays), (cone, _cone_rays)):
            b = _line_distance(*rays(theta), np.array([C, C, C], float))
            chord = 2 * np.sqrt(np.clip(radius**2 - b**2, 0, None))
            inner = b < 0.9 * radius
            assert np.abs(proj[a] - chord)[inner].max() < 0.015 * 2 * radius
            assert _rel_rms(proj[a], chord) < 0.03


def test_cone_tends_to_parallel_for_distant_source():
    rng = np.random.default_rng(0)
    vol = np.zeros((N, N, N), np.float32)
    for _ in range(15):
        vol += _gaussian_blob(rng.uniform(2, 6), rng.uniform(20, 44, 3))
    par = project_parallel(vol, ANGLES)
    errors = []
    for sod in (10.0, 100.0, 1.0e4):
        g = ConeGeometry(source_object_mm=sod, source_detector_mm=sod + 1.0,
                         detector_shape=(N, N), detector_pixel_mm=0.01 * (sod + 1.0) / sod,
                         voxel_size_mm=0.01)
        errors.append(_rel_rms(project_cone(vol, ANGLES, g), par))
    assert errors[0] > errors[1] > errors[2]
    assert errors[1] < 0.002 and errors[2] < 1e-4


def test_cone_geometry_defaults_and_validation():
    g = ConeGeometry()
    assert g.magnification == pytest.approx(500 / 58)
    assert g.detector_pixel_mm / g.magnification == pytest.approx(0.00576)
    with pytest.raises(ValueError):
        ConeGeometry(source_object_mm=600.0)
    with pytest.raises(ValueError, match="inside the volume"):
        project_cone(np.zeros((8, 64, 64), np.float32), [0.0],
                     ConeGeometry(source_object_mm=0.1, voxel_size_mm=0.01))


# ---------------------------------------------------------------- acquisition / artefacts


def test_flat_field_profile():
    f = flat_field((41, 61), 1000.0, falloff=0.2)
    assert f[20, 30] == pytest.approx(1000.0)
    assert f[20, 0] == pytest.approx(800.0) and f[0, 30] == pytest.approx(800.0)


def test_poisson_variance_equals_mean():
    counts = add_poisson(np.full((200, 200), 1000.0), np.random.default_rng(0))
    assert counts.mean() == pytest.approx(1000.0, rel=0.002)
    assert counts.var() / counts.mean() == pytest.approx(1.0, abs=0.03)
    np.testing.assert_array_equal(counts, add_poisson(np.full((200, 200), 1000.0), 0))


def test_dark_frame_statistics():
    d = dark_frame((300, 300), 100.0, 3.0, 1)
    assert d.mean() == pytest.approx(100.0, abs=0.05) and d.std() == pytest.approx(3.0, rel=0.02)


def test_blur_preserves_total_and_has_given_width():
    img = np.zeros((61, 61))
    img[30, 30] = 1.0
    out = add_blur(img, 2.0)
    assert out.sum() == pytest.approx(1.0)
    x = np.arange(61) - 30
    assert (out.sum(0) * x**2).sum() == pytest.approx(4.0, rel=0.01)
    np.testing.assert_array_equal(add_blur(img, 0.0), img)


def test_zinger_count_matches_rate():
    img = np.full((500, 500), 100.0)
    out, mask = add_zingers(img, 1e-3, 2000.0, np.random.default_rng(2), return_mask=True)
    expected = 1e-3 * img.size
    assert abs(mask.sum() - expected) < 4 * math.sqrt(expected)
    hits = out[mask] - 100.0
    assert hits.min() >= 1000.0 and hits.max() <= 3000.0
    np.testing.assert_array_equal(out[~mask], 100.0)


def _flat_corrected_sinogram(model: AcquisitionModel, gain, seed: int):
    """Simulate one detector row over 180 angles plus 20 flats / 20 darks; -ln((P-D)/(F-D))."""
    img = 0.1 * _smooth_image(5)[None].astype(np.float32)  # line integrals up to ~1.5
    angles = np.linspace(0, np.pi, 180, endpoint=False)
    truth = project_parallel(img, angles)[:, 0]
    rng = np.random.default_rng(seed)
    proj = np.stack([simulate_frame(li[None], "projection", model, rng, gain)[0] for li in truth])
    flat = np.mean([simulate_frame(truth[0][None], "flat", model, rng, gain)[0]
                    for _ in range(20)], 0)
    dark = np.mean([simulate_frame(truth[0][None], "dark", model, rng)[0] for _ in range(20)], 0)
    return truth, -np.log((proj - dark) / (flat - dark))


def test_ring_gains_make_stripes_that_flat_correction_keeps():
    model = AcquisitionModel(photons=5e4, blur_sigma_px=0.0, zinger_rate=0.0)
    gain = ring_gains((1, N), 0.05, 0.1, 3)
    assert np.count_nonzero(gain != 1.0) > 0
    truth, clean = _flat_corrected_sinogram(model, None, 4)
    _, ringed = _flat_corrected_sinogram(model, gain, 4)
    # noise floor of a column mean: projection noise over 180 angles plus the mean flat's own
    # noise, which is common to all angles (20 flats at ~0.9 x photons)
    floor = math.hypot((clean - truth).std() / math.sqrt(180), 1 / math.sqrt(20 * 0.9 * 5e4))
    # without defects: flats remove the beam profile; column means are at the noise floor
    assert np.abs((clean - truth).mean(0)).max() < 5 * floor
    # with defects: each defective column carries a constant -ln(gain) at every angle
    stripes = (ringed - truth).mean(0)
    np.testing.assert_allclose(stripes, -np.log(gain[0]), atol=5 * floor)
    assert np.abs(stripes).max() > 20 * floor


def test_ring_gains_accepts_a_model_and_is_seeded():
    model = AcquisitionModel(ring_strength=0.1, ring_fraction=0.5)
    a = ring_gains((4, 8), model, np.random.default_rng(9))
    np.testing.assert_array_equal(a, ring_gains((4, 8), 0.1, 0.5, 9))
    assert ring_gains(16, 0.0, 0.0, 0).shape == (16,)


def test_simulate_frame_counts_and_clipping():
    model = AcquisitionModel()
    li = np.full((32, 48), 1.0)
    frame = simulate_frame(li, "projection", model, 0)
    assert frame.dtype == np.uint16 and frame.shape == (32, 48)
    np.testing.assert_array_equal(frame, simulate_frame(li, "projection", model, 0))
    expected = flat_field(li.shape, model.photons, falloff=model.flat_falloff) * math.exp(-1)
    resid = (frame - model.dark_level - expected) / np.sqrt(expected)
    assert abs(resid.mean()) < 0.2
    dark = simulate_frame(li, "dark", model, 1)
    assert abs(dark.mean() - model.dark_level) < 1.0
    hot = simulate_frame(li, "flat", AcquisitionModel(photons=1e6), 2)
    assert hot.max() == 65535
    with pytest.raises(ValueError, match="kind"):
        simulate_frame(li, "white", model, 0)
