"""Local digital volume correlation (DVC) between T0 and a later timestep: strain maps.

Method (002: regular grid, windows overlapping by 50 %). `spam` installs here as a wheel, but
its local DVC drags in a mesh stack (gmsh, meshio) and a process pool of its own; this module
keeps to numpy + numba so that it runs unchanged on a Dask worker and within two cores.

1. Prior: the rigid registration (collector) and the axial displacement ``u(h) = a h + b h^2/2``
   that particle tracking fitted (:mod:`analysis.track`). The later volume is warped back onto
   T0's frame with that prior, so that a window stretched by 40-55 % (002's separator side)
   becomes a nearly rigid residual that block matching can find.
2. Block matching: for each node of a regular grid in the electrode (window ``w`` voxels, step
   ``w / 2``), the integer offset within ``+-search`` voxels that maximises the zero-normalised
   cross-correlation, refined to sub-voxel by a parabola through the peak on each axis.
3. Displacement = prior + residual; strains are finite differences of the displacement on the
   grid: axial ``du_z/dz`` and volumetric ``det(I + grad u) - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange
from scipy import ndimage as ndi

__all__ = ["StrainField", "block_match", "local_strain"]


@dataclass
class StrainField:
    """Strain on a DVC grid (node heights measured in T0's frame).

    ``nodes`` (nz, ny, nx, 3) positions in T0 voxels; ``displacement`` the same shape, voxels;
    ``axial`` and ``volumetric`` (nz, ny, nx) strains; ``valid`` nodes inside the sample with a
    correlation peak; ``height`` (nz,) node height above the collector, voxels.
    """

    nodes: np.ndarray
    displacement: np.ndarray
    axial: np.ndarray
    volumetric: np.ndarray
    correlation: np.ndarray
    valid: np.ndarray
    height: np.ndarray


@njit(cache=True, inline="always")
def _zncc(a: np.ndarray, da: float, b: np.ndarray) -> float:
    """ZNCC of a zero-mean window ``a`` (sum of squares ``da``) with window ``b``."""
    mb = b.mean()
    num, db = 0.0, 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            for k in range(a.shape[2]):
                y = b[i, j, k] - mb
                num += a[i, j, k] * y
                db += y * y
    if da <= 0.0 or db <= 0.0:
        return -1.0
    return num / np.sqrt(da * db)


@njit(cache=True, inline="always")
def _parabola(cm: float, c0: float, cp: float) -> float:
    den = cm - 2.0 * c0 + cp
    if den >= 0.0:
        return 0.0
    return min(0.5, max(-0.5, 0.5 * (cm - cp) / den))


@njit(cache=True, parallel=True)
def block_match(ref: np.ndarray, cur: np.ndarray, nodes: np.ndarray, half: int,
                search: int) -> tuple[np.ndarray, np.ndarray]:
    """Sub-voxel displacement of ``cur`` relative to ``ref`` at integer ``nodes`` (n, 3).

    Returns (n, 3) displacements (NaN where the window leaves the volume) and the peak ZNCC.
    """
    n = nodes.shape[0]
    disp = np.full((n, 3), np.nan)
    peak = np.full(n, -1.0)
    nz, ny, nx = ref.shape
    m = 2 * search + 1
    for p in prange(n):
        z, y, x = nodes[p, 0], nodes[p, 1], nodes[p, 2]
        if (z - half - search - 1 < 0 or y - half - search - 1 < 0 or x - half - search - 1 < 0
                or z + half + search + 1 >= nz or y + half + search + 1 >= ny
                or x + half + search + 1 >= nx):
            continue
        a = ref[z - half:z + half, y - half:y + half, x - half:x + half]
        a = a - a.mean()
        da = (a * a).sum()
        cc = np.full((m + 2, m + 2, m + 2), -1.0)
        for i in range(-search - 1, search + 2):
            for j in range(-search - 1, search + 2):
                for k in range(-search - 1, search + 2):
                    b = cur[z + i - half:z + i + half, y + j - half:y + j + half,
                            x + k - half:x + k + half]
                    cc[i + search + 1, j + search + 1, k + search + 1] = _zncc(a, da, b)
        inner = cc[1:-1, 1:-1, 1:-1]
        best = np.argmax(inner)
        bi, bj, bk = best // (m * m) + 1, (best // m) % m + 1, best % m + 1
        peak[p] = cc[bi, bj, bk]
        disp[p, 0] = bi - search - 1 + _parabola(cc[bi - 1, bj, bk], cc[bi, bj, bk], cc[bi + 1, bj, bk])
        disp[p, 1] = bj - search - 1 + _parabola(cc[bi, bj - 1, bk], cc[bi, bj, bk], cc[bi, bj + 1, bk])
        disp[p, 2] = bk - search - 1 + _parabola(cc[bi, bj, bk - 1], cc[bi, bj, bk], cc[bi, bj, bk + 1])
    return disp, peak


def _prior_z(z: np.ndarray, top0: float, top: float, coeffs: tuple[float, float]) -> np.ndarray:
    """Height in the later volume of T0 height ``z`` (rigid collector + axial model)."""
    h = np.clip(z - top0, 0.0, None)
    return np.where(z > top0, top + h + coeffs[0] * h + 0.5 * coeffs[1] * h * h, z + top - top0)


def local_strain(ref: np.ndarray, cur: np.ndarray, columns: np.ndarray, collector_top: float,
                 electrode_top: float, shift: np.ndarray, coeffs: tuple[float, float], *,
                 window: int = 16, search: int = 2, min_correlation: float = 0.3) -> StrainField:
    """Local DVC of ``cur`` against ``ref`` on a regular grid with 50 % window overlap.

    Parameters
    ----------
    ref, cur
        T0 and later volumes (oriented, collector at low z), same shape.
    columns
        T0 sample footprint (ny, nx); windows lie inside it.
    collector_top, electrode_top
        T0 layer heights (voxels): nodes span the electrode between them.
    shift
        Rigid (z, y, x) registration shift of ``cur`` (:func:`analysis.track.registration_shift`).
    coeffs
        Axial displacement model ``(a, b)`` of ``cur`` (:class:`analysis.track.Track`).
    window
        Window edge, voxels (even). 002 uses 35 voxels at 50 nm; 16 keeps about 4 windows
        across a 35-voxel micro-CT electrode.
    search
        Residual search radius after the prior, voxels.
    min_correlation
        Nodes whose ZNCC peak is lower are invalid.

    Returns
    -------
    StrainField
    """
    half = window // 2
    top_cur = collector_top + shift[0]
    zz = np.arange(ref.shape[0], dtype=np.float64)
    zmap = _prior_z(zz, collector_top, top_cur, coeffs)
    yy, xx = np.arange(ref.shape[1]) + shift[1], np.arange(ref.shape[2]) + shift[2]
    coords = np.meshgrid(zmap, yy, xx, indexing="ij")
    warped = ndi.map_coordinates(cur, coords, order=1, mode="nearest").astype(np.float32)
    gz = np.arange(int(np.ceil(collector_top)) + half, int(electrode_top) - half + 1, half)
    inside = ndi.binary_erosion(columns, iterations=half + search + 1)
    gy = np.arange(half, ref.shape[1] - half, half)
    gx = np.arange(half, ref.shape[2] - half, half)
    nodes = np.stack(np.meshgrid(gz, gy, gx, indexing="ij"), -1)
    flat = nodes.reshape(-1, 3).astype(np.int64)
    inside = inside[flat[:, 1], flat[:, 2]]
    res = np.full(flat.shape, np.nan)
    peak = np.full(len(flat), -1.0)
    res[inside], peak[inside] = block_match(np.ascontiguousarray(ref, np.float32), warped,
                                            flat[inside], half, search)
    ok = inside & (peak >= min_correlation) & np.isfinite(res[:, 0])
    res[~ok] = np.nan
    tgt_z = _prior_z(flat[:, 0] + res[:, 0], collector_top, top_cur, coeffs)
    disp = np.stack([tgt_z - flat[:, 0], res[:, 1] + shift[1], res[:, 2] + shift[2]], 1)
    disp = disp.reshape(nodes.shape)
    grads = [np.gradient(disp[..., c], half, half, half) if min(nodes.shape[:3]) > 1 else
             [np.full(nodes.shape[:3], np.nan)] * 3 for c in range(3)]
    jac = np.stack([np.stack(g, -1) for g in grads], -2) + np.eye(3)
    volumetric = np.linalg.det(np.nan_to_num(jac)) - 1.0
    volumetric[~np.all(np.isfinite(jac), axis=(-2, -1))] = np.nan
    return StrainField(nodes=nodes, displacement=disp, axial=jac[..., 0, 0] - 1.0,
                       volumetric=volumetric,
                       correlation=peak.reshape(nodes.shape[:3]), valid=ok.reshape(nodes.shape[:3]),
                       height=gz - collector_top)
