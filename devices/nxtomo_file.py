"""Append-as-you-go HDF5 writer in the NXtomo layout.

One file per scan. Frames are appended one at a time as the detector takes them and flushed, in
SWMR mode, so a reader (the catalog, a live reconstruction) can follow the scan while it is written
and everything taken before a crash is on disk. Layout (NeXus NXtomo application definition)::

    /entry                         NXentry, definition = "NXtomo"
      /instrument/detector/data    uint16 [n_frames, rows, cols]   (the signal)
      /instrument/detector/image_key   int8 [n_frames]: 0 projection, 1 flat, 2 dark
      /instrument/detector/count_time  float64 [n_frames], s
      /sample/rotation_angle       float64 [n_frames], degrees
      /sample/name
      /data                        NXdata with links to data, rotation_angle and image_key
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from analysis.formats import NX_ANGLE as ANGLE_PATH
from analysis.formats import NX_DATA as DATA_PATH
from analysis.formats import NX_IMAGE_KEY as IMAGE_KEY_PATH

COUNT_TIME_PATH = "/entry/instrument/detector/count_time"
IMAGE_KEYS = {"projection": 0, "flat": 1, "dark": 2, "invalid": 3}


class NXtomoWriter:
    """Write frames of one scan to an NXtomo file, one frame per :meth:`append`.

    Parameters
    ----------
    path
        File to create; must not exist (a scan never overwrites another).
    frame_shape
        (rows, cols) of each frame.
    dtype
        Frame dtype (the simulated camera is 16-bit).
    attrs
        Extra attributes for ``/entry`` (sample name, preset, pixel size ...).
    """

    def __init__(self, path: Path, frame_shape: tuple[int, int], dtype: Any = np.uint16,
                 attrs: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.frame_shape = tuple(int(n) for n in frame_shape)
        self.dtype = np.dtype(dtype)
        self._n = 0
        # libver="latest" is required for SWMR; exclusive create protects earlier scans.
        self._file = h5py.File(self.path, "x", libver="latest")
        self._create_layout(attrs or {})
        self._file.swmr_mode = True

    @property
    def n_frames(self) -> int:
        """Frames written so far."""
        return self._n

    def _create_layout(self, attrs: dict[str, Any]) -> None:
        f = self._file
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.create_dataset("definition", data="NXtomo")
        for key, value in attrs.items():
            entry.attrs[key] = value
        inst = entry.create_group("instrument")
        inst.attrs["NX_class"] = "NXinstrument"
        det = inst.create_group("detector")
        det.attrs["NX_class"] = "NXdetector"
        rows, cols = self.frame_shape
        data = det.create_dataset("data", shape=(0, rows, cols), maxshape=(None, rows, cols),
                                  dtype=self.dtype, chunks=(1, rows, cols))
        data.attrs["signal"] = 1
        det.create_dataset("image_key", shape=(0,), maxshape=(None,), dtype=np.int8, chunks=(1024,))
        ct = det.create_dataset("count_time", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(1024,))
        ct.attrs["units"] = "s"
        sample = entry.create_group("sample")
        sample.attrs["NX_class"] = "NXsample"
        sample.create_dataset("name", data=str(attrs.get("sample", "simulated electrode")))
        angle = sample.create_dataset("rotation_angle", shape=(0,), maxshape=(None,),
                                      dtype=np.float64, chunks=(1024,))
        angle.attrs["units"] = "degree"
        nxdata = entry.create_group("data")
        nxdata.attrs["NX_class"] = "NXdata"
        nxdata.attrs["signal"] = "data"
        nxdata["data"] = data
        nxdata["rotation_angle"] = angle
        nxdata["image_key"] = det["image_key"]

    def append(self, frame: np.ndarray, *, image_key: int, angle_deg: float, count_time: float) -> int:
        """Append one frame and its metadata; return the frame's index in the file.

        Raises
        ------
        ValueError
            If the frame's shape differs from the file's or the image key is not 0, 1, 2 or 3.
        """
        if frame.shape != self.frame_shape:
            raise ValueError(f"{self.path.name}: frame shape {frame.shape} != {self.frame_shape}")
        if image_key not in IMAGE_KEYS.values():
            raise ValueError(f"{self.path.name}: image_key {image_key} is not 0, 1, 2 or 3")
        i = self._n
        for path, value in ((DATA_PATH, frame), (IMAGE_KEY_PATH, image_key),
                            (ANGLE_PATH, angle_deg), (COUNT_TIME_PATH, count_time)):
            dset = self._file[path]
            dset.resize(i + 1, axis=0)
            dset[i] = value
        self._n = i + 1
        self._file.flush()
        return i

    def append_many(self, frames: np.ndarray, *, image_key: int, angles_deg: np.ndarray,
                    count_time: float) -> int:
        """Append a stack of frames of one kind (a fly segment's chunk); return the first index.

        Raises
        ------
        ValueError
            As :meth:`append`, or if the number of angles differs from the number of frames.
        """
        frames = np.asarray(frames)
        n = len(frames)
        if frames.shape[1:] != self.frame_shape:
            raise ValueError(f"{self.path.name}: frame shape {frames.shape[1:]} != {self.frame_shape}")
        if image_key not in IMAGE_KEYS.values():
            raise ValueError(f"{self.path.name}: image_key {image_key} is not 0, 1, 2 or 3")
        if len(angles_deg) != n:
            raise ValueError(f"{self.path.name}: {len(angles_deg)} angles for {n} frames")
        i = self._n
        for path, value in ((DATA_PATH, frames), (IMAGE_KEY_PATH, np.full(n, image_key, np.int8)),
                            (ANGLE_PATH, angles_deg), (COUNT_TIME_PATH, np.full(n, count_time))):
            dset = self._file[path]
            dset.resize(i + n, axis=0)
            dset[i:i + n] = value
        self._n = i + n
        self._file.flush()
        return i

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._file.id.valid:
            self._file.close()
