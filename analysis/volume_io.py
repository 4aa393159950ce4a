"""Reconstructed volumes on disk: HDF5 (``/volume``, float32, with attributes) and TIFF stacks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

VOLUME_PATH = "/volume"


def write_volume_h5(path: str | os.PathLike[str], volume: np.ndarray, attrs: dict[str, Any]) -> Path:
    """Write ``volume`` (nz, ny, nx) as float32 dataset ``/volume`` with ``attrs`` on it.

    Attributes that HDF5 cannot store (None, nested objects) are skipped; ``voxel_size_um`` and
    ``center_px`` are what readers rely on.
    """
    out = Path(path)
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 3:
        raise ValueError(f"volume must be 3-D (nz, ny, nx), got shape {vol.shape}")
    with h5py.File(out, "w") as f:
        dset = f.create_dataset(VOLUME_PATH, data=vol, chunks=(1, *vol.shape[1:]))
        for key, value in attrs.items():
            if isinstance(value, (str, int, float, bool, np.number)):
                dset.attrs[key] = value
            elif isinstance(value, (tuple, list)) and all(isinstance(v, (int, float)) for v in value):
                dset.attrs[key] = np.asarray(value, dtype=np.float64)
    return out


def read_volume_h5(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """The ``/volume`` dataset of a file written by :func:`write_volume_h5`, and its attributes."""
    with h5py.File(path, "r") as f:
        dset = _volume(f, path)
        return dset[()], _attrs(dset)


def volume_attrs(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The attributes of ``/volume`` (voxel size, centre ...) without reading the volume."""
    with h5py.File(path, "r") as f:
        return _attrs(_volume(f, path))


def _volume(f: h5py.File, path: Any) -> h5py.Dataset:
    if VOLUME_PATH not in f:
        raise ValueError(f"{path}: no {VOLUME_PATH} dataset")
    return f[VOLUME_PATH]


def _attrs(dset: h5py.Dataset) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in dset.attrs.items()}


def write_tiff_stack(directory: str | os.PathLike[str], volume: np.ndarray, *,
                     stem: str = "slice") -> list[Path]:
    """One float32 TIFF per axial slice, ``stem_00000.tif`` ... (needs ``tifffile``).

    Raises
    ------
    ValueError
        If tifffile is not installed (``pip install tomocycle[tiff]``).
    """
    try:
        import tifffile
    except ImportError:
        raise ValueError("writing a TIFF stack needs tifffile: pip install 'tomocycle[tiff]'") from None
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    vol = np.asarray(volume, dtype=np.float32)
    paths = []
    for z in range(vol.shape[0]):
        p = d / f"{stem}_{z:05d}.tif"
        tifffile.imwrite(p, vol[z])
        paths.append(p)
    return paths
