"""One scan's live preview on disk: read its new frames, update the view, write it for the monitor.

The live consumer keeps one :class:`ScanPreview` per scan being acquired; ``tomocycle bench
live`` drives the same class against a frame file written at an acquisition's real pace, so the
benchmark measures the consumer's own code path (SWMR reads, correction, streaming FBP, files).

Writing is throttled by its own cost: at full resolution three slices and a 512^3 volume take
a noticeable share of the time between frames, and the view must keep pace with the scan.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from analysis.live_preview import LivePreview
from controller.experiment_analysis import write_slices

#: Frames per read: a consumer that starts late must not load a whole scan (20 GB for 002) at once.
READ_CHUNK = 32
#: Writing the slices may take at most this share of the time (it is skipped until then).
WRITE_SHARE = 0.05
#: Shortest interval between two writes of the binned volume (512 MB at 002's size).
VOLUME_S = 60.0


def read_frames(path: Path, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames ``start:stop`` of an NXtomo file being written (SWMR), with image keys and angles.

    Raises
    ------
    OSError
        If the file holds fewer than ``stop`` frames yet (the writer has not flushed them).
    """
    import h5py

    from analysis.formats import NX_ANGLE, NX_DATA, NX_IMAGE_KEY

    with h5py.File(path, "r", swmr=True, libver="latest") as f:
        out = []
        for name in (NX_DATA, NX_IMAGE_KEY, NX_ANGLE):
            dset = f[name]
            dset.refresh()
            if dset.shape[0] < stop:
                raise OSError(f"{path}:{name} holds {dset.shape[0]} frames, {stop} announced")
            out.append(dset[start:stop])
    return out[0], out[1], out[2]


def frames_in(path: Path) -> int:
    """Frames an NXtomo file being written holds now (0 if it cannot be read yet)."""
    import h5py

    from analysis.formats import NX_DATA

    try:
        with h5py.File(path, "r", swmr=True, libver="latest") as f:
            dset = f[NX_DATA]
            dset.refresh()
            return int(dset.shape[0])
    except (OSError, KeyError):
        return 0


class ScanPreview:
    """Follow one scan's frame file and keep its preview files in ``folder`` up to date.

    Parameters
    ----------
    frames_file
        The scan's NXtomo file (written while it is read).
    folder
        Where the preview files go (``preview_slices.npz``, ``preview_xy.png`` ...,
        ``preview_volume.npy``).
    bin
        Binning of the preview volume.
    min_write_s
        Shortest interval between two writes of the slices.
    """

    def __init__(self, frames_file: Path, folder: Path, *, bin: int = 4, min_write_s: float = 1.0) -> None:
        self.frames_file = Path(frames_file)
        self.folder = Path(folder)
        self.bin = bin
        self.min_write_s = min_write_s
        self.read = 0
        self.view: LivePreview | None = None
        self.seconds = {"read": 0.0, "reconstruct": 0.0, "write": 0.0}
        self._last_write = -np.inf
        self._write_cost = 0.0
        self._last_volume = -np.inf

    def advance(self, available: int) -> int:
        """Read frames up to ``available`` and add them to the view; return how many were read.

        Raises
        ------
        OSError, KeyError
            If the file cannot be read up to ``available`` yet (the caller tries again later).
        """
        start = self.read
        while self.read < available:
            stop = min(available, self.read + READ_CHUNK)
            t0 = time.perf_counter()
            frames, keys, angles = read_frames(self.frames_file, self.read, stop)
            t1 = time.perf_counter()
            if self.view is None:
                self.view = LivePreview(frames.shape[1:], bin=self.bin)
            self.view.add(frames, keys, angles)
            self.seconds["read"] += t1 - t0
            self.seconds["reconstruct"] += time.perf_counter() - t1
            self.read = stop
        return self.read - start

    def write(self, *, final: bool = False) -> dict[str, str] | None:
        """Write the view if it is due (always when ``final``); the files' names, or None.

        Returns
        -------
        dict or None
            ``{"xy": ..., "xz": ..., "yz": ..., "npz": ..., "volume": ...}`` (names inside
            ``folder``; ``volume`` only when it was written this time), or None when nothing
            was written (no projection yet, or not due).
        """
        if self.view is None or self.view.n_projections == 0:
            return None
        now = time.monotonic()
        if not final and now - self._last_write < max(self.min_write_s, self._write_cost / WRITE_SHARE):
            return None
        t0 = time.perf_counter()
        names = write_slices(self.folder, self.view.slices(), stem="preview", fast=True)
        self._write_cost = time.perf_counter() - t0  # the slices' cost sets their interval
        if final or now - self._last_volume >= VOLUME_S:
            tmp = self.folder / ".preview_volume.tmp.npy"
            np.save(tmp, self.view.volume())
            os.replace(tmp, self.folder / "preview_volume.npy")
            names["volume"] = "preview_volume.npy"
            self._last_volume = now
        self.seconds["write"] += time.perf_counter() - t0
        self._last_write = time.monotonic()
        return names
