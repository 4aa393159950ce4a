"""Local DVC building blocks: the separable warp, masked and coarse-to-fine block matching."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi


def _texture(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(rng.standard_normal(shape), 1.5).astype(np.float32)


def test_warp_equals_map_coordinates() -> None:
    from analysis.dvc import _warp

    vol = _texture((20, 24, 28))
    zmap = 0.5 + np.arange(20) * 1.13 + 0.01 * np.arange(20) ** 2
    shift = np.array([0.7, -1.4])
    coords = np.meshgrid(zmap, np.arange(24) + shift[0], np.arange(28) + shift[1], indexing="ij")
    ref = ndi.map_coordinates(vol, coords, order=1, mode="nearest")
    assert np.allclose(_warp(vol, zmap, shift), ref, atol=1e-5)


@pytest.mark.parametrize("coarse, search", [(False, 2), (True, 6)])
def test_block_match_finds_a_known_shift_with_a_mask(coarse: bool, search: int) -> None:
    from analysis.dvc import _match

    ref = _texture((48, 64, 64), seed=1)
    true = np.array([1.3, -0.4, 0.6]) if not coarse else np.array([4.3, -3.4, 2.6])
    cur = ndi.shift(ref, true, order=3, mode="nearest").astype(np.float32)
    # half of every window masked out: a brighter blob there in cur only must not matter
    weight = np.ones(ref.shape, bool)
    weight[:, :, :32] = False
    cur[:, :, :32] += 5.0 * _texture((48, 64, 32), seed=2)
    nodes = np.array([[24, 32, 32], [24, 24, 36]], np.int64)
    disp, peak = _match(ref, cur, nodes, 8, search, weight, coarse)
    assert np.all(peak > 0.9)
    assert np.allclose(disp, true[None, :], atol=0.2)


@pytest.mark.parametrize("bin", [1, 2])
def test_local_strain_measures_an_axial_stretch_at_full_and_binned_resolution(bin: int) -> None:
    from analysis.dvc import local_strain

    ref = _texture((96, 64, 64), seed=3)
    ref = ndi.gaussian_filter(ref, 1.0) * 10.0  # texture that survives 2x binning
    top, strain = 12.0, 0.15
    z = np.arange(96, dtype=float)
    src = np.where(z > top, top + (z - top) / (1.0 + strain), z)
    coords = np.meshgrid(src, np.arange(64.0), np.arange(64.0), indexing="ij")
    cur = ndi.map_coordinates(ref, coords, order=3, mode="nearest").astype(np.float32)
    # the prior (a 12 % stretch) misses the top of the electrode by ~2 voxels
    sf = local_strain(ref, cur, np.ones((64, 64), bool), top, 76.0, np.zeros(3), (0.12, 0.0),
                      window=16 // bin, bin=bin)
    assert sf.nodes[..., 0].max() < 96 and sf.nodes[..., 1].max() < 64
    assert np.all(np.diff(sf.height) > 0) and sf.height[0] > 0
    ax = sf.axial[sf.valid & np.isfinite(sf.axial)]
    assert ax.size >= 8
    assert abs(np.median(ax) - strain) < 0.01
    # displacement in full-resolution voxels: the node at height h moved by strain * h
    uz = sf.displacement[..., 0][sf.valid]
    h = np.broadcast_to(sf.height[:, None, None], sf.valid.shape)[sf.valid]
    assert np.allclose(uz, strain * h, atol=0.6)
