"""Particle classes (000) and lithiation modes (002) from tracked per-particle features.

The evidence is the particle's *grey drop* ``D_k = (g_0 - g_k) / (g_0 - m)``: how far the mean
grey under the particle's probe ball (:mod:`analysis.features`) has fallen since T0, in units of
the particle's T0 contrast over the electrode matrix ``m``. Lithiated Si attenuates less (000's
histogram peak moving left), so D rises on lithiation and falls back on delithiation; it is 0
for an unchanged particle. A fully lithiated particle reaches D of 0.7 (absorption contrast, the
micro preset) to 1.05 (phase contrast, lithiated Si like binder, the nano preset).

* **inactive**: ``D_K < lithiation_min`` at the most lithiated scan K (``--lithiated-at``);
* **active**: lithiated, then recovered: ``(D_K - min_{k>K} D_k) / D_K >= recovery_min``;
* **deactivated**: lithiated, did not recover; **lithiated** when no scan follows K.

Mode: a core-shell particle keeps an unreacted core inside a lithiated shell, so its grey is a
function of the distance from its centre; network-like pathways are not radially ordered. The
score is the mean ``radial_r2`` over the scans where the particle is lithiated
(``D >= lithiation_min``); core-shell when it reaches ``core_shell_r2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Thresholds", "classify_particles", "grey_drop", "noise_floor"]


@dataclass(frozen=True)
class Thresholds:
    """Classification thresholds (defaults justified from the papers' signals and our noise).

    Attributes
    ----------
    lithiation_min
        Smallest grey drop D read as lithiated: 0.15 is a fifth of the weakest full-lithiation
        drop (0.7) and seven times the largest drop of an unchanged particle at the papers'
        doses (0.02). Raised to ``noise_sigmas`` times the noise floor when noise scans exist.
    recovery_min
        Smallest recovered fraction of D_K read as delithiation: 0.15, below the 35 % that
        002's partial discharge (85 -> 55 % SoC) gives an active particle, and well above a
        deactivated particle's drift (< 3 %).
    core_shell_r2
        Mean radial r2 above which a particle lithiates core-shell: 0.5, half-way between a
        core and shell that differ (>= 0.75 measured at both scales) and network pathways
        (<= 0.3).
    noise_sigmas
        Multiple of the noise-scan floor that a change must exceed (5: a false change in
        about one particle in 3.5 million per scan).
    min_diameter_vox
        Equivalent diameter below which a particle is reported but not classified
        (``unresolved``): its probe ball (0.7 R) would be under about two voxels.
    """

    lithiation_min: float = 0.15
    recovery_min: float = 0.15
    core_shell_r2: float = 0.5
    noise_sigmas: float = 5.0
    min_diameter_vox: float = 6.0


def grey_drop(mean_grey: np.ndarray, matrix_level: float) -> np.ndarray:
    """D for every scan and particle from ``mean_grey`` (n_steps, n_particles)."""
    g0 = mean_grey[0]
    contrast = np.where(np.abs(g0 - matrix_level) > 1e-12, g0 - matrix_level, np.nan)
    return (g0[None, :] - mean_grey) / contrast[None, :]


def noise_floor(drop: np.ndarray, pair: tuple[int, int] | None) -> float:
    """Robust std of D between two noise scans (no electrochemistry between them), or 0."""
    if pair is None:
        return 0.0
    diff = drop[pair[1]] - drop[pair[0]]
    diff = diff[np.isfinite(diff)]
    if diff.size < 3:
        return 0.0
    # the difference of two scans carries the noise twice
    return float(1.4826 * np.median(np.abs(diff - np.median(diff))) / np.sqrt(2.0))


def classify_particles(drop: np.ndarray, radial_r2: np.ndarray, diameter_vox: np.ndarray,
                       lithiated_at: int, thresholds: Thresholds = Thresholds(),
                       noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Class and mode of every tracked particle.

    Parameters
    ----------
    drop
        (n_steps, n) grey drop D (:func:`grey_drop`).
    radial_r2
        (n_steps, n) radial r2 of the probe ball (:mod:`analysis.features`).
    diameter_vox
        (n,) T0 equivalent diameters, voxels.
    lithiated_at
        Index K of the most lithiated scan.
    thresholds
        See :class:`Thresholds`.
    noise
        Noise floor of D (:func:`noise_floor`); 0 when unknown.

    Returns
    -------
    classes : numpy.ndarray
        str: active, deactivated, inactive, lithiated (no scan after K) or unresolved.
    modes : numpy.ndarray
        str: core-shell, network, or "" for particles that never lithiate.
    """
    n_steps, n = drop.shape
    if not 0 <= lithiated_at < n_steps:
        raise ValueError(f"lithiated_at {lithiated_at} outside the {n_steps} scans")
    lit_min = max(thresholds.lithiation_min, thresholds.noise_sigmas * noise)
    dk = drop[lithiated_at]
    lithiated = dk >= lit_min
    classes = np.where(lithiated, "lithiated", "inactive").astype("U11")
    if lithiated_at < n_steps - 1:
        back = np.nanmin(drop[lithiated_at + 1:], axis=0)
        recovered = (dk - back) >= np.maximum(thresholds.recovery_min * dk,
                                              thresholds.noise_sigmas * noise)
        classes[lithiated] = np.where(recovered[lithiated], "active", "deactivated")
    classes[~np.isfinite(dk)] = "unresolved"
    classes[diameter_vox < thresholds.min_diameter_vox] = "unresolved"
    lit_steps = drop >= lit_min
    with np.errstate(invalid="ignore"):
        score = np.nansum(np.where(lit_steps, radial_r2, 0.0), axis=0) / lit_steps.sum(axis=0)
    modes = np.where(score >= thresholds.core_shell_r2, "core-shell", "network").astype("U10")
    modes[~lit_steps.any(axis=0) | np.isin(classes, ("inactive", "unresolved"))] = ""
    return classes, modes
