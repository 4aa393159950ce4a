"""Streaming filtered back-projection: add projections as they arrive, look at any time.

:class:`StreamingFBP` keeps running (unscaled) sums of back-projected filtered projections for a
set of axial slices and, optionally, two vertical slices through all detector rows. Each
:meth:`StreamingFBP.add` filters one projection (or a few) and adds them; :meth:`StreamingFBP.axial`
and :meth:`StreamingFBP.vertical` return the sums scaled by ``pi / n_added`` (the FBP weight of
``n`` evenly spread projections), so a partial result is already a reconstruction: after the first
sub-scan of an interlaced acquisition it is a complete, coarser-sampled image. After the last
projection the result equals :func:`analysis.fbp.fbp_volume` with the same settings to float
rounding (same filter, same kernels, same summation order).

The live consumer feeds it projection by projection with their angles; it does no I/O and no
threading of its own (numba's threads do the work inside each call).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from analysis.backproject import (DEPTH_MIN, _bp_depth_kernel, _bp_lines_kernel, _bp_slice_kernel,
                                  _bp_volume_kernel, circle_extent, circle_padding, depth_last)
from analysis.fbp import check_filter, filter_projections


#: Projections a deep volume collects before one pass of the depth kernel over it (its cost per
#: projection at 512^3: 12.6 ms with 4 per pass, 8.5 ms with 16).
PENDING = 16
#: Largest angle between two projections that :meth:`StreamingFBP.add_many` pairs (0.5 degree).
PAIR_MAX_RAD = np.deg2rad(0.5)


def _pairs(q: np.ndarray, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sums of consecutive filtered projections at their mean angles; unpaired ones as they are."""
    rows, out_angles, i = [], [], 0
    while i < len(q):
        if i + 1 < len(q) and abs(angles[i + 1] - angles[i]) <= PAIR_MAX_RAD:
            rows.append(q[i] + q[i + 1])
            out_angles.append(0.5 * (angles[i] + angles[i + 1]))
            i += 2
        else:
            rows.append(q[i])
            out_angles.append(angles[i])
            i += 1
    return np.stack(rows), np.asarray(out_angles)


class StreamingFBP:
    """Running FBP of chosen slices of a parallel-beam scan.

    Parameters
    ----------
    frame_shape
        (rows, n_det) of a projection (line integrals, after any binning).
    center
        Detector position of the rotation axis, pixels (default ``n_det // 2``).
    axial_rows
        Detector rows to reconstruct as axial slices (default: all, a volume); ``[]`` for none.
    vertical
        ``(y, x)``: also accumulate the slices ``volume[:, y, :]`` and ``volume[:, :, x]``
        through all rows (the three orthogonal slices of a live view); None for none.
    filter_name, pad_mode, pad_factor
        As :func:`analysis.fbp.filter_projections` (the default ``pad_factor`` is batch FBP's).
    size
        Width of the square slices (default ``n_det``).
    """

    def __init__(self, frame_shape: tuple[int, int], *, center: float | None = None,
                 axial_rows: Sequence[int] | None = None, vertical: tuple[int, int] | None = None,
                 filter_name: str = "ram-lak", pad_mode: str = "edge", size: int | None = None,
                 pad_factor: float = 2.0) -> None:
        rows, n_det = (int(v) for v in frame_shape)
        if rows < 1 or n_det < 2:
            raise ValueError(f"frame_shape must be (rows >= 1, n_det >= 2), got {frame_shape}")
        self.frame_shape = (rows, n_det)
        self.size = n_det if size is None else int(size)
        self.center = n_det // 2 if center is None else float(center)
        self.filter_name = check_filter(filter_name)
        self.pad_mode = pad_mode
        self.pad_factor = float(pad_factor)
        self.rows = np.arange(rows) if axial_rows is None else np.asarray(axial_rows, dtype=np.int64)
        if self.rows.size and (self.rows.min() < 0 or self.rows.max() >= rows):
            raise ValueError(f"axial_rows must lie in 0..{rows - 1}, got {list(self.rows)}")
        self._lo, self._hi = circle_extent(self.size)
        # A deep volume accumulates depth-last, (y, x, z), for the vectorised depth kernel; its
        # projections wait in a small batch (each kernel call sweeps the whole volume once).
        self._depth = self.rows.size >= DEPTH_MIN
        shape = (self.size, self.size, self.rows.size) if self._depth else (self.rows.size, self.size, self.size)
        self._sum = np.zeros(shape, np.float32)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.vertical_at = None if vertical is None else self._check_vertical(vertical)
        self._vsum = np.zeros((2, rows, self.size), np.float32) if vertical is not None else None
        self.angles: list[float] = []
        self._buf: np.ndarray | None = None
        self._left = 0

    def _check_vertical(self, vertical: tuple[int, int]) -> tuple[int, int]:
        y, x = (int(v) for v in vertical)
        if not (0 <= y < self.size and 0 <= x < self.size):
            raise ValueError(f"vertical slice position {(y, x)} outside 0..{self.size - 1}")
        return y, x

    @property
    def n_added(self) -> int:
        """Projections added so far."""
        return len(self.angles)

    def add(self, projection: np.ndarray, angle_rad: float) -> None:
        """Filter one projection, (rows, n_det) line integrals, and add it at ``angle_rad``."""
        self.add_many(np.asarray(projection)[None], np.array([angle_rad], dtype=np.float64))

    def add_many(self, projections: np.ndarray, angles_rad: np.ndarray, *, pair: bool = False) -> None:
        """Add a few projections (n, rows, n_det) at once (cheaper per projection).

        With ``pair``, the axial slices take consecutive projections two at a time: the sum of
        each pair's filtered projections is back-projected once, at the pair's mean angle (half
        the back-projection work, for a consumer that has fallen behind). A pixel at radius
        ``r`` is then sampled up to ``r |a2 - a1| / 2`` pixels off its line: a quarter pixel at
        the edge of a 512-pixel slice for 1501 angles over 180 degrees. Pairs further apart
        than :data:`PAIR_MAX_RAD` are added one by one; the vertical slices always are.
        """
        p = np.asarray(projections, dtype=np.float32)
        angles = np.atleast_1d(np.asarray(angles_rad, dtype=np.float64))
        if p.ndim != 3 or p.shape[1:] != self.frame_shape:
            raise ValueError(f"projections must be (n, {self.frame_shape[0]}, {self.frame_shape[1]}), "
                             f"got {p.shape}")
        if len(angles) != len(p):
            raise ValueError(f"{len(angles)} angles for {len(p)} projections")
        if not np.all(np.isfinite(angles)):
            raise ValueError("projection angles must be finite")
        rows = slice(None) if self._vsum is not None else self.rows
        src = p[:, rows]
        qp, tc = self._padded(len(src), src.shape[1])
        filter_projections(src, self.filter_name, pad_mode=self.pad_mode, pad_factor=self.pad_factor,
                           out=qp[..., self._left:self._left + src.shape[2]])
        cos_a, sin_a = np.cos(angles), np.sin(angles)
        if self.rows.size:
            qa = qp[:, self.rows] if self._vsum is not None else qp
            qa, at = _pairs(qa, angles) if pair else (qa, angles)
            if self._depth:
                self._pending.append((depth_last(qa), at))
                if sum(len(a) for _, a in self._pending) >= PENDING:
                    self._flush()
            elif self.rows.size == 1:
                _bp_slice_kernel(np.ascontiguousarray(qa[:, 0]), np.cos(at), np.sin(at), tc, self._sum[0],
                                 self._lo, self._hi, 2)
            else:
                _bp_volume_kernel(np.ascontiguousarray(qa), np.cos(at), np.sin(at), tc, self._sum,
                                  self._lo, self._hi)
        if self._vsum is not None:
            self._add_vertical(qp, cos_a, sin_a, tc)
        self.angles.extend(float(a) for a in angles)

    def _padded(self, n: int, rows: int) -> tuple[np.ndarray, float]:
        """A reused zero-margined buffer (n, rows, padded width) and the axis in its coordinates.

        Reused because allocating (and page-faulting) a fresh ~100 MB array per batch of
        full-resolution frames cost as much as filtering them; only the middle is rewritten,
        so the margins stay zero.
        """
        n_det = self.frame_shape[1]
        left, right = circle_padding(n_det, self.center, self.size)
        shape = (n, rows, left + n_det + right)
        if self._buf is None or self._buf.shape[1:] != shape[1:] or len(self._buf) < n:
            self._buf = np.zeros(shape, np.float32)
        self._left = left
        return self._buf[:n], float(self.center + left)

    def _add_vertical(self, qp: np.ndarray, cos_a: np.ndarray, sin_a: np.ndarray, tc: float) -> None:
        y, x = self.vertical_at
        lo, hi, k = self._lo, self._hi, np.arange(self.size)
        along_x = (np.full(self.size, y), np.full(self.size, lo[y]), k - lo[y], lo[y], hi[y])
        along_y = (k, lo.copy(), x - lo, lo[x], hi[x])
        for out, (py, x0, steps, k_lo, k_hi) in zip(self._vsum, (along_x, along_y)):
            _bp_lines_kernel(qp, cos_a, sin_a, tc, out, py.astype(np.int64), x0.astype(np.int64),
                             steps.astype(np.int64), int(k_lo), int(k_hi))

    def _flush(self) -> None:
        """Back-project the projections waiting for the depth kernel."""
        if not self._pending:
            return
        qt = np.concatenate([q for q, _ in self._pending]) if len(self._pending) > 1 else self._pending[0][0]
        at = np.concatenate([a for _, a in self._pending])
        self._pending = []
        tc = float(self.center + circle_padding(self.frame_shape[1], self.center, self.size)[0])
        _bp_depth_kernel(qt, np.cos(at), np.sin(at), tc, self._sum, self._lo, self._hi)

    def _scale(self) -> float:
        if not self.angles:
            raise ValueError("no projections added yet")
        return float(np.pi / len(self.angles))

    def axial(self) -> np.ndarray:
        """The axial slices so far, float32 (len(axial_rows), size, size), attenuation per pixel."""
        scale = np.float32(self._scale())
        if not self._depth:
            return self._sum * scale
        self._flush()
        out = np.empty((self.rows.size, self.size, self.size), np.float32)
        np.multiply(self._sum.transpose(2, 0, 1), scale, out=out)
        return out

    def vertical(self) -> tuple[np.ndarray, np.ndarray]:
        """The slices ``volume[:, y, :]`` and ``volume[:, :, x]`` so far, each (rows, size)."""
        if self._vsum is None:
            raise ValueError("this StreamingFBP was made without vertical slices")
        scale = np.float32(self._scale())
        return self._vsum[0] * scale, self._vsum[1] * scale
