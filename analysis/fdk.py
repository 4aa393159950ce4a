"""Cone-beam FDK reconstruction (Feldkamp, Davis & Kress 1984) for a circular laboratory CT orbit.

Geometry (the one :func:`sim.projector.project_cone` uses; distances in mm): the source turns
about the z axis at ``SOD`` from it; at angle ``theta`` it sits at ``-SOD d`` with
``d = (sin theta, cos theta)`` in (x, y); the flat detector is at ``SDD`` from the source, its
columns ``u`` along ``(cos theta, -sin theta)`` and rows ``v`` along +z, the axis hitting pixel
``(nv // 2, nu // 2)``. The volume's axis passes through voxel ``(nz // 2, ny // 2, nx // 2)``.
Defaults are those of 000: SOD 58 mm, SDD 500 mm, 5.76 um voxels.

Algorithm: weight each projection by the cosine of the ray's angle to the central ray, ramp-filter
the rows (in pixels scaled to the axis, ``detector_pixel * SOD / SDD``), and back-project along
the cone with the distance weight ``(SOD / U)^2``, ``U`` the voxel's depth from the source; the
sum is scaled by ``pi / n`` for a full 360-degree orbit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from analysis.fbp import filter_projections


@dataclass(frozen=True)
class ConeBeam:
    """Circular cone-beam geometry, mm; the defaults are 000's lab micro-CT."""

    source_object_mm: float = 58.0
    source_detector_mm: float = 500.0
    detector_pixel_mm: float = 0.00576 * 500.0 / 58.0
    voxel_size_mm: float = 0.00576

    def __post_init__(self) -> None:
        if not 0 < self.source_object_mm < self.source_detector_mm:
            raise ValueError("cone beam needs 0 < source-object < source-detector distance, got "
                             f"{self.source_object_mm} mm and {self.source_detector_mm} mm")
        if not (self.detector_pixel_mm > 0 and self.voxel_size_mm > 0):
            raise ValueError("detector pixel and voxel sizes must be > 0 mm")

    @property
    def magnification(self) -> float:
        """SDD / SOD."""
        return self.source_detector_mm / self.source_object_mm


@njit(cache=True, parallel=True, fastmath=True)
def _fdk_kernel(q, cos_a, sin_a, sod, sdd, pix, out):
    # q: (na, nu, nv) filtered, weighted projections (v contiguous); out: (ny, nx, nz);
    # lengths in voxel units.
    na, nu, nv = q.shape
    ny, nx, nz = out.shape
    cy, cx, cz = ny // 2, nx // 2, nz // 2
    cu, cv = nu // 2, nv // 2
    for y in prange(ny):
        for a in range(na):
            s, c = sin_a[a], cos_a[a]
            for x in range(nx):
                depth = sod + (x - cx) * s + (y - cy) * c
                mag = sdd / depth
                fu = mag * ((x - cx) * c - (y - cy) * s) / pix + cu
                iu = math.floor(fu)
                if iu < 0 or iu + 1 >= nu:
                    continue
                wu = fu - iu
                w = (sod / depth) ** 2
                dv = mag / pix
                for z in range(nz):
                    fv = (z - cz) * dv + cv
                    iv = math.floor(fv)
                    if iv < 0 or iv + 1 >= nv:
                        continue
                    wv = fv - iv
                    top = q[a, iu, iv] * (1 - wu) + q[a, iu + 1, iv] * wu
                    bot = q[a, iu, iv + 1] * (1 - wu) + q[a, iu + 1, iv + 1] * wu
                    out[y, x, z] += w * (top * (1 - wv) + bot * wv)


def fdk(projections: np.ndarray, angles_rad: np.ndarray, shape: tuple[int, int, int],
        geometry: ConeBeam = ConeBeam(), *, filter_name: str = "ram-lak") -> np.ndarray:
    """Reconstruct a volume from cone-beam projections over a full circle.

    Parameters
    ----------
    projections
        (n_angles, nv, nu) line integrals in voxel units (-ln transmission).
    angles_rad
        Source angles, radians, evenly spread over 360 degrees.
    shape
        (nz, ny, nx) of the volume, voxels of ``geometry.voxel_size_mm``.
    geometry
        Distances and pixel sizes.
    filter_name
        Ramp filter window, as :func:`analysis.fbp.filter_projections`.

    Returns
    -------
    numpy.ndarray
        float32 (nz, ny, nx) attenuation per voxel.
    """
    p = np.asarray(projections, dtype=np.float32)
    angles = np.asarray(angles_rad, dtype=np.float64)
    if p.ndim != 3:
        raise ValueError(f"cone-beam projections must be (n_angles, rows, cols), got {p.shape}")
    if len(angles) != len(p):
        raise ValueError(f"{len(angles)} angles for {len(p)} projections")
    nz, ny, nx = (int(v) for v in shape)
    g = geometry
    sod, sdd = g.source_object_mm / g.voxel_size_mm, g.source_detector_mm / g.voxel_size_mm
    pix = g.detector_pixel_mm / g.voxel_size_mm
    if sod <= 0.5 * math.hypot(ny, nx):
        raise ValueError(f"source at {g.source_object_mm} mm lies inside the {shape} volume")
    nv, nu = p.shape[1:]
    iso = pix * sod / sdd  # detector pixel at the axis, voxels
    u = (np.arange(nu) - nu // 2) * iso
    v = (np.arange(nv) - nv // 2) * iso
    cosine = sod / np.sqrt(sod**2 + u[None, :] ** 2 + v[:, None] ** 2)
    q = filter_projections(p * cosine.astype(np.float32), filter_name, pad_mode="edge") / iso
    out = np.zeros((ny, nx, nz), np.float32)
    _fdk_kernel(np.ascontiguousarray(q.transpose(0, 2, 1)), np.cos(angles), np.sin(angles),
                sod, sdd, pix, out)
    out *= np.float32(np.pi / len(angles))
    return np.ascontiguousarray(out.transpose(2, 0, 1))
