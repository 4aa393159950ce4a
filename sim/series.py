"""Simulated operando series: a phantom rendered at the lithiation states of a protocol, with truth.

A series is what a real experiment hands the particle analysis: one reconstructed volume per
timestep T0, T1, ... Here each volume is :func:`sim.phantom.render_volume` at a protocol's
lithiation state, optionally with planted electrode cracks, moved by a known rigid drift of the
sample, then passed through a *degrade* function that stands for acquisition and
reconstruction. The truth (particle classes and modes, positions, thickness, imposed axial
displacement, crack volume and width, rigid drift) comes along.

Degradation. The default, :func:`reconstruction_degrader`, blurs and adds noise whose level is
*measured*, not guessed: :func:`calibrate_degradation` projects a few slices of the phantom with
:mod:`sim.projector`, simulates the beamline preset's camera frames with :mod:`sim.artefacts`
(Poisson photon noise at the preset's dose, read noise, detector blur; no rings or zingers,
which a reconstruction pipeline corrects), flat/dark-corrects them and reconstructs with
scikit-image's filtered back-projection (``iradon``, ramp filter). The noise std is that of
(noisy FBP - noise-free FBP); the blur is the Gaussian that best maps the phantom slice onto
the noise-free FBP (detector PSF plus FBP interpolation). The noise is then drawn with FBP's
ramp-shaped in-plane spectrum (white along z) so that denoising behaves as on real
reconstructions. Any callable ``degrade(volume, rng) -> volume`` can replace it (for instance
the real projector + FBP path once it exists).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage as ndi

from sim.artefacts import AcquisitionModel, add_blur, flat_field, simulate_frame
from sim.phantom import (
    Phantom,
    axial_displacement_um,
    electrode_thickness_um,
    layer_boundaries_um,
    particle_truth,
    render_volume,
)
from sim.projector import project_parallel

__all__ = [
    "PROTOCOL_STATES", "THEORETICAL_CAPACITY_MAH_G", "CrackSpec", "Degradation", "SimSeries",
    "StepTruth", "calibrate_degradation", "imposed_displacement_vox", "reconstruction_degrader",
    "simulate_series",
]

#: Theoretical capacity of Si (Li15Si4 / Li21Si5 as quoted by 000 and 003), mAh/g.
THEORETICAL_CAPACITY_MAH_G = 3579.0

Degrade = Callable[[np.ndarray, np.random.Generator], np.ndarray]

#: Normalised lithiation of the *active* particles at each scan of the papers' protocols
#: (label, lithiation). Values are read off the papers' voltage curves, not stated by them.
PROTOCOL_STATES: dict[str, tuple[tuple[str, float], ...]] = {
    # 000: pristine, discharge scans at 0.03/0.02/0.01/0 V, charge scans at 0.5..2.0 V. With
    # the preset's classes (24 % active, 63 % deactivated, 13 % inactive) this passes about
    # 2960 mAh/g on discharge and 710 mAh/g on charge (paper: 3000 and 500).
    "000": (("pristine", 0.0), ("0.03 V", 0.35), ("0.02 V", 0.6), ("0.01 V", 0.8),
            ("0 V", 0.95), ("0.5 V", 0.8), ("0.7 V", 0.55), ("1.0 V", 0.35),
            ("1.5 V", 0.2), ("2.0 V", 0.12)),
    # 002: T0 pristine, T1-T6 charge of the full cell (anode lithiates) to ~85 % SoC, T7 during
    # and T8 after partial discharge, T9 a second scan without electrochemistry (noise pair
    # T8/T9).
    "002": (("T0", 0.0), ("T1", 0.08), ("T2", 0.2), ("T3", 0.35), ("T4", 0.5), ("T5", 0.65),
            ("T6", 0.85), ("T7", 0.7), ("T8", 0.55), ("T9", 0.55)),
}

#: Beamline preset whose dose calibrates the noise, by phantom preset.
_DEFAULT_BEAMLINE = {"micro": ("micro-halfcell", 800, 360.0), "nano": ("nano-fullcell", 2505, 360.0)}


@dataclass(frozen=True)
class Degradation:
    """Blur and noise of a reconstructed volume, in voxels and attenuation-per-voxel units."""

    blur_sigma_vox: float
    noise_std: float


@dataclass(frozen=True)
class CrackSpec:
    """Planted cracks: vertical electrolyte-filled sheets through the electrode matrix.

    ``positions_vox`` are (axis, index) pairs: a sheet normal to ``axis`` (1 = y, 2 = x) covering
    indices ``[index, index + width_vox)``; they appear at timestep ``from_step`` and stay (the
    mud-cracking of 003 forms on delithiation and does not heal within a cycle).
    """

    positions_vox: tuple[tuple[int, int], ...]
    width_vox: int
    from_step: int


@dataclass
class StepTruth:
    """Ground truth of one timestep (positions in that volume's own, drifted frame)."""

    label: str
    lithiation: float
    peak_lithiation: float
    particles: np.ndarray  #: :data:`sim.phantom.TRUTH_DTYPE`, centres shifted by the drift
    thickness_um: float
    boundaries_um: dict[str, float]
    drift_vox: np.ndarray  #: (z, y, x) rigid shift applied to the rendered volume
    capacity_mAh_g: float  #: net charge passed into Si so far (volume-weighted lithiation)
    crack_fraction: float = 0.0  #: crack volume / electrode volume
    crack_width_um: float = 0.0


@dataclass
class SimSeries:
    """Volumes and truth of a simulated operando series."""

    phantom: Phantom
    volumes: list[np.ndarray]
    truth: list[StepTruth]
    degradation: Degradation | None
    noise_pair: tuple[int, int] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def lithiated_at(self) -> int:
        """Index of the most lithiated timestep."""
        return int(np.argmax([t.lithiation for t in self.truth]))

    @property
    def charges_mAh_g(self) -> np.ndarray:
        """Net charge passed at each timestep, mAh/g Si."""
        return np.array([t.capacity_mAh_g for t in self.truth])

    def axial_displacement_um(self, step: int, z_um: np.ndarray | float) -> np.ndarray:
        """Imposed axial displacement (µm) of pristine heights ``z_um`` at ``step``."""
        t = self.truth[step]
        return axial_displacement_um(self.phantom, z_um, t.lithiation, t.peak_lithiation)


def _ramp_noise(shape: tuple[int, ...], std: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with FBP's in-plane spectrum (amplitude ~ sqrt|k|), white along z."""
    white = rng.standard_normal(shape).astype(np.float32)
    ky = np.fft.fftfreq(shape[1])[:, None]
    kx = np.fft.rfftfreq(shape[2])[None, :]
    filt = np.sqrt(np.hypot(ky, kx)).astype(np.float32)
    shaped = np.fft.irfft2(np.fft.rfft2(white, axes=(1, 2)) * filt, s=shape[1:], axes=(1, 2))
    return (shaped * (std / max(float(shaped.std()), 1e-30))).astype(np.float32)


def reconstruction_degrader(degradation: Degradation) -> Degrade:
    """A ``degrade(volume, rng)`` that blurs and adds FBP-like noise (see the module docstring)."""
    def degrade(volume: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = ndi.gaussian_filter(volume.astype(np.float32), degradation.blur_sigma_vox)
        return out + _ramp_noise(volume.shape, degradation.noise_std, rng)
    return degrade


def _fbp(sino: np.ndarray, degs: np.ndarray) -> np.ndarray:
    from skimage.transform import iradon
    return iradon(sino.T, theta=degs, filter_name="ramp", circle=True)


def calibrate_degradation(phantom: Phantom, acquisition: AcquisitionModel | None = None,
                          n_angles: int | None = None, angle_range_deg: float | None = None,
                          n_slices: int = 2, seed: int = 0) -> Degradation:
    """Measure the blur and noise of an FBP reconstruction of ``phantom`` at a beamline's dose.

    Parameters
    ----------
    phantom
        The phantom (its pristine state is projected).
    acquisition, n_angles, angle_range_deg
        Camera model, number of projections and angular range (degrees); default: the
        papers' beamline for the phantom's preset (000's lab micro-CT for "micro", 002's
        nano-CT for "nano").
    n_slices
        Number of electrode slices reconstructed.
    seed
        Seed of the photon noise.

    Returns
    -------
    Degradation
        ``noise_std`` (attenuation per voxel) and ``blur_sigma_vox``.
    """
    name, n_def, range_def = _DEFAULT_BEAMLINE.get(phantom.preset.name, _DEFAULT_BEAMLINE["micro"])
    if acquisition is None:
        from sim.presets import BEAMLINE_PRESETS  # lazy: presets import the cell model
        acquisition = BEAMLINE_PRESETS[name].acquisition
    n_angles = n_angles or n_def
    angles = np.deg2rad(np.linspace(0.0, angle_range_deg or range_def, n_angles, endpoint=False))
    vol = render_volume(phantom, 0.0, 0.0)
    z0 = int(round((phantom.collector_top_um + 0.5 * phantom.preset.electrode_um)
                   / phantom.voxel_size_um))
    slices = vol[z0: z0 + n_slices]
    lines = project_parallel(slices, angles).astype(np.float64)  # (angle, slice, det)
    model = AcquisitionModel(photons=acquisition.photons, flat_falloff=acquisition.flat_falloff,
                             dark_level=acquisition.dark_level, read_noise=acquisition.read_noise,
                             blur_sigma_px=acquisition.blur_sigma_px, ring_fraction=0.0,
                             zinger_rate=0.0)
    rng = np.random.default_rng(seed)
    flat = flat_field((1, lines.shape[2]), model.photons, falloff=model.flat_falloff)
    degs = np.rad2deg(angles)
    noise, blur = [], []
    for k in range(slices.shape[0]):
        frames = lines[:, k: k + 1, :]  # a stack of one-row frames: blur acts along the row
        clean = -np.log(add_blur(flat * np.exp(-frames), model.blur_sigma_px) / flat)
        counts = simulate_frame(frames, "projection", model, rng).astype(np.float64)
        noisy = -np.log(np.clip(counts - model.dark_level, 1.0, None) / flat)
        rec_clean, rec_noisy = _fbp(clean[:, 0], degs), _fbp(noisy[:, 0], degs)
        disk = _disk(rec_clean.shape, 0.9 * phantom.preset.sample_radius_fraction)
        noise.append(float(np.std((rec_noisy - rec_clean)[disk])))
        blur.append(_fit_blur(slices[k], rec_clean, disk))
    return Degradation(blur_sigma_vox=float(np.mean(blur)), noise_std=float(np.mean(noise)))


def _disk(shape: tuple[int, int], fraction: float) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - shape[0] // 2) ** 2 + (xx - shape[1] // 2) ** 2 < (fraction * min(shape)) ** 2


def _fit_blur(truth: np.ndarray, rec: np.ndarray, disk: np.ndarray) -> float:
    """Gaussian sigma (voxels) that best maps the phantom slice onto its reconstruction."""
    sigmas = np.arange(0.2, 2.01, 0.05)
    err = [np.mean((ndi.gaussian_filter(truth.astype(np.float64), s) - rec)[disk] ** 2)
           for s in sigmas]
    return float(sigmas[int(np.argmin(err))])


def _capacity(phantom: Phantom, truth: np.ndarray) -> float:
    """Net charge passed into the Si, mAh/g: theoretical capacity x volume-weighted x_p."""
    w = truth["pristine_volume_um3"]
    return float(THEORETICAL_CAPACITY_MAH_G * np.dot(w, truth["lithiation"]) / w.sum()) if w.size else 0.0


def _particle_mask(shape: tuple[int, ...], truth: np.ndarray) -> np.ndarray:
    """Voxels inside any (current, swollen) particle."""
    mask = np.zeros(shape, bool)
    for c, r in zip(truth["centre_vox"], truth["radius_vox"]):
        lo = [max(0, int(math.floor(ci - r)) - 1) for ci in c]
        hi = [min(n, int(math.ceil(ci + r)) + 2) for ci, n in zip(c, shape)]
        zz, yy, xx = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        ball = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r
        mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] |= ball
    return mask


def _plant_cracks(vol: np.ndarray, phantom: Phantom, spec: CrackSpec, truth: np.ndarray,
                  bounds: dict[str, float]) -> tuple[float, float]:
    """Write electrolyte sheets into the electrode matrix; return (volume fraction, width µm).

    Sheets are whole voxels between the first voxel fully above the collector and the last fully
    below the separator, inside the sample cylinder and outside every particle.
    """
    v = phantom.voxel_size_um
    z0 = int(math.ceil(bounds["collector_top"] / v))
    z1 = int(math.floor(bounds["electrode_top"] / v))
    nz, ny, nx = vol.shape
    yy, xx = np.ogrid[:ny, :nx]
    r_cyl = phantom.sample_radius_um / v - 1.0
    inside = (yy - ny // 2) ** 2 + (xx - nx // 2) ** 2 <= r_cyl**2
    sheets = np.zeros((ny, nx), bool)
    for axis, index in spec.positions_vox:
        if axis == 1:
            sheets[index: index + spec.width_vox, :] = True
        else:
            sheets[:, index: index + spec.width_vox] = True
    crack = np.zeros(vol.shape, bool)
    crack[z0:z1] = (sheets & inside)[None]
    crack &= ~ndi.binary_dilation(_particle_mask(vol.shape, truth), iterations=1)
    vol[crack] = phantom.preset.mu.electrolyte * v
    electrode_vox = (bounds["electrode_top"] - bounds["collector_top"]) / v * np.count_nonzero(
        (yy - ny // 2) ** 2 + (xx - nx // 2) ** 2 <= (phantom.sample_radius_um / v) ** 2)
    return float(np.count_nonzero(crack) / electrode_vox), spec.width_vox * v


def _shifted(truth: np.ndarray, drift: np.ndarray) -> np.ndarray:
    out = truth.copy()
    out["centre_vox"] = truth["centre_vox"] + drift[None, :]
    return out


def simulate_series(phantom: Phantom, states: str | Sequence[tuple[str, float]] = "000", *,
                    degrade: Degrade | None | str = "calibrated",
                    drift_vox: Sequence[Sequence[float]] | None = None,
                    cracks: CrackSpec | None = None, noise_pair: tuple[int, int] | None = None,
                    seed: int = 0) -> SimSeries:
    """Render ``phantom`` at each state of a protocol and degrade it like a reconstruction.

    Parameters
    ----------
    phantom
        The phantom.
    states
        A key of :data:`PROTOCOL_STATES` or (label, lithiation of active particles) pairs.
    degrade
        ``"calibrated"`` (default): :func:`reconstruction_degrader` with
        :func:`calibrate_degradation`; None: clean volumes; or any ``degrade(volume, rng)``.
    drift_vox
        Rigid (z, y, x) shift of the sample per timestep in voxels (default none). Positions
        in the truth are in each volume's own frame; a large lateral drift moves particles
        out of (or into) the field of view.
    cracks
        Planted cracks, or None.
    noise_pair
        Indices of two scans without electrochemistry between them (002's T8/T9); default:
        for the "002" protocol its last two scans.
    seed
        Seed of the noise.

    Returns
    -------
    SimSeries
    """
    if isinstance(states, str):
        if noise_pair is None and states == "002":
            noise_pair = (len(PROTOCOL_STATES["002"]) - 2, len(PROTOCOL_STATES["002"]) - 1)
        states = PROTOCOL_STATES[states]
    degradation = None
    if isinstance(degrade, str):
        degradation = calibrate_degradation(phantom, seed=seed)
        degrade = reconstruction_degrader(degradation)
    drifts = np.zeros((len(states), 3)) if drift_vox is None else np.asarray(drift_vox, float)
    if drifts.shape != (len(states), 3):
        raise ValueError(f"drift_vox must be ({len(states)}, 3), got {drifts.shape}")
    rng = np.random.default_rng(seed)
    volumes, truths, peak = [], [], 0.0
    for step, ((label, lit), drift) in enumerate(zip(states, drifts)):
        peak = max(peak, lit)
        vol = render_volume(phantom, lit, peak)
        truth = particle_truth(phantom, lit, peak)
        bounds = layer_boundaries_um(phantom, lit, peak)
        frac, width = 0.0, 0.0
        if cracks is not None and step >= cracks.from_step:
            frac, width = _plant_cracks(vol, phantom, cracks, truth, bounds)
        if np.any(drift != 0):
            vol = shift_cubic(vol, drift)
        if degrade is not None:
            vol = degrade(vol, rng)
        volumes.append(np.ascontiguousarray(vol, dtype=np.float32))
        truths.append(StepTruth(label=label, lithiation=lit, peak_lithiation=peak,
                                particles=_shifted(truth, drift),
                                thickness_um=electrode_thickness_um(phantom, lit, peak),
                                boundaries_um=bounds, drift_vox=drift,
                                capacity_mAh_g=_capacity(phantom, truth), crack_fraction=frac,
                                crack_width_um=width))
    return SimSeries(phantom=phantom, volumes=volumes, truth=truths, degradation=degradation,
                     noise_pair=noise_pair)


def _bspline3(t: float) -> float:
    t = abs(t)
    if t < 1.0:
        return 2.0 / 3.0 - t * t + 0.5 * t**3
    return (2.0 - t) ** 3 / 6.0 if t < 2.0 else 0.0


def shift_cubic(vol: np.ndarray, shift: Sequence[float]) -> np.ndarray:
    """``vol`` moved by a constant sub-voxel ``shift`` (z, y, x), cubic B-spline, float32.

    The same as ``ndi.shift(vol, shift, order=3, mode="constant")`` inside the volume (to
    float32 rounding; within two voxels of the faces the edge handling differs slightly), but
    separable: a constant shift needs 4 taps per axis, where ``ndi.shift`` evaluates all 64 of
    the 3D spline per voxel (10 s for a 720 x 256 x 256 volume; 3 s here).
    """
    out = np.asarray(vol, np.float32)
    for ax, s in enumerate(float(v) for v in shift):
        if s == 0.0:
            continue
        coef = ndi.spline_filter1d(out, order=3, axis=ax, mode="mirror", output=np.float32)
        n0 = int(np.floor(-s))
        frac = -s - n0
        res = np.zeros_like(coef)
        n = coef.shape[ax]
        for k in range(-1, 3):
            off = n0 + k  # res[i] += w * coef[i + off]
            lo, hi = max(0, -off), min(n, n - off)
            if hi > lo:
                dst, src = [slice(None)] * 3, [slice(None)] * 3
                dst[ax], src[ax] = slice(lo, hi), slice(lo + off, hi + off)
                res[tuple(dst)] += np.float32(_bspline3(frac - k)) * coef[tuple(src)]
        # like mode="constant": samples from beyond the input's faces are 0
        src_pos = np.arange(n) - s
        inside = ((src_pos >= 0) & (src_pos <= n - 1)).astype(np.float32)
        res *= inside.reshape([-1 if a == ax else 1 for a in range(3)])
        out = res
    return out


def imposed_displacement_vox(series: SimSeries, step: int) -> np.ndarray:
    """The displacement field the phantom imposes at ``step``, at every T0 voxel (drift removed).

    What :func:`sim.phantom.render_volume` really does to a T0 material point, in voxels:

    * matrix, separator and electrolyte: the axial displacement
      :func:`sim.phantom.axial_displacement_um` of the voxel's height, nothing in-plane;
    * inside a T0 particle: the particle's own motion, i.e. the translation of its centre (the
      axial displacement of the centre, plus the push off the rigid collector that a swelling
      particle resting on it gets) and its isotropic swelling about that centre by
      ``r / r0`` (the texture of a network particle scales with its radius).

    So particles move as swelling spheres over a matrix strained only along z: the field is
    discontinuous at particle surfaces, and a window that holds a particle near the collector
    moves up by the particle's swelling, more than the matrix there does. This is the truth
    against which local DVC is scored (after the DVC's own window averaging).

    Returns
    -------
    numpy.ndarray
        float32 (3, nz, ny, nx): (u_z, u_y, u_x) in T0's frame.
    """
    ph, t, t0 = series.phantom, series.truth[step], series.truth[0]
    v, shape = ph.voxel_size_um, ph.shape
    zum = (np.arange(shape[0]) + 0.5) * v
    uz = axial_displacement_um(ph, zum, t.lithiation, t.peak_lithiation) / v
    out = np.zeros((3,) + tuple(shape), np.float32)
    out[0] = uz[:, None, None]
    c0s = t0.particles["centre_vox"] - t0.drift_vox[None, :]
    c1s = t.particles["centre_vox"] - t.drift_vox[None, :]
    for c0, r0, c1, r1 in zip(c0s, t0.particles["radius_vox"], c1s, t.particles["radius_vox"]):
        lo = [max(0, int(math.floor(ci - r0))) for ci in c0]
        hi = [min(n, int(math.ceil(ci + r0)) + 1) for ci, n in zip(c0, shape)]
        grid = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        rel = [g - ci for g, ci in zip(grid, c0)]
        inside = rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2 < r0 * r0
        box = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
        for a in range(3):
            val = np.broadcast_to((c1[a] - c0[a]) + (r1 / r0 - 1.0) * rel[a], inside.shape)
            out[a][box][inside] = val[inside]
    return out
