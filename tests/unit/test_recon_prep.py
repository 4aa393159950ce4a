"""Each correction removes the artefact its injector adds."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.center import find_center, sino_360_to_180
from analysis.fbp import fbp_slice
from analysis.phase import paganin, paganin_filter
from analysis.prep import MIN_TRANSMISSION, bin_frames, flat_weights, minus_log, normalise, remove_zingers
from analysis.rings import remove_rings, remove_stripes_sorting
from benchmarks.shepp import noisy_sinogram
from sim.artefacts import add_zingers, ring_gains
from sim.projector import project_parallel

from .recon_helpers import circle_mask, rmse, shepp


def test_flats_before_and_after_are_interpolated_by_frame_number() -> None:
    rng = np.random.default_rng(0)
    trans = rng.uniform(0.2, 1.0, (10, 4, 6))
    # The beam decays linearly: flats at frames 0-1 (before) and 12-13 (after), projections 2-11.
    beam = lambda i: 1000.0 * (1.0 - 0.02 * i) * np.ones((4, 6))  # noqa: E731
    dark = np.full((4, 6), 50.0)
    proj = np.stack([trans[k] * beam(k + 2) + dark for k in range(10)])
    flats = np.stack([beam(i) + dark for i in (0, 1, 12, 13)])
    out = normalise(proj, flats, np.stack([dark, dark]), positions=np.arange(2, 12),
                    flat_positions=np.array([0, 1, 12, 13]))
    np.testing.assert_allclose(out, trans, rtol=1e-5)
    # Averaging all flats instead leaves a drift of several per cent.
    assert np.abs(normalise(proj, flats, dark[None]) / trans - 1).max() > 0.05
    lo, hi, w = flat_weights(np.array([-1.0, 0.0, 5.0, 20.0]), np.array([0.0, 10.0]))
    np.testing.assert_allclose(w, [0.0, 0.0, 0.5, 1.0])


def test_flat_not_above_dark_gives_zero_not_inf() -> None:
    out = normalise(np.full((1, 2, 2), 10.0), np.full((1, 2, 2), 5.0), np.full((1, 2, 2), 5.0))
    assert np.all(out == 0)
    with pytest.raises(ValueError, match="same frame shape"):
        normalise(np.zeros((1, 2, 2)), np.zeros((1, 3, 2)))


def test_minus_log_is_safe_on_zero_negative_and_nan() -> None:
    t = np.array([1.0, np.exp(-2.0), 0.0, -0.3, np.nan, np.inf], np.float32)
    out = minus_log(t)
    assert np.all(np.isfinite(out[:5])) and out.dtype == np.float32
    np.testing.assert_allclose(out[:2], [0.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(out[2:5], -np.log(MIN_TRANSMISSION), rtol=1e-6)


def test_zingers_are_removed_and_other_pixels_kept() -> None:
    rng = np.random.default_rng(3)
    clean = rng.poisson(1e4, (3, 64, 64)).astype(np.float64)
    hit, mask = add_zingers(clean, 0.002, 5e4, rng, return_mask=True)
    out = remove_zingers(hit)
    assert mask.sum() > 10
    assert np.abs(out[mask] / clean[mask] - 1).max() < 0.05  # back to the neighbourhood level
    np.testing.assert_array_equal(out[~mask], clean[~mask].astype(np.float32))


def _ring_amplitude(img: np.ndarray, mask: np.ndarray, ref: np.ndarray) -> float:
    """Std of the azimuthal mean of the error per radius: rings, not noise."""
    n = img.shape[0]
    yy, xx = np.indices(img.shape)
    r = np.hypot(yy - n // 2, xx - n // 2).astype(int)
    err = (img - ref)[mask]
    prof = np.bincount(r[mask], err) / np.maximum(np.bincount(r[mask]), 1)
    return float(np.abs(prof[2:]).max())


def test_ring_removal_reduces_ring_amplitude() -> None:
    n, na = 128, 180
    img, sino, ang = shepp(n, na)
    sino = sino * 0.02  # line integrals of 0-2, as a real sample gives
    gains = ring_gains(n, 0.1, 0.1, rng=4)  # 9 defective columns
    striped = sino - np.log(gains)[None, :].astype(np.float32)  # constant offset per column
    mask = circle_mask(n, margin=3)
    clean = fbp_slice(sino, ang)
    rings = fbp_slice(striped, ang)
    fixed = remove_stripes_sorting(striped, size=11)
    after = fbp_slice(fixed, ang)
    before_amp, after_amp = _ring_amplitude(rings, mask, clean), _ring_amplitude(after, mask, clean)
    assert before_amp > 0.005
    assert after_amp < 0.2 * before_amp
    assert rmse(after, clean, mask) < 0.5 * rmse(rings, clean, mask)
    np.testing.assert_allclose(remove_rings(striped[:, None], size=11)[:, 0], fixed)
    with pytest.raises(ValueError, match="odd number"):
        remove_stripes_sorting(striped, size=4)


def _weak_object(n: int) -> np.ndarray:
    yy, xx = np.indices((n, n)) - n // 2
    return 0.4 * np.exp(-(xx**2 + yy**2) / (2 * 6.0**2))  # mu T, away from the edges


def test_paganin_inverts_the_transport_of_intensity_forward_model() -> None:
    n, pix, z, e = 128, 2e-6, 0.1, 20.0
    mu_t = _weak_object(n)
    for delta_beta in (35.0, 170.0):  # 003 and 002
        filt = paganin_filter((n, n), pixel_size_m=pix, distance_m=z, energy_kev=e, delta_beta=delta_beta)
        measured = np.fft.irfft2(np.fft.rfft2(np.exp(-mu_t)) / filt, s=(n, n))  # phase contrast
        retrieved = paganin(measured, delta_beta=delta_beta, pixel_size_m=pix, distance_m=z, energy_kev=e)
        assert rmse(minus_log(measured), mu_t) > 0.005  # fringes before
        assert rmse(minus_log(retrieved), mu_t) < 1e-3  # gone after
    assert paganin_filter((8, 8), pixel_size_m=pix, distance_m=z, energy_kev=e, delta_beta=35)[0, 0] == 1
    with pytest.raises(ValueError, match="delta_beta > 0"):
        paganin(np.ones((8, 8)), delta_beta=0, pixel_size_m=pix)


@pytest.mark.parametrize("offset", [-4.7, 2.25, 7.5])
def test_centre_is_found_within_half_a_pixel(offset: float) -> None:
    n, na = 128, 180
    img, _, ang = shepp(n, na)
    sino = project_parallel(img[None], ang, center_offset=offset, n_det=n)[:, 0]
    noisy = noisy_sinogram(sino * 0.05, 5e3, seed=5) / 0.05
    found = find_center(noisy, ang)
    assert abs(found - (n // 2 + offset)) < 0.5
    # 360-degree scans: the first half turn is used.
    ang360 = np.linspace(0, 2 * np.pi, 2 * na, endpoint=False)
    sino360 = project_parallel(img[None], ang360, center_offset=offset, n_det=n)[:, 0]
    assert abs(find_center(sino360, ang360) - (n // 2 + offset)) < 0.5


def test_half_acquisition_360_scan_is_stitched() -> None:
    n, na = 96, 240
    img, _, ang = shepp(n, na, span=2 * np.pi)
    # A 64-px detector with the axis at column 58: each projection sees one half of the object
    # (radius about 40 px), the projection half a turn later the other.
    sino = project_parallel(img[None], ang, center_offset=58 - 32, n_det=64)[:, 0]
    sino180, c = sino_360_to_180(sino, center=58.0)
    assert sino180.shape == (na // 2, 117) and c == pytest.approx(58.0)
    rec = fbp_slice(sino180, ang[: na // 2], center=c, size=n)
    full = fbp_slice(project_parallel(img[None], ang[: na // 2])[:, 0], ang[: na // 2])
    mask = circle_mask(n, margin=3)
    assert rmse(rec, full, mask) < 0.01 and rmse(rec, img, mask) < 0.05


def test_binning_averages_blocks() -> None:
    a = np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6)
    b = bin_frames(a, 2)
    assert b.shape == (2, 2, 3)
    assert b[0, 0, 0] == pytest.approx(np.mean([0, 1, 6, 7]))
    with pytest.raises(ValueError, match="bin factor must be >= 1"):
        bin_frames(a, 0)
