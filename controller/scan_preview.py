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

#: Frames per read and per update of the view: a consumer that starts late must not load a whole
#: scan (20 GB for 002) at once, and small batches keep the working arrays from growing (64 MB of
#: raw frames, 100-200 MB of intermediates at 2048 x 2048).
READ_CHUNK = 4
#: Frames waiting for longer than this (at the rate they arrive) mean the view has fallen behind:
#: its binned volume then takes projections in pairs until it has caught up.
BEHIND_S = 3.0
#: Writing the slices may take at most this share of the time (it is skipped until then).
WRITE_SHARE = 0.05
#: Shortest interval between two writes of the binned volume during a scan (512 MB at 002's
#: size; nothing shows it live, so it is written every few minutes and when the scan ends).
VOLUME_S = 300.0


def read_frames(path: Path, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames ``start:stop`` of an NXtomo file being written (SWMR), with image keys and angles.

    Raises
    ------
    OSError
        If the file holds fewer than ``stop`` frames yet (the writer has not flushed them).
    """
    with _FrameFile(path, stop) as f:
        return f.read(start, stop)


class _FrameFile:
    """An NXtomo file open for SWMR reading, checked to hold at least ``need`` frames."""

    def __init__(self, path: Path, need: int) -> None:
        self.path, self.need = Path(path), need

    def __enter__(self) -> _FrameFile:
        import h5py

        from analysis.formats import NX_ANGLE, NX_DATA, NX_IMAGE_KEY

        self._file = h5py.File(self.path, "r", swmr=True, libver="latest")
        try:
            self.sets = [self._file[name] for name in (NX_DATA, NX_IMAGE_KEY, NX_ANGLE)]
            for name, dset in zip((NX_DATA, NX_IMAGE_KEY, NX_ANGLE), self.sets):
                dset.refresh()
                if dset.shape[0] < self.need:
                    raise OSError(f"{self.path}:{name} holds {dset.shape[0]} frames, {self.need} announced")
        except BaseException:
            self._file.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frames, keys and angles ``start:stop``; frames into ``out[:stop - start]`` if given."""
        data, keys, angles = self.sets
        if out is None:
            frames = data[start:stop]
        else:
            frames = out[:stop - start]
            data.read_direct(frames, np.s_[start:stop])
        return frames, keys[start:stop], angles[start:stop]


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
    catch_up
        Let the binned volume take projections in pairs while the view is more than
        :data:`BEHIND_S` behind the frames arriving (False: every projection exactly, always).
    """

    def __init__(self, frames_file: Path, folder: Path, *, bin: int = 4, min_write_s: float = 1.0,
                 catch_up: bool = True) -> None:
        self.frames_file = Path(frames_file)
        self.folder = Path(folder)
        self.bin = bin
        self.min_write_s = min_write_s
        self.catch_up = catch_up
        self.read = 0
        self.view: LivePreview | None = None
        self.seconds = {"read": 0.0, "reconstruct": 0.0, "write": 0.0}
        self._last_write = -np.inf
        self._write_cost = 0.0
        self._last_volume = time.monotonic()  # the first one after VOLUME_S, or at the end
        self._frames: np.ndarray | None = None
        self._seen: tuple[int, float] | None = None  # (frames available, when) at the last new frames
        self._rate = 0.0

    def advance(self, available: int) -> int:
        """Read frames up to ``available`` and add them to the view; return how many were read.

        Raises
        ------
        OSError, KeyError
            If the file cannot be read up to ``available`` yet (the caller tries again later).
        """
        start = self.read
        rate = self._arrival_rate(available)
        if self.read >= available:
            return 0
        with _FrameFile(self.frames_file, available) as f:
            while self.read < available:
                stop = min(available, self.read + READ_CHUNK)
                t0 = time.perf_counter()
                buf = self._buffer(f.sets[0])
                frames, keys, angles = f.read(self.read, stop, out=buf)
                t1 = time.perf_counter()
                if self.view is None:
                    self.view = LivePreview(frames.shape[1:], bin=self.bin)
                behind = self.catch_up and rate > 0 and (available - stop) / rate > BEHIND_S
                self.view.add(frames, keys, angles, behind=behind)
                self.seconds["read"] += t1 - t0
                self.seconds["reconstruct"] += time.perf_counter() - t1
                self.read = stop
        return self.read - start

    def _arrival_rate(self, available: int) -> float:
        """Frames per second arriving in the file (smoothed; 0 until two calls have seen new frames)."""
        now = time.monotonic()
        if self._seen is not None and available > self._seen[0] and now > self._seen[1]:
            rate = (available - self._seen[0]) / (now - self._seen[1])
            self._rate = rate if self._rate == 0 else 0.7 * self._rate + 0.3 * rate
        if self._seen is None or available > self._seen[0]:
            self._seen = (available, now)
        return self._rate

    def _buffer(self, data) -> np.ndarray:
        # One reused buffer: a fresh 64-256 MB array per read cost a page fault per 4 kB.
        shape = (READ_CHUNK, *data.shape[1:])
        if self._frames is None or self._frames.shape != shape or self._frames.dtype != data.dtype:
            self._frames = np.empty(shape, data.dtype)
        return self._frames

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
