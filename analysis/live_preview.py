"""The live view of a scan being acquired: a binned volume and three full-resolution slices.

:class:`LivePreview` takes raw frames in acquisition order with their image keys and angles (as
they appear in the scan's file), keeps the darks and flats, and feeds flat/dark-corrected
line integrals to two :class:`analysis.stream.StreamingFBP`: one over ``bin``-binned frames
(a coarse volume) and one at full resolution for the middle axial slice and the two vertical
slices through the axis. Projections that arrive before any flat (flats taken at the end) wait
in memory until the first flat. No I/O; the consumer reads the frames.
"""

from __future__ import annotations

import numpy as np

from analysis.prep import bin_frames, minus_log
from analysis.stream import StreamingFBP

__all__ = ["LivePreview"]

_PROJECTION, _FLAT, _DARK = 0, 1, 2


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
        self._coarse = StreamingFBP((rows // b, cols // b))
        self._fine = StreamingFBP((rows, cols), axial_rows=[rows // 2], vertical=(cols // 2, cols // 2))
        self._flats: list[np.ndarray] = []
        self._darks: list[np.ndarray] = []
        self._waiting: list[tuple[np.ndarray, float]] = []

    @property
    def n_projections(self) -> int:
        """Projections reconstructed so far."""
        return self._fine.n_added

    def add(self, frames: np.ndarray, image_keys: np.ndarray, angles_deg: np.ndarray) -> None:
        """Add frames (n, rows, cols) with their NXtomo image keys and angles (degrees)."""
        f = np.asarray(frames)
        keys = np.asarray(image_keys).ravel()
        angles = np.asarray(angles_deg, dtype=np.float64).ravel()
        if f.ndim != 3 or f.shape[1:] != self.frame_shape or not len(f) == len(keys) == len(angles):
            raise ValueError(f"frames {f.shape}, {len(keys)} keys and {len(angles)} angles do not match "
                             f"frames of {self.frame_shape}")
        self._darks.extend(f[keys == _DARK].astype(np.float32))
        self._flats.extend(f[keys == _FLAT].astype(np.float32))
        self._waiting.extend(zip(f[keys == _PROJECTION].astype(np.float32), angles[keys == _PROJECTION]))
        if self._flats and self._waiting:
            proj = np.stack([p for p, _ in self._waiting])
            ang = np.deg2rad([a for _, a in self._waiting])
            self._waiting = []
            dark = np.mean(self._darks, axis=0) if self._darks else np.zeros(self.frame_shape, np.float32)
            flat = np.mean(self._flats, axis=0)
            trans = (proj - dark) / np.maximum(flat - dark, 1e-6)
            self._fine.add_many(minus_log(trans), ang)
            self._coarse.add_many(minus_log(bin_frames(trans, self.bin)), ang)

    def slices(self) -> dict[str, np.ndarray]:
        """Full-resolution ``xy`` (middle row), ``xz`` and ``yz`` slices so far."""
        xz, yz = self._fine.vertical()
        return {"xy": self._fine.axial()[0], "xz": xz, "yz": yz}

    def volume(self) -> np.ndarray:
        """The binned volume so far."""
        return self._coarse.axial()
