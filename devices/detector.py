"""The tomography camera: frames to an NXtomo HDF5 file, references to the documents.

Each staging opens a new file in the frames directory; each ``trigger()`` takes one exposure,
appends the frame with its image key and rotation angle, and queues a StreamDatum that tells the
catalog where the frame is. The frame itself never travels in a document (documents go over 0MQ
and into SQLite; frames go to disk once).
"""

from __future__ import annotations

import math
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np
from event_model import compose_stream_resource
from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import Status

from devices.nxtomo_file import DATA_PATH, IMAGE_KEYS, NXtomoWriter
from sim.scene import SimScene

HDF5_MIMETYPE = "application/x-hdf5"


class FrameSource(Protocol):
    """Something that takes exposures: the simulated scene, or a camera driver."""

    frame_shape: tuple[int, int]
    dtype: np.dtype

    def acquire(self, exposure_s: float) -> np.ndarray: ...


class SimFrameSource:
    """Frames rendered from the simulated scene."""

    dtype = np.dtype(np.uint16)

    def __init__(self, scene: SimScene) -> None:
        self.scene = scene
        self.frame_shape = scene.frame_shape

    def acquire(self, exposure_s: float) -> np.ndarray:
        return self.scene.frame(exposure_s)


class TomoDetector(Device):
    """An area detector that writes NXtomo files and emits StreamResource/StreamDatum documents.

    Parameters
    ----------
    source
        Where frames come from.
    frames_dir
        Directory for the per-scan HDF5 files (must be readable by the catalog).
    rotation
        The rotation stage whose position is stored with each frame (NaN if None).
    """

    image_key = Cpt(Signal, value=IMAGE_KEYS["projection"], kind="normal")
    exposure_time = Cpt(Signal, value=0.1, kind="config")

    def __init__(self, *, source: FrameSource, frames_dir: str | Path, rotation: Any = None,
                 name: str = "detector", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.source = source
        self.frames_dir = Path(frames_dir)
        self.rotation = rotation
        self.file_attrs: dict[str, Any] = {}
        self._writer: NXtomoWriter | None = None
        self._pending: list[tuple[str, dict]] = []
        self._compose_datum: Any = None
        self.last_file: Path | None = None

    @property
    def image_data_key(self) -> str:
        """Data key of the frames in the documents."""
        return f"{self.name}_image"

    def stage(self) -> list[object]:
        path = self.frames_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.h5"
        self._writer = NXtomoWriter(path, self.source.frame_shape, self.source.dtype, attrs=self.file_attrs)
        self.last_file = path
        bundle = compose_stream_resource(
            mimetype=HDF5_MIMETYPE, uri=path.resolve().as_uri().replace("file://", "file://localhost", 1),
            data_key=self.image_data_key,
            parameters={"dataset": DATA_PATH, "chunk_shape": [1, *self.source.frame_shape], "swmr": True})
        self._pending = [("stream_resource", bundle.stream_resource_doc)]
        self._compose_datum = bundle.compose_stream_datum
        return super().stage()

    def unstage(self) -> list[object]:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return super().unstage()

    def trigger(self) -> Status:
        if self._writer is None:
            raise RuntimeError(f"{self.name}: trigger() before stage(); no file is open")
        exposure = float(self.exposure_time.get())
        frame = self.source.acquire(exposure)
        angle = float(self.rotation.position) if self.rotation is not None else math.nan
        index = self._writer.append(frame, image_key=int(self.image_key.get()), angle_deg=angle,
                                    count_time=exposure)
        self._pending.append(("stream_datum", self._compose_datum(indices={"start": index, "stop": index + 1})))
        status = Status(obj=self)
        status.set_finished()
        return status

    def describe(self) -> dict[str, dict]:
        desc = super().describe()
        rows, cols = self.source.frame_shape
        desc[self.image_data_key] = {
            "source": "file", "dtype": "array", "shape": [rows, cols],
            "dtype_numpy": self.source.dtype.str, "external": "STREAM:",
        }
        return desc

    def collect_asset_docs(self) -> Iterator[tuple[str, dict]]:
        pending, self._pending = self._pending, []
        yield from pending
