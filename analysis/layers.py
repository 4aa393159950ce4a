"""Layers of an electrode volume: sample footprint, current collector, electrode top.

Conventions: volumes are float arrays ``(z, y, x)`` with ``z`` the electrode's thickness axis,
current collector at low ``z`` and separator above the electrode (:func:`orient` flips a volume
that has them the other way round). Grey values are whatever the reconstruction gives; only
their order matters: the collector is the brightest layer.

Method: the sample is the footprint of the axial mean image (Otsu), so air around a cylindrical
sample and the reconstruction circle are excluded. Interfaces come from the slice-mean profile
(particles excluded, so that only the matrix is seen near the electrode top): the collector is
the brightest slab, the electrode top the step down from the matrix level to what lies above.
Both are located by least-squares fits of a blurred partial-volume layer model, which is exact
for a voxel that holds a fraction of each layer and unbiased under a symmetric blur; a thin
separator (a few voxels) gets its own layer in the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from analysis.morphology import binary_dilate

__all__ = ["Layers", "find_layers", "fit_steps", "orient", "otsu_threshold", "profile_of",
           "sample_mask"]


@dataclass(frozen=True)
class Layers:
    """Interface heights of one volume, in voxel index coordinates along z (sub-voxel).

    A voxel ``i`` spans ``[i, i + 1)``, so heights are directly comparable with lengths:
    ``(electrode_top - collector_top) * voxel_size`` is the electrode thickness.
    """

    collector_bottom: float
    collector_top: float
    electrode_top: float
    matrix_level: float  #: mean grey of the electrode matrix (particles excluded)
    above_level: float  #: mean grey just above the electrode (separator / electrolyte)
    collector_level: float
    blur_vox: float = 1.0  #: Gaussian blur of the collector's edges, voxels

    @property
    def thickness_vox(self) -> float:
        """Electrode thickness in voxels."""
        return self.electrode_top - self.collector_top


def sample_mask(volume: np.ndarray, erode_vox: int = 2) -> np.ndarray:
    """Columns (y, x) that hold the sample: Otsu on the axial mean image, largest component.

    Parameters
    ----------
    volume
        (nz, ny, nx) grey values.
    erode_vox
        Erosion (voxels) that keeps reconstruction edge artefacts and the blurred sample
        boundary out of the statistics.

    Returns
    -------
    numpy.ndarray
        bool (ny, nx).
    """
    mean_img = np.asarray(volume, dtype=np.float32).mean(axis=0)
    mask = mean_img > otsu_threshold(mean_img)
    lab, n = ndi.label(mask)
    if n > 1:
        mask = lab == (1 + int(np.argmax(ndi.sum_labels(mask, lab, range(1, n + 1)))))
    if erode_vox > 0:
        mask = ndi.binary_erosion(mask, iterations=erode_vox)
    if not mask.any():
        raise ValueError("no sample found in the volume (its axial mean image is uniform)")
    return mask


def orient(volume: np.ndarray) -> tuple[np.ndarray, bool]:
    """Flip ``volume`` along z if its collector (brightest slab) lies above the electrode.

    Returns the (possibly flipped, as a view) volume and whether it was flipped. The collector
    is the slab above half its peak in the slice-mean profile; the side of it holding more
    material (higher mean grey over the next eighth of the volume) is the electrode side.
    """
    prof = volume.mean(axis=(1, 2))
    lo, hi = _collector_slab(prof)
    span = max(3, volume.shape[0] // 8)
    below = prof[max(0, lo - 2 - span): max(0, lo - 2)]
    above = prof[hi + 3: hi + 3 + span]
    flipped = below.size > 0 and (above.size == 0 or below.mean() > above.mean())
    return (volume[::-1] if flipped else volume), bool(flipped)


def _collector_slab(prof: np.ndarray) -> tuple[int, int]:
    """First and last slice of the collector: the run of slices above half its peak.

    The half-way level is taken between the peak and the profile's median (electrode or
    electrolyte). Reading the plateau as a run rather than the single brightest slice matters
    for a collector many voxels thick (nano-CT: 16 voxels), whose flat top is noisy: its
    argmax can sit at either edge, and plateaus "a few voxels past the peak" would then still
    be collector.
    """
    peak = int(np.nanargmax(prof))
    half = 0.5 * (prof[peak] + np.nanmedian(prof))
    lo, hi = peak, peak
    while lo > 0 and prof[lo - 1] > half:
        lo -= 1
    while hi < prof.size - 1 and prof[hi + 1] > half:
        hi += 1
    return lo, hi


def profile_of(volume: np.ndarray, mask3d_or_2d: np.ndarray) -> np.ndarray:
    """Mean grey value of each z slice over a 2-D column mask or a 3-D voxel mask (NaN if empty)."""
    m = mask3d_or_2d
    if m.ndim == 2:
        m = np.broadcast_to(m, volume.shape)
    counts = m.sum(axis=(1, 2))
    sums = np.where(m, volume, 0.0).sum(axis=(1, 2), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _crossing(prof: np.ndarray, start: int, stop: int, level: float) -> float:
    """First height between ``start`` and ``stop`` where ``prof`` crosses ``level`` (voxels).

    A crossing between slice centres ``i + 0.5`` and ``i + 1.5`` is interpolated linearly; the
    result is a first guess that :func:`fit_steps` refines.
    """
    step = 1 if stop >= start else -1
    for i in range(start, stop - step, step):
        a, b = prof[i], prof[i + step]
        if np.isfinite(a) and np.isfinite(b) and (a - level) * (b - level) <= 0 and a != b:
            return i + 0.5 + step * (level - a) / (b - a)
    raise ValueError("no layer interface found in the slice profile")


def _plateau(prof: np.ndarray, lo: int, hi: int) -> float:
    seg = prof[max(0, lo): max(0, hi)]
    seg = seg[np.isfinite(seg)]
    if seg.size == 0:
        raise ValueError("layer plateau outside the volume; is the electrode in the field of view?")
    return float(np.median(seg))


def _ramp(x: np.ndarray, sigma: float) -> np.ndarray:
    """Antiderivative of the Gaussian CDF: integral of Phi(t / sigma) dt up to x."""
    from scipy.special import ndtr

    u = x / sigma
    return x * ndtr(u) + sigma * np.exp(-0.5 * u * u) / np.sqrt(2.0 * np.pi)


def _layer_model(params: np.ndarray, z: np.ndarray, k: int) -> np.ndarray:
    """Slice means of a stack of k + 1 layers with interfaces h_1..h_k, blurred by sigma.

    Slice i averages ``[i, i + 1)``, so partial volume is exact: the voxel-averaged blurred
    step at h is ``R(i + 1 - h) - R(i - h)`` with R the Gaussian CDF's antiderivative.
    """
    levels, heights, sigma = params[: k + 1], params[k + 1: 2 * k + 1], abs(params[-1]) + 1e-3
    out = np.full(z.shape, levels[0], dtype=np.float64)
    for j in range(k):
        out += (levels[j + 1] - levels[j]) * (_ramp(z + 1 - heights[j], sigma)
                                              - _ramp(z - heights[j], sigma))
    return out


def fit_steps(prof: np.ndarray, lo: int, hi: int, heights: list[float],
              levels: list[float], sigma: float = 1.0, *,
              fixed_sigma: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares fit of a blurred partial-volume layer stack to ``prof[lo:hi]``.

    Parameters
    ----------
    prof
        Slice-mean profile.
    lo, hi
        Slices used.
    heights, levels
        First guesses: k interface heights (voxels, increasing) and k + 1 plateau levels.
    sigma
        Blur (voxels): the first guess, or the value used when ``fixed_sigma``.
    fixed_sigma
        Keep ``sigma`` (e.g. the collector's fitted blur) instead of fitting it.

    Returns
    -------
    heights : numpy.ndarray
        Fitted interface heights (sub-voxel), within ``[lo, hi]``.
    levels : numpy.ndarray
        Fitted k + 1 levels followed by the blur sigma (voxels).
    cost : float
        Mean squared residual, in grey units squared.
    """
    from scipy.optimize import least_squares

    z = np.arange(max(0, lo), min(prof.size, hi), dtype=np.float64)
    y = prof[z.astype(int)]
    ok = np.isfinite(y)
    z, y = z[ok], y[ok]
    k = len(heights)
    if y.size < 2 * k + 2:
        raise ValueError("too few slices to fit the layer interfaces")
    offset, scale = float(np.mean(y)), float(np.std(y)) or 1.0
    ys = (y - offset) / scale
    span = (float(ys.min()) - 1.0, float(ys.max()) + 1.0)

    def unpack(p: np.ndarray) -> np.ndarray:
        s = sigma if fixed_sigma else p[-1]
        return np.r_[p[: k + 1], p[k + 1: 2 * k + 1], s]

    x0 = np.r_[(np.asarray(levels, float) - offset) / scale, heights]
    lb = np.r_[[span[0]] * (k + 1), [z[0]] * k]
    ub = np.r_[[span[1]] * (k + 1), [z[-1] + 1.0] * k]
    if not fixed_sigma:
        x0, lb, ub = np.r_[x0, sigma], np.r_[lb, 0.2], np.r_[ub, 5.0]
    x0 = np.clip(x0, lb + 1e-9, ub - 1e-9)
    res = least_squares(lambda p: _layer_model(unpack(p), z, k) - ys, x0, bounds=(lb, ub))
    p = unpack(res.x)
    cost = float(np.mean(res.fun**2)) * scale**2
    return p[k + 1: 2 * k + 1], np.r_[p[: k + 1] * scale + offset, abs(p[-1])], cost


def find_layers(volume: np.ndarray, columns: np.ndarray, particles: np.ndarray | None = None,
                *, band_vox: int = 4) -> Layers:
    """Locate the collector and the electrode top from slice profiles.

    Parameters
    ----------
    volume
        (nz, ny, nx) grey values, collector at low z (see :func:`orient`).
    columns
        (ny, nx) bool sample footprint (:func:`sample_mask`).
    particles
        Optional (nz, ny, nx) bool particle mask; interfaces are then fitted on the profile of
        the voxels outside it (dilated by 2 voxels), i.e. on the matrix alone, which a
        particle's bright cap near an interface cannot bias.
    band_vox
        Width (voxels) of the plateaus either side of an interface.

    Returns
    -------
    Layers
    """
    prof = profile_of(volume, columns)
    if particles is not None:
        keep = ~binary_dilate(particles, 2) & columns[None]
        # slices that particles fill completely keep the all-voxel mean rather than a gap
        prof = np.where(np.isnan(m := profile_of(volume, keep)), prof, m)
    lo, hi = _collector_slab(prof)
    coll = _plateau(prof, lo, hi + 1)
    below = _plateau(prof, 0, max(1, lo - band_vox))
    above = _plateau(prof, hi + 1 + band_vox, hi + 1 + 3 * band_vox)
    h0 = [_crossing(prof, lo, -1, 0.5 * (coll + below)),
          _crossing(prof, hi, prof.size, 0.5 * (coll + above))]
    (bottom, top_cc), lev, _ = fit_steps(prof, int(h0[0]) - 2 * band_vox,
                                         int(h0[1]) + 2 * band_vox, h0, [below, coll, above])
    top, matrix, above = _electrode_top(prof, int(np.ceil(top_cc)) + band_vox, band_vox)
    return Layers(collector_bottom=float(bottom), collector_top=float(top_cc),
                  electrode_top=top, matrix_level=matrix, above_level=above,
                  collector_level=float(lev[1]), blur_vox=float(lev[-1]))


def _electrode_top(prof: np.ndarray, start: int, band: int) -> tuple[float, float, float]:
    """Electrode/separator interface on the matrix profile: (height, matrix, above level).

    First guess: the first height above the matrix plateau from which the profile stays, for
    ``band`` slices, a third of the way down from the matrix to the darkest layer above it (the
    lowest ``band``-slice running mean). "First sustained drop" rather than "last slice above
    the half-way level to the volume's top", because what lies above the separator differs:
    electrolyte darker than the separator (micro-CT; a half-way level would then sit at the
    separator's own grey), or brighter than it and close to the matrix (phase-contrast
    nano-CT), or more separator. A third of the drop is still many times the scatter of a
    slice mean of the matrix. Then two models are fitted around
    it: matrix / above (one step) and matrix / separator / electrolyte (two steps, several
    starts, since a thin separator sits within a few voxels). The two-step model is kept only
    when its steps are more than a voxel apart and it lowers the mean squared residual by 30 %
    (about what the Bayesian information criterion asks of two extra parameters over ~25
    slices); otherwise it is fitting texture.
    """
    n = prof.size
    matrix = _plateau(prof, start, start + 3 * band)
    seg = np.where(np.isfinite(prof[start:]), prof[start:], matrix)
    if seg.size < 2 * band:
        raise ValueError("no electrode matrix found above the current collector")
    running = ndi.uniform_filter1d(seg, band, mode="nearest")
    level = matrix - (matrix - float(running[band:].min())) / 3.0
    below = seg < level
    first = next((i for i in range(band, seg.size - band + 1) if below[i: i + band].all()), None)
    if first is None:
        raise ValueError("no electrode top found above the current collector")
    z = start + first + 0.5  # a first guess only; the fits below refine it
    top_level = _plateau(prof, int(z) + 1, int(z) + 1 + band)
    lo_fit, hi_fit = max(start, int(z) - 3 * band), min(n, int(z) + 4 * band)
    one = fit_steps(prof, lo_fit, hi_fit, [z], [matrix, top_level])
    best = one
    for dz in (-1.5, -0.5, 0.5):
        for gap in (1.5, 3.0, 5.0):
            try:
                fit = fit_steps(prof, lo_fit, hi_fit, [z + dz, z + dz + gap],
                                [matrix, level, top_level])
            except ValueError:
                continue
            if fit[0][1] > fit[0][0] + 1.0 and fit[2] < 0.7 * one[2] and fit[2] < best[2]:
                best = fit
    return float(best[0][0]), float(best[1][0]), float(best[1][1])


def otsu_threshold(values: np.ndarray, nbins: int = 256) -> float:
    """Otsu threshold of a sample of grey values (scikit-image)."""
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(np.asarray(values, dtype=np.float64), nbins=nbins))

