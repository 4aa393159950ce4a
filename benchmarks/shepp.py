"""Analytic Shepp-Logan phantom: the image (supersampled) and its exact parallel-beam sinogram.

Exact line integrals of ellipses leave no projector error in the benchmark's sinograms, so every
reconstruction is judged against the same truth. Geometry as :mod:`sim.projector`: detector
coordinate ``t = (x - n//2) cos(theta) - (y - n//2) sin(theta)``, pixel units.
"""

from __future__ import annotations

import numpy as np

#: Modified Shepp-Logan (Toft): value, semi-axes a, b, centre x0, y0 (fractions of the half
#: width, y up), rotation in degrees.
_ELLIPSES = np.array([
    [1.0, 0.69, 0.92, 0.0, 0.0, 0],
    [-0.8, 0.6624, 0.874, 0.0, -0.0184, 0],
    [-0.2, 0.11, 0.31, 0.22, 0.0, -18],
    [-0.2, 0.16, 0.41, -0.22, 0.0, 18],
    [0.1, 0.21, 0.25, 0.0, 0.35, 0],
    [0.1, 0.046, 0.046, 0.0, 0.1, 0],
    [0.1, 0.046, 0.046, 0.0, -0.1, 0],
    [0.1, 0.046, 0.023, -0.08, -0.605, 0],
    [0.1, 0.023, 0.023, 0.0, -0.606, 0],
    [0.1, 0.023, 0.046, 0.06, -0.605, 0],
])


def _ellipses(n: int, scale: float) -> list[tuple[float, float, float, float, float, float]]:
    """Ellipses in pixel units, (value, a, b, x0, y0 (row direction down), alpha rad)."""
    r = 0.45 * n  # inside the reconstruction circle with a margin
    return [(v * scale, a * r, b * r, x * r, -y * r, np.deg2rad(-ang))
            for v, a, b, x, y, ang in _ELLIPSES]


def phantom_image(n: int, *, scale: float = 1.0, supersample: int = 4, shift: float = 0.0) -> np.ndarray:
    """float32 (n, n) pixel averages of the phantom (``supersample``^2 points per pixel).

    Pixel ``i`` is centred at ``i - n // 2 + shift`` from the rotation axis: ``shift`` 0.5 gives
    the grid of libraries that centre even-sized images at ``(n - 1) / 2`` (astra, algotom).
    """
    s = int(supersample)
    off = (np.arange(s) + 0.5) / s - 0.5
    coords = (np.arange(n)[:, None] + off[None, :]).ravel() - n // 2 + shift
    img = np.zeros((n * s, n * s), np.float32)
    yy, xx = coords[:, None], coords[None, :]
    for v, a, b, x0, y0, al in _ellipses(n, scale):
        dx, dy = xx - x0, yy - y0
        u = dx * np.cos(al) + dy * np.sin(al)
        w = -dx * np.sin(al) + dy * np.cos(al)
        img[(u / a) ** 2 + (w / b) ** 2 <= 1.0] += v
    return img.reshape(n, s, n, s).mean(axis=(1, 3))


def phantom_sinogram(n: int, angles_rad: np.ndarray, *, scale: float = 1.0, n_det: int | None = None,
                     supersample: int = 4) -> np.ndarray:
    """float32 (n_angles, n_det) exact line integrals, averaged over each detector pixel."""
    n_det = n if n_det is None else int(n_det)
    s = int(supersample)
    off = (np.arange(s) + 0.5) / s - 0.5
    t = ((np.arange(n_det) - n_det // 2)[:, None] + off[None, :]).ravel()[None, :]
    th = np.asarray(angles_rad, dtype=np.float64)[:, None]
    et_x, et_y = np.cos(th), -np.sin(th)
    out = np.zeros((th.size, t.size))
    for v, a, b, x0, y0, al in _ellipses(n, scale):
        # half-width of the ellipse along e_t, and the offset of its centre
        w2 = (a * (et_x * np.cos(al) + et_y * np.sin(al))) ** 2 + \
             (b * (-et_x * np.sin(al) + et_y * np.cos(al))) ** 2
        tau = t - (x0 * et_x + y0 * et_y)
        inside = np.clip(w2 - tau**2, 0.0, None)
        out += 2.0 * v * a * b * np.sqrt(inside) / w2
    return out.reshape(th.size, n_det, s).mean(axis=2).astype(np.float32)


def noisy_sinogram(sino: np.ndarray, photons: float, seed: int = 0) -> np.ndarray:
    """``-ln(Poisson(photons * exp(-sino)) / photons)``, zero counts clipped to one."""
    rng = np.random.default_rng(seed)
    counts = np.maximum(rng.poisson(photons * np.exp(-sino.astype(np.float64))), 1)
    return (-np.log(counts / photons)).astype(np.float32)
