"""Tolerant readers for tomography files written by other facilities' software.

:func:`read_tomo` detects the layout and returns a :class:`analysis.formats.TomoData`:

* NXtomo (NeXus): the first ``NXentry`` (any name: ``entry``, ``entry0000`` ...) with frames at
  ``instrument/detector/data`` or only in the ``NXdata`` group (``data/data``); image keys at
  ``instrument/detector/image_key``, ``data/image_key`` or ``image_key_control`` (-1, alignment,
  is dropped); angles at ``sample/rotation_angle`` or ``data/rotation_angle``, in degrees unless
  their ``units`` attribute says radians.
* Data Exchange: ``/exchange/data`` with optional ``data_white``, ``data_dark`` and ``theta``
  (degrees by the standard; radians when its ``units`` say so, or, with no units, when the
  values only make sense as radians). Without ``theta`` angles are spread evenly over 0-180
  degrees (the standard's rule), with a warning.

Every problem raises :class:`analysis.formats.TomoFileError` naming the file and what is wrong.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import h5py
import numpy as np

from analysis.formats import TomoData, TomoFileError
from analysis.prep import bin_frames, remove_zingers

_RAD_UNITS = {"rad", "rads", "radian", "radians"}
_DEG_UNITS = {"deg", "degs", "degree", "degrees", "°"}
_LENGTH_TO_UM = {"m": 1e6, "mm": 1e3, "um": 1.0, "µm": 1.0, "micron": 1.0, "microns": 1.0, "nm": 1e-3}


#: Frames read (and binned) at a time: a scan of 2505 frames of 2048 x 2048 is 21 GB as stored.
READ_FRAMES = 32


def read_tomo(path: str | os.PathLike[str], *, bin: int = 1, zingers: bool = False) -> TomoData:
    """Read an NXtomo or Data Exchange file, whichever it is.

    Parameters
    ----------
    path
        The file.
    bin, zingers
        Bin the frames ``bin x bin`` (and first remove zingers, see
        :func:`analysis.prep.remove_zingers`) as they are read, :data:`READ_FRAMES` at a time,
        so the whole scan is never in memory at full size. With neither, frames keep their
        stored dtype.

    Raises
    ------
    TomoFileError
        Not HDF5, neither layout, or inconsistent (angle and frame counts differ ...).
    """
    if int(bin) < 1:
        raise ValueError(f"bin must be >= 1, got {bin}")
    prep = _FramePrep(int(bin), bool(zingers))
    try:
        with h5py.File(path, "r") as f:
            if "exchange/data" in f:
                return _read_dx(f, path, prep)
            entry = _find_entry(f)
            if entry is None:
                raise TomoFileError(f"{path}: neither NXtomo (no NXentry with detector data) nor "
                                    "Data Exchange (no /exchange/data)")
            return _read_nx(f[entry], path, prep)
    except OSError as err:
        raise TomoFileError(f"{path}: cannot read as HDF5 ({err})") from None
    except KeyError as err:  # a broken link or a dataset that vanished under us
        raise TomoFileError(f"{path}: unreadable dataset ({err})") from None


def frame_shape(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(rows, cols) of the frames of an NXtomo or Data Exchange file, without reading them.

    Raises
    ------
    TomoFileError
        As :func:`read_tomo`.
    """
    try:
        with h5py.File(path, "r") as f:
            if "exchange/data" in f:
                shape = f["exchange/data"].shape
            else:
                entry = _find_entry(f)
                if entry is None:
                    raise TomoFileError(f"{path}: neither NXtomo (no NXentry with detector data) nor "
                                        "Data Exchange (no /exchange/data)")
                shape = f[entry][_first(f[entry], ("instrument/detector/data", "data/data"))].shape
    except OSError as err:
        raise TomoFileError(f"{path}: cannot read as HDF5 ({err})") from None
    if len(shape) != 3:
        raise TomoFileError(f"{path}: frames must be 3-D (n, rows, cols), got {shape}")
    return int(shape[1]), int(shape[2])


class _FramePrep:
    """Reads chosen frames of a dataset in chunks, removing zingers and binning as it goes."""

    def __init__(self, bin: int, zingers: bool) -> None:
        self.bin, self.zingers = bin, zingers

    @property
    def trivial(self) -> bool:
        """Nothing to do: frames are read as stored."""
        return self.bin == 1 and not self.zingers

    def read(self, dset: h5py.Dataset, index: np.ndarray | None = None, *, projections: bool = True) -> np.ndarray:
        """Frames ``dset[index]`` (all when None, increasing), prepared, as float32.

        Zingers are removed from projections only, as the reconstruction chain always did.
        """
        index = np.arange(dset.shape[0]) if index is None else np.asarray(index, dtype=np.int64)
        rows, cols = dset.shape[1] // self.bin, dset.shape[2] // self.bin
        if rows == 0 or cols == 0:
            raise ValueError(f"bin factor {self.bin} is larger than the frame {dset.shape[1:]}")
        out = np.empty((len(index), rows, cols), np.float32)
        for k in range(0, len(index), READ_FRAMES):
            chunk = index[k:k + READ_FRAMES]
            frames = dset[chunk[0]:chunk[-1] + 1] if _contiguous(chunk) else dset[chunk]
            if self.zingers and projections:
                frames = remove_zingers(frames)
            out[k:k + len(chunk)] = bin_frames(frames, self.bin)
        return out


def _contiguous(index: np.ndarray) -> bool:
    return len(index) > 0 and index[-1] - index[0] == len(index) - 1


def _find_entry(f: h5py.File) -> str | None:
    for name, item in f.items():
        if not isinstance(item, h5py.Group):
            continue
        if _first(item, ("instrument/detector/data", "data/data")) is not None:
            return name
    return None


def _first(group: h5py.Group, paths: tuple[str, ...]) -> str | None:
    for p in paths:
        try:
            if p in group and isinstance(group[p], h5py.Dataset):
                return p
        except KeyError:  # dangling soft link
            continue
    return None


def _units(dset: h5py.Dataset) -> str:
    u = dset.attrs.get("units", "")
    return (u.decode() if isinstance(u, bytes) else str(u)).strip().lower()


def angles_in_degrees(values: np.ndarray, units: str, where: str) -> np.ndarray:
    """Angles converted to degrees, from their ``units`` or, without units, their values.

    Without units a scan whose angles all lie within 2 pi and span more than 1 (a 6-degree
    tomogram does not exist) is taken as radians, with a warning naming ``where``.
    """
    a = np.asarray(values, dtype=np.float64).ravel()
    if units in _RAD_UNITS:
        return np.degrees(a)
    if units in _DEG_UNITS:
        return a
    if units:
        raise TomoFileError(f"{where}: unknown angle units {units!r} (expected degrees or radians)")
    if a.size > 1 and np.nanmax(np.abs(a)) <= 2 * np.pi + 1e-3 and np.ptp(a) > 1.0:
        warnings.warn(f"{where}: angles have no units and look like radians "
                      f"(0..{np.nanmax(a):.3f}); reading them as radians", UserWarning, stacklevel=4)
        return np.degrees(a)
    return a


def _read_nx(entry: h5py.Group, path: Any, prep: _FramePrep) -> TomoData:
    data_path = _first(entry, ("instrument/detector/data", "data/data"))
    key_path = _first(entry, ("instrument/detector/image_key", "data/image_key",
                              "instrument/detector/image_key_control", "data/image_key_control"))
    angle_path = _first(entry, ("sample/rotation_angle", "data/rotation_angle"))
    where = f"{path}:{entry.name}"
    frames = entry[data_path]
    if frames.ndim != 3:
        raise TomoFileError(f"{where}/{data_path}: frames must be 3-D (n, rows, cols), got {frames.shape}")
    n = frames.shape[0]
    if angle_path is None:
        raise TomoFileError(f"{where}: no rotation angles (sample/rotation_angle or data/rotation_angle)")
    angles = angles_in_degrees(entry[angle_path][()], _units(entry[angle_path]), f"{where}/{angle_path}")
    if key_path is None:
        warnings.warn(f"{where}: no image_key; every frame is taken as a projection (no flats, no darks)",
                      UserWarning, stacklevel=3)
        keys = np.zeros(n, np.int64)
    else:
        keys = np.asarray(entry[key_path][()], dtype=np.int64).ravel()
    if not (len(keys) == len(angles) == n):
        raise TomoFileError(f"{where}: {n} frames in {data_path} but {len(keys)} image keys and "
                            f"{len(angles)} rotation angles")
    keys = np.where(keys < 0, 3, keys)  # image_key_control -1 (alignment) -> invalid
    proj, flat, dark = keys == 0, keys == 1, keys == 2
    if not proj.any():
        raise TomoFileError(f"{where}: no projections (image_key 0) among {n} frames")
    if prep.trivial:
        stored = frames[()]
        parts = [stored[proj], stored[flat], stored[dark]]
    else:
        parts = [prep.read(frames, np.flatnonzero(kind), projections=kind is proj) for kind in (proj, flat, dark)]
    return TomoData(projections=parts[0], flats=parts[1], darks=parts[2], angles_deg=angles[proj],
                    metadata=_nx_metadata(entry), projection_index=np.flatnonzero(proj),
                    flat_index=np.flatnonzero(flat), binned=prep.bin, zingers_removed=prep.zingers)


def _length_um(dset: h5py.Dataset, default_unit: str) -> float | None:
    value = np.asarray(dset[()], dtype=np.float64).ravel()
    if value.size == 0 or not np.isfinite(value[0]) or value[0] <= 0:
        return None
    return float(value[0]) * _LENGTH_TO_UM.get(_units(dset) or default_unit, 1.0)


def _nx_metadata(entry: h5py.Group) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for k, v in entry.attrs.items():
        meta[k] = v.decode(errors="replace") if isinstance(v, bytes) else (v.item() if isinstance(v, np.generic) else v)
    pix = _first(entry, ("instrument/detector/x_pixel_size",))
    if pix and "voxel_size_um" not in meta and (um := _length_um(entry[pix], "m")):
        meta["pixel_size_um"] = um
    dist = _first(entry, ("instrument/detector/distance",))
    if dist and (um := _length_um(entry[dist], "m")):
        meta["distance_m"] = um * 1e-6
    energy = _first(entry, ("instrument/source/energy", "instrument/monochromator/energy",
                            "beam/incident_energy"))
    if energy:
        meta["energy_kev"] = float(np.asarray(entry[energy][()]).ravel()[0])
    axis = _first(entry, ("instrument/detector/x_rotation_axis_pixel_position",))
    if axis:
        meta["rotation_axis_px"] = float(np.asarray(entry[axis][()]).ravel()[0])
    return meta


def _read_dx(f: h5py.File, path: Any, prep: _FramePrep) -> TomoData:
    ex = f["exchange"]
    data = ex["data"]
    if data.ndim != 3:
        raise TomoFileError(f"{path}:/exchange/data must be 3-D (theta, y, x), got {data.shape}")
    proj = data[()] if prep.trivial else prep.read(data)
    refs = {}
    for name in ("data_white", "data_dark"):
        arr = ex[name][()] if name in ex else np.zeros((0, *data.shape[1:]), data.dtype)
        if arr.ndim == 2:
            arr.shape = (1, *arr.shape)
        if arr.size and arr.shape[1:] != data.shape[1:]:
            raise TomoFileError(f"{path}:/exchange/{name} frames {arr.shape[1:]} differ from the "
                                f"projections' {data.shape[1:]}")
        refs[name] = _prepared(arr, prep)
    flats, darks = refs["data_white"], refs["data_dark"]
    if "theta" in ex:
        theta = angles_in_degrees(ex["theta"][()], _units(ex["theta"]), f"{path}:/exchange/theta")
    else:
        warnings.warn(f"{path}: no /exchange/theta; assuming {len(proj)} angles evenly spaced over "
                      "0-180 degrees (the Data Exchange rule)", UserWarning, stacklevel=3)
        theta = np.linspace(0, 180, len(proj), endpoint=False)
    if len(theta) != len(proj):
        raise TomoFileError(f"{path}: {len(proj)} projections but {len(theta)} angles in /exchange/theta")
    meta: dict[str, Any] = {}
    if "measurement" in f:
        meta.update({k: (v.decode() if isinstance(v, bytes) else v) for k, v in f["measurement"].attrs.items()})
    pix = _first(f, ("measurement/instrument/detector/pixel_size_x",))
    if pix and (um := _length_um(f[pix], "um")):
        meta.setdefault("pixel_size_um", um)
    return TomoData(proj, flats.reshape(-1, *proj.shape[1:]), darks.reshape(-1, *proj.shape[1:]),
                    theta, meta, binned=prep.bin, zingers_removed=prep.zingers)


def _prepared(frames: np.ndarray, prep: _FramePrep) -> np.ndarray:
    """Flats or darks (already in memory: a few frames) binned like the projections."""
    if prep.trivial:
        return frames
    if not len(frames):
        return np.zeros((0, frames.shape[1] // prep.bin, frames.shape[2] // prep.bin), np.float32)
    return bin_frames(frames, prep.bin)
