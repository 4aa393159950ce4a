"""Ring-artefact removal: the sorting-based stripe filter of Vo, Atwood & Drakopoulos (2018).

A detector pixel whose gain the flat field does not correct adds a constant offset to its column
of the sinogram at every angle: a stripe, which back-projects to a ring. Sorting each column by
intensity turns the object's features into smooth ramps while the stripe stays a step between
neighbouring columns; a median filter across columns of the sorted sinogram removes the step, and
un-sorting puts every value back at its angle. (Vo et al., Opt. Express 26, 28396, algorithm 3;
algotom's ``remove_stripe_based_sorting``.) Written here in numba because the method is a few
lines and scipy is not a dependency.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def _sort_columns(sino, order, srt):
    na, nd = sino.shape
    for c in prange(nd):
        col = sino[:, c].copy()
        o = np.argsort(col)
        for k in range(na):
            order[c, k] = o[k]
            srt[k, c] = col[o[k]]


@njit(cache=True, parallel=True)
def _median_rows_unsort(srt, order, size, out):
    na, nd = srt.shape
    half = size // 2
    for k in prange(na):
        win = np.empty(size, np.float32)
        for c in range(nd):
            lo, hi = max(0, c - half), min(nd, c + half + 1)
            for j in range(hi - lo):
                win[j] = srt[k, lo + j]
            out[order[c, k], c] = np.median(win[:hi - lo])


def remove_stripes_sorting(sinogram: np.ndarray, size: int = 21) -> np.ndarray:
    """Remove stripes (ring sources) from one sinogram by sorting and median filtering.

    Parameters
    ----------
    sinogram
        (n_angles, n_det) line integrals (or transmission).
    size
        Median window across detector columns, pixels (odd; wider than the widest stripe, and
        narrow enough not to blur the sorted object profile: 11-31 for most data).

    Returns
    -------
    numpy.ndarray
        float32 sinogram with stripes removed.
    """
    s = np.ascontiguousarray(sinogram, dtype=np.float32)
    if s.ndim != 2:
        raise ValueError(f"sinogram must be 2-D (n_angles, n_det), got shape {s.shape}")
    if size < 3 or size % 2 == 0:
        raise ValueError(f"size must be an odd number >= 3, got {size}")
    na, nd = s.shape
    order = np.empty((nd, na), np.int64)
    srt = np.empty((na, nd), np.float32)
    _sort_columns(s, order, srt)
    out = np.empty_like(s)
    _median_rows_unsort(srt, order, int(size), out)
    return out


def remove_rings(projections: np.ndarray, size: int = 21) -> np.ndarray:
    """:func:`remove_stripes_sorting` for every sinogram of a (n_angles, rows, n_det) stack."""
    p = np.asarray(projections, dtype=np.float32)
    if p.ndim == 2:
        return remove_stripes_sorting(p, size)
    if p.ndim != 3:
        raise ValueError(f"projections must be (n_angles, rows, n_det), got shape {p.shape}")
    out = np.empty_like(p)
    for r in range(p.shape[1]):
        out[:, r] = remove_stripes_sorting(p[:, r], size)
    return out
