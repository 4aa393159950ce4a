"""Local digital volume correlation (DVC) between T0 and a later timestep: strain maps.

Method (002: regular grid, windows overlapping by 50 %). `spam` installs here as a wheel, but
its local DVC drags in a mesh stack (gmsh, meshio) and a process pool of its own; this module
keeps to numpy + numba so that it runs unchanged on a Dask worker and within two cores.

1. Prior: the rigid registration (collector) and an axial displacement ``u(h) = a h + b h^2/2``
   (the pipeline passes the uniform stretch of the measured thicknesses, ``b = 0``). The later
   volume is warped back onto T0's frame with that prior, so that a window stretched by
   40-55 % (002's separator side) becomes a nearly rigid residual that block matching can find.
2. Block matching: for each node of a regular grid in the electrode (window ``w`` voxels, step
   ``w / 2``), the integer offset within ``+-search`` voxels that maximises the zero-normalised
   cross-correlation (over the window's voxels not in ``exclude``: the pipeline leaves out the
   particles that lithiated), refined to sub-voxel by a parabola through the peak on each axis;
   optionally coarse-to-fine on 2x-binned volumes for a wide search.
3. Displacement = prior + residual; strains are finite differences of the displacement on the
   grid: axial ``du_z/dz`` and volumetric ``det(I + grad u) - 1``.

The mean axial strain of each half-electrode is better taken from displacement differences
(:func:`analysis.electrode.half_strains`) than from the mean of the grid's finite differences:
a micro-CT electrode is one particle thick, so its top node layer follows the tops of swelling
particles and its one-sided difference is biased.
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
def _zncc(a: np.ndarray, w: np.ndarray, da: float, nw: float, b: np.ndarray) -> float:
    """ZNCC over the voxels ``w`` of a window ``a`` (zero-mean on ``w``, sum of squares ``da``).

    One pass: because ``a`` sums to zero on ``w``, the numerator needs no mean of ``b``.
    """
    num, sb, sbb = 0.0, 0.0, 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            for k in range(a.shape[2]):
                if w[i, j, k]:
                    y = np.float64(b[i, j, k])
                    num += a[i, j, k] * y
                    sb += y
                    sbb += y * y
    db = sbb - sb * sb / nw
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
def block_match(ref: np.ndarray, cur: np.ndarray, nodes: np.ndarray, half: int, search: int,
                weight: np.ndarray, init: np.ndarray,
                min_fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Sub-voxel displacement of ``cur`` relative to ``ref`` at integer ``nodes`` (n, 3).

    The ZNCC of each window is taken over the voxels where ``weight`` (bool, ``ref``'s shape)
    is set; a window with less than ``min_fraction`` of them is not matched. The search spans
    ``init[p] +- search`` voxels (``init`` (n, 3) integer offsets, e.g. from a coarser pass).

    Returns (n, 3) displacements (NaN where a window leaves the volume or is not matched) and
    the peak ZNCC (-1 there).
    """
    n = nodes.shape[0]
    disp = np.full((n, 3), np.nan)
    peak = np.full(n, -1.0)
    nz, ny, nx = ref.shape
    m = 2 * search + 1
    for p in prange(n):
        z, y, x = nodes[p, 0], nodes[p, 1], nodes[p, 2]
        oz, oy, ox = init[p, 0], init[p, 1], init[p, 2]
        r = search + 1
        if (z - half < 0 or y - half < 0 or x - half < 0 or z + half > nz or y + half > ny
                or x + half > nx or z + oz - half - r < 0 or y + oy - half - r < 0
                or x + ox - half - r < 0 or z + oz + half + r > nz
                or y + oy + half + r > ny or x + ox + half + r > nx):
            continue
        w = weight[z - half:z + half, y - half:y + half, x - half:x + half]
        nw = np.float64(w.sum())
        if nw < min_fraction * (2 * half) ** 3:
            continue
        a = ref[z - half:z + half, y - half:y + half, x - half:x + half].astype(np.float64)
        ma = 0.0
        for v in a.ravel()[w.ravel()]:
            ma += v
        ma /= nw
        a = np.where(w, a - ma, 0.0)
        da = (a * a).sum()
        cc = np.full((m + 2, m + 2, m + 2), -1.0)
        for i in range(-r, r + 1):
            for j in range(-r, r + 1):
                for k in range(-r, r + 1):
                    zi, yj, xk = z + oz + i, y + oy + j, x + ox + k
                    b = cur[zi - half:zi + half, yj - half:yj + half, xk - half:xk + half]
                    cc[i + r, j + r, k + r] = _zncc(a, w, da, nw, b)
        inner = cc[1:-1, 1:-1, 1:-1]
        best = np.argmax(inner)
        bi, bj, bk = best // (m * m) + 1, (best // m) % m + 1, best % m + 1
        peak[p] = cc[bi, bj, bk]
        disp[p, 0] = oz + bi - r + _parabola(cc[bi - 1, bj, bk], cc[bi, bj, bk], cc[bi + 1, bj, bk])
        disp[p, 1] = oy + bj - r + _parabola(cc[bi, bj - 1, bk], cc[bi, bj, bk], cc[bi, bj + 1, bk])
        disp[p, 2] = ox + bk - r + _parabola(cc[bi, bj, bk - 1], cc[bi, bj, bk], cc[bi, bj, bk + 1])
    return disp, peak


def _prior_z(z: np.ndarray, top0: float, top: float, coeffs: tuple[float, float]) -> np.ndarray:
    """Height in the later volume of T0 height ``z`` (rigid collector + axial model)."""
    h = np.clip(z - top0, 0.0, None)
    return np.where(z > top0, top + h + coeffs[0] * h + 0.5 * coeffs[1] * h * h, z + top - top0)


def _warp(cur: np.ndarray, zmap: np.ndarray, shift_yx: np.ndarray) -> np.ndarray:
    """``cur`` sampled at (zmap[z], y + sy, x + sx): trilinear, edges repeated, float32.

    The prior depends on z alone, so the trilinear warp is done as a bilinear in-plane shift
    followed by a linear interpolation along z: the same result as ``map_coordinates`` on a
    full coordinate grid, without three float64 grids of the volume's size (3.2 GB at 512^3).
    """
    moved = ndi.shift(cur, (0.0, -shift_yx[0], -shift_yx[1]), order=1, mode="nearest",
                      output=np.float32)
    zc = np.clip(zmap, 0.0, cur.shape[0] - 1.0)
    z0 = np.minimum(np.floor(zc).astype(np.int64), cur.shape[0] - 2)
    f = (zc - z0).astype(np.float32)[:, None, None]
    out = moved[z0] * (1.0 - f)
    out += moved[z0 + 1] * f
    return out


def _bin(a: np.ndarray, f: int) -> np.ndarray:
    """Mean over f x f x f blocks (trailing planes that do not fill a block dropped), float32."""
    nz, ny, nx = (n // f * f for n in a.shape)
    b = a[:nz, :ny, :nx].astype(np.float32)
    return b.reshape(nz // f, f, ny // f, f, nx // f, f).mean(axis=(1, 3, 5))


def _match(ref: np.ndarray, warped: np.ndarray, nodes: np.ndarray, half: int, search: int,
           weight: np.ndarray, coarse: bool) -> tuple[np.ndarray, np.ndarray]:
    """Block matching, optionally coarse-to-fine (see :func:`local_strain`)."""
    init = np.zeros(nodes.shape, np.int64)
    if coarse and half >= 4 and search > 1:
        wc = _bin(weight, 2) >= 0.5
        dc, pc = block_match(_bin(ref, 2), _bin(warped, 2), nodes // 2, half // 2,
                             (search + 1) // 2, wc, init)
        good = np.isfinite(dc[:, 0])
        init[good] = np.rint(2.0 * dc[good]).astype(np.int64)
        search = 1
    return block_match(ref, warped, nodes, half, search, weight, init)


def local_strain(ref: np.ndarray, cur: np.ndarray, columns: np.ndarray, collector_top: float,
                 electrode_top: float, shift: np.ndarray, coeffs: tuple[float, float], *,
                 window: int = 16, search: int = 2, min_correlation: float = 0.3,
                 exclude: np.ndarray | None = None, coarse: bool = False,
                 bin: int = 1) -> StrainField:
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
        Axial displacement prior ``u(h) = a h + b h^2 / 2`` of ``cur``: the uniform stretch
        ``(t_k / t_0 - 1, 0)`` of the measured thicknesses is what
        :func:`analysis.particle_series.analyze_volumes` passes (particle centroids are a poor
        prior where particles are as thick as the electrode and are pushed off the collector
        as they swell).
    window
        Window edge, voxels (even). 002 uses 35 voxels at 50 nm; 16 keeps about 4 windows
        across a 35-voxel micro-CT electrode.
    search
        Residual search radius after the prior, voxels. A uniform-stretch prior misses a
        34 -> 55 % strain gradient (002) by at most ``(0.55 - 0.34) t / 8``: 1 voxel over a
        35-voxel micro-CT electrode, 2-3 over a 120-voxel nano-CT one at full lithiation.
    min_correlation
        Nodes whose ZNCC peak is lower are invalid.
    exclude
        Optional bool volume (T0 frame) of voxels left out of every window's correlation,
        e.g. T0's particles: lithiating Si changes grey and swells, so it is not a texture
        that moves with the electrode, and a window that holds a particle follows the
        particle rather than the matrix. Windows with less than a quarter of their voxels
        left are not matched.
    coarse
        Search on 2x2x2-binned volumes first (``+-(search + 1) // 2`` binned voxels, i.e. about
        ``+-search`` voxels, at an eighth of the cost per offset), then refine by +-1 voxel at
        full resolution about that: a wide search (+-6) for less than the cost of +-2. Off by
        default: with the stretch prior and particles excluded, +-2 was as accurate on the
        benchmark series (docs/particles.md).
    bin
        Correlate ``bin``-times binned volumes (block means; ``columns`` and ``exclude`` kept
        where at least half a block is set), with ``window`` and ``search`` in binned voxels.
        The returned field is in full-resolution voxels (nodes at block centres, heights and
        displacements scaled back). The cost is ``~ volume x (2 search + 3)^3`` whatever the
        window, so a 50 nm nano-CT volume (a 414-voxel electrode) costs 64x less at ``bin=4``
        and its strain field, smooth over micrometres, keeps 3.2 um windows (002: 1.75 um).

    Returns
    -------
    StrainField
    """
    if bin > 1:
        sf = local_strain(_bin(ref, bin), _bin(cur, bin), _bin(np.repeat(columns[None], bin, 0), bin)[0] >= 0.5,
                          collector_top / bin, electrode_top / bin, np.asarray(shift) / bin,
                          (coeffs[0], coeffs[1] * bin), window=window, search=search,
                          min_correlation=min_correlation, coarse=coarse,
                          exclude=None if exclude is None else _bin(exclude, bin) >= 0.5)
        sf.nodes = sf.nodes * bin + bin // 2
        sf.displacement = sf.displacement * bin
        sf.height = sf.height * bin
        return sf
    half = window // 2
    top_cur = collector_top + shift[0]
    zz = np.arange(ref.shape[0], dtype=np.float64)
    warped = _warp(np.asarray(cur, np.float32), _prior_z(zz, collector_top, top_cur, coeffs),
                   np.asarray(shift[1:], float))
    gz = np.arange(int(np.ceil(collector_top)) + half, int(electrode_top) - half + 1, half)
    inside = ndi.binary_erosion(columns, iterations=half + search + 1)
    gy = np.arange(half, ref.shape[1] - half, half)
    gx = np.arange(half, ref.shape[2] - half, half)
    nodes = np.stack(np.meshgrid(gz, gy, gx, indexing="ij"), -1)
    flat = nodes.reshape(-1, 3).astype(np.int64)
    inside = inside[flat[:, 1], flat[:, 2]]
    weight = np.ones(ref.shape, bool) if exclude is None else ~np.asarray(exclude, bool)
    res = np.full(flat.shape, np.nan)
    peak = np.full(len(flat), -1.0)
    res[inside], peak[inside] = _match(np.ascontiguousarray(ref, np.float32), warped,
                                       flat[inside], half, search, weight, coarse)
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
