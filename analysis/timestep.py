"""One timestep of an operando series: frame file -> volume -> slices; class fractions of a series.

Pure functions (file in, arrays out) so the live consumer, ``tomocycle analyze`` and Dask workers
run exactly the same code: a timestep reconstructed on a worker is bit-for-bit the one the
single-process path makes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np

from analysis.readers import frame_shape, read_tomo
from analysis.reconstruction import ReconOptions, reconstruct

__all__ = ["CLASS_NAMES", "TimestepVolume", "class_fractions", "orthogonal_slices", "reconstruct_file"]

#: Particle classes reported per timestep (analysis.classify's names).
CLASS_NAMES = ("active", "deactivated", "inactive", "lithiated", "unresolved")


@dataclass
class TimestepVolume:
    """A reconstructed timestep and how it was made."""

    volume: np.ndarray
    voxel_size_um: float | None
    center_px: float
    notes: list[str]


def reconstruct_file(path: str | os.PathLike[str], opts: ReconOptions = ReconOptions(), *,
                     max_side: int | None = None) -> TimestepVolume:
    """Read an NXtomo/DXfile scan and reconstruct it.

    Parameters
    ----------
    path
        The scan's frame file (NXtomo as the detector writes it).
    opts
        Reconstruction options (the automatic centre by default).
    max_side
        When ``opts`` does not bin, bin by the smallest factor that makes the slices at most
        this wide (a 2048-pixel detector and 512: 4x). None: as ``opts`` says.

    Returns
    -------
    TimestepVolume
        float32 volume (rows, n, n).
    """
    if max_side and opts.bin == 1:
        cols = frame_shape(path)[1]
        if cols > max_side:
            opts = replace(opts, bin=-(-cols // int(max_side)))
    data = read_tomo(path, bin=opts.bin, zingers=opts.zingers)
    res = reconstruct(data, opts, where=f"{path}: ")
    return TimestepVolume(res.volume, res.voxel_size_um, res.center_px, list(res.notes))


def orthogonal_slices(volume: np.ndarray) -> dict[str, np.ndarray]:
    """The three central orthogonal slices of a (nz, ny, nx) volume: ``xy``, ``xz``, ``yz``."""
    v = np.asarray(volume)
    if v.ndim != 3:
        raise ValueError(f"volume must be 3-D, got shape {v.shape}")
    nz, ny, nx = v.shape
    return {"xy": np.array(v[nz // 2]), "xz": np.array(v[:, ny // 2, :]), "yz": np.array(v[:, :, nx // 2])}


def class_fractions(classes: np.ndarray) -> dict[str, float]:
    """Fraction of particles in each class of :data:`CLASS_NAMES` (0 for an empty series)."""
    c = np.asarray(classes)
    n = c.size
    return {name: (float(np.count_nonzero(c == name)) / n if n else 0.0) for name in CLASS_NAMES}
