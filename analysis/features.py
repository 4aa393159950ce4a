"""Per-particle features of one timestep, measured where tracking puts each T0 particle.

Grey values are sampled in a ball of ``probe * R0`` about the tracked centre (R0 the particle's
T0 equivalent radius). A swelling particle's material stays under that ball (its centre moves
with the electrode and it only grows), so the ball's grey follows the particle's lithiation in
absorption contrast and in phase contrast alike, even where a lithiated particle no longer
segments as one object (002). ``probe = 0.7`` tolerates a tracking error of 0.3 R0 before the
ball reaches the matrix around an unswollen particle.

Features (grey in the volume's units, lengths in voxels):

* ``mean_grey`` and ``peak_grey`` (mode of a 32-bin histogram of the ball: the particle's
  attenuation peak of 000) of the ball;
* ``core_grey`` (ball of 0.35 R0) and ``shell_grey`` (0.55-0.7 R0): a core-shell particle keeps
  a crystalline core brighter than its lithiated shell (002);
* ``grey_var`` and ``radial_r2``: the ball's grey variance and the fraction of it explained by
  distance from the centre alone (means of 1-voxel shells). A core-shell particle is radially
  symmetric (r2 near 1 once its core and shell differ); network-like pathways (002) are not;
* ``volume_vox`` and ``centroid`` of the matched label (NaN when unmatched).
"""

from __future__ import annotations

import numpy as np

__all__ = ["FEATURES", "measure_particles"]

FEATURES = ("mean_grey", "peak_grey", "core_grey", "shell_grey", "grey_var", "radial_r2",
            "volume_vox",
            "cz", "cy", "cx")


def _ball(volume: np.ndarray, centre: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Voxel values within ``radius`` of ``centre`` and their distances (both flat)."""
    lo = [max(0, int(np.floor(c - radius))) for c in centre]
    hi = [min(n, int(np.ceil(c + radius)) + 1) for c, n in zip(centre, volume.shape)]
    if any(h <= low for low, h in zip(lo, hi)):
        return np.zeros(0, np.float32), np.zeros(0)
    zz, yy, xx = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    d = np.sqrt((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2)
    inside = d <= radius
    return volume[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]][inside], d[inside]


def _peak(values: np.ndarray) -> float:
    if values.size < 4:
        return float(np.mean(values)) if values.size else np.nan
    hist, edges = np.histogram(values, bins=32)
    i = int(np.argmax(np.convolve(hist, np.ones(3) / 3.0, mode="same")))
    return float(0.5 * (edges[i] + edges[i + 1]))


def _radial_r2(vals: np.ndarray, d: np.ndarray) -> tuple[float, float]:
    """Variance of ``vals`` and the fraction of it explained by 1-voxel distance shells."""
    var = float(vals.var())
    if vals.size < 8 or var <= 0.0:
        return var, np.nan
    shell = d.astype(np.int64)
    sums = np.bincount(shell, vals)
    counts = np.bincount(shell)
    means = sums / np.maximum(counts, 1)
    resid = float(np.mean((vals - means[shell]) ** 2))
    return var, 1.0 - resid / var


def measure_particles(volume: np.ndarray, centres: np.ndarray, r0: np.ndarray,
                      label: np.ndarray, label_volumes: np.ndarray,
                      label_centroids: np.ndarray, *, probe: float = 0.7) -> np.ndarray:
    """Features of every tracked particle at one timestep.

    Parameters
    ----------
    volume
        (nz, ny, nx) grey values, lightly denoised (the oriented frame of the segmentation).
    centres
        (n, 3) tracked centres, voxels.
    r0
        (n,) T0 equivalent radii, voxels.
    label
        (n,) matched label per particle (0 if none).
    label_volumes, label_centroids
        Voxel counts and centroids of the step's labels 1..m.
    probe
        Radius of the grey-value ball in units of ``r0`` (see the module docstring).

    Returns
    -------
    numpy.ndarray
        float64 (n, len(FEATURES)), columns in the order of :data:`FEATURES`.
    """
    out = np.full((len(centres), len(FEATURES)), np.nan)
    for i, (c, r) in enumerate(zip(centres, r0)):
        vals, d = _ball(volume, c, probe * r)
        if vals.size == 0:
            continue
        core = vals[d <= 0.35 * r]
        shell = vals[d >= 0.55 * r]
        out[i, :6] = (float(vals.mean()), _peak(vals),
                      float(core.mean()) if core.size else np.nan,
                      float(shell.mean()) if shell.size else np.nan, *_radial_r2(vals, d))
        if label[i] > 0:
            out[i, 6] = label_volumes[label[i] - 1]
            out[i, 7:10] = label_centroids[label[i] - 1]
        else:
            out[i, 7:10] = c
    return out
