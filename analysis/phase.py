"""Single-distance phase retrieval (Paganin et al., J. Microsc. 206, 33, 2002).

For a homogeneous object (one delta/beta ratio) imaged at a short propagation distance ``z``, the
transport-of-intensity equation gives ``I(z) = I0 (1 - z delta / mu * laplacian) exp(-mu T)``;
inverting the operator in Fourier space recovers ``exp(-mu T)``:

    exp(-mu T) = F^-1[ F[I(z) / I0] / (1 + pi lambda z (delta/beta) |f|^2) ]

with ``f`` in cycles per metre. The papers use delta/beta = 170 (002, ID16B, 29.6 keV) and 35
(003, TOMCAT, 20 keV). Apply to flat-corrected transmission, then take ``-log``.
"""

from __future__ import annotations

import numpy as np

#: h c in keV m, for the wavelength.
_HC_KEV_M = 1.23984198e-9
#: Defaults when the file does not say: the 003 micro-CT energy, a typical TOMCAT distance.
DEFAULT_ENERGY_KEV = 20.0
DEFAULT_DISTANCE_M = 0.1


def wavelength_m(energy_kev: float) -> float:
    """X-ray wavelength in metres for a photon energy in keV."""
    if not energy_kev > 0:
        raise ValueError(f"energy must be > 0 keV, got {energy_kev}")
    return _HC_KEV_M / energy_kev


def paganin_filter(shape: tuple[int, int], *, pixel_size_m: float, distance_m: float,
                   energy_kev: float, delta_beta: float) -> np.ndarray:
    """The low-pass ``1 / (1 + pi lambda z (delta/beta) |f|^2)`` on an ``rfft2`` grid.

    Parameters
    ----------
    shape
        (rows, cols) of the padded frame.
    pixel_size_m
        Detector pixel size at the sample, m.
    distance_m
        Propagation (sample-detector) distance, m.
    energy_kev
        Photon energy, keV.
    delta_beta
        Ratio of the refractive index decrement to the absorption index (> 0).

    Returns
    -------
    numpy.ndarray
        float32 (rows, cols // 2 + 1) filter, 1 at zero frequency.
    """
    for name, value in (("pixel_size_m", pixel_size_m), ("distance_m", distance_m),
                        ("delta_beta", delta_beta)):
        if not value > 0:
            raise ValueError(f"Paganin phase retrieval needs {name} > 0, got {value}")
    fy = np.fft.fftfreq(shape[0], d=pixel_size_m)[:, None]
    fx = np.fft.rfftfreq(shape[1], d=pixel_size_m)[None, :]
    alpha = np.pi * wavelength_m(energy_kev) * distance_m * delta_beta
    return (1.0 / (1.0 + alpha * (fx**2 + fy**2))).astype(np.float32)


def paganin(transmission: np.ndarray, *, delta_beta: float, pixel_size_m: float,
            distance_m: float = DEFAULT_DISTANCE_M, energy_kev: float = DEFAULT_ENERGY_KEV,
            pad: int | None = None) -> np.ndarray:
    """Paganin phase retrieval of flat-corrected frames.

    Parameters
    ----------
    transmission
        (rows, cols) or (n, rows, cols) flat-corrected intensity ``I / I0``.
    delta_beta
        delta/beta of the sample material (170 in 002, 35 in 003).
    pixel_size_m, distance_m, energy_kev
        See :func:`paganin_filter`.
    pad
        Pixels of edge padding on each side against wrap-around (default: a quarter of the
        frame, at least 8).

    Returns
    -------
    numpy.ndarray
        float32 filtered transmission ``exp(-mu T)``, same shape; take ``-log`` for the
        line integrals (in units of ``mu T``).
    """
    t = np.asarray(transmission, dtype=np.float32)
    stack = t if t.ndim == 3 else t.reshape(1, *t.shape[-2:])
    rows, cols = stack.shape[-2:]
    p = max(8, min(rows, cols) // 4) if pad is None else int(pad)
    padded = np.pad(stack, ((0, 0), (p, p), (p, p)), mode="edge")
    filt = paganin_filter(padded.shape[-2:], pixel_size_m=pixel_size_m, distance_m=distance_m,
                          energy_kev=energy_kev, delta_beta=delta_beta)
    out = np.empty_like(stack)
    for i in range(len(stack)):  # frame by frame: bounded memory for large stacks
        spec = np.fft.rfft2(padded[i]) * filt
        out[i] = np.fft.irfft2(spec, s=padded.shape[-2:])[p:p + rows, p:p + cols]
    return out.reshape(t.shape)
