"""The numba reconstruction and h-maxima agree exactly with scikit-image's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi


@pytest.mark.parametrize("trial", range(12))
def test_matches_scikit_image(trial: int) -> None:
    from skimage.morphology import h_maxima as sk_h_maxima
    from skimage.morphology import reconstruction

    from analysis.morphology import h_maxima, reconstruct_dilation

    rng = np.random.default_rng(trial)
    shape = tuple(int(n) for n in rng.integers(3, 24, 3))
    img = ndi.gaussian_filter(rng.random(shape), rng.uniform(0.5, 3.0)) * rng.uniform(1, 50)
    if trial % 3 == 0:
        img = np.round(img, 1)  # plateaus: maxima made of several equal voxels
    h = float(rng.uniform(0.01, 1.0) * np.ptp(img))
    assert np.array_equal(reconstruct_dilation(img - h, img), reconstruction(img - h, img))
    assert np.array_equal(h_maxima(img, h), sk_h_maxima(img, h))


def test_distance_map_of_touching_balls_has_one_seed_each() -> None:
    from analysis.morphology import h_maxima

    zz, yy, xx = np.mgrid[:24, :24, :40]
    balls = ((zz - 12) ** 2 + (yy - 12) ** 2 + (xx - 11) ** 2 <= 81) | (
        (zz - 12) ** 2 + (yy - 12) ** 2 + (xx - 27) ** 2 <= 81)
    dist = ndi.gaussian_filter(ndi.distance_transform_edt(balls), 0.5)
    _, n = ndi.label(h_maxima(dist, 1.0))
    assert n == 2
    assert not h_maxima(dist, 100.0).any()


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_binary_dilate_equals_scipy(iterations: int) -> None:
    from analysis.morphology import binary_dilate

    rng = np.random.default_rng(iterations)
    mask = rng.random((23, 31, 17)) > 0.985
    mask[0, 0, 0] = mask[-1, 5, -1] = True  # set voxels on the faces
    orig = mask.copy()
    want = ndi.binary_dilation(mask, iterations=iterations)
    got = binary_dilate(mask, iterations)
    assert got.dtype == bool and np.array_equal(got, want)
    assert np.array_equal(mask, orig)  # input untouched
