"""The tomography camera: frames to an NXtomo HDF5 file, references to the documents.

Each staging opens a new file in the frames directory. The camera works in two ways:

* step (``trigger()``): one exposure per call, appended with its image key and rotation angle;
  the event carries the key and angle inline and a StreamDatum points at the frame;
* fly (``prepare(FlySegment)``, ``kickoff()``, ``complete()``, ``collect``): a whole segment of
  frames (darks, flats, or projections taken as the stage sweeps through given angles, as a
  position-compare trigger does) is acquired in one go; frames, image keys and angles all stay in
  the file and the documents carry StreamResource/StreamDatum references to the three datasets.
  Fly scans are how synchrotron tomography runs (2505 projections in minutes), and they cost the
  RunEngine a few messages per segment instead of a dozen per frame.

No frame ever travels in a document (documents go over 0MQ and into SQLite; frames go to disk
once).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np
from event_model import compose_stream_resource
from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import Status

from devices.nxtomo_file import ANGLE_PATH, DATA_PATH, IMAGE_KEY_PATH, IMAGE_KEYS, NXtomoWriter
from sim.clock import Clock
from sim.scene import SimScene

HDF5_MIMETYPE = "application/x-hdf5"
#: Frames written to the file per HDF5 call during a fly segment.
_FLY_CHUNK = 64


@dataclass(frozen=True)
class FlySegment:
    """One continuous acquisition of ``count`` frames of one kind.

    ``angles_deg`` (projections only) are the rotation angles at which frames are triggered
    while the stage sweeps through them; None takes every frame where the stage stands.
    """

    kind: str
    count: int
    angles_deg: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("projection", "flat", "dark"):
            raise ValueError(f"fly segment kind must be projection, flat or dark, got {self.kind!r}")
        if self.count < 1:
            raise ValueError(f"a fly segment needs at least one frame, got {self.count}")
        if self.angles_deg is not None and len(self.angles_deg) != self.count:
            raise ValueError(f"{len(self.angles_deg)} angles for {self.count} frames")


class FrameSource(Protocol):
    """Something that takes exposures: the simulated scene, or a camera driver."""

    frame_shape: tuple[int, int]
    dtype: np.dtype

    def acquire(self, exposure_s: float) -> np.ndarray: ...

    def acquire_many(self, exposure_s: float, count: int,
                     angles_deg: np.ndarray | None) -> np.ndarray: ...


class SimFrameSource:
    """Frames rendered from the simulated scene."""

    dtype = np.dtype(np.uint16)

    def __init__(self, scene: SimScene) -> None:
        self.scene = scene
        self.frame_shape = scene.frame_shape

    def acquire(self, exposure_s: float) -> np.ndarray:
        return self.scene.frame(exposure_s)

    def acquire_many(self, exposure_s: float, count: int, angles_deg: np.ndarray | None) -> np.ndarray:
        return self.scene.frames(exposure_s, count, angles_deg)


class TomoDetector(Device):
    """An area detector that writes NXtomo files and emits StreamResource/StreamDatum documents.

    Parameters
    ----------
    source
        Where frames come from.
    frames_dir
        Directory for the per-scan HDF5 files (must be readable by the catalog).
    rotation
        The rotation stage whose position is stored with each step-mode frame (NaN if None).
    clock
        The experiment clock; with a real clock a fly segment runs on a thread so the
        RunEngine stays responsive (pause, abort) while it acquires.
    """

    image_key = Cpt(Signal, value=IMAGE_KEYS["projection"], kind="normal")
    angle = Cpt(Signal, value=math.nan, kind="normal")
    exposure_time = Cpt(Signal, value=0.1, kind="config")

    def __init__(self, *, source: FrameSource, frames_dir: str | Path, rotation: Any = None,
                 clock: Clock | None = None, name: str = "detector", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.source = source
        self.frames_dir = Path(frames_dir)
        self.rotation = rotation
        self.clock = clock
        self.file_attrs: dict[str, Any] = {}
        self._writer: NXtomoWriter | None = None
        self._pending: list[tuple[str, dict]] = []
        self._resources: dict[str, Any] = {}  # data key -> ComposeStreamResourceBundle
        self._segment: FlySegment | None = None
        self._fly_status: Status | None = None
        self._collected = 0
        self._abort = threading.Event()
        self.last_file: Path | None = None

    @property
    def image_data_key(self) -> str:
        """Data key of the frames in the documents."""
        return f"{self.name}_image"

    # ------------------------------------------------------------------ staging
    def stage(self) -> list[object]:
        path = self.frames_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.h5"
        self._writer = NXtomoWriter(path, self.source.frame_shape, self.source.dtype, attrs=self.file_attrs)
        self.last_file = path
        self._pending, self._resources, self._collected = [], {}, 0
        self._segment, self._fly_status = None, None
        return super().stage()

    def unstage(self) -> list[object]:
        self._abort.set()
        if self._fly_status is not None and not self._fly_status.done:
            self._fly_status.wait(timeout=30)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._abort.clear()
        return super().unstage()

    def _file_writer(self) -> NXtomoWriter:
        if self._writer is None:
            raise RuntimeError(f"{self.name}: acquisition before stage(); no file is open")
        return self._writer

    def _resource(self, data_key: str, dataset: str, chunk: list[int]) -> Any:
        if data_key not in self._resources:
            assert self.last_file is not None
            uri = self.last_file.resolve().as_uri().replace("file://", "file://localhost", 1)
            bundle = compose_stream_resource(mimetype=HDF5_MIMETYPE, uri=uri, data_key=data_key,
                                             parameters={"dataset": dataset, "chunk_shape": chunk,
                                                         "swmr": True})
            self._pending.append(("stream_resource", bundle.stream_resource_doc))
            self._resources[data_key] = bundle
        return self._resources[data_key]

    # ------------------------------------------------------------------ step mode
    def trigger(self) -> Status:
        writer = self._file_writer()
        exposure = float(self.exposure_time.get())
        frame = self.source.acquire(exposure)
        angle = float(self.rotation.position) if self.rotation is not None else math.nan
        index = writer.append(frame, image_key=int(self.image_key.get()), angle_deg=angle, count_time=exposure)
        self.angle.put(angle)
        bundle = self._resource(self.image_data_key, DATA_PATH, [1, *self.source.frame_shape])
        self._pending.append(("stream_datum", bundle.compose_stream_datum(
            indices={"start": index, "stop": index + 1})))
        status = Status(obj=self)
        status.set_finished()
        return status

    def describe(self) -> dict[str, dict]:
        desc = super().describe()
        desc[self.image_data_key] = self._frame_key()
        return desc

    def _frame_key(self) -> dict[str, Any]:
        rows, cols = self.source.frame_shape
        return {"source": "file", "dtype": "array", "shape": [rows, cols],
                "dtype_numpy": self.source.dtype.str, "external": "STREAM:"}

    # ------------------------------------------------------------------ fly mode
    def prepare(self, segment: FlySegment) -> Status:
        """Arm the camera for the next fly segment (bluesky's ``prepare``)."""
        if not isinstance(segment, FlySegment):
            raise TypeError(f"{self.name}.prepare() takes a FlySegment, got {segment!r}")
        self._file_writer()
        self._segment = segment
        status = Status(obj=self)
        status.set_finished()
        return status

    def kickoff(self) -> Status:
        """Start acquiring the prepared segment; the returned status is already finished."""
        if self._segment is None:
            raise RuntimeError(f"{self.name}: kickoff() without prepare(FlySegment)")
        segment, self._segment = self._segment, None
        self._fly_status = Status(obj=self)
        if self.clock is None or self.clock.is_virtual:
            self._fly(segment, self._fly_status)
        else:
            threading.Thread(target=self._fly, args=(segment, self._fly_status), daemon=True,
                             name=f"{self.name}-fly").start()
        done = Status(obj=self)
        done.set_finished()
        return done

    def complete(self) -> Status:
        """A status that finishes when the segment's last frame is on disk."""
        if self._fly_status is None:
            raise RuntimeError(f"{self.name}: complete() without kickoff()")
        return self._fly_status

    def _fly(self, segment: FlySegment, status: Status) -> None:
        try:
            writer = self._file_writer()
            exposure = float(self.exposure_time.get())
            key = IMAGE_KEYS[segment.kind]
            angles = None if segment.angles_deg is None else np.asarray(segment.angles_deg, np.float64)
            for lo in range(0, segment.count, _FLY_CHUNK):
                if self._abort.is_set():
                    raise RuntimeError(f"{self.name}: fly segment stopped after {lo} frames")
                hi = min(segment.count, lo + _FLY_CHUNK)
                part = None if angles is None else angles[lo:hi]
                frames = self.source.acquire_many(exposure, hi - lo, part)
                at = part if part is not None else np.full(hi - lo, self._stage_angle())
                writer.append_many(frames, image_key=key, angles_deg=at, count_time=exposure)
            self.image_key.put(key)
            self.angle.put(float(at[-1]))
        except Exception as err:  # the status carries the failure to the plan
            status.set_exception(err)
        else:
            status.set_finished()

    def _stage_angle(self) -> float:
        return float(self.rotation.position) if self.rotation is not None else math.nan

    def stop(self, *, success: bool = False) -> None:
        """Abandon a running fly segment (the RunEngine calls this on pause and abort)."""
        self._abort.set()
        super().stop(success=success)

    def resume(self) -> None:
        """Clear a stop so the next segment can run (after a RunEngine pause)."""
        self._abort.clear()

    def describe_collect(self) -> dict[str, dict]:
        """The fly stream's data keys: frames, image keys and angles, all in the file."""
        return {
            self.image_data_key: self._frame_key(),
            f"{self.name}_image_key": {"source": "file", "dtype": "integer", "shape": [],
                                       "dtype_numpy": np.dtype(np.int8).str, "external": "STREAM:"},
            f"{self.name}_angle": {"source": "file", "dtype": "number", "shape": [], "units": "deg",
                                   "dtype_numpy": np.dtype(np.float64).str, "external": "STREAM:"},
        }

    def get_index(self) -> int:
        """Frames written to the file so far."""
        return 0 if self._writer is None else self._writer.n_frames

    def collect_asset_docs(self, index: int | None = None) -> Iterator[tuple[str, dict]]:
        if self._fly_status is not None:
            self._queue_fly_datums(self.get_index() if index is None else index)
        pending, self._pending = self._pending, []
        yield from pending

    def _queue_fly_datums(self, stop: int) -> None:
        if stop <= self._collected:
            return
        rows, cols = self.source.frame_shape
        datasets = ((self.image_data_key, DATA_PATH, [1, rows, cols]),
                    (f"{self.name}_image_key", IMAGE_KEY_PATH, [1024]),
                    (f"{self.name}_angle", ANGLE_PATH, [1024]))
        for data_key, path, chunk in datasets:
            bundle = self._resource(data_key, path, chunk)
            self._pending.append(("stream_datum", bundle.compose_stream_datum(
                indices={"start": self._collected, "stop": stop})))
        self._collected = stop
