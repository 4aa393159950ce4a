"""From raw frames to a volume: the preprocessing chain and the reconstruction, in order.

``flats/darks -> (zingers) -> binning -> normalisation (flats interpolated by frame number)
-> (Paganin) -> -log -> (rings) -> centre (auto or given) -> (360 half-acquisition stitch)
-> FBP (parallel) or FDK (cone)``. Pure array work; the CLI reads the file and writes the volume.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from analysis.center import find_center, sino_360_to_180
from analysis.fbp import check_filter, fbp_volume
from analysis.fdk import ConeBeam, fdk
from analysis.formats import TomoData
from analysis.phase import DEFAULT_DISTANCE_M, DEFAULT_ENERGY_KEV, paganin
from analysis.prep import bin_frames, minus_log, normalise, remove_zingers
from analysis.rings import remove_rings

#: Detector rows reconstructed per FBP call (progress granularity, bounded memory): as many as
#: fit :data:`BLOCK_BYTES` of slices, between 16 and 64 (64 rows take the depth kernel of
#: :mod:`analysis.backproject`, 1.8x faster for a 512-pixel volume here).
ROW_BLOCK_RANGE = (16, 64)
BLOCK_BYTES = 256 << 20


@dataclass(frozen=True)
class ReconOptions:
    """Choices of :func:`reconstruct`; ``center`` is "auto" or a detector position in unbinned pixels."""

    center: str | float = "auto"
    filter_name: str = "shepp-logan"
    bin: int = 1
    rings: bool = False
    ring_size: int = 21
    zingers: bool = False
    delta_beta: float | None = None
    energy_kev: float | None = None
    distance_m: float | None = None
    pixel_size_um: float | None = None
    cone: ConeBeam | None = None

    def __post_init__(self) -> None:
        check_filter(self.filter_name)
        if self.bin < 1:
            raise ValueError(f"--bin must be >= 1, got {self.bin}")
        if self.delta_beta is not None and not self.delta_beta > 0:
            raise ValueError(f"--paganin delta/beta must be > 0, got {self.delta_beta}")
        if self.center != "auto" and not np.isfinite(float(self.center)):
            raise ValueError(f"--center must be 'auto' or a number, got {self.center!r}")


@dataclass
class ReconResult:
    """A volume and how it was made."""

    volume: np.ndarray
    center_px: float  #: axis position in unbinned detector pixels
    voxel_size_um: float | None
    angles_deg: np.ndarray
    notes: list[str]


def _warn(notes: list[str], message: str) -> None:
    notes.append(message)
    warnings.warn(message, UserWarning, stacklevel=3)


def transmission(data: TomoData, opts: ReconOptions, notes: list[str], where: str = "") -> np.ndarray:
    """Flat/dark-corrected, binned projections; warned fallbacks for missing darks or flats."""
    proj, flats, darks = data.projections, data.flats, data.darks
    if opts.zingers and not data.zingers_removed:
        proj = remove_zingers(proj)
    if opts.bin % data.binned:
        raise ValueError(f"{where}frames were read binned {data.binned}x; cannot bin them {opts.bin}x in all")
    b = opts.bin // data.binned  # what reading has not done yet
    if len(darks) == 0:
        _warn(notes, f"{where}no dark frames: assuming zero dark current")
    if len(flats) == 0:
        if np.issubdtype(proj.dtype, np.floating) and np.nanmax(proj) <= 1.5:
            _warn(notes, f"{where}no flat fields, but the data look normalised (max "
                         f"{np.nanmax(proj):.3g}): using them as transmission")
            return bin_frames(proj, b)
        raise ValueError(f"{where}no flat fields (image_key 1 / data_white) to normalise raw counts; "
                         "a raw scan cannot be reconstructed without them")
    fpos = data.flat_index if data.flat_index is not None and len(data.flat_index) == len(flats) else None
    ppos = data.projection_index if fpos is not None else None
    return normalise(bin_frames(proj, b), bin_frames(flats, b),
                     bin_frames(darks, b) if len(darks) else None, positions=ppos, flat_positions=fpos)


def line_integrals(trans: np.ndarray, opts: ReconOptions, metadata: dict, notes: list[str]) -> np.ndarray:
    """Paganin (optional) and -log of transmission; ring removal (optional)."""
    if opts.delta_beta is not None:
        pixel_um = opts.pixel_size_um or metadata.get("voxel_size_um") or metadata.get("pixel_size_um")
        if pixel_um is None:
            raise ValueError("Paganin phase retrieval needs the pixel size: pass --pixel-size-um")
        energy = opts.energy_kev or metadata.get("energy_kev") or DEFAULT_ENERGY_KEV
        distance = opts.distance_m or metadata.get("distance_m") or DEFAULT_DISTANCE_M
        trans = paganin(trans, delta_beta=opts.delta_beta, pixel_size_m=pixel_um * opts.bin * 1e-6,
                        distance_m=distance, energy_kev=energy)
        notes.append(f"Paganin: delta/beta {opts.delta_beta:g}, {energy:g} keV, {distance:g} m, "
                     f"{pixel_um * opts.bin:g} um pixels")
    sino = minus_log(trans)
    return remove_rings(sino, opts.ring_size) if opts.rings else sino


def _center(sino: np.ndarray, angles: np.ndarray, opts: ReconOptions, notes: list[str]) -> float:
    """Axis position in binned pixels: given, or found on three rows and the median taken."""
    if opts.center != "auto":
        return float(opts.center) / opts.bin
    rows = sino.shape[1]
    found = [find_center(sino[:, r], angles) for r in (rows // 4, rows // 2, 3 * rows // 4)]
    notes.append(f"centre found automatically: {[round(c * opts.bin, 2) for c in found]} (unbinned px)")
    return float(np.median(found))


def reconstruct(data: TomoData, opts: ReconOptions = ReconOptions(), *,
                progress: Callable[[int, int], None] | None = None, where: str = "") -> ReconResult:
    """Reconstruct a tomogram.

    Parameters
    ----------
    data
        Projections, flats, darks and angles (degrees).
    opts
        Preprocessing and reconstruction choices.
    progress
        Called with (rows done, rows total) as the FBP advances.
    where
        Prefix for messages (the file name).

    Returns
    -------
    ReconResult
        float32 volume (rows, n, n) in attenuation per voxel (per binned voxel with ``bin``).
    """
    notes: list[str] = []
    angles = np.deg2rad(np.asarray(data.angles_deg, dtype=np.float64))
    if len(angles) != len(data.projections):
        raise ValueError(f"{where}{len(data.projections)} projections but {len(angles)} angles")
    sino = line_integrals(transmission(data, opts, notes, where), opts, data.metadata, notes)
    voxel = data.metadata.get("voxel_size_um") or data.metadata.get("pixel_size_um")
    voxel = None if voxel is None else float(voxel) * opts.bin
    if opts.cone is not None:
        n = sino.shape[2]
        vol = fdk(sino, angles, (sino.shape[1], n, n), opts.cone, filter_name=opts.filter_name)
        if progress:
            progress(sino.shape[1], sino.shape[1])
        return ReconResult(vol, sino.shape[2] // 2 * opts.bin, voxel, data.angles_deg, notes)
    center = _center(sino, angles, opts, notes)
    span = np.ptp(angles) + np.median(np.abs(np.diff(angles))) if len(angles) > 1 else 0.0
    n_det = sino.shape[2]
    if span > 1.9 * np.pi and abs(center - (n_det - 1) / 2) > n_det / 4:
        notes.append("360-degree half-acquisition: stitched into a 180-degree sinogram")
        rows = [sino_360_to_180(sino[:, r], center) for r in range(sino.shape[1])]
        sino = np.stack([r[0] for r in rows], axis=1)
        center, angles = rows[0][1], angles[: len(angles) // 2]
    vol = np.empty((sino.shape[1], sino.shape[2], sino.shape[2]), np.float32)
    block = int(np.clip(BLOCK_BYTES // (4 * sino.shape[2] ** 2), *ROW_BLOCK_RANGE))
    for r0 in range(0, sino.shape[1], block):
        r1 = min(sino.shape[1], r0 + block)
        vol[r0:r1] = fbp_volume(sino[:, r0:r1], angles, center=center, filter_name=opts.filter_name)
        if progress:
            progress(r1, sino.shape[1])
    return ReconResult(vol, center * opts.bin, voxel, data.angles_deg, notes)
