"""Shared fixtures-by-function for the reconstruction tests: phantoms, masks, error measures."""

from __future__ import annotations

import numpy as np

from analysis.backproject import circle_extent
from benchmarks.shepp import phantom_image, phantom_sinogram


def circle_mask(n: int, margin: int = 0) -> np.ndarray:
    """Pixels inside the reconstruction circle (shrunk by ``margin`` pixels at each row end)."""
    lo, hi = circle_extent(n)
    m = np.zeros((n, n), bool)
    for y in range(n):
        m[y, lo[y] + margin:max(lo[y] + margin, hi[y] - margin)] = True
    return m


def rmse(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Root-mean-square difference, inside ``mask`` if given."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return float(np.sqrt(np.mean((d[mask] if mask is not None else d) ** 2)))


def shepp(n: int, n_angles: int, *, span: float = np.pi) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, exact sinogram, angles) of the modified Shepp-Logan phantom."""
    angles = np.linspace(0.0, span, n_angles, endpoint=False)
    return phantom_image(n), phantom_sinogram(n, angles), angles
