"""Electrode metrics of one timestep: thickness map, expansion, cracks, agglomerates, strain stats.

Thickness is collector top to electrode top (:mod:`analysis.layers`); its map refits the top on
tiles of columns. Expansion versus charge follows 003: expansion = (t - t0) / t0, its slope in
% per mAh/g over the lithiation, and the normalised expansion ``expansion x 3579 / capacity``
(what the electrode would swell at the theoretical capacity of Si). Cracks (003's mud cracks)
are in :mod:`analysis.cracks` (re-exported here). Agglomerates
(004) are connected clusters of Si; above 50 um of equivalent diameter they deform the collector.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from analysis.cracks import cracks
from analysis.layers import Layers, fit_steps, profile_of
from analysis.morphology import binary_dilate

__all__ = ["THEORETICAL_CAPACITY_MAH_G", "agglomerates", "cracks", "expansion_vs_charge",
           "STRAIN_BIN_EDGES", "half_strains", "region_histograms", "region_strain",
           "thickness_map"]

#: Bin edges of the per-region strain histograms (strain, not %): -0.5 to 1.5 by 0.05.
STRAIN_BIN_EDGES = np.round(np.linspace(-0.5, 1.5, 41), 3)

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
    keep = ~binary_dilate(particles, 2)
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


def half_strains(displacement_z: np.ndarray, valid: np.ndarray, height: np.ndarray,
                 shift_z: float, thickness0: float, thickness: float) -> dict[str, float]:
    """Mean axial strain of each half-electrode from displacement differences across it.

    The mean strain of a layer is the change of its thickness over its thickness. The collector
    top is the rigid reference (displacement 0 after registration), the electrode top moved by
    the measured thickness change, and the mid-plane (half of T0's thickness above the
    collector) by the DVC: the median axial displacement of each node layer's valid nodes,
    interpolated linearly in height. So only the mid-plane rests on correlation, where windows
    lie inside the electrode, and not on one-sided differences at the electrode's edges.

    Parameters
    ----------
    displacement_z
        (nz, ny, nx) axial displacement of the DVC nodes, voxels (including the rigid shift).
    valid, height
        Valid nodes and node-layer heights above the collector (T0 voxels).
    shift_z
        Rigid axial shift of the timestep (the collector's motion), voxels.
    thickness0, thickness
        Electrode thickness at T0 and at the timestep, voxels.

    Returns
    -------
    dict
        ``collector_side``, ``separator_side`` and ``all`` strains (NaN without valid nodes).
    """
    u = np.array([np.median(displacement_z[k][valid[k]]) if valid[k].any() else np.nan
                  for k in range(len(height))]) - shift_z
    ok = np.isfinite(u)
    total = (thickness - thickness0) / thickness0
    if not ok.any():
        return {"collector_side": np.nan, "separator_side": np.nan, "all": total}
    half = 0.5 * thickness0
    u_mid = float(np.interp(half, np.asarray(height, float)[ok], u[ok]))
    return {"collector_side": u_mid / half,
            "separator_side": (thickness - thickness0 - u_mid) / half, "all": total}


def _halves(valid: np.ndarray, height: np.ndarray, thickness: float) -> dict[str, np.ndarray]:
    return {"collector_side": (height < 0.5 * thickness)[:, None, None] & valid,
            "separator_side": (height >= 0.5 * thickness)[:, None, None] & valid}


def region_histograms(field_values: np.ndarray, valid: np.ndarray, height: np.ndarray,
                      thickness: float) -> dict[str, dict]:
    """Histogram (:data:`STRAIN_BIN_EDGES`) and 10/50/90 % percentiles of a strain per half.

    Returns ``{side: {"counts": int array, "p10": .., "p50": .., "p90": ..}}`` for the
    collector side (lower half) and separator side (upper half); NaN percentiles when empty.
    """
    f = np.asarray(field_values)
    out = {}
    for side, sel in _halves(valid, height, thickness).items():
        v = f[sel & np.isfinite(f)]
        counts, _ = np.histogram(np.clip(v, STRAIN_BIN_EDGES[0], STRAIN_BIN_EDGES[-1]),
                                 STRAIN_BIN_EDGES)
        pct = np.percentile(v, [10, 50, 90]) if v.size else [np.nan] * 3
        out[side] = {"counts": counts, "p10": float(pct[0]), "p50": float(pct[1]),
                     "p90": float(pct[2])}
    return out
