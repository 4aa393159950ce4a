"""Registration of each timestep to T0 and particle tracking across timesteps.

Registration (as in 002, the current collector is the rigid reference): the shift of a timestep
is the change of the collector top along z and of the sample footprint's centroid in (y, x).
Both are measured on each volume by :mod:`analysis.layers`, so a drifting sample (or a volume
reconstructed with another centre) is brought back to T0's frame without correlating grey values
that lithiation changes.

Tracking. A T0 particle's position at step k is *predicted* from the registration and an axial
displacement model of the electrode, ``u(h) = a h + b h^2 / 2`` for a particle at height ``h``
above the collector (linear strain through the thickness, as 002 measures). The first guess is a
uniform stretch from the measured thicknesses (``a = t_k / t_0 - 1``); particles are then
assigned to step-k labels by the Hungarian method on centroid distance, gated at
``gate * R0`` (R0 the T0 equivalent radius) and accepting only labels of at least
``min_volume_ratio`` of the T0 volume: a swelling particle only grows in absorption contrast,
whereas in phase contrast (002) a lithiated particle fragments into unreacted islands that are
not the particle. ``(a, b)`` are refitted on the matched particles and the assignment repeated,
so unmatched particles (fragmented, vanished) keep a position predicted from their neighbours'
motion. This survives 200-300 % swelling (a centroid moves with the electrode, not with the
particle's own growth) and particles leaving or entering the field of view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy import ndimage as ndi

from analysis.layers import Layers

__all__ = ["LabelStats", "Track", "label_stats", "registration_shift", "track_step"]


@dataclass(frozen=True)
class LabelStats:
    """Centroids (n, 3) in voxels and volumes (n,) in voxels of labels 1..n."""

    centroids: np.ndarray
    volumes: np.ndarray


@dataclass(frozen=True)
class Track:
    """Where each T0 particle is at one timestep.

    ``centres`` (n0, 3) are in that volume's own frame (voxels); ``label`` is the matched label
    (0 when the particle is not segmented as a whole at this step, its centre then predicted);
    ``coeffs`` the fitted axial displacement ``(a, b)`` (b per voxel).
    """

    centres: np.ndarray
    label: np.ndarray
    shift: np.ndarray
    coeffs: tuple[float, float]


@njit(cache=True)
def _label_moments(labels: np.ndarray, n: int) -> np.ndarray:
    """(n + 1, 4): voxel count and sums of z, y, x per label, in one pass over the volume.

    ``ndi.sum_labels`` + ``ndi.center_of_mass`` take four passes and a float copy of the volume
    (3.5 s per 300 M-voxel step, where this takes 0.4 s).
    """
    acc = np.zeros((n + 1, 4))
    nz, ny, nx = labels.shape
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                lab = labels[z, y, x]
                if 0 < lab <= n:
                    acc[lab, 0] += 1.0
                    acc[lab, 1] += z
                    acc[lab, 2] += y
                    acc[lab, 3] += x
    return acc


def label_stats(labels: np.ndarray, n: int) -> LabelStats:
    """Centroids and voxel counts of labels 1..n (NaN centroid for an empty label)."""
    if not n:
        return LabelStats(centroids=np.zeros((0, 3)), volumes=np.zeros(0))
    acc = _label_moments(np.ascontiguousarray(labels), int(n))[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        cents = acc[:, 1:] / acc[:, :1]
    return LabelStats(centroids=cents, volumes=acc[:, 0].copy())


def _footprint_centroid(columns: np.ndarray) -> np.ndarray:
    return np.array(ndi.center_of_mass(columns.astype(np.float32)))


def registration_shift(ref_layers: Layers, ref_columns: np.ndarray, layers: Layers,
                       columns: np.ndarray) -> np.ndarray:
    """Rigid (z, y, x) shift in voxels that maps T0 positions to this timestep's frame.

    z: the collector top moved; (y, x): the sample footprint's centroid moved (the footprint is
    eroded the same way at every step, so its centroid is a sub-voxel estimate of the axis).
    """
    dz = layers.collector_top - ref_layers.collector_top
    dyx = _footprint_centroid(columns) - _footprint_centroid(ref_columns)
    return np.array([dz, dyx[0], dyx[1]])


def _predict(c0: np.ndarray, ref_top: float, top: float, shift_yx: np.ndarray,
             coeffs: tuple[float, float]) -> np.ndarray:
    h = np.clip(c0[:, 0] - ref_top, 0.0, None)
    out = c0.copy()
    out[:, 0] = top + h + coeffs[0] * h + 0.5 * coeffs[1] * h * h
    out[:, 1:] += shift_yx[None, :]
    return out


def _assign(pred: np.ndarray, r0: np.ndarray, v0: np.ndarray, stats: LabelStats,
            gate: float, min_volume_ratio: float) -> np.ndarray:
    """Hungarian assignment of predicted centres to labels; 0 where none within the gate."""
    from scipy.optimize import linear_sum_assignment

    match = np.zeros(len(pred), np.int64)
    if not len(stats.volumes) or not len(pred):
        return match
    d = np.linalg.norm(pred[:, None, :] - stats.centroids[None, :, :], axis=2) / r0[:, None]
    ok = (d <= gate) & (stats.volumes[None, :] >= min_volume_ratio * v0[:, None])
    cost = np.where(ok, d, 1e6)
    rows, cols = linear_sum_assignment(cost)
    good = ok[rows, cols]
    match[rows[good]] = cols[good] + 1
    return match


def _fit_axial(c0: np.ndarray, ref_top: float, top: float, found: np.ndarray) -> tuple[float, float]:
    """Least-squares (a, b) of ``u(h) = a h + b h^2 / 2`` from matched particles."""
    h = c0[:, 0] - ref_top
    u = found[:, 0] - top - h
    if len(h) >= 6 and np.ptp(h) > 1.0:
        coef, *_ = np.linalg.lstsq(np.stack([h, 0.5 * h * h], 1), u, rcond=None)
        return float(coef[0]), float(coef[1])
    return (float(np.sum(u * h) / np.sum(h * h)) if len(h) and np.sum(h * h) > 0 else 0.0), 0.0


def track_step(ref_stats: LabelStats, ref_layers: Layers, ref_columns: np.ndarray,
               stats: LabelStats, layers: Layers, columns: np.ndarray, *, gate: float = 0.6,
               min_volume_ratio: float = 0.5, iterations: int = 2) -> Track:
    """Locate every T0 particle at one timestep.

    Parameters
    ----------
    ref_stats, ref_layers, ref_columns
        T0's label statistics, layers and sample footprint.
    stats, layers, columns
        The same for the timestep.
    gate
        Largest centroid distance, in T0 equivalent radii, for a match. 0.6 is below the
        smallest centre-to-centre distance of two non-overlapping particles (2 R) by a factor of
        three, and above the axial-model error (about 0.1 R for a linear-strain electrode).
    min_volume_ratio
        Smallest label volume, relative to T0, accepted as the particle (see module docstring).
    iterations
        Assign / refit rounds.

    Returns
    -------
    Track
    """
    shift = registration_shift(ref_layers, ref_columns, layers, columns)
    c0 = ref_stats.centroids
    r0 = np.cbrt(3.0 * np.maximum(ref_stats.volumes, 1.0) / (4.0 * np.pi))
    ref_top, top = ref_layers.collector_top, layers.collector_top
    coeffs = (layers.thickness_vox / ref_layers.thickness_vox - 1.0, 0.0)
    match = np.zeros(len(c0), np.int64)
    for _ in range(iterations):
        pred = _predict(c0, ref_top, top, shift[1:], coeffs)
        match = _assign(pred, r0, ref_stats.volumes, stats, gate, min_volume_ratio)
        hit = match > 0
        if hit.sum() >= 3:
            coeffs = _fit_axial(c0[hit], ref_top, top, stats.centroids[match[hit] - 1]
                                - np.r_[0.0, shift[1:]][None, :])
    pred = _predict(c0, ref_top, top, shift[1:], coeffs)
    centres = pred.copy()
    hit = match > 0
    centres[hit] = stats.centroids[match[hit] - 1]
    return Track(centres=centres, label=match, shift=shift, coeffs=coeffs)
