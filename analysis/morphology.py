"""Grey-level morphological reconstruction and h-maxima in numba (3-D, 26-connectivity).

scikit-image's ``h_maxima`` reconstructs by sorting every voxel (``argsort`` of the whole
image), which made the watershed seeds of :mod:`analysis.segment` half of the segmentation's
time on a (64, 448, 448) micro-CT volume whose particles touch into a few large components.
Vincent's hybrid algorithm (raster scan, anti-raster scan, then a FIFO queue for what the scans
leave) needs no sort and visits most voxels a few times. Only minima and maxima of the input
values are taken, so the result is bit-identical to scikit-image's with its default (3x3x3)
footprint; ``tests/unit/test_morphology.py`` checks that.

Reference: L. Vincent, "Morphological grayscale reconstruction in image analysis: applications
and efficient algorithms", IEEE Trans. Image Process. 2 (1993) 176-201.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["binary_dilate", "h_maxima", "reconstruct_dilation"]


@njit(cache=True, inline="always")
def _behind(dz: int, dy: int, dx: int) -> bool:
    """Whether offset (dz, dy, dx) is one of the 13 neighbours a raster pass has visited."""
    return dz < 0 or (dz == 0 and (dy < 0 or (dy == 0 and dx < 0)))


@njit(cache=True)
def _raises_behind(j: np.ndarray, mask: np.ndarray, z: int, y: int, x: int, sign: int) -> bool:
    """Whether p could still raise a neighbour the anti-raster pass has visited (Vincent)."""
    nz, ny, nx = j.shape
    v = j[z, y, x]
    for dz in range(-1, 2):
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                if not _behind(dz, dy, dx):
                    continue
                zz, yy, xx = z + sign * dz, y + sign * dy, x + sign * dx
                if 0 <= zz < nz and 0 <= yy < ny and 0 <= xx < nx:
                    if j[zz, yy, xx] < v and j[zz, yy, xx] < mask[zz, yy, xx]:
                        return True
    return False


@njit(cache=True)
def _scan(j: np.ndarray, mask: np.ndarray, forward: bool, queue: np.ndarray,
          queued: np.ndarray) -> int:
    """One raster (or anti-raster) pass over the half-neighbourhood; returns queued count."""
    nz, ny, nx = j.shape
    n_queued = 0
    sign = 1 if forward else -1
    for a in range(nz):
        z = a if forward else nz - 1 - a
        for b in range(ny):
            y = b if forward else ny - 1 - b
            for c in range(nx):
                x = c if forward else nx - 1 - c
                v = j[z, y, x]
                for dz in range(-1, 2):
                    for dy in range(-1, 2):
                        for dx in range(-1, 2):
                            if not _behind(dz, dy, dx):
                                continue
                            zz, yy, xx = z + sign * dz, y + sign * dy, x + sign * dx
                            if 0 <= zz < nz and 0 <= yy < ny and 0 <= xx < nx:
                                if j[zz, yy, xx] > v:
                                    v = j[zz, yy, xx]
                m = mask[z, y, x]
                j[z, y, x] = v if v < m else m
                if not forward and _raises_behind(j, mask, z, y, x, sign):
                    p = (z * ny + y) * nx + x
                    queue[n_queued] = p
                    queued[p] = 1
                    n_queued += 1
    return n_queued


@njit(cache=True)
def _propagate(j: np.ndarray, mask: np.ndarray, queue: np.ndarray, queued: np.ndarray,
               n_queued: int) -> None:
    """FIFO propagation of the raised values (a ring buffer over ``queue``).

    A voxel is in the queue at most once (``queued``), so the ring of ``j.size`` entries never
    overflows; it is processed with its latest value when popped.
    """
    nz, ny, nx = j.shape
    size = queue.shape[0]
    head, count = 0, n_queued
    while count > 0:
        p = queue[head]
        head = (head + 1) % size
        count -= 1
        queued[p] = 0
        z, rem = divmod(p, ny * nx)
        y, x = divmod(rem, nx)
        v = j[z, y, x]
        for dz in range(-1, 2):
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    zz, yy, xx = z + dz, y + dy, x + dx
                    if not (0 <= zz < nz and 0 <= yy < ny and 0 <= xx < nx):
                        continue
                    q = j[zz, yy, xx]
                    m = mask[zz, yy, xx]
                    if q < v and m != q:
                        j[zz, yy, xx] = v if v < m else m
                        r = (zz * ny + yy) * nx + xx
                        if not queued[r]:
                            queue[(head + count) % size] = r
                            queued[r] = 1
                            count += 1


def reconstruct_dilation(seed: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Grey-level reconstruction by dilation of ``seed`` under ``mask`` (3-D, 26-connected).

    Parameters
    ----------
    seed, mask
        Same-shape 3-D arrays with ``seed <= mask`` everywhere.

    Returns
    -------
    numpy.ndarray
        float64: the largest image ``<= mask`` reachable from ``seed`` by 3x3x3 dilations.
    """
    j = np.minimum(np.asarray(seed, np.float64), np.asarray(mask, np.float64))
    m = np.ascontiguousarray(mask, np.float64)
    if j.ndim != 3:
        raise ValueError(f"reconstruct_dilation takes 3-D arrays, got {j.ndim}-D")
    j = np.ascontiguousarray(j)
    queue = np.empty(max(1, j.size), np.int64)
    queued = np.zeros(j.size, np.uint8)
    _scan(j, m, True, queue, queued)
    n = _scan(j, m, False, queue, queued)
    _propagate(j, m, queue, queued, n)
    return j


def h_maxima(image: np.ndarray, h: float) -> np.ndarray:
    """Regional maxima of ``image`` at least ``h`` high (as ``skimage.morphology.h_maxima``).

    Parameters
    ----------
    image
        3-D float array (a distance map, say).
    h
        Height, in the units of ``image``.

    Returns
    -------
    numpy.ndarray
        uint8, 1 on the h-maxima.
    """
    img = np.asarray(image, np.float64)
    if h > np.ptp(img):
        return np.zeros(img.shape, np.uint8)
    # as scikit-image: a margin of float resolution so that image - h is strictly below image
    shifted = img - h - 2 * np.finfo(np.float64).resolution * np.abs(img)
    return ((img - reconstruct_dilation(shifted, img)) >= h).astype(np.uint8)


@njit(cache=True, parallel=True)
def _cross_dilate(src: np.ndarray, dst: np.ndarray) -> None:
    nz, ny, nx = src.shape
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                v = src[z, y, x]
                if not v:
                    v = ((z > 0 and src[z - 1, y, x]) or (z + 1 < nz and src[z + 1, y, x])
                         or (y > 0 and src[z, y - 1, x]) or (y + 1 < ny and src[z, y + 1, x])
                         or (x > 0 and src[z, y, x - 1]) or (x + 1 < nx and src[z, y, x + 1]))
                dst[z, y, x] = v


def binary_dilate(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """``ndi.binary_dilation(mask, iterations=iterations)`` (6-connected cross), multi-threaded.

    The same result (``tests/unit/test_morphology.py``); scipy's single-threaded pass took
    0.36 s per iteration on a 47 M-voxel volume, and the particle analysis dilates each
    timestep's particles five times (layers, thickness map, cracks, DVC exclusion).
    """
    a = np.ascontiguousarray(mask, dtype=np.bool_)
    if a.ndim != 3:
        from scipy import ndimage as ndi  # 2-D masks are small

        return ndi.binary_dilation(a, iterations=iterations)
    if iterations < 1:
        return a.copy()
    b = np.empty_like(a)
    src, dst = a, b
    for _ in range(iterations):
        _cross_dilate(src, dst)
        src, dst = dst, (np.empty_like(a) if src is a else src)
    return src
