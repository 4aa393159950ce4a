"""Acquisition model: flats, darks, photon noise, blur, rings and zingers.

Each injector is a pure function of its inputs and a random generator (or seed), so a
correction in ``analysis`` can be tested against exactly the artefact it corrects. Images are
arrays whose last two axes are (rows, cols) = (v, u); 1-D arrays are a single detector row.

A frame is ``counts = dark + Poisson(blur(flat * exp(-L)) * ring_gain) (+ zingers)``, rounded
and clipped to the camera's bit depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numba import njit

RngLike = np.random.Generator | int


def _rng(rng: RngLike) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _shape(shape: int | tuple[int, ...]) -> tuple[int, ...]:
    return (int(shape),) if np.isscalar(shape) else tuple(int(n) for n in shape)


def flat_field(shape: int | tuple[int, ...], photons: float, *, falloff: float = 0.1) -> np.ndarray:
    """Expected open-beam counts: a smooth beam profile peaking at the detector centre.

    Parameters
    ----------
    shape
        Detector shape (nv, nu), or nu for one row.
    photons
        Counts per pixel at the beam centre.
    falloff
        Relative intensity lost at the middle of each detector edge (Gaussian profile).

    Returns
    -------
    numpy.ndarray
        float64 expected counts, ``photons`` at the centre, ``photons * (1 - falloff)`` at the
        middle of the edges.
    """
    if not 0 <= falloff < 1:
        raise ValueError(f"falloff must be in [0, 1), got {falloff}")
    shp = _shape(shape)
    k = -math.log1p(-falloff)
    prof = np.ones(shp)
    for ax, n in enumerate(shp):
        t = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
        prof = prof * np.exp(-k * t**2).reshape([n if a == ax else 1 for a in range(len(shp))])
    return photons * prof


def add_poisson(expected_counts: np.ndarray, rng: RngLike) -> np.ndarray:
    """Photon (shot) noise: Poisson samples of ``expected_counts`` (>= 0), as float64."""
    lam = np.asarray(expected_counts, dtype=np.float64)
    if np.any(lam < 0):
        raise ValueError("expected counts must be non-negative")
    return _rng(rng).poisson(lam).astype(np.float64)


def _gauss_kernel(sigma: float) -> np.ndarray:
    r = max(1, int(math.ceil(4.0 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def add_blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian detector blur (point-spread function) over the last two axes.

    Parameters
    ----------
    image
        (..., rows, cols) or a single row; float.
    sigma_px
        Standard deviation of the PSF in pixels; 0 returns a copy.

    Returns
    -------
    numpy.ndarray
        float64 blurred image; reflecting edges, so the total is preserved away from them.
    """
    img = np.asarray(image, dtype=np.float64)
    if sigma_px < 0:
        raise ValueError(f"sigma_px must be >= 0, got {sigma_px}")
    if sigma_px == 0:
        return img.copy()
    k = _gauss_kernel(sigma_px)
    r = k.size // 2
    for ax in range(max(-2, -img.ndim), 0):
        pad = [(0, 0)] * img.ndim
        pad[ax] = (r, r)
        padded = np.pad(img, pad, mode="symmetric")
        windows = np.lib.stride_tricks.sliding_window_view(padded, k.size, axis=ax)
        img = windows @ k  # the window axis is appended last
    return img


def ring_gains(shape: int | tuple[int, ...], strength: "float | AcquisitionModel",
               fraction: "float | RngLike | None" = None, rng: RngLike | None = None) -> np.ndarray:
    """Per-pixel gain residuals that a flat-field correction does not remove (ring sources).

    The flats record the correctable response of the camera; these gains model what changes
    between the flat and the sample exposure (scintillator defects with a non-linear or drifting
    response). :func:`simulate_frame` applies them to projections only, so after flat
    correction a defective column keeps a constant offset ``-ln(gain)`` at every angle: a
    stripe in the sinogram, a ring in the reconstruction. Draw them once per detector.

    Parameters
    ----------
    shape
        Detector shape (nv, nu), or nu.
    strength
        Relative standard deviation of a defective pixel's gain; or an
        :class:`AcquisitionModel`, in which case the call is ``ring_gains(shape, model, rng)``.
    fraction
        Fraction of pixels that are defective (the rest have gain 1).
    rng
        Generator or seed.

    Returns
    -------
    numpy.ndarray
        float64 gains, clipped to >= 0.05.
    """
    if isinstance(strength, AcquisitionModel):
        rng = fraction if rng is None else rng
        strength, fraction = strength.ring_strength, strength.ring_fraction
    if rng is None or fraction is None:
        raise TypeError("ring_gains needs fraction and rng")
    if not 0 <= float(fraction) <= 1 or strength < 0:
        raise ValueError(f"need strength >= 0 and 0 <= fraction <= 1, got {strength}, {fraction}")
    g = _rng(rng)
    shp = _shape(shape)
    defective = g.random(shp) < float(fraction)
    gains = 1.0 + strength * g.standard_normal(shp)
    return np.where(defective, np.maximum(gains, 0.05), 1.0)


def add_zingers(image: np.ndarray, rate: float, amplitude: float, rng: RngLike, *,
                return_mask: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Zingers: single-pixel bright spikes from direct hits on the camera.

    Parameters
    ----------
    image
        Counts, any shape.
    rate
        Probability per pixel per frame (expected number ``rate * image.size``).
    amplitude
        Mean added counts; each zinger adds ``amplitude * U(0.5, 1.5)``.
    rng
        Generator or seed.
    return_mask
        Also return the boolean mask of hit pixels.

    Returns
    -------
    numpy.ndarray or (numpy.ndarray, numpy.ndarray)
        float64 image with zingers (and the mask).
    """
    if not 0 <= rate <= 1:
        raise ValueError(f"rate must be a probability, got {rate}")
    g = _rng(rng)
    img = np.asarray(image, dtype=np.float64)
    mask = g.random(img.shape) < rate
    out = img + mask * amplitude * g.uniform(0.5, 1.5, img.shape)
    return (out, mask) if return_mask else out


def dark_frame(shape: int | tuple[int, ...], level: float, read_noise: float,
               rng: RngLike) -> np.ndarray:
    """Dark signal: offset ``level`` plus Gaussian read noise of std ``read_noise`` (counts)."""
    return level + read_noise * _rng(rng).standard_normal(_shape(shape))


@dataclass(frozen=True)
class AcquisitionModel:
    """Camera and beam parameters of :func:`simulate_frame` (counts per exposure)."""

    photons: float = 2.0e4  #: flat-field counts per pixel at the beam centre
    flat_falloff: float = 0.1  #: beam profile loss at the detector edges
    dark_level: float = 100.0  #: dark offset, counts
    read_noise: float = 3.0  #: read noise std, counts
    blur_sigma_px: float = 0.6  #: detector PSF std, pixels
    ring_strength: float = 0.02  #: relative std of defective pixels' residual gain
    ring_fraction: float = 0.02  #: fraction of defective pixels
    zinger_rate: float = 2.0e-5  #: zingers per pixel per frame
    zinger_amplitude: float = 3000.0  #: mean zinger counts
    bit_depth: int = 16

    def __post_init__(self) -> None:
        if not 1 <= self.bit_depth <= 16:
            raise ValueError(f"bit_depth must be in 1..16 (uint16 frames), got {self.bit_depth}")
        if self.photons < 0 or self.read_noise < 0 or self.blur_sigma_px < 0:
            raise ValueError("photons, read_noise and blur_sigma_px must be >= 0")


def simulate_frame(line_integrals_2d: np.ndarray,
                   kind: Literal["projection", "flat", "dark"], model: AcquisitionModel,
                   rng: RngLike, ring_gain: np.ndarray | None = None) -> np.ndarray:
    """One camera frame in counts.

    Parameters
    ----------
    line_integrals_2d
        (rows, cols) line integrals (-ln transmission), or a stack (n, rows, cols) to simulate n
        frames at once (a fly scan's segment); only its shape matters for flats and darks.
    kind
        ``"projection"`` (sample in beam), ``"flat"`` (sample out) or ``"dark"`` (shutter shut).
    model
        Camera and beam parameters.
    rng
        Generator or seed; noise draws come from it in a fixed order.
    ring_gain
        Residual per-pixel gains from :func:`ring_gains`, applied to projections only.

    Returns
    -------
    numpy.ndarray
        uint16 counts ``dark + Poisson(blur(flat * exp(-L)) * gain)`` plus zingers, rounded and
        clipped to ``[0, 2**bit_depth - 1]``; same shape as ``line_integrals_2d``.
    """
    if kind not in ("projection", "flat", "dark"):
        raise ValueError(f"kind must be 'projection', 'flat' or 'dark', got {kind!r}")
    g = _rng(rng)
    lint = np.asarray(line_integrals_2d, dtype=np.float64)
    if kind != "dark":
        # The beam profile belongs to the detector plane: one profile broadcast over a stack.
        expected = flat_field(lint.shape[-2:], model.photons, falloff=model.flat_falloff)
        expected = np.broadcast_to(expected, lint.shape)
        if kind == "projection":
            expected = expected * np.exp(-lint)
        expected = add_blur(expected, model.blur_sigma_px)
        if kind == "projection" and ring_gain is not None:
            expected = expected * ring_gain
    else:
        expected = np.zeros(lint.shape)
    out = np.empty(lint.shape, dtype=np.uint16)
    _counts(np.ascontiguousarray(expected, dtype=np.float64), float(model.dark_level),
            float(model.read_noise), float(model.zinger_rate), float(model.zinger_amplitude),
            2**model.bit_depth - 1, g, out)
    return out


#: Above this many expected photons a Poisson draw is taken from its normal approximation
#: (skewness 1/sqrt(400) = 5 %, immaterial next to read noise and at counts in the thousands).
_NORMAL_APPROX_PHOTONS = 400.0


@njit(cache=True)
def _counts(expected: np.ndarray, dark: float, read_noise: float, zinger_rate: float,
            zinger_amplitude: float, top: int, rng: np.random.Generator, out: np.ndarray) -> None:
    """Shot noise, dark offset, read noise, zingers, rounding and clipping, fused per pixel.

    The same model as ``add_poisson`` + ``dark_frame`` + ``add_zingers`` in one pass: a fly
    scan simulates millions of pixels per segment and the separate numpy passes cost ten times
    more.
    """
    lam_all = expected.ravel()
    flat_out = out.ravel()
    var_read = read_noise * read_noise
    for i in range(lam_all.size):
        lam = lam_all[i]
        if lam > _NORMAL_APPROX_PHOTONS:
            c = lam + math.sqrt(lam + var_read) * rng.standard_normal()
        else:
            c = rng.poisson(lam) + read_noise * rng.standard_normal() if lam > 0 else \
                read_noise * rng.standard_normal()
        c += dark
        if zinger_rate > 0 and rng.random() < zinger_rate:
            c += zinger_amplitude * (0.5 + rng.random())
        c = round(c)
        flat_out[i] = 0 if c < 0 else (top if c > top else c)
