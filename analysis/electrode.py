"""Electrode metrics of one timestep: thickness map, expansion, cracks, agglomerates, strain stats.

Thickness is collector top to electrode top (:mod:`analysis.layers`); its map refits the top on
tiles of columns. Expansion versus charge follows 003: expansion = (t - t0) / t0, its slope in
% per mAh/g over the lithiation, and the normalised expansion ``expansion x 3579 / capacity``
(what the electrode would swell at the theoretical capacity of Si). Cracks are dark
(electrolyte-filled) voxels of the matrix that form long runs along the thickness axis: pores are
blobs of the binder texture's size, mud cracks (003) are sheets through the layer. Agglomerates
(004) are connected clusters of Si; above 50 um of equivalent diameter they deform the collector.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from analysis.layers import Layers, fit_steps, profile_of

__all__ = ["THEORETICAL_CAPACITY_MAH_G", "agglomerates", "cracks", "expansion_vs_charge",
           "region_strain", "thickness_map"]

#: Theoretical capacity of Si used by 003's normalised expansion, mAh/g.
THEORETICAL_CAPACITY_MAH_G = 3579.0


def thickness_map(volume: np.ndarray, columns: np.ndarray, particles: np.ndarray,
                  layers: Layers, tile: int = 16) -> np.ndarray:
    """Electrode thickness (voxels) per tile of ``tile x tile`` columns; NaN outside the sample.

    Each tile's matrix profile (particles excluded) is fitted with one blurred step between the
    matrix and what lies above, started from the global electrode top.
    """
    ny, nx = columns.shape
    out = np.full((ny // tile, nx // tile), np.nan)
    keep = ~ndi.binary_dilation(particles, iterations=2)
    band = 6
    lo, hi = int(layers.electrode_top) - 3 * band, int(layers.electrode_top) + 3 * band
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            sl = (slice(i * tile, (i + 1) * tile), slice(j * tile, (j + 1) * tile))
            cols = columns[sl]
            if cols.mean() < 0.9:
                continue
            prof = profile_of(volume[:, sl[0], sl[1]], keep[:, sl[0], sl[1]] & cols[None])
            try:
                (top,), _, _ = fit_steps(prof, lo, hi, [layers.electrode_top],
                                         [layers.matrix_level, layers.above_level])
            except ValueError:
                continue
            out[i, j] = top - layers.collector_top
    return out


def expansion_vs_charge(thickness_um: np.ndarray, charge_mAh_g: np.ndarray,
                        lithiated_at: int) -> dict[str, float]:
    """003's thickness-versus-capacity numbers.

    Returns
    -------
    dict
        ``expansion_pct`` at the most lithiated scan, ``slope_pct_per_mAh_g`` (least squares
        over scans 0..K), ``normalised_expansion_pct`` (expansion x 3579 / capacity at K).
    """
    t, q = np.asarray(thickness_um, float), np.asarray(charge_mAh_g, float)
    exp = 100.0 * (t - t[0]) / t[0]
    k = lithiated_at
    slope = float(np.polyfit(q[: k + 1], exp[: k + 1], 1)[0]) if k >= 1 and np.ptp(q[: k + 1]) > 0 else np.nan
    norm = float(exp[k] * THEORETICAL_CAPACITY_MAH_G / q[k]) if q[k] > 0 else np.nan
    return {"expansion_pct": float(exp[k]), "slope_pct_per_mAh_g": slope,
            "normalised_expansion_pct": norm}


def cracks(smooth: np.ndarray, columns: np.ndarray, particles: np.ndarray, layers: Layers,
           pore_level: float, min_run_vox: int | None = None) -> tuple[float, float, np.ndarray]:
    """Crack volume fraction of the electrode and median crack width (voxels).

    Parameters
    ----------
    smooth
        Denoised volume (oriented).
    columns, particles, layers
        Sample footprint, particle mask and layers of the same timestep.
    pore_level
        Grey of electrolyte (e.g. ``layers.above_level`` or the separator's pores).
    min_run_vox
        Shortest vertical run of dark voxels that is a crack; default a third of the electrode
        thickness, several times the binder texture's correlation length.

    Returns
    -------
    fraction : float
        Crack voxels / electrode voxels.
    median_width : float
        Median of ``2 d - 1`` over the crack's medial voxels, d the distance to the nearest
        non-crack voxel (a sheet w voxels wide has d = (w + 1) / 2 at its middle).
    mask : numpy.ndarray
        bool crack voxels.
    """
    z0, z1 = int(np.ceil(layers.collector_top)) + 1, int(layers.electrode_top) - 1
    run = min_run_vox or max(5, int((z1 - z0) / 3))
    level = 0.5 * (layers.matrix_level + pore_level)
    dark = np.zeros(smooth.shape, bool)
    keep = columns[None] & ~ndi.binary_dilation(particles[z0:z1], iterations=1)
    dark[z0:z1] = (smooth[z0:z1] < level) & keep
    line = np.ones((run, 1, 1), bool)
    mask = ndi.binary_opening(dark, structure=line)
    electrode = float(columns.sum()) * max(1, z1 - z0)
    if not mask.any():
        return 0.0, 0.0, mask
    # in-plane distance: cracks are measured across the sheet, not along the thickness axis
    d = np.stack([ndi.distance_transform_edt(m) for m in mask])
    ridge = mask & (d >= ndi.maximum_filter(d, size=(1, 3, 3)))
    return float(mask.sum() / electrode), float(np.median(2.0 * d[ridge] - 1.0)), mask


def agglomerates(particles: np.ndarray, voxel_size_um: float,
                 critical_um: float = 50.0) -> tuple[np.ndarray, np.ndarray]:
    """Connected Si clusters: equivalent diameters (µm) and whether each exceeds ``critical_um``.

    Touching particles join (26-connectivity after a one-voxel closing), which is what an
    agglomerate is; 004 finds clusters above about 50 um deform the current collector.
    """
    closed = ndi.binary_closing(particles, structure=np.ones((3, 3, 3), bool))
    lab, n = ndi.label(closed, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return np.zeros(0), np.zeros(0, bool)
    vols = np.bincount(lab.ravel())[1:] * voxel_size_um**3
    diam = np.cbrt(6.0 * vols / np.pi)
    return diam, diam > critical_um


def region_strain(field_values: np.ndarray, valid: np.ndarray,
                  height: np.ndarray, thickness: float) -> dict[str, float]:
    """Mean strain on the collector side (lower half) and separator side (upper half)."""
    lower = (height < 0.5 * thickness)[:, None, None] & valid
    upper = (height >= 0.5 * thickness)[:, None, None] & valid
    f = np.asarray(field_values)
    return {"collector_side": float(np.nanmean(f[lower])) if lower.any() else np.nan,
            "separator_side": float(np.nanmean(f[upper])) if upper.any() else np.nan,
            "all": float(np.nanmean(f[valid])) if valid.any() else np.nan}
