"""Numba kernels that voxelise the phantom (see :mod:`sim.phantom` for conventions).

Kept apart from :mod:`sim.phantom` so the physics reads without the loops. All lengths here are
in voxels unless a name says ``_um``; attenuation arguments are per voxel unless named ``mus``
(1/µm). Partial volume is a linear ramp of one voxel across every interface, which makes sums
of coverage match analytic volumes to well under a percent for spheres a few voxels across.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _clip01(v: float) -> float:
    return min(1.0, max(0.0, v))


@njit(cache=True, inline="always")
def _overlap(lo: float, hi: float, a: float, b: float) -> float:
    return max(0.0, min(hi, b) - max(lo, a))


@njit(cache=True, inline="always")
def _cylinder(iy: int, ix: int, ay: float, ax: float, r_cyl: float) -> float:
    return _clip01(r_cyl + 0.5 - math.sqrt((iy - ay) ** 2 + (ix - ax) ** 2))


@njit(cache=True)
def _noise(noise: np.ndarray, qz: float, qy: float, qx: float) -> float:
    """Trilinear interpolation of white noise, divided by the weights' norm.

    Dividing by sqrt(sum w^2) keeps the variance at 1 everywhere (plain trilinear interpolation
    would be 8x less variable mid-cell than at the nodes, printing the lattice on the pores).
    """
    iz, iy, ix = int(qz), int(qy), int(qx)
    fz, fy, fx = qz - iz, qy - iy, qx - ix
    acc = 0.0
    norm = 0.0
    for dz in range(2):
        wz = fz if dz else 1.0 - fz
        for dy in range(2):
            wy = fy if dy else 1.0 - fy
            for dx in range(2):
                w = wz * wy * (fx if dx else 1.0 - fx)
                acc += w * noise[iz + dz, iy + dy, ix + dx]
                norm += w * w
    return acc / math.sqrt(norm)


@njit(cache=True, parallel=True)
def render_background(out: np.ndarray, v: float, layers: np.ndarray, a: float, b: float,
                      t0: float, mus: np.ndarray, thresholds: np.ndarray, noise: np.ndarray,
                      g: float, ay: float, ax: float, r_cyl: float) -> None:
    """Fill ``out`` with collector, textured electrode matrix, separator and electrolyte.

    ``layers`` holds the current heights (µm) of collector bottom, collector top, electrode top
    and separator top; ``a + b * z0`` is the axial strain at pristine height z0 (µm above the
    collector) and ``t0`` the pristine electrode thickness. The texture is looked up at each
    voxel's pristine position, so pores move and stretch with the electrode.
    ``mus`` = (collector, matrix, pore, separator, electrolyte) in 1/µm.
    """
    nz, ny, nx = out.shape
    cc0, cc1, el1, sep1 = layers[0], layers[1], layers[2], layers[3]
    for iz in prange(nz):
        lo = iz * v
        hi = lo + v
        zc = lo + 0.5 * v
        f_cc = _overlap(lo, hi, cc0, cc1) / v
        f_el = _overlap(lo, hi, cc1, el1) / v
        f_sep = _overlap(lo, hi, el1, sep1) / v
        f_ely = _overlap(lo, hi, sep1, 1e30) / v
        zr = zc - cc1
        if zr <= 0.0:
            z0 = zc
        elif zc <= el1:
            # invert zr = (1 + a) z0r + b z0r^2 / 2 (stable form of the quadratic root)
            z0 = cc1 + 2.0 * zr / ((1.0 + a) + math.sqrt((1.0 + a) ** 2 + 2.0 * b * zr))
        else:
            z0 = zc - (el1 - cc1 - t0)
        for iy in range(ny):
            for ix in range(nx):
                cyl = _cylinder(iy, ix, ay, ax, r_cyl)
                if cyl == 0.0:
                    out[iz, iy, ix] = 0.0
                    continue
                val = f_cc * mus[0] + f_ely * mus[4]
                if f_el > 0.0 or f_sep > 0.0:
                    n = _noise(noise, z0 / g, (iy + 0.5) * v / g, (ix + 0.5) * v / g)
                    # soft threshold: pores get a ramp edge instead of a staircase
                    pore = _clip01(0.5 + 2.0 * (n - thresholds[0]))
                    val += f_el * (mus[1] + (mus[2] - mus[1]) * pore)
                    pore = _clip01(0.5 + 2.0 * (n - thresholds[1]))
                    val += f_sep * (mus[3] + (mus[4] - mus[3]) * pore)
                out[iz, iy, ix] = val * v * cyl


@njit(cache=True)
def _network_field(k: np.ndarray, phase: np.ndarray, uz: float, uy: float, ux: float,
                   rho: float, bias: float) -> float:
    """Lithiation priority of a point (lower lithiates first).

    ``|sum cos(k.u + phi)|`` is small near the field's zero set, a connected sheet-and-tube
    network; the bias makes pathways open from the surface (rho = r / R near 1) inwards.
    """
    s = 0.0
    for j in range(k.shape[0]):
        s += math.cos(k[j, 0] * uz + k[j, 1] * uy + k[j, 2] * ux + phase[j])
    return abs(s) / math.sqrt(0.5 * k.shape[0]) + bias * (1.0 - rho)


@njit(cache=True)
def _network_threshold(centre: np.ndarray, r: float, k: np.ndarray, phase: np.ndarray,
                       bias: float, f_lit: float, shape: tuple) -> float:
    """Priority quantile so that a fraction ``f_lit`` of the particle's voxels is lithiated."""
    z0, z1 = max(0, int(centre[0] - r) - 1), min(shape[0], int(centre[0] + r) + 2)
    y0, y1 = max(0, int(centre[1] - r) - 1), min(shape[1], int(centre[1] + r) + 2)
    x0, x1 = max(0, int(centre[2] - r) - 1), min(shape[2], int(centre[2] + r) + 2)
    vals = np.empty(max(1, (z1 - z0) * (y1 - y0) * (x1 - x0)))
    m = 0
    for iz in range(z0, z1):
        for iy in range(y0, y1):
            for ix in range(x0, x1):
                dz, dy, dx = iz - centre[0], iy - centre[1], ix - centre[2]
                d = math.sqrt(dz * dz + dy * dy + dx * dx)
                if d < r:
                    vals[m] = _network_field(k, phase, dz / r, dy / r, dx / r, d / r, bias)
                    m += 1
    if m == 0:
        return 0.0
    s = np.sort(vals[:m])
    return s[min(m - 1, int(f_lit * m))]


@njit(cache=True, parallel=True)
def render_particles(out: np.ndarray, centres: np.ndarray, radii: np.ndarray, cores: np.ndarray,
                     modes: np.ndarray, f_lit: np.ndarray, mu_si: float, mu_lit: float,
                     k: np.ndarray, phase: np.ndarray, bias: float, ay: float, ax: float,
                     r_cyl: float) -> None:
    """Composite the particles onto ``out`` (in index order: later ones win where they touch).

    ``centres`` (n, 3), ``radii`` and ``cores`` are in voxels (index coordinates); ``modes`` is
    0 for core-shell, 1 for network; ``f_lit`` the lithiated volume fraction of each particle.
    """
    nz, ny, nx = out.shape
    for p in range(centres.shape[0]):
        c = centres[p]
        r = radii[p]
        network = modes[p] == 1 and 0.0 < f_lit[p] < 1.0
        tau = 0.0
        if network:
            tau = _network_threshold(c, r, k[p], phase[p], bias, f_lit[p], out.shape)
        z0, z1 = max(0, int(c[0] - r) - 1), min(nz, int(c[0] + r) + 2)
        y0, y1 = max(0, int(c[1] - r) - 1), min(ny, int(c[1] + r) + 2)
        x0, x1 = max(0, int(c[2] - r) - 1), min(nx, int(c[2] + r) + 2)
        for iz in prange(z0, z1):
            for iy in range(y0, y1):
                for ix in range(x0, x1):
                    dz, dy, dx = iz - c[0], iy - c[1], ix - c[2]
                    d = math.sqrt(dz * dz + dy * dy + dx * dx)
                    sphere = _clip01(r + 0.5 - d)
                    cov = sphere * _cylinder(iy, ix, ay, ax, r_cyl)
                    if cov <= 0.0:
                        continue
                    if network:
                        h = _network_field(k[p], phase[p], dz / r, dy / r, dx / r, d / r, bias)
                        mu = mu_lit if h < tau else mu_si
                    elif modes[p] == 1:
                        mu = mu_lit if f_lit[p] >= 1.0 else mu_si
                    else:
                        if cores[p] >= 0.5:
                            w = _clip01(cores[p] + 0.5 - d)
                        else:  # a sub-voxel core: keep its volume in the central voxel
                            w = min(1.0, 4.18879 * cores[p] ** 3) if d < 0.5 else 0.0
                        # w is the voxel's core fraction; mu is the mean over its particle part
                        mu = mu_lit + (mu_si - mu_lit) * min(1.0, w / sphere)
                    out[iz, iy, ix] = (1.0 - cov) * out[iz, iy, ix] + cov * mu
