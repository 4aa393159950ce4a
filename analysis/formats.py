"""Raw tomography files: NXtomo (NeXus) and APS Data Exchange (DXfile), read and written.

Both hold the same thing, a :class:`TomoData`: projections, flats, darks and the projections'
rotation angles. NXtomo keeps every frame in one dataset with an ``image_key`` per frame
(0 projection, 1 flat, 2 dark); DXfile keeps three datasets under ``/exchange`` and the angles
in ``/exchange/theta`` (degrees).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

NX_DATA = "/entry/instrument/detector/data"
NX_IMAGE_KEY = "/entry/instrument/detector/image_key"
NX_ANGLE = "/entry/sample/rotation_angle"


class TomoFileError(ValueError):
    """A tomography file is missing something or is inconsistent; the message names the file."""


@dataclass
class TomoData:
    """Frames of one tomogram, split by kind.

    Attributes
    ----------
    projections, flats, darks
        Arrays (n, rows, cols); flats/darks may have n = 0.
    angles_deg
        Rotation angle of each projection, degrees.
    metadata
        Free-form attributes carried along (units, sample, preset ...).
    projection_index, flat_index
        Frame number of each projection and flat in the acquisition, when the file says
        (NXtomo); flats before and after a scan are then interpolated by frame number.
    binned, zingers_removed
        Preprocessing done while reading (frames then float32, ``binned`` x ``binned`` smaller).
    """

    projections: np.ndarray
    flats: np.ndarray
    darks: np.ndarray
    angles_deg: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    projection_index: np.ndarray | None = None
    flat_index: np.ndarray | None = None
    #: Binning already applied to the frames when they were read (see analysis.readers.read_tomo).
    binned: int = 1
    #: Whether zingers were already removed from the frames when they were read.
    zingers_removed: bool = False


def split_by_image_key(frames: np.ndarray, image_key: np.ndarray, angles_deg: np.ndarray,
                       metadata: dict[str, Any] | None = None) -> TomoData:
    """Split an NXtomo-style frame stack by its image keys (key 3, "invalid", is dropped)."""
    image_key = np.asarray(image_key)
    if not (len(frames) == len(image_key) == len(angles_deg)):
        raise TomoFileError(f"{len(frames)} frames but {len(image_key)} image keys and "
                            f"{len(angles_deg)} angles")
    proj = image_key == 0
    return TomoData(projections=np.asarray(frames[proj]), flats=np.asarray(frames[image_key == 1]),
                    darks=np.asarray(frames[image_key == 2]), angles_deg=np.asarray(angles_deg)[proj],
                    metadata=dict(metadata or {}), projection_index=np.flatnonzero(proj),
                    flat_index=np.flatnonzero(image_key == 1))


def read_nxtomo(path: str | os.PathLike[str]) -> TomoData:
    """Read an NXtomo file (``/entry/instrument/detector/{data,image_key}``, ``/entry/sample/rotation_angle``).

    Raises
    ------
    TomoFileError
        If a required dataset is missing or the lengths disagree; the message names the file.
    """
    try:
        with h5py.File(path, "r", swmr=True) as f:
            missing = [p for p in (NX_DATA, NX_IMAGE_KEY, NX_ANGLE) if p not in f]
            if missing:
                raise TomoFileError(f"{path}: not an NXtomo file, missing {', '.join(missing)}")
            meta = {k: _plain(v) for k, v in f["/entry"].attrs.items()}
            return split_by_image_key(f[NX_DATA][()], f[NX_IMAGE_KEY][()], f[NX_ANGLE][()], meta)
    except OSError as err:
        raise TomoFileError(f"{path}: cannot read as HDF5 ({err})") from None
    except TomoFileError as err:
        if str(path) in str(err):
            raise
        raise TomoFileError(f"{path}: {err}") from None


def write_dxfile(path: str | os.PathLike[str], data: TomoData) -> None:
    """Write a Data Exchange file (``/exchange/data``, ``data_white``, ``data_dark``, ``theta`` in degrees)."""
    with h5py.File(path, "w") as f:
        f.create_dataset("implements", data="exchange:measurement")
        ex = f.create_group("exchange")
        ex.create_dataset("data", data=data.projections, chunks=(1, *data.projections.shape[1:]))
        ex["data"].attrs["axes"] = "theta:y:x"
        ex.create_dataset("data_white", data=data.flats)
        ex.create_dataset("data_dark", data=data.darks)
        theta = ex.create_dataset("theta", data=np.asarray(data.angles_deg, dtype=np.float64))
        theta.attrs["units"] = "degrees"
        meas = f.create_group("measurement")
        for key, value in data.metadata.items():
            if isinstance(value, (str, int, float, bool, np.number)):
                meas.attrs[key] = value


def read_dxfile(path: str | os.PathLike[str]) -> TomoData:
    """Read a Data Exchange file; missing ``theta`` means evenly spaced over 0-180 degrees (the DX rule)."""
    try:
        with h5py.File(path, "r") as f:
            if "/exchange/data" not in f:
                raise TomoFileError(f"{path}: not a Data Exchange file, missing /exchange/data")
            ex = f["/exchange"]
            proj = ex["data"][()]
            empty = np.zeros((0, *proj.shape[1:]), proj.dtype)
            flats = ex["data_white"][()] if "data_white" in ex else empty
            darks = ex["data_dark"][()] if "data_dark" in ex else empty
            theta = ex["theta"][()] if "theta" in ex else np.linspace(0, 180, len(proj), endpoint=False)
    except OSError as err:
        raise TomoFileError(f"{path}: cannot read as HDF5 ({err})") from None
    if len(theta) != len(proj):
        raise TomoFileError(f"{path}: {len(proj)} projections but {len(theta)} angles in /exchange/theta")
    return TomoData(proj, flats, darks, np.asarray(theta, dtype=np.float64))


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value
