"""The live view of a scan being acquired: a binned volume and three full-resolution slices.

:class:`LivePreview` takes raw frames in acquisition order with their image keys and angles (as
they appear in the scan's file), keeps running sums of the darks and flats, and feeds
flat/dark-corrected line integrals to two :class:`analysis.stream.StreamingFBP`: one over
``bin``-binned frames (a coarse volume) and one at full resolution for the middle axial slice
and the two vertical slices through the axis. Projections that arrive before any flat (flats
taken at the end) wait in memory until the first flat. No I/O; the consumer reads the frames.

The per-projection cost is what decides whether the view keeps pace with a synchrotron scan
(one 2048 x 2048 frame every 120-240 ms), so correction, ``-log`` and binning are one pass over
the raw frame (:func:`_correct_kernel`) rather than numpy's several passes and temporaries.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import get_num_threads, njit, prange

from analysis.prep import MIN_TRANSMISSION
from analysis.stream import StreamingFBP

__all__ = ["LivePreview", "correct_and_bin", "flat_gain"]

_PROJECTION, _FLAT, _DARK = 0, 1, 2
#: Filter padding of the live view (1.5 n, not 2 n: the full-resolution FFTs take half the time;
#: see :func:`analysis.fbp.padded_length`). The stored scan's reconstruction pads 2 n.
PAD_FACTOR = 1.5


# fastmath without "nnan"/"ninf": the floor's test must see nan and inf.
@njit(cache=True, parallel=True, fastmath={"contract", "arcp", "nsz", "afn", "reassoc"}, boundscheck=False)
def _correct_kernel(raw, dark, gain, b, floor, full, binned):
    """``full = 1 / T`` and ``binned = 1 / (mean of T over b x b)``, ``T = (raw - dark) * gain``.

    The caller takes the logarithm with numpy: its SIMD ``log`` is 6x faster than the scalar
    ``logf`` numba calls (no SVML here), and ``ln(1 / T) = -ln T`` saves a pass for the sign.
    """
    n, rows, cols = raw.shape
    brows, bcols = binned.shape[1], binned.shape[2]
    # One job per band of b rows: the band's binned row is summed in a small private buffer.
    bands = (rows + b - 1) // b
    for job in prange(n * bands):
        i, band = job // bands, job % bands
        acc = np.zeros(bcols, np.float32)
        nb = bcols if band < brows else 0  # a band below the last full block: full size only
        for r in range(band * b, min(rows, band * b + b)):
            for bc in range(nb):
                s = np.float32(0.0)
                for c in range(bc * b, bc * b + b):
                    t = (np.float32(raw[i, r, c]) - dark[r, c]) * gain[r, c]
                    s += t
                    # nan fails every comparison and +inf is not finite: both become the floor
                    full[i, r, c] = np.float32(1.0) / (t if (t >= floor and t < np.inf) else floor)
                acc[bc] += s
            for c in range(nb * b, cols):
                t = (np.float32(raw[i, r, c]) - dark[r, c]) * gain[r, c]
                full[i, r, c] = np.float32(1.0) / (t if (t >= floor and t < np.inf) else floor)
        if band < brows:
            inv = np.float32(1.0 / (b * b))
            for bc in range(bcols):
                t = acc[bc] * inv
                binned[i, band, bc] = np.float32(1.0) / (t if (t >= floor and t < np.inf) else floor)


def flat_gain(dark: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """``1 / (flat - dark)``, float32, 0 where the flat is not above the dark (a dead pixel)."""
    span = np.asarray(flat, dtype=np.float32) - np.asarray(dark, dtype=np.float32)
    return np.where(span > 0, 1.0 / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)


def correct_and_bin(raw: np.ndarray, dark: np.ndarray, gain: np.ndarray, factor: int,
                    *, min_transmission: float = MIN_TRANSMISSION,
                    out: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flat/dark-correct raw frames and return their line integrals at full and binned size.

    Parameters
    ----------
    raw
        (n, rows, cols) raw counts (any numeric dtype; uint16 from the detector).
    dark
        (rows, cols) mean dark frame.
    gain
        (rows, cols) :func:`flat_gain` of the mean dark and flat (computed once per set of
        flats, not per frame).
    factor
        Binning of the second result; transmission is averaged over ``factor x factor`` blocks
        before the ``-log`` (as :func:`analysis.prep.bin_frames` then
        :func:`analysis.prep.minus_log` of the transmission); rows and columns that do not fill
        a block are dropped.
    min_transmission
        Transmission floor of the ``-log`` (see :func:`analysis.prep.minus_log`).
    out
        float32 arrays of the two results' shapes to write into (a consumer reuses them: fresh
        arrays of 16 MB per frame cost a page fault per 4 kB on first touch).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        float32 ``-ln T`` (n, rows, cols) and (n, rows // factor, cols // factor); ``T`` is 0
        (so the floor) where the flat is not above the dark.
    """
    a = np.ascontiguousarray(raw)
    b = int(factor)
    if a.ndim != 3 or dark.shape != a.shape[1:] or gain.shape != a.shape[1:] or b < 1:
        raise ValueError(f"need raw (n, rows, cols) with dark and gain (rows, cols) and factor >= 1, got "
                         f"{a.shape}, {dark.shape}, {gain.shape}, {factor}")
    shapes = (a.shape, (len(a), a.shape[1] // b, a.shape[2] // b))
    if out is None:
        full, binned = (np.empty(shape, np.float32) for shape in shapes)
    else:
        full, binned = out
        if (full.shape, binned.shape) != shapes or full.dtype != np.float32 or binned.dtype != np.float32:
            raise ValueError(f"out must be float32 arrays of shapes {shapes}, got {full.shape}, {binned.shape}")
    _correct_kernel(a, np.ascontiguousarray(dark, dtype=np.float32), np.ascontiguousarray(gain, dtype=np.float32),
                    b, np.float32(min_transmission), full, binned)
    _log_in_place(full)
    np.log(binned, out=binned)
    return full, binned


def _log_in_place(a: np.ndarray) -> None:
    """``np.log`` over numba's thread count: numpy's ufuncs release the GIL but use one core."""
    parts = np.array_split(a.reshape(-1), get_num_threads())
    if len(parts) == 1:
        np.log(a, out=a)
        return
    pool = _POOLS.get(len(parts)) or _POOLS.setdefault(len(parts), ThreadPoolExecutor(len(parts)))
    for done in [pool.submit(np.log, p, out=p) for p in parts]:
        done.result()


_POOLS: dict[int, ThreadPoolExecutor] = {}


class LivePreview:
    """Running reconstruction of one scan for the operator's live view.

    Parameters
    ----------
    frame_shape
        (rows, cols) of a raw frame.
    bin
        Binning of the coarse volume.
    """

    def __init__(self, frame_shape: tuple[int, int], *, bin: int = 4) -> None:
        rows, cols = (int(v) for v in frame_shape)
        self.frame_shape = (rows, cols)
        # Small detectors (the test presets) would bin to nothing: keep at least 8 pixels.
        self.bin = max(1, min(int(bin), rows // 8 or 1, cols // 8 or 1))
        b = self.bin
        self._coarse = StreamingFBP((rows // b, cols // b), pad_factor=PAD_FACTOR)
        self._fine = StreamingFBP((rows, cols), axial_rows=[rows // 2], vertical=(cols // 2, cols // 2),
                                  pad_factor=PAD_FACTOR)
        # Running sums, not lists of frames: 20 full frames would hold 320 MB for a mean.
        self._sums = {_DARK: np.zeros(self.frame_shape, np.float64), _FLAT: np.zeros(self.frame_shape, np.float64)}
        self._counts = {_DARK: 0, _FLAT: 0}
        self._waiting: list[tuple[np.ndarray, np.ndarray]] = []
        self._means: tuple[np.ndarray, np.ndarray] | None = None  # (dark, gain), until new ones arrive
        self._buf: tuple[np.ndarray, np.ndarray] | None = None
        #: Projections the binned volume took in pairs (see :meth:`add`).
        self.paired = 0
        #: Seconds spent per stage (the live benchmark reports them).
        self.seconds = {"correct": 0.0, "full-res slices": 0.0, "binned volume": 0.0}

    @property
    def n_projections(self) -> int:
        """Projections reconstructed so far."""
        return self._fine.n_added

    def add(self, frames: np.ndarray, image_keys: np.ndarray, angles_deg: np.ndarray, *,
            behind: bool = False) -> None:
        """Add frames (n, rows, cols) with their NXtomo image keys and angles (degrees).

        ``behind``: the caller is falling behind the acquisition, so the binned volume takes
        these projections in pairs (:meth:`analysis.stream.StreamingFBP.add_many`), at half its
        cost; the full-resolution slices take every projection whatever happens.
        """
        f = np.asarray(frames)
        keys = np.asarray(image_keys).ravel()
        angles = np.asarray(angles_deg, dtype=np.float64).ravel()
        if f.ndim != 3 or f.shape[1:] != self.frame_shape or not len(f) == len(keys) == len(angles):
            raise ValueError(f"frames {f.shape}, {len(keys)} keys and {len(angles)} angles do not match "
                             f"frames of {self.frame_shape}")
        for key in (_DARK, _FLAT):
            chosen = keys == key
            if chosen.any():
                self._sums[key] += f[chosen].sum(axis=0, dtype=np.float64)
                self._counts[key] += int(chosen.sum())
                self._means = None
        chosen = keys == _PROJECTION
        new = (f if chosen.all() else f[chosen], angles[chosen]) if chosen.any() else None
        if not self._counts[_FLAT]:
            if new is not None:  # kept until a flat arrives: a copy, the caller may reuse its array
                self._waiting.append((new[0].copy() if new[0] is f else new[0], new[1]))
            return
        for proj, ang in self._waiting + ([new] if new is not None else []):
            self._reconstruct(proj, np.deg2rad(ang), behind)
        self._waiting = []

    def _reconstruct(self, proj: np.ndarray, angles_rad: np.ndarray, behind: bool) -> None:
        if self._means is None:
            dark = self._mean(_DARK)
            self._means = (dark, flat_gain(dark, self._mean(_FLAT)))
        t0 = time.perf_counter()
        full, binned = correct_and_bin(proj, *self._means, self.bin, out=self._buffers(len(proj)))
        t1 = time.perf_counter()
        self._fine.add_many(full, angles_rad)
        t2 = time.perf_counter()
        self._coarse.add_many(binned, angles_rad, pair=behind)
        self.paired += len(proj) if behind else 0
        for key, dt in zip(self.seconds, (t1 - t0, t2 - t1, time.perf_counter() - t2)):
            self.seconds[key] += dt

    def _buffers(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = self.frame_shape
        if self._buf is None or len(self._buf[0]) < n:
            self._buf = (np.empty((n, rows, cols), np.float32),
                         np.empty((n, rows // self.bin, cols // self.bin), np.float32))
        return self._buf[0][:n], self._buf[1][:n]

    def _mean(self, key: int) -> np.ndarray:
        n = self._counts[key]
        return (self._sums[key] / n).astype(np.float32) if n else np.zeros(self.frame_shape, np.float32)

    def slices(self) -> dict[str, np.ndarray]:
        """Full-resolution ``xy`` (middle row), ``xz`` and ``yz`` slices so far."""
        xz, yz = self._fine.vertical()
        return {"xy": self._fine.axial()[0], "xz": xz, "yz": yz}

    def volume(self) -> np.ndarray:
        """The binned volume so far."""
        return self._coarse.axial()
