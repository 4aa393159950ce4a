"""Parallel-beam back-projection kernels (numba, float32, multi-threaded).

Geometry (the one :mod:`sim.projector` and scikit-image's ``radon`` use): image pixel ``(y, x)``
of an ``n x n`` grid whose rotation axis sits at ``(n // 2, n // 2)`` is seen by detector
coordinate ``t = (x - n//2) cos(theta) - (y - n//2) sin(theta) + center``.

Interpolation: linear, with the fractional detector position quantised to 1/K pixel (K = 16),
computed in fixed point. Why: a plain linear interpolation needs two loads, a float-to-int and an
int-to-float conversion per pixel and angle, and numba/LLVM does not vectorise the gather; with the
filtered projection first resampled onto a K-times finer grid, the inner loop is one integer add,
one shift, one load and one add (about 3x faster here), and the result differs from exact linear
interpolation by at most 1/(2K) pixel in position (0.1 % relative RMS on phantoms), the same
trade GPU texture units make. Every kernel here computes the same quantised positions with the
same arithmetic, so the streaming, batch and orthogonal-slice paths agree to float rounding.

Cache use: a thread owns a block of image rows; it resamples a chunk of ``ANGLE_CHUNK``
projections into fine tables (a few hundred KB, L2) and sweeps its rows once per chunk, so each
image row stays in L1 while the chunk's angles are added to it. Within a chunk four angles are
summed per pixel before the row is touched (one row load/store per four angles, four independent
gathers in flight): 1.3x faster than one angle per sweep on one core here; eight angles per
sweep spill the positions out of the 16 integer registers and run slower.
"""

from __future__ import annotations

import math

import numpy as np
from numba import get_num_threads, njit, prange

#: Sub-pixel steps of the quantised linear interpolation.
K_SUB = 16
#: Fixed-point fraction bits below the 1/K grid.
_FB = 12
#: Projections resampled and added together per sweep over a block of rows.
ANGLE_CHUNK = 8
#: Pixels a side of the tiles :func:`_bp_depth_kernel` gives its threads.
TILE = 16
#: Volumes at least this deep are back-projected with :func:`_bp_depth_kernel` (3-4x faster
#: than the row kernel for 512^3 on 2 cores here; with 16 slices it gained 1.3x at 512 pixels and
#: nothing at 1024: too little depth to vectorise over).
DEPTH_MIN = 64
#: Projections per pass of the depth kernel over a batch volume (bounds the transposed copy).
DEPTH_ANGLES = 64


@njit(cache=True, fastmath=True, boundscheck=False, inline="always")
def _upsample(q: np.ndarray, buf: np.ndarray) -> None:
    """``buf[j] = q(j / K)`` by linear interpolation (the weights of :func:`_line_positions`)."""
    nq = q.size
    inv = np.float32(1.0 / K_SUB)
    for i in range(nq - 1):
        v0 = q[i]
        d = q[i + 1] - v0
        for k in range(K_SUB):
            buf[i * K_SUB + k] = v0 + d * (np.float32(k) * inv)
    for k in range(K_SUB):
        buf[(nq - 1) * K_SUB + k] = q[nq - 1]


@njit(cache=True, fastmath=True, boundscheck=False, inline="always")
def _fixed(t: float) -> np.int64:
    """Detector position ``t`` (pixels) in fixed point, rounded to the nearest 1/K on ``>> _FB``."""
    return np.int64(round(t * (K_SUB << _FB))) + (1 << (_FB - 1))


@njit(cache=True, fastmath=True, boundscheck=False, inline="always")
def _sweep4(row: np.ndarray, bufs: np.ndarray, steps: np.ndarray, k: int, xl: int, xh: int,
            t0: np.int64, t1: np.int64, t2: np.int64, t3: np.int64) -> None:
    """Add four angles' fine tables along one row; the positions live in registers."""
    b0, b1, b2, b3 = bufs[k], bufs[k + 1], bufs[k + 2], bufs[k + 3]
    c0, c1, c2, c3 = steps[k], steps[k + 1], steps[k + 2], steps[k + 3]
    for x in range(xl, xh):
        # Sum the four first, then touch the row once (the same order in every kernel that
        # uses _bp_rows, so batch and streaming results still agree to rounding).
        row[x] += (b0[t0 >> _FB] + b1[t1 >> _FB]) + (b2[t2 >> _FB] + b3[t3 >> _FB])
        t0 += c0
        t1 += c1
        t2 += c2
        t3 += c3


@njit(cache=True, fastmath=True, boundscheck=False)
def _bp_rows(q: np.ndarray, cos_a: np.ndarray, sin_a: np.ndarray, t_center: float,
             out: np.ndarray, y_lo: int, y_hi: int, x_lo: np.ndarray, x_hi: np.ndarray) -> None:
    """Add the projections ``q[a]`` (one detector row, padded) to image rows ``y_lo:y_hi``."""
    na, nq = q.shape
    n = out.shape[1]
    c0 = n // 2
    chunk = min(ANGLE_CHUNK, na)
    bufs = np.empty((chunk, nq * K_SUB), np.float32)
    steps = np.empty(chunk, np.int64)
    for a0 in range(0, na, chunk):
        m = min(chunk, na - a0)
        for k in range(m):
            _upsample(q[a0 + k], bufs[k])
            steps[k] = np.int64(round(cos_a[a0 + k] * (K_SUB << _FB)))
        for y in range(y_lo, y_hi):
            xl, xh = x_lo[y], x_hi[y]
            if xl >= xh:
                continue
            row = out[y]
            yc = y - c0
            k = 0
            while k + 4 <= m:  # four angles per sweep: one load/store of the row per four
                _sweep4(row, bufs, steps, k, xl, xh,
                        _fixed((xl - c0) * cos_a[a0 + k] - yc * sin_a[a0 + k] + t_center),
                        _fixed((xl - c0) * cos_a[a0 + k + 1] - yc * sin_a[a0 + k + 1] + t_center),
                        _fixed((xl - c0) * cos_a[a0 + k + 2] - yc * sin_a[a0 + k + 2] + t_center),
                        _fixed((xl - c0) * cos_a[a0 + k + 3] - yc * sin_a[a0 + k + 3] + t_center))
                k += 4
            for k in range(k, m):
                T = _fixed((xl - c0) * cos_a[a0 + k] - yc * sin_a[a0 + k] + t_center)
                C = steps[k]
                buf = bufs[k]
                for x in range(xl, xh):
                    row[x] += buf[T >> _FB]
                    T += C


@njit(cache=True, parallel=True, fastmath=True, boundscheck=False)
def _bp_slice_kernel(q: np.ndarray, cos_a: np.ndarray, sin_a: np.ndarray, t_center: float,
                     out: np.ndarray, x_lo: np.ndarray, x_hi: np.ndarray, n_jobs: int) -> None:
    n = out.shape[0]
    for job in prange(n_jobs):
        _bp_rows(q, cos_a, sin_a, t_center, out, job * n // n_jobs, (job + 1) * n // n_jobs,
                 x_lo, x_hi)


@njit(cache=True, fastmath=True, boundscheck=False, inline="always")
def _add_column(col: np.ndarray, q0: np.ndarray, q1: np.ndarray, w: np.float32) -> None:
    """``col += q0 + (q1 - q0) w``: the interpolation :func:`_upsample` tabulates, along depth."""
    for z in range(col.size):
        v0 = q0[z]
        col[z] += v0 + (q1[z] - v0) * w


@njit(cache=True, parallel=True, fastmath=True, boundscheck=False)
def _bp_depth_kernel(qt: np.ndarray, cos_a: np.ndarray, sin_a: np.ndarray, t_center: float,
                     out: np.ndarray, x_lo: np.ndarray, x_hi: np.ndarray) -> None:
    """Volume back-projection with depth innermost: ``qt`` (na, nq, nz), ``out`` (n, n, nz) as (y, x, z).

    Every detector row of a projection is read at the same position for a given pixel, so with
    the rows last in memory one position serves a whole column of voxels and the inner loop is
    a plain vectorised axpy (the row kernels' gathers do not vectorise). Threads take tiles of
    ``TILE x TILE`` pixels: a tile's columns and the detector samples they read stay in L2 while
    the batch's angles are added. Positions are :func:`_bp_rows`' (fixed point from the row's
    first circle pixel plus steps), so the result equals the row kernels' to float rounding.
    """
    na = qt.shape[0]
    n = out.shape[0]
    c0 = n // 2
    nt = (n + TILE - 1) // TILE
    steps = np.empty(na, np.int64)
    for a in range(na):
        steps[a] = np.int64(round(cos_a[a] * (K_SUB << _FB)))
    for job in prange(nt * nt):
        ty, tx = job // nt, job % nt
        for y in range(ty * TILE, min(n, ty * TILE + TILE)):
            xl, xh = max(x_lo[y], tx * TILE), min(x_hi[y], tx * TILE + TILE)
            if xl >= xh:
                continue
            row = out[y]
            for a in range(na):
                qa = qt[a]
                C = steps[a]
                T = _fixed((x_lo[y] - c0) * cos_a[a] - (y - c0) * sin_a[a] + t_center) + (xl - x_lo[y]) * C
                for x in range(xl, xh):
                    j = T >> _FB
                    i = j // K_SUB
                    _add_column(row[x], qa[i], qa[i + 1], np.float32(j - i * K_SUB) * np.float32(1.0 / K_SUB))
                    T += C


@njit(cache=True, parallel=True, fastmath=True, boundscheck=False)
def _bp_volume_kernel(q: np.ndarray, cos_a: np.ndarray, sin_a: np.ndarray, t_center: float,
                      out: np.ndarray, x_lo: np.ndarray, x_hi: np.ndarray) -> None:
    # q: (na, nz, nq); out: (nz, n, n); one slice per job
    nz, n = out.shape[0], out.shape[1]
    for z in prange(nz):
        _bp_rows(q[:, z, :], cos_a, sin_a, t_center, out[z], 0, n, x_lo, x_hi)


@njit(cache=True, fastmath=True, boundscheck=False)
def _line_positions(cos_a: np.ndarray, sin_a: np.ndarray, t_center: float, n: int, py: np.ndarray,
                    x0: np.ndarray, steps: np.ndarray, k_lo: int, k_hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample index and weight of each (angle, pixel) of a line, as :func:`_bp_rows` computes them."""
    na = cos_a.size
    idx = np.zeros((na, k_hi - k_lo), np.int64)
    frac = np.zeros((na, k_hi - k_lo), np.float32)
    c0 = n // 2
    for a in range(na):
        c, s = cos_a[a], sin_a[a]
        C = np.int64(round(c * (K_SUB << _FB)))
        for k in range(k_lo, k_hi):
            j = (_fixed((x0[k] - c0) * c - (py[k] - c0) * s + t_center) + steps[k] * C) >> _FB
            i = j // K_SUB
            idx[a, k - k_lo] = i
            frac[a, k - k_lo] = np.float32(j - i * K_SUB) * np.float32(1.0 / K_SUB)
    return idx, frac


@njit(cache=True, parallel=True, fastmath=True, boundscheck=False)
def _bp_lines_kernel(q: np.ndarray, cos_a: np.ndarray, sin_a: np.ndarray, t_center: float,
                     out: np.ndarray, py: np.ndarray, x0: np.ndarray, steps: np.ndarray,
                     k_lo: int, k_hi: int) -> None:
    """Vertical slices: ``out[z, k] += q[a, z](t)`` at pixel (py[k], x0[k] + steps[k]).

    Positions are computed exactly as :func:`_bp_rows` does (fixed point from the row's first
    circle pixel ``x0`` plus ``steps`` increments), so a vertical slice equals the matching line
    of the full volume to float rounding. The positions do not depend on the detector row, so
    they are computed once per call and reused down the column of rows z (a third of the cost
    of recomputing them per row, at full resolution).
    """
    na = q.shape[0]
    nz, n = out.shape
    idx, frac = _line_positions(cos_a, sin_a, t_center, n, py, x0, steps, k_lo, k_hi)
    for z in prange(nz):
        row = out[z]
        for a in range(na):
            qa = q[a, z]
            ia, fa = idx[a], frac[a]
            for k in range(k_hi - k_lo):
                i = ia[k]
                v0 = qa[i]
                row[k + k_lo] += v0 + (qa[i + 1] - v0) * fa[k]


def circle_extent(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image row, the half-open column range of pixels inside the reconstruction circle.

    The circle has radius ``n / 2`` about ``(n // 2, n // 2)``; pixels outside it are not seen
    by every projection, so they stay zero (as in scikit-image's ``iradon(circle=True)``).
    """
    c0 = n // 2
    r2 = (n / 2.0) ** 2
    dy = np.arange(n) - c0
    half = np.sqrt(np.maximum(r2 - dy.astype(np.float64) ** 2, 0.0))
    lo = np.clip(np.ceil(c0 - half), 0, n).astype(np.int64)
    hi = np.clip(np.floor(c0 + half) + 1, 0, n).astype(np.int64)
    hi[r2 - dy.astype(np.float64) ** 2 < 0] = lo[r2 - dy.astype(np.float64) ** 2 < 0]
    return lo, hi


def circle_padding(n_det: int, center: float, n: int) -> tuple[int, int]:
    """Zeros needed left and right of a detector row so every position an image pixel reads is in range."""
    reach = n / 2.0 * math.sqrt(2.0) + 2.0  # corners included: callers may not clip to the circle
    left = max(0, int(math.ceil(reach - center)) + 1)
    right = max(0, int(math.ceil(center + reach - (n_det - 1))) + 2)
    return left, right


def pad_for_circle(q: np.ndarray, center: float, n: int) -> tuple[np.ndarray, float]:
    """Zero-pad filtered projections so every position a circle pixel reads is in range.

    Returns the padded float32 array and the axis position in the padded coordinates.
    """
    left, right = circle_padding(q.shape[-1], center, n)
    pad = [(0, 0)] * (q.ndim - 1) + [(left, right)]
    return np.ascontiguousarray(np.pad(q.astype(np.float32, copy=False), pad)), float(center + left)


def _trig(angles_rad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(angles_rad, dtype=np.float64)
    return np.cos(a), np.sin(a)


def backproject_slice(q: np.ndarray, angles_rad: np.ndarray, center: float, n: int,
                      out: np.ndarray | None = None) -> np.ndarray:
    """Add filtered projections of one detector row to an ``n x n`` slice (no scaling).

    Parameters
    ----------
    q
        (n_angles, n_det) filtered projections, float.
    angles_rad
        Projection angles, radians.
    center
        Detector position of the rotation axis, pixels.
    n
        Width of the square slice, pixels.
    out
        float32 (n, n) accumulator to add to (a new zero image if None).

    Returns
    -------
    numpy.ndarray
        ``out``: the sum over angles of the projections smeared back, zero outside the circle.
    """
    out = np.zeros((n, n), np.float32) if out is None else out
    qp, tc = pad_for_circle(np.atleast_2d(q), center, n)
    cos_a, sin_a = _trig(angles_rad)
    lo, hi = circle_extent(n)
    _bp_slice_kernel(qp, cos_a, sin_a, tc, out, lo, hi, max(1, get_num_threads()))
    return out


def backproject_volume(q: np.ndarray, angles_rad: np.ndarray, center: float, n: int,
                       out: np.ndarray | None = None) -> np.ndarray:
    """Like :func:`backproject_slice` for a stack: ``q`` (n_angles, nz, n_det) -> (nz, n, n).

    Stacks of at least :data:`DEPTH_MIN` rows go through :func:`_bp_depth_kernel` (depth-last,
    :data:`DEPTH_ANGLES` projections per pass), others through the row kernel; both give the
    same image to float rounding.
    """
    nz = q.shape[1]
    out = np.zeros((nz, n, n), np.float32) if out is None else out
    qp, tc = pad_for_circle(q, center, n)
    cos_a, sin_a = _trig(angles_rad)
    lo, hi = circle_extent(n)
    if nz < DEPTH_MIN:
        _bp_volume_kernel(qp, cos_a, sin_a, tc, out, lo, hi)
        return out
    acc = np.ascontiguousarray(out.transpose(1, 2, 0))
    for a0 in range(0, len(qp), DEPTH_ANGLES):
        a1 = a0 + DEPTH_ANGLES
        _bp_depth_kernel(depth_last(qp[a0:a1]), cos_a[a0:a1], sin_a[a0:a1], tc, acc, lo, hi)
    out[...] = acc.transpose(2, 0, 1)
    return out


def depth_last(qp: np.ndarray) -> np.ndarray:
    """Padded filtered projections (na, nz, nq) as (na, nq, nz), the layout of :func:`_bp_depth_kernel`."""
    return np.ascontiguousarray(np.asarray(qp, dtype=np.float32).transpose(0, 2, 1))


def backproject_vertical(q: np.ndarray, angles_rad: np.ndarray, center: float, n: int,
                         axis: str, index: int, out: np.ndarray | None = None) -> np.ndarray:
    """Add filtered projections to one vertical slice through all detector rows.

    Parameters
    ----------
    q
        (n_angles, nz, n_det) filtered projections.
    axis
        ``"y"``: the slice at row ``y = index`` of every axial slice, an (nz, n) x-z image;
        ``"x"``: the slice at column ``x = index``, an (nz, n) y-z image.
    index
        Row or column, 0 <= index < n.

    Returns
    -------
    numpy.ndarray
        ``out`` (nz, n) float32, zero outside the reconstruction circle.
    """
    if axis not in ("x", "y") or not 0 <= index < n:
        raise ValueError(f"vertical slice needs axis 'x' or 'y' and 0 <= index < {n}, "
                         f"got {axis!r}, {index}")
    nz = q.shape[1]
    out = np.zeros((nz, n), np.float32) if out is None else out
    qp, tc = pad_for_circle(q, center, n)
    lo, hi = circle_extent(n)
    k = np.arange(n)
    if axis == "y":  # row `index` of every axial slice
        py, x0, steps = np.full(n, index), np.full(n, lo[index]), k - lo[index]
    else:  # column `index`: pixel (k, index) lies on row k, which starts at lo[k]
        py, x0, steps = k, lo.copy(), index - lo
    cos_a, sin_a = _trig(angles_rad)
    _bp_lines_kernel(qp, cos_a, sin_a, tc, out, py.astype(np.int64), x0.astype(np.int64),
                     steps.astype(np.int64), int(lo[index]), int(hi[index]))
    return out
