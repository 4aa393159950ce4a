"""Electrode cracks (003's mud cracks): volume fraction and median width from one timestep.

A crack is an electrolyte-filled sheet through the electrode layer: along the thickness axis it
is dark all the way, in the plane it is a long thin line. Pores are blobs of the binder
texture's size, and a single voxel of a thin blurred sheet is barely darker than the matrix
(a 2-voxel sheet in the micro-CT preset: 0.4 noise sigma per voxel), so cracks are found on
columns, not voxels, and measured on their mean cross profile, not by counting voxels:

1. column grey: median over the column's electrode voxels outside the particles (dilated by 2
   voxels, so their blurred halo stays out); columns with less than a third of the thickness
   outside particles, or within ``edge_vox`` of the sample's edge (the edge of the
   reconstruction is a long dark arc), are not judged. Residual: minus the in-plane median
   over ``background_vox`` columns (wider than twice a crack, so a crack does not pull it
   down), in robust sigmas ``z`` (MAD over the sample);
2. dark lines: ``z`` averaged along straight segments of ``line_vox`` columns at 8
   orientations; a column is a candidate where it is dark and the lowest of these means is
   ``k_weak`` robust spreads below their median over the sample (the minimum of 8 correlated
   means is skewed, so it is judged against its own distribution, not a Gaussian's);
3. sheets: candidates of one orientation at a time (crossing cracks stay apart), 8-connected,
   at least ``min_length_vox`` long and ``min_elongation`` times longer than wide (compact
   groups are pores running along the thickness), and significant as a whole: the mean ``z``
   of the group times the square root of its ~n/3 independent columns (the texture's
   correlation length is about three columns) at least ``k_sigma``. Columns already
   crack-like in ``reference`` (T0's crack columns moved by the registration) are left out;
4. width: the mean residual across each sheet, sampled off its fitted straight centre line,
   is fitted with a box of width ``w`` and depth ``d`` blurred by the known point spread (the
   reconstruction's blur, measured on the collector, and the denoising's, in quadrature).
   Counting the columns a threshold marks would make every thin crack as wide as the blur;
5. volume: along each sheet's centre line, ``w`` times the column's thickness outside
   particles, over the judged columns; the fraction is a ratio estimate: that volume over the
   judged columns' open volume, times the whole sample's open volume, over the electrode's.
   Cracks are thereby taken to be as dense where they cannot be judged (near the sample's
   edge, between particles) as where they can.

Measured on planted sheets (docs/particles.md, tests/unit/test_cracks.py): 4-6 voxel sheets are
found within 35 % in volume fraction and 2 voxels in width at both scales, 3-voxel ones at
51-111 %, 2-voxel ones mostly missed in micro-CT (16-25 %); uncracked electrodes give 0, but
once 0.5 % in a fully lithiated phase-contrast volume (lithiated Si looks like the binder).
"""

from __future__ import annotations

import warnings

import numpy as np
from numba import njit, prange
from scipy import ndimage as ndi

from analysis.layers import Layers
from analysis.morphology import binary_dilate

__all__ = ["cracks", "fit_sheet_profile"]

#: Half-length of the cross profiles sampled across a sheet, columns.
PROFILE_HALF = 8


def cracks(smooth: np.ndarray, columns: np.ndarray, particles: np.ndarray, layers: Layers,
           pore_level: float | None = None, *, k_sigma: float = 10.0, k_weak: float = 2.0,
           background_vox: int = 15, edge_vox: int = 9, line_vox: int = 15,
           min_length_vox: float = 10.0, min_elongation: float = 4.0,
           blur_vox: float | None = None, smooth_sigma: float = 1.0,
           reference: np.ndarray | None = None) -> tuple[float, float, np.ndarray]:
    """Crack volume fraction of the electrode and median crack width (voxels).

    Parameters
    ----------
    smooth
        Denoised volume (oriented), as :func:`analysis.segment.segment_volume` returns it.
    columns, particles, layers
        Sample footprint, particle mask and layers of the same timestep.
    pore_level
        Unused (kept for callers); thresholds are relative to the measured texture.
    k_sigma, k_weak, background_vox, edge_vox, line_vox, min_length_vox, min_elongation
        Detection criteria (module docstring). ``k_sigma = 10`` is the lowest that gave no
        false sheet on 12 uncracked simulated volumes at both scales but one (0.5 %).
    blur_vox, smooth_sigma
        Gaussian blur of the reconstruction (default ``layers.blur_vox``, fitted on the
        collector's edges) and of the denoising that made ``smooth``; the profile fit uses both.
    reference
        Optional (ny, nx) bool crack columns of T0, in this timestep's frame.

    Returns
    -------
    fraction : float
        Crack volume / electrode volume.
    median_width : float
        Median over sheets of their fitted width, voxels (0 without cracks).
    mask : numpy.ndarray
        (ny, nx) bool columns of the detected sheets.
    """
    resid, z, judged = _column_residual(smooth, columns, particles, layers, background_vox,
                                        edge_vox)
    mask = np.zeros(columns.shape, bool)
    if judged.sum() < 10:
        return 0.0, 0.0, mask
    weak, orientation = _candidates(z, judged, line_vox, k_weak)
    if reference is not None:
        weak &= ~ndi.binary_dilation(reference, iterations=1)
    groups = [(c, n) for c, n in _sheets(weak, orientation, min_length_vox, min_elongation)
              if -np.mean(z[c[:, 0], c[:, 1]]) * np.sqrt(len(c) / 3.0) >= k_sigma]
    for coords, _ in groups:
        mask[coords[:, 0], coords[:, 1]] = True
    if not groups:
        return 0.0, 0.0, mask
    psf = float(np.hypot(layers.blur_vox if blur_vox is None else blur_vox, smooth_sigma))
    depth = _open_depth(particles, columns, layers)
    volume, widths = _measure(groups, resid, judged, depth, psf)
    density = volume / max(float(depth[judged].sum()), 1e-12)  # ratio estimate (step 5)
    electrode = float(columns.sum()) * layers.thickness_vox
    return (density * float(depth.sum()) / electrode,
            float(np.median(widths)) if widths else 0.0, mask)


@njit(cache=True, parallel=True)
def _masked_column_median(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Median along z of each column's ``keep`` voxels (NaN where none).

    ``np.nanmedian`` of a NaN-filled copy sorts a masked array: 3 s on a 414 x 640 x 640
    electrode, where gathering each column and partitioning it takes 0.1 s.
    """
    nz, ny, nx = values.shape
    out = np.full((ny, nx), np.nan)
    for y in prange(ny):
        buf = np.empty(nz)
        for x in range(nx):
            m = 0
            for z in range(nz):
                if keep[z, y, x]:
                    buf[m] = values[z, y, x]
                    m += 1
            if m:
                out[y, x] = np.median(buf[:m])
    return out


def _column_residual(smooth: np.ndarray, columns: np.ndarray, particles: np.ndarray,
                     layers: Layers, background_vox: int,
                     edge_vox: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column greys minus their in-plane background: (residual, robust z, judged columns)."""
    z0, z1 = int(np.ceil(layers.collector_top)) + 1, int(layers.electrode_top) - 1
    keep = columns[None] & ~binary_dilate(particles[z0:z1], 2)
    judged = ndi.binary_erosion(columns, iterations=edge_vox) & (
        keep.sum(axis=0) >= max(3, (z1 - z0) / 3.0))
    if judged.sum() < 10:
        return np.zeros(columns.shape), np.zeros(columns.shape), judged
    colmed = _masked_column_median(np.ascontiguousarray(smooth[z0:z1]), keep)
    colmed = np.where(judged, colmed, np.median(colmed[judged]))
    resid = colmed - ndi.median_filter(colmed, size=background_vox)
    r = resid[judged]
    sigma = 1.4826 * float(np.median(np.abs(r - np.median(r)))) or 1e-12
    return resid, np.where(judged, resid / sigma, 0.0), judged


def _candidates(z: np.ndarray, judged: np.ndarray, line_vox: int,
                k_weak: float) -> tuple[np.ndarray, np.ndarray]:
    """Dark columns on dark line segments, and each column's darkest orientation (0..7)."""
    line, orientation = _min_line_mean(z, judged, line_vox)
    lv = line[judged & np.isfinite(line)]
    centre = float(np.median(lv))
    spread = 1.4826 * float(np.median(np.abs(lv - centre))) or 1e-12
    return judged & (z < 0.0) & (line < centre - k_weak * spread), orientation


def _measure(groups: list, resid: np.ndarray, judged: np.ndarray, depth: np.ndarray,
             psf: float) -> tuple[float, list[float]]:
    """Crack volume over the judged columns (voxels) and the fitted width of each sheet."""
    volume, widths = 0.0, []
    for coords, normal in groups:
        line = _centre_line(coords, normal)
        width, _ = fit_sheet_profile(_cross_profile(resid, judged, line, normal), psf)
        if not np.isfinite(width):
            continue
        widths.append(width)
        idx = np.rint(line).astype(np.int64)
        idx = idx[np.all((idx >= 0) & (idx < np.array(judged.shape)), axis=1)]
        idx = idx[judged[idx[:, 0], idx[:, 1]]]
        volume += width * float(depth[idx[:, 0], idx[:, 1]].sum())
    return volume, widths


def _open_depth(particles: np.ndarray, columns: np.ndarray, layers: Layers) -> np.ndarray:
    """Per column, the electrode thickness (voxels) not taken by particles.

    The particle mask of the segmentation is cut half-way up each particle's blurred edge, so
    one voxel of dilation covers what a crack cannot cross; partial voxels at the collector
    and the electrode top are counted by their fraction.
    """
    lo, hi = layers.collector_top, layers.electrode_top
    z = np.arange(particles.shape[0], dtype=float)
    frac = np.clip(np.minimum(z + 1.0, hi) - np.maximum(z, lo), 0.0, 1.0)
    sel = frac > 0
    free = ~binary_dilate(particles[sel], 1)
    return np.tensordot(frac[sel], free, axes=(0, 0)) * columns


def _min_line_mean(z: np.ndarray, valid: np.ndarray,
                   length: int) -> tuple[np.ndarray, np.ndarray]:
    """Lowest mean of ``z`` (over valid columns) along centred segments at 8 orientations.

    Returns the lowest mean and the index ``k`` of its orientation: direction
    ``(sin, cos)(k pi / 8)`` in (row, column).
    """
    best = np.full(z.shape, np.inf)
    arg = np.zeros(z.shape, np.int64)
    c = (length - 1) / 2.0
    for k, theta in enumerate(np.arange(8) * np.pi / 8):
        kern = np.zeros((length, length))
        t = np.linspace(-c, c, 2 * length)
        rows = np.rint(c + t * np.sin(theta)).astype(int)
        kern[rows, np.rint(c + t * np.cos(theta)).astype(int)] = 1.0
        num = ndi.convolve(z, kern, mode="constant")
        den = ndi.convolve(valid.astype(float), kern, mode="constant")
        mean = np.where(den > 0.5 * kern.sum(), num / np.maximum(den, 1.0), np.inf)
        better = mean < best
        best[better], arg[better] = mean[better], k
    return best, arg


def _sheets(cand: np.ndarray, orientation: np.ndarray, min_length: float,
            min_elongation: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Long thin groups of ``cand``, one orientation at a time: (coords, unit normal) each.

    Grouping the columns of each of the 8 orientations apart keeps crossing cracks apart (an
    L- or T-shaped group has no line to fit a profile across).
    """
    from skimage.measure import label, regionprops

    groups = []
    for k in range(8):
        lab = label(cand & (orientation == k), connectivity=2)
        theta = k * np.pi / 8
        normal = np.array([np.cos(theta), -np.sin(theta)])  # (row, col), across the segment
        for reg in regionprops(lab):
            length = max(reg.axis_major_length, 1.0)
            if length >= min_length and length >= min_elongation * reg.area / length:
                groups.append((reg.coords, normal))
    return groups


def _centre_line(coords: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Points (n, 2) every column along the straight line through a group's centroid."""
    tangent = np.array([normal[1], -normal[0]])
    centre = coords.mean(axis=0)
    along = (coords - centre) @ tangent
    a = np.arange(np.floor(along.min()), np.ceil(along.max()) + 1.0)
    return centre[None, :] + a[:, None] * tangent[None, :]


def _cross_profile(resid: np.ndarray, valid: np.ndarray, line: np.ndarray,
                   normal: np.ndarray) -> np.ndarray:
    """Mean residual across a sheet at offsets -PROFILE_HALF..PROFILE_HALF from its centre line.

    Sampled at sub-column positions off the fitted line, so that no column is picked for
    being dark (picking the darkest column would make the profile narrower and deeper).
    """
    t = np.arange(-PROFILE_HALF, PROFILE_HALF + 1, dtype=float)
    pts = line[:, None, :] + t[None, :, None] * normal[None, None, :]
    coords = [pts[..., 0].ravel(), pts[..., 1].ravel()]
    vals = ndi.map_coordinates(resid, coords, order=1, mode="nearest").reshape(pts.shape[:2])
    ok = ndi.map_coordinates(valid.astype(float), coords, order=1, mode="constant",
                             cval=0.0).reshape(pts.shape[:2]) > 0.99
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.where(ok, vals, np.nan), axis=0)


def fit_sheet_profile(profile: np.ndarray, psf_sigma: float) -> tuple[float, float]:
    """Width and depth of a dark box blurred by a Gaussian, fitted to a cross profile.

    Parameters
    ----------
    profile
        (2 h + 1,) mean residual grey at offsets -h..h from the sheet's ridge (NaN allowed).
    psf_sigma
        Gaussian sigma of the blur, columns. The ridge is the darkest whole column, up to half
        a column off the sheet's centre, so the fit also lets the centre move by +-1.

    Returns
    -------
    width, depth : float
        Box width (columns) and depth (grey; positive for a dark sheet); NaN when the fit
        fails or the profile is not dark.
    """
    from scipy.optimize import least_squares
    from scipy.special import erf

    h = (len(profile) - 1) // 2
    t = np.arange(-h, h + 1, dtype=float)
    ok = np.isfinite(profile)
    if ok.sum() < 7 or not np.nanmin(profile) < 0:
        return np.nan, np.nan
    s = np.sqrt(2.0) * psf_sigma

    def model(p: np.ndarray) -> np.ndarray:
        depth, width, centre, base = p
        return base - depth * 0.5 * (erf((t - centre + 0.5 * width) / s)
                                     - erf((t - centre - 0.5 * width) / s))

    depth0 = float(-np.nanmin(profile))
    fit = least_squares(lambda p: (model(p) - profile)[ok], [depth0, 2.0, 0.0, 0.0],
                        bounds=([0.0, 0.05, -1.0, -np.inf], [np.inf, float(h), 1.0, np.inf]))
    if not fit.success or fit.x[1] > h - 1.0:
        return np.nan, np.nan  # as wide as the profile: a dark region, not a sheet
    return float(fit.x[1]), float(fit.x[0])
