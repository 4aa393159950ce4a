"""Electrode metrics of one timestep: thickness map, expansion, cracks, agglomerates, strain stats.

Thickness is collector top to electrode top (:mod:`analysis.layers`); its map refits the top on
tiles of columns. Expansion versus charge follows 003: expansion = (t - t0) / t0, its slope in
% per mAh/g over the lithiation, and the normalised expansion ``expansion x 3579 / capacity``
(what the electrode would swell at the theoretical capacity of Si). Cracks are dark
(electrolyte-filled) columns of the matrix that form long thin lines in the plane: pores are
blobs of the binder texture's size, mud cracks (003) are sheets through the layer. Agglomerates
(004) are connected clusters of Si; above 50 um of equivalent diameter they deform the collector.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from analysis.layers import Layers, fit_steps, profile_of

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
           pore_level: float | None = None, *, k_sigma: float = 4.0, background_vox: int = 9,
           line_vox: int = 15, min_length_vox: float = 10.0, min_elongation: float = 4.0,
           reference: np.ndarray | None = None) -> tuple[float, float, np.ndarray]:
    """Crack volume fraction of the electrode and median crack width (voxels).

    A crack (003's mud cracks) is an electrolyte-filled sheet through the layer: along the
    thickness axis it is dark all the way, in the plane it is a long thin line. Pores are blobs
    of the binder texture's size, and a single voxel of a thin blurred sheet is barely darker
    than the matrix, so cracks are found on columns, not voxels:

    1. column grey: median over the column's electrode voxels outside the particles (dilated by
       2 voxels, so their blurred halo stays out); columns with less than a third of the
       thickness outside particles are not judged;
    2. dark lines: the column greys minus their in-plane median over ``background_vox``
       columns (a line a few voxels wide does not move it), in robust sigmas (MAD over the
       sample: texture and noise left after the median along the thickness), are averaged
       along straight segments of ``line_vox`` columns at 8 orientations; a column is dark
       where the lowest of these means is below ``-k_sigma / sqrt(line_vox / 3)`` (k sigmas of
       a mean of the ~line_vox / 3 independent samples a texture three columns in correlation
       length gives) and its own residual is negative. A 2-voxel sheet in micro-CT is only
       about 1.7 sigma dark per column, but 5-7 sigma along 15 columns;
    3. sheets: 8-connected groups of dark columns at least ``min_length_vox`` long (major axis)
       and ``min_elongation`` times longer than wide (width = area / length). Compact groups
       (pores running along the thickness) are not cracks. Columns that were already crack-like
       in ``reference`` (T0's crack columns moved by the registration) are not new cracks.

    Parameters
    ----------
    smooth
        Denoised volume (oriented).
    columns, particles, layers
        Sample footprint, particle mask and layers of the same timestep.
    pore_level
        Unused (kept for callers); the threshold is relative to the measured texture.
    k_sigma, background_vox, line_vox, min_length_vox, min_elongation
        Criteria above. Columns within ``background_vox`` of the sample's edge are not judged
        (the edge of the reconstruction is a long thin dark arc).
    reference
        Optional (ny, nx) bool crack columns of T0, in this timestep's frame.

    Returns
    -------
    fraction : float
        Crack volume (non-particle electrode voxels of the sheets' columns) / electrode volume.
    median_width : float
        Median over sheets of their mean width (area / length), voxels.
    mask : numpy.ndarray
        (ny, nx) bool crack columns.
    """
    z0, z1 = int(np.ceil(layers.collector_top)) + 1, int(layers.electrode_top) - 1
    keep = columns[None] & ~ndi.binary_dilation(particles[z0:z1], iterations=2)
    n_keep = keep.sum(axis=0)
    inner = ndi.binary_erosion(columns, iterations=background_vox)
    judged = inner & (n_keep >= max(3, (z1 - z0) / 3.0))
    empty = np.zeros(columns.shape, bool)
    if judged.sum() < 10:
        return 0.0, 0.0, empty
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            colmed = np.nanmedian(np.where(keep, smooth[z0:z1], np.nan), axis=0)
    colmed = np.where(judged, colmed, np.median(colmed[judged]))
    resid = colmed - ndi.median_filter(colmed, size=background_vox)
    r = resid[judged]
    sigma = 1.4826 * float(np.median(np.abs(r - np.median(r)))) or 1e-12
    z = np.where(judged, resid / sigma, 0.0)
    line = _min_line_mean(z, judged, line_vox)
    cand = judged & (z < 0.0) & (line < -k_sigma / np.sqrt(line_vox / 3.0))
    if reference is not None:
        cand &= ~ndi.binary_dilation(reference, iterations=1)
    mask, widths = _sheets(cand, min_length_vox, min_elongation)
    if not mask.any():
        return 0.0, 0.0, mask
    electrode = float(columns.sum()) * max(1, z1 - z0)
    return float(keep[:, mask].sum() / electrode), float(np.median(widths)), mask


def _min_line_mean(z: np.ndarray, valid: np.ndarray, length: int) -> np.ndarray:
    """Lowest mean of ``z`` (over valid columns) along centred segments at 8 orientations."""
    best = np.full(z.shape, np.inf)
    c = (length - 1) / 2.0
    for theta in np.arange(8) * np.pi / 8:
        k = np.zeros((length, length))
        t = np.linspace(-c, c, 2 * length)
        k[np.rint(c + t * np.sin(theta)).astype(int), np.rint(c + t * np.cos(theta)).astype(int)] = 1.0
        num = ndi.convolve(z, k, mode="constant")
        den = ndi.convolve(valid.astype(float), k, mode="constant")
        best = np.minimum(best, np.where(den > 0.5 * k.sum(), num / np.maximum(den, 1.0), np.inf))
    return best


def _sheets(cand: np.ndarray, min_length: float,
            min_elongation: float) -> tuple[np.ndarray, list[float]]:
    """Groups of ``cand`` that are long thin lines; their mask and mean widths (area / length)."""
    from skimage.measure import label, regionprops

    lab = label(cand, connectivity=2)
    out, widths = np.zeros(cand.shape, bool), []
    for reg in regionprops(lab):
        length = max(reg.axis_major_length, 1.0)
        if length >= min_length and length >= min_elongation * reg.area / length:
            out[lab == reg.label] = True
            widths.append(reg.area / length)
    return out, widths


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
