"""Read reconstructed volumes from any source: HDF5 ``/volume``, TIFF stacks, NumPy files.

The reconstruction writes HDF5 files with a float32 dataset ``/volume`` (z, y, x) and attributes
for the voxel size; other tools write multi-page TIFFs or folders of one TIFF per slice. Every
reader returns ``(volume, voxel_size_um or None)`` and turns unreadable input into a
:class:`VolumeReadError` (a ``ValueError``) whose one-line message names the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["VolumeReadError", "read_volume"]

#: Attribute names that may carry the voxel size, with their unit factor to µm.
_VOXEL_ATTRS = (("voxel_size_um", 1.0), ("voxel_size", 1.0), ("pixel_size_um", 1.0),
                ("voxel_size_mm", 1000.0), ("voxel_size_nm", 1e-3))
_TIFF_SUFFIXES = (".tif", ".tiff")


class VolumeReadError(ValueError):
    """A volume file cannot be read; the message names it."""


def _voxel_from_attrs(attrs) -> float | None:
    for name, factor in _VOXEL_ATTRS:
        if name in attrs:
            value = np.asarray(attrs[name], dtype=float).ravel()
            if value.size and np.all(value > 0):
                return float(value[0]) * factor
    return None


def _read_hdf5(path: Path, dataset: str) -> tuple[np.ndarray, float | None]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if dataset not in f:
                raise VolumeReadError(f"{path}: no dataset {dataset!r} (found: "
                                      f"{', '.join(sorted(f.keys())) or 'nothing'})")
            ds = f[dataset]
            voxel = _voxel_from_attrs(ds.attrs) or _voxel_from_attrs(f.attrs)
            return np.asarray(ds[()], dtype=np.float32), voxel
    except OSError as err:
        raise VolumeReadError(f"{path}: not a readable HDF5 file ({err})") from None


def _read_tiff(paths: list[Path]) -> tuple[np.ndarray, float | None]:
    import tifffile

    try:
        if len(paths) == 1:
            vol = tifffile.imread(paths[0])
        else:
            vol = np.stack([tifffile.imread(p) for p in paths])
    except (OSError, ValueError, tifffile.TiffFileError) as err:
        raise VolumeReadError(f"{paths[0]}: not a readable TIFF ({err})") from None
    return np.asarray(vol, dtype=np.float32), None


def read_volume(path: str | os.PathLike, *, dataset: str = "/volume") -> tuple[np.ndarray, float | None]:
    """Read one reconstructed volume.

    Parameters
    ----------
    path
        An HDF5 file (``.h5``, ``.hdf5``, ``.nxs``) with ``dataset``; a multi-page TIFF; a folder
        of single-slice TIFFs (sorted by name, one per z); or a ``.npy`` file.
    dataset
        HDF5 dataset path.

    Returns
    -------
    volume : numpy.ndarray
        float32 (nz, ny, nx).
    voxel_size_um : float or None
        From the dataset's or file's attributes (``voxel_size_um``, ``voxel_size``,
        ``voxel_size_mm``, ...), None when the file does not say.

    Raises
    ------
    VolumeReadError
        Missing or unreadable file, unknown format, or not a 3-D volume.
    """
    p = Path(path)
    if not p.exists():
        raise VolumeReadError(f"{p}: no such file or folder")
    if p.is_dir():
        slices = sorted(q for q in p.iterdir() if q.suffix.lower() in _TIFF_SUFFIXES)
        if not slices:
            raise VolumeReadError(f"{p}: folder holds no .tif/.tiff slices")
        vol, voxel = _read_tiff(slices)
    elif p.suffix.lower() in _TIFF_SUFFIXES:
        vol, voxel = _read_tiff([p])
    elif p.suffix.lower() == ".npy":
        try:
            vol, voxel = np.load(p, allow_pickle=False).astype(np.float32), None
        except (OSError, ValueError) as err:
            raise VolumeReadError(f"{p}: not a readable .npy file ({err})") from None
    elif p.suffix.lower() in (".h5", ".hdf5", ".hdf", ".nxs"):
        vol, voxel = _read_hdf5(p, dataset)
    else:
        raise VolumeReadError(f"{p}: unknown volume format {p.suffix!r} (use HDF5 with "
                              f"{dataset}, TIFF, a folder of TIFF slices or .npy)")
    if vol.ndim != 3 or min(vol.shape) < 2:
        raise VolumeReadError(f"{p}: expected a 3-D volume, got shape {vol.shape}")
    if not np.all(np.isfinite(vol)):
        raise VolumeReadError(f"{p}: volume holds NaN or infinite values")
    return vol, voxel
