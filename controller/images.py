"""Slices as pictures: a display window shared by several slices and a fast greyscale PNG.

The live consumer writes three full-resolution (2048 x 2048) slices every few seconds while a
scan is acquired, and the monitor renders arrays on request. matplotlib's ``imsave`` took about
3 s per such slice (RGBA through a colormap, full sort for the percentiles); this writes an
8-bit greyscale PNG with a percentile window taken from a sample of the pixels, in tens of ms.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable

import numpy as np

#: Pixels sampled to place the window: percentiles of a million values are stable to 1/255.
WINDOW_SAMPLES = 1 << 20


def display_window(images: Iterable[np.ndarray], percentiles: tuple[float, float] = (0.5, 99.5)) -> tuple[float, float]:
    """Grey values at the given percentiles of the finite pixels of ``images`` together.

    Returns ``(0, 1)`` when there is no finite pixel, and a window of width 1 about a constant.
    """
    arrays = [np.asarray(a).ravel() for a in images]
    total = sum(a.size for a in arrays)
    step = max(1, total // WINDOW_SAMPLES)
    sample = np.concatenate([a[::step] for a in arrays]) if arrays else np.zeros(0)
    sample = sample[np.isfinite(sample)]
    if not sample.size:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(sample, percentiles))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def png_bytes(image: np.ndarray, window: tuple[float, float] | None = None, *, level: int = 6) -> bytes:
    """Encode a 2D array as an 8-bit greyscale PNG.

    Parameters
    ----------
    image
        Any real 2D array (a reconstructed slice).
    window
        Grey values shown black and white (default: the image's 0.5 and 99.5 percentiles).
    level
        zlib compression level (1 is several times faster than 6, for previews rewritten often).
    """
    a = np.asarray(image)
    if a.ndim != 2:
        raise ValueError(f"a slice must be 2D, got shape {a.shape}")
    lo, hi = display_window([a]) if window is None else (float(window[0]), float(window[1]))
    scale = np.float32(255.0 / ((hi - lo) or 1.0))
    scaled = (np.nan_to_num(a.astype(np.float32, copy=False), nan=lo) - np.float32(lo)) * scale
    rows = np.zeros((a.shape[0], a.shape[1] + 1), np.uint8)  # each row starts with filter byte 0
    np.clip(np.rint(scaled), 0, 255, out=scaled)
    rows[:, 1:] = scaled

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", a.shape[1], a.shape[0], 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), level))
            + chunk(b"IEND", b""))


def shrink(image: np.ndarray, max_px: int) -> np.ndarray:
    """Average ``k x k`` blocks (the smallest ``k`` that brings both sides to ``max_px`` or less)."""
    a = np.asarray(image)
    k = -(-max(a.shape) // int(max_px))
    if k <= 1:
        return a
    rows, cols = a.shape[0] // k, a.shape[1] // k
    return a[:rows * k, :cols * k].reshape(rows, k, cols, k).mean(axis=(1, 3), dtype=np.float32)
