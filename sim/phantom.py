"""Synthetic Si-anode phantom whose particles lithiate, swell and fade with the cell's charge.

Geometry conventions (shared with :mod:`sim.projector` and the analysis):

* Volumes are float32 arrays indexed ``(z, y, x)``. ``z`` is the rotation axis (vertical) and the
  electrode's thickness axis: current collector at low ``z``, electrode layer above it, separator
  above that, electrolyte beyond. Below the collector is air.
* Voxel index ``i`` spans ``[i, i + 1) * voxel_size_um``; its centre is at ``(i + 0.5) * voxel``.
  Physical positions (``Particle.centre_um``) are in µm from the grid's low corner; ground-truth
  centres in voxels are index coordinates (``position / voxel - 0.5``).
* The sample is a cylinder of radius ``sample_radius_fraction * min(ny, nx)`` voxels about the
  rotation axis, which passes through voxel ``(ny // 2, nx // 2)`` (scikit-image's centre), so
  the sample stays in the field of view at every angle.
* Values are linear attenuation per voxel (µ in 1/µm times the voxel size in µm): a line
  integral in voxel units is ``-ln(transmission)``.

Physics (two-phase lithiation, the picture of 000 and 002): a particle at lithiation ``x_p`` has
converted a fraction ``x_p`` of its Si into fully lithiated LixSi, which occupies ``expansion``
times the Si volume and attenuates less (Si mass is conserved, so µ scales roughly as one over
the volume factor). The particle volume is ``V0 * (1 + (expansion - 1) * x_p)``. Core-shell
particles keep an unreacted Si core of volume ``V0 * (1 - x_p)``; network particles lithiate
along pathways picked by a smooth per-particle random field. The electrode thickens with the
Si-volume-weighted mean particle lithiation, more on the separator side; the collector is fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from sim.phantom_presets import PHANTOM_PRESETS, Attenuation, PhantomPreset
from sim.voxelise import render_background, render_particles

__all__ = [
    "CLASSES", "MODES", "PHANTOM_PRESETS", "TRUTH_DTYPE", "Attenuation", "Particle", "Phantom",
    "PhantomPreset", "axial_displacement_um", "electrode_thickness_um", "layer_boundaries_um",
    "make_phantom", "particle_lithiation", "particle_truth", "render_volume",
]

CLASSES: tuple[str, str, str] = ("active", "deactivated", "inactive")
MODES: tuple[str, str] = ("core-shell", "network")
#: Number of random plane waves in a network particle's lithiation field.
N_WAVES = 8
#: Wavenumber of those waves in radians per particle radius (about 3 pathways per diameter).
WAVENUMBER = 2.0 * math.pi * 0.75
#: How strongly network lithiation prefers the particle surface (in units of the field's std).
SURFACE_BIAS = 0.8


@dataclass(frozen=True)
class Particle:
    """One Si particle in its pristine state.

    ``centre_um`` is (z, y, x) in µm from the grid's low corner; ``texture_seed`` seeds the
    particle's network-lithiation field.
    """

    index: int
    centre_um: tuple[float, float, float]
    radius_um: float
    true_class: str
    mode: str
    texture_seed: int


@dataclass(frozen=True)
class Phantom:
    """A phantom instance: preset, grid and pristine particles (state-free)."""

    preset: PhantomPreset
    seed: int
    shape: tuple[int, int, int]
    voxel_size_um: float
    particles: tuple[Particle, ...]

    @property
    def collector_top_um(self) -> float:
        """Height of the collector's top face (the electrode's fixed base), µm."""
        return self.preset.margin_um + self.preset.collector_um

    @property
    def sample_radius_um(self) -> float:
        """Radius of the sample cylinder, µm."""
        return self.preset.sample_radius_fraction * min(self.shape[1:]) * self.voxel_size_um

    @property
    def axis_um(self) -> tuple[float, float]:
        """(y, x) of the rotation axis in µm (centre of voxel ``(ny // 2, nx // 2)``)."""
        v = self.voxel_size_um
        return ((self.shape[1] // 2 + 0.5) * v, (self.shape[2] // 2 + 0.5) * v)


def _resolve_preset(preset: str | PhantomPreset) -> PhantomPreset:
    if isinstance(preset, PhantomPreset):
        return preset
    if preset not in PHANTOM_PRESETS:
        raise ValueError(f"unknown phantom preset {preset!r}; valid presets: "
                         f"{', '.join(sorted(PHANTOM_PRESETS))}")
    return PHANTOM_PRESETS[preset]


def _draw_diameters(p: PhantomPreset, rng: np.random.Generator, n: int | None,
                    layer_volume_um3: float) -> np.ndarray:
    """Truncated log-normal diameters: n of them, or enough to reach the volume fraction."""
    lo, hi = p.diameter_range_um
    out: list[float] = []
    target = p.volume_fraction * layer_volume_um3
    total = 0.0
    while (len(out) < n) if n is not None else (total < target):
        d = float(rng.lognormal(math.log(p.diameter_median_um), p.diameter_log_sigma))
        if lo <= d <= hi:
            out.append(d)
            total += math.pi / 6.0 * d**3
    return np.array(out)


def _place(radii: np.ndarray, z_range: tuple[float, float], axis: tuple[float, float],
           r_cyl: float, swell: float, gap: float, rng: np.random.Generator,
           strict: bool) -> list[tuple]:
    """Random sequential addition of spheres (largest first) in a slab inside a cylinder.

    ``swell`` is the radius factor at full lithiation; ``gap`` the minimum relative gap.
    """
    placed: list[tuple[float, float, float, float]] = []
    centres = np.empty((0, 3))
    rs = np.empty(0)
    for r in radii:
        ok = False
        for _ in range(40):  # 40 batches of 64 candidates
            z = rng.uniform(z_range[0] + r, z_range[1] - r, 64)
            # keep the fully swollen particle inside the sample: no ground truth cut by the wall
            rho = (r_cyl - r * swell) * np.sqrt(rng.random(64))
            phi = rng.uniform(0.0, 2.0 * math.pi, 64)
            cand = np.stack([z, axis[0] + rho * np.sin(phi), axis[1] + rho * np.cos(phi)], 1)
            if len(placed):
                dist = np.linalg.norm(cand[:, None, :] - centres[None, :, :], axis=2)
                free = np.all(dist >= (1.0 + gap) * (r + rs)[None, :], axis=1)
            else:
                free = np.ones(64, bool)
            if free.any():
                c = cand[int(np.argmax(free))]
                placed.append((float(c[0]), float(c[1]), float(c[2]), float(r)))
                centres = np.vstack([centres, c])
                rs = np.append(rs, r)
                ok = True
                break
        if not ok and strict:
            raise ValueError(f"could not place particle {len(placed) + 1} of {len(radii)} "
                             "without overlap; ask for fewer particles or a larger grid")
    return placed


def _stratified(fractions: tuple[float, ...], n: int, rng: np.random.Generator) -> np.ndarray:
    """Category codes with counts rounded from ``fractions`` (largest remainder), shuffled.

    Stratified rather than i.i.d. so that even a 10-particle phantom has every class.
    """
    f = np.asarray(fractions, float) / np.sum(fractions)
    counts = np.floor(f * n).astype(int)
    order = np.argsort(-(f * n - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return rng.permutation(np.repeat(np.arange(len(f)), counts))


def make_phantom(preset: str | PhantomPreset, seed: int = 0, *,
                 shape: tuple[int, int, int] | None = None, voxel_size_um: float | None = None,
                 n_particles: int | None = None) -> Phantom:
    """Build a pristine phantom: non-overlapping Si particles in the electrode layer.

    Parameters
    ----------
    preset
        ``"micro"`` or ``"nano"`` (see ``PHANTOM_PRESETS``), or a custom :class:`PhantomPreset`.
    seed
        Seed of the placement, classes, modes and textures; the same seed gives the same phantom.
    shape
        Grid (nz, ny, nx). Default: the preset's, rescaled to keep the field of view when
        ``voxel_size_um`` is overridden.
    voxel_size_um
        Voxel edge in µm (default the preset's). Physical sizes stay fixed.
    n_particles
        Number of particles; default: enough to reach ``preset.volume_fraction`` of the layer
        (as many as fit).

    Returns
    -------
    Phantom

    Raises
    ------
    ValueError
        Unknown preset, or impossible parameters (particles larger than the layer or sample,
        unresolved particles, a grid too short for the swollen electrode, too many particles).
    """
    p = _resolve_preset(preset)
    v = float(voxel_size_um if voxel_size_um is not None else p.voxel_size_um)
    if not v > 0:
        raise ValueError(f"voxel_size_um must be positive, got {v!r}")
    if shape is None:
        shape = tuple(max(1, round(n * p.voxel_size_um / v)) for n in p.shape)
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be three positive ints (nz, ny, nx), got {shape!r}")
    d_lo, d_hi = p.diameter_range_um
    r_cyl = p.sample_radius_fraction * min(shape[1:]) * v
    if not 0 < d_lo <= d_hi <= p.electrode_um:
        raise ValueError(f"particle diameters {p.diameter_range_um} um must be positive and no "
                         f"larger than the electrode thickness {p.electrode_um} um")
    if d_hi * p.expansion ** (1 / 3) > 2.0 * r_cyl:
        raise ValueError(f"swollen particles from {d_hi} um do not fit the sample cylinder "
                         f"of radius {r_cyl:.1f} um; enlarge the grid")
    if d_lo < 2.0 * v:
        raise ValueError(f"voxel {v} um too coarse for {d_lo} um particles (need >= 2 voxels)")
    swollen_top = p.margin_um + p.collector_um + p.electrode_um * (
        1.0 + 0.5 * (p.axial_strain_collector + p.axial_strain_separator))
    if shape[0] * v < swollen_top:
        raise ValueError(f"grid height {shape[0] * v:.1f} um cannot hold the fully swollen "
                         f"electrode (top at {swollen_top:.1f} um)")
    if n_particles is not None and n_particles < 0:
        raise ValueError(f"n_particles must be >= 0, got {n_particles}")
    placement_ss, label_ss = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(placement_ss)
    layer_volume = math.pi * r_cyl**2 * p.electrode_um
    radii = np.sort(_draw_diameters(p, rng, n_particles, layer_volume))[::-1] / 2.0
    z0 = p.margin_um + p.collector_um
    axis = ((shape[1] // 2 + 0.5) * v, (shape[2] // 2 + 0.5) * v)
    placed = _place(radii, (z0, z0 + p.electrode_um), axis, r_cyl, p.expansion ** (1 / 3),
                    p.min_gap_fraction, rng, strict=n_particles is not None)
    lrng = np.random.default_rng(label_ss)
    n = len(placed)
    classes = _stratified(p.class_fractions, n, lrng)
    modes = _stratified((p.core_shell_fraction, 1.0 - p.core_shell_fraction), n, lrng)
    seeds = lrng.integers(0, 2**31 - 1, n)
    particles = tuple(
        Particle(index=i, centre_um=c[:3], radius_um=c[3], true_class=CLASSES[classes[i]],
                 mode=MODES[modes[i]], texture_seed=int(seeds[i]))
        for i, c in enumerate(placed))
    return Phantom(preset=p, seed=seed, shape=shape, voxel_size_um=v, particles=particles)


def particle_lithiation(phantom: Phantom, lithiation: float, peak_lithiation: float) -> np.ndarray:
    """Per-particle lithiation ``x_p`` in [0, 1] for the cell's state.

    Parameters
    ----------
    phantom
        The phantom.
    lithiation
        The cell's normalised Si lithiation, in [0, 1].
    peak_lithiation
        Its running maximum, in [lithiation, 1].

    Returns
    -------
    numpy.ndarray
        float64 (n_particles,): active follow ``lithiation``; deactivated stay at the peak (they
        lithiate but do not delithiate); inactive stay at 0.
    """
    if not 0.0 <= lithiation <= 1.0 or not 0.0 <= peak_lithiation <= 1.0:
        raise ValueError(f"lithiation {lithiation} and peak {peak_lithiation} must be in [0, 1]")
    if lithiation > peak_lithiation + 1e-9:
        raise ValueError(f"lithiation {lithiation} exceeds its running peak {peak_lithiation}")
    by_class = {"active": lithiation, "deactivated": peak_lithiation, "inactive": 0.0}
    return np.array([by_class[q.true_class] for q in phantom.particles], dtype=float)


def _mean_lithiation(phantom: Phantom, x: np.ndarray) -> float:
    """Si-volume-weighted mean lithiation, the electrode swelling's driver."""
    w = np.array([q.radius_um**3 for q in phantom.particles])
    return float(np.dot(w, x) / w.sum()) if w.size else 0.0


def _strain_coefficients(phantom: Phantom, lithiation: float, peak: float) -> tuple[float, float]:
    """(a, b) of the axial strain ``eps(z0) = a + b * z0`` (z0 in µm above the collector)."""
    p = phantom.preset
    m = _mean_lithiation(phantom, particle_lithiation(phantom, lithiation, peak))
    b = m * (p.axial_strain_separator - p.axial_strain_collector) / p.electrode_um
    return m * p.axial_strain_collector, b


def axial_displacement_um(phantom: Phantom, z_um: np.ndarray | float, lithiation: float,
                          peak_lithiation: float) -> np.ndarray:
    """Axial displacement of pristine material points, µm (ground truth for strain mapping).

    Parameters
    ----------
    phantom
        The phantom.
    z_um
        Pristine height(s) in µm from the grid's low corner.
    lithiation, peak_lithiation
        Cell state as in :func:`particle_lithiation`.

    Returns
    -------
    numpy.ndarray
        Displacement along +z in µm: 0 at and below the collector, integrating the linear axial
        strain through the electrode, constant above it (the separator rides on top).
    """
    a, b = _strain_coefficients(phantom, lithiation, peak_lithiation)
    zr = np.clip(np.asarray(z_um, float) - phantom.collector_top_um, 0.0,
                 phantom.preset.electrode_um)
    return a * zr + 0.5 * b * zr**2


def layer_boundaries_um(phantom: Phantom, lithiation: float,
                        peak_lithiation: float) -> dict[str, float]:
    """Heights (µm from the grid's low corner) of the layer interfaces in the current state.

    Returns
    -------
    dict
        ``collector_bottom``, ``collector_top``, ``electrode_top``, ``separator_top``.
    """
    p = phantom.preset
    top = phantom.collector_top_um + p.electrode_um
    swell = float(axial_displacement_um(phantom, top, lithiation, peak_lithiation))
    return {"collector_bottom": p.margin_um, "collector_top": phantom.collector_top_um,
            "electrode_top": top + swell, "separator_top": top + swell + p.separator_um}


def electrode_thickness_um(phantom: Phantom, lithiation: float, peak_lithiation: float) -> float:
    """True electrode thickness in µm (collector top to separator) for the cell's state."""
    b = layer_boundaries_um(phantom, lithiation, peak_lithiation)
    return b["electrode_top"] - b["collector_top"]


def _current_geometry(phantom: Phantom, x: np.ndarray, lithiation: float,
                      peak: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Current centres (n, 3) µm, outer radii and core radii (µm) of the particles."""
    e = phantom.preset.expansion
    r0 = np.array([q.radius_um for q in phantom.particles], float)
    c0 = np.array([q.centre_um for q in phantom.particles], float).reshape(-1, 3)
    radius = r0 * np.cbrt(1.0 + (e - 1.0) * x)
    core = r0 * np.cbrt(1.0 - x)
    centres = c0.copy()
    centres[:, 0] += axial_displacement_um(phantom, c0[:, 0], lithiation, peak)
    # The collector is rigid: a particle swelling against it is pushed up, not clipped.
    centres[:, 0] = np.maximum(centres[:, 0], phantom.collector_top_um + radius)
    return centres, radius, core


def _mean_mu(p: PhantomPreset, x: np.ndarray) -> np.ndarray:
    """Volume-averaged attenuation (1/µm) of particles at lithiation x (two-phase mixture)."""
    e = p.expansion
    return ((1.0 - x) * p.mu.si + x * e * p.mu.lixsi) / (1.0 + (e - 1.0) * x)


TRUTH_DTYPE = np.dtype([
    ("index", "i8"), ("true_class", "U11"), ("mode", "U10"), ("lithiation", "f8"),
    ("centre_vox", "f8", (3,)), ("radius_vox", "f8"), ("radius_um", "f8"),
    ("volume_um3", "f8"), ("pristine_volume_um3", "f8"), ("unreacted_volume_um3", "f8"),
    ("mean_attenuation", "f8"),
])


def particle_truth(phantom: Phantom, lithiation: float, peak_lithiation: float) -> np.ndarray:
    """Per-particle ground truth for the cell's state.

    Returns
    -------
    numpy.ndarray
        Structured array (dtype ``TRUTH_DTYPE``), one row per particle: ``index``,
        ``true_class``, ``mode``, ``lithiation`` (x_p), ``centre_vox`` (z, y, x index
        coordinates), ``radius_vox`` / ``radius_um`` (equivalent radius), ``volume_um3``,
        ``pristine_volume_um3``, ``unreacted_volume_um3`` (Si not yet lithiated) and
        ``mean_attenuation`` (per voxel, the units of :func:`render_volume`).
    """
    x = particle_lithiation(phantom, lithiation, peak_lithiation)
    centres, radius, _ = _current_geometry(phantom, x, lithiation, peak_lithiation)
    v = phantom.voxel_size_um
    out = np.zeros(len(phantom.particles), dtype=TRUTH_DTYPE)
    out["index"] = [q.index for q in phantom.particles]
    out["true_class"] = [q.true_class for q in phantom.particles]
    out["mode"] = [q.mode for q in phantom.particles]
    out["lithiation"] = x
    out["centre_vox"] = centres / v - 0.5
    out["radius_um"] = radius
    out["radius_vox"] = radius / v
    v0 = 4.0 / 3.0 * math.pi * np.array([q.radius_um for q in phantom.particles]) ** 3
    out["pristine_volume_um3"] = v0
    out["volume_um3"] = 4.0 / 3.0 * math.pi * radius**3
    out["unreacted_volume_um3"] = v0 * (1.0 - x)
    out["mean_attenuation"] = _mean_mu(phantom.preset, x) * v
    return out


def _network_waves(phantom: Phantom) -> tuple[np.ndarray, np.ndarray]:
    """Per-particle random wave vectors (n, N_WAVES, 3) and phases (n, N_WAVES)."""
    n = len(phantom.particles)
    k = np.empty((n, N_WAVES, 3))
    phase = np.empty((n, N_WAVES))
    for i, q in enumerate(phantom.particles):
        r = np.random.default_rng(q.texture_seed)
        d = r.normal(size=(N_WAVES, 3))
        k[i] = WAVENUMBER * d / np.linalg.norm(d, axis=1, keepdims=True)
        phase[i] = r.uniform(0.0, 2.0 * math.pi, N_WAVES)
    return k, phase


def _texture_noise(phantom: Phantom) -> np.ndarray:
    """White noise on a coarse grid (spacing ``pore_size_um``) covering the field of view."""
    g = phantom.preset.pore_size_um
    dims = tuple(int(n * phantom.voxel_size_um / g) + 3 for n in phantom.shape)
    rng = np.random.default_rng(np.random.SeedSequence(phantom.seed).spawn(3)[2])
    return rng.standard_normal(dims).astype(np.float32)


def render_volume(phantom: Phantom, lithiation: float, peak_lithiation: float) -> np.ndarray:
    """Voxelise the phantom in the cell's state.

    Parameters
    ----------
    phantom
        The phantom.
    lithiation, peak_lithiation
        Cell state as in :func:`particle_lithiation` (normalised Si lithiation and its peak).

    Returns
    -------
    numpy.ndarray
        float32 (nz, ny, nx): linear attenuation per voxel (µ × voxel size), zero outside the
        sample cylinder. Partial-volume edges on particles, core and layers.
    """
    p, v = phantom.preset, phantom.voxel_size_um
    x = particle_lithiation(phantom, lithiation, peak_lithiation)
    a, b = _strain_coefficients(phantom, lithiation, peak_lithiation)
    bounds = layer_boundaries_um(phantom, lithiation, peak_lithiation)
    out = np.empty(phantom.shape, dtype=np.float32)
    mus = np.array([p.mu.collector, p.mu.matrix, p.mu.pore, p.mu.separator, p.mu.electrolyte])
    layers = np.array([bounds["collector_bottom"], bounds["collector_top"],
                       bounds["electrode_top"], bounds["separator_top"]])
    nd = NormalDist()
    # clipped so that porosity 0 or 1 means "no pores" / "all pore" rather than an error
    thresholds = np.array([nd.inv_cdf(min(max(1.0 - f, 1e-9), 1.0 - 1e-9))
                           for f in (p.porosity, p.separator_porosity)])
    axis_vox = (phantom.shape[1] // 2, phantom.shape[2] // 2)
    r_cyl_vox = phantom.sample_radius_um / v
    render_background(out, v, layers, a, b, p.electrode_um, mus, thresholds,
                      _texture_noise(phantom), p.pore_size_um, axis_vox[0], axis_vox[1],
                      r_cyl_vox)
    if phantom.particles:
        centres, radius, core = _current_geometry(phantom, x, lithiation, peak_lithiation)
        e = p.expansion
        f_lit = x * e / (1.0 + (e - 1.0) * x)
        modes = np.array([MODES.index(q.mode) for q in phantom.particles], np.int64)
        k, phase = _network_waves(phantom)
        render_particles(out, centres / v - 0.5, radius / v, core / v, modes, f_lit,
                         p.mu.si * v, p.mu.lixsi * v, k, phase, SURFACE_BIAS,
                         axis_vox[0], axis_vox[1], r_cyl_vox)
    return out
