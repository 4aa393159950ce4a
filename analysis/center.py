"""Centre of rotation and 360-degree scans.

Automatic centre finding uses Vo's double-wedge metric (Vo, Atwood & Drakopoulos, Opt. Express
22, 19078, 2014; algotom's ``find_center_vo``): for a 180-degree sinogram and a trial centre
``c``, the mirrored sinogram ``s(theta, 2c - t)`` is the scan's continuation to 360 degrees; glued
below the original it is continuous only for the true centre. The 2-D Fourier transform of a
sinogram lives inside a double wedge (|angular frequency| <= radius * |radial frequency|); a
discontinuity spreads energy outside it. The centre minimises that energy. Written here (about
40 lines) because scipy is not a dependency; sub-pixel shifts are Fourier shifts.

Detector coordinates: pixel ``i`` sits at ``t = i``; the centre is the ``t`` of the axis (the
projector's ``n_det // 2 + center_offset``).
"""

from __future__ import annotations

import numpy as np


def _wedge_mask(nrow: int, ncol: int, radius: float, drop: int) -> np.ndarray:
    """1 outside the double wedge in fftshifted coordinates (where a good sinogram is empty)."""
    du = 1.0 / ncol
    dv = (nrow - 1.0) / (nrow * 2.0 * np.pi)
    cr, cc = int(np.ceil(nrow / 2.0) - 1), int(np.ceil(ncol / 2.0) - 1)
    mask = np.zeros((nrow, ncol), np.float32)
    for i in range(nrow):
        pos = int(np.ceil(((i - cr) * dv / radius) / du))
        p1, p2 = np.clip(np.sort((-pos + cc, pos + cc)), 0, ncol - 1)
        mask[i, p1:p2 + 1] = 1.0
    drop = min(drop, int(np.ceil(0.05 * nrow)))
    mask[cr - drop:cr + drop + 1, :] = 0.0
    mask[:, cc - 1:cc + 2] = 0.0
    return mask


def _fourier_shift(rows: np.ndarray, shift: float) -> np.ndarray:
    """Shift every row right by ``shift`` pixels (periodic, band-limited)."""
    n = rows.shape[-1]
    phase = np.exp(-2j * np.pi * np.fft.rfftfreq(n) * shift)
    return np.fft.irfft(np.fft.rfft(rows, axis=-1) * phase, n=n, axis=-1)


def _metric(sino: np.ndarray, flipped: np.ndarray, shift: float, mask: np.ndarray) -> float:
    mirrored = _fourier_shift(flipped, shift)
    glued = np.vstack((sino, mirrored))
    return float(np.mean(np.abs(np.fft.fftshift(np.fft.fft2(glued))) * mask))


def _half_turn(sinogram: np.ndarray, angles_rad: np.ndarray | None) -> np.ndarray:
    """The rows of the first 180 degrees (all rows if the scan covers no more)."""
    if angles_rad is None or len(angles_rad) < 2:
        return sinogram
    a = np.asarray(angles_rad, dtype=np.float64)
    step = np.median(np.abs(np.diff(a)))
    keep = np.abs(a - a[0]) < np.pi - 0.5 * step
    return sinogram[keep] if keep.sum() >= 8 else sinogram


def find_center(sinogram: np.ndarray, angles_rad: np.ndarray | None = None, *,
                search: float | None = None, radius: float = 6.0, max_rows: int = 512) -> float:
    """Rotation-axis position from one sinogram, to about a quarter pixel.

    Parameters
    ----------
    sinogram
        (n_angles, n_det) line integrals over 180 degrees or more, angles evenly spaced.
    angles_rad
        Projection angles; used to keep the first half turn of a 360-degree scan.
    search
        Half-width of the search around the detector middle, pixels (default a quarter of the
        detector).
    radius
        Wedge slope of the metric's mask (Vo's default).
    max_rows
        Angles are decimated to at most this many rows (speed; the metric needs few).

    Returns
    -------
    float
        Detector position of the rotation axis, pixels.
    """
    s = np.asarray(sinogram, dtype=np.float64)
    if s.ndim != 2 or min(s.shape) < 8:
        raise ValueError(f"centre finding needs a 2-D sinogram of at least 8 x 8, got {s.shape}")
    s = _half_turn(s, angles_rad)
    s = s[::max(1, int(np.ceil(len(s) / max_rows)))]
    nrow, ncol = s.shape
    half = ncol / 4.0 if search is None else float(search)
    mid = (ncol - 1) / 2.0
    flipped = s[:, ::-1]
    mask = _wedge_mask(2 * nrow, ncol, radius, drop=20)

    def best(shifts: np.ndarray) -> float:
        metrics = [_metric(s, flipped, sh, mask) for sh in shifts]
        return float(shifts[int(np.argmin(metrics))])

    coarse = best(np.arange(np.floor(-2 * half), np.ceil(2 * half) + 1, 2.0))
    medium = best(np.arange(coarse - 2.0, coarse + 2.01, 0.5))
    fine = best(np.arange(medium - 0.5, medium + 0.51, 0.125))
    return mid + fine / 2.0


def sino_360_to_180(sinogram: np.ndarray, center: float, *, overlap_blend: bool = True
                    ) -> tuple[np.ndarray, float]:
    """Stitch a half-acquisition 360-degree scan (axis off-centre) into a wide 180-degree one.

    With the rotation axis near one edge, projection ``theta + pi`` mirrored about the axis
    covers the other half of the object. Each row of the first half turn is joined with its
    mirrored partner; where both see the same columns they are blended linearly.

    Parameters
    ----------
    sinogram
        (n_angles, n_det) over 360 degrees, n_angles even, angles evenly spaced from 0.
    center
        Axis position on the detector, pixels.

    Returns
    -------
    (numpy.ndarray, float)
        float32 (n_angles / 2, width) sinogram over 180 degrees and the axis position in it.
    """
    s = np.asarray(sinogram, dtype=np.float64)
    na, n = s.shape
    if na % 2:
        raise ValueError(f"a 360-degree sinogram needs an even number of angles, got {na}")
    half, second = s[: na // 2], s[na // 2:]
    right = center >= (n - 1) / 2.0  # axis on the right: the mirrored data extends it
    c = center if right else (n - 1) - center
    a, b = (half, second) if right else (half[:, ::-1], second[:, ::-1])
    width = int(np.floor(2 * c)) + 1
    t = np.arange(width, dtype=np.float64)
    out = np.zeros((na // 2, width))
    cols = np.arange(n, dtype=np.float64)
    for i in range(na // 2):
        direct = np.interp(t, cols, a[i], left=np.nan, right=np.nan)
        mirror = np.interp(2 * c - t, cols, b[i], left=np.nan, right=np.nan)
        w = np.clip((n - 1 - t) / max(1.0, n - 1 - (2 * c - (n - 1))), 0, 1) if overlap_blend else (~np.isnan(direct)).astype(float)
        both = ~np.isnan(direct) & ~np.isnan(mirror)
        out[i] = np.where(np.isnan(direct), mirror, direct)
        out[i, both] = (w * direct + (1 - w) * mirror)[both]
    out = np.nan_to_num(out)
    if not right:
        out = out[:, ::-1]
        return out.astype(np.float32), float(width - 1 - c)
    return out.astype(np.float32), float(c)
