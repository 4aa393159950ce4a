"""Layer detection (analysis.layers) on synthetic slabs with known interfaces.

The cases are the ones that broke it on simulated series: a collector many voxels thick whose
noisy flat top puts the brightest slice at its lower edge (nano-CT T1 read 3.9 um for 23.9 um),
and electrolyte above the separator whose grey is close to the matrix's (phase contrast).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from analysis.layers import find_layers, orient, sample_mask


def _slab(levels: list[float], heights: list[float], nz: int, noise: float,
          seed: int = 0, n: int = 48) -> np.ndarray:
    """Layer stack with partial-volume interfaces at ``heights`` (voxels), blurred, noisy."""
    z = np.arange(nz, dtype=float)
    prof = np.full(nz, levels[0])
    for h, lo, hi in zip(heights, levels[:-1], levels[1:]):
        prof += (hi - lo) * np.clip(z + 1 - h, 0, 1)
    vol = np.broadcast_to(prof[:, None, None], (nz, n, n)).astype(np.float32)
    vol = ndi.gaussian_filter1d(vol, 0.7, axis=0)
    rng = np.random.default_rng(seed)
    vol = vol + rng.normal(0.0, noise, vol.shape).astype(np.float32)
    yy, xx = np.ogrid[:n, :n]
    vol[:, (yy - n // 2) ** 2 + (xx - n // 2) ** 2 > (0.45 * n) ** 2] = 0.0
    return vol


@pytest.mark.parametrize("seed", range(4))
def test_thick_collector_with_noisy_flat_top(seed: int) -> None:
    # air | collector 16 voxels | matrix | separator darker than the electrolyte above it
    vol = _slab([0.0, 1.0, 0.30, 0.26, 0.29], [4.0, 20.4, 116.1, 150.0], 160, 0.02, seed)
    vol = orient(vol)[0]
    lay = find_layers(vol, sample_mask(vol))
    assert lay.collector_top == pytest.approx(20.4, abs=0.1)
    assert lay.electrode_top == pytest.approx(116.1, abs=0.2)


@pytest.mark.parametrize("electrolyte", [0.299, 0.29, 0.2])
def test_electrode_top_whatever_lies_above_the_separator(electrolyte: float) -> None:
    vol = _slab([0.0, 1.0, 0.30, 0.26, electrolyte], [4.0, 10.3, 60.6, 80.0], 140, 0.02)
    lay = find_layers(vol, sample_mask(vol))
    assert lay.thickness_vox == pytest.approx(50.3, abs=0.2)


def test_thin_separator_then_darker_electrolyte() -> None:
    # micro-CT: a 4-voxel separator between the matrix and a darker electrolyte
    vol = _slab([0.0, 4.0, 1.24, 1.12, 1.0], [3.0, 7.0, 42.3, 46.6], 64, 0.02)
    lay = find_layers(vol, sample_mask(vol))
    assert lay.electrode_top == pytest.approx(42.3, abs=0.3)
