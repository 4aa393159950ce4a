"""Parallel-beam filtered back-projection: ramp filters, padding, slices and volumes.

The filter is the discrete ram-lak kernel of Kak & Slaney (the one scikit-image and astra use:
its Fourier transform is exact at low frequency, unlike a sampled ``|f|``) times a window. The
back-projection kernels are in :mod:`analysis.backproject`. With ``n`` projections spread evenly
over 180 or 360 degrees the image is ``pi / n`` times the sum of the back-projected filtered
projections (a 360-degree scan sees each line twice and has twice the projections), in units of
the line integrals per pixel: a sinogram of ``-ln(I / I0)`` in voxel units gives attenuation per
voxel.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from numba import get_num_threads

from analysis.backproject import backproject_slice, backproject_vertical, backproject_volume

try:  # scipy's pocketfft keeps float32 and is several times faster than numpy's on batches of rows
    from scipy import fft as _fft
except ImportError:  # pragma: no cover - scipy is a dependency; numpy's is the fallback
    _fft = np.fft

#: Filter names, as in scikit-image's ``iradon`` (``ramp`` is accepted for ``ram-lak``).
FILTERS: tuple[str, ...] = ("ram-lak", "shepp-logan", "cosine", "hamming", "hann")
_ALIASES = {"ramp": "ram-lak", "ramlak": "ram-lak", "shepp": "shepp-logan", "hanning": "hann"}
#: Padding modes for the filter's convolution.
PAD_MODES: tuple[str, ...] = ("edge", "zero")


def check_filter(name: str) -> str:
    """The canonical filter name; ValueError naming the choices for an unknown one."""
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in FILTERS:
        raise ValueError(f"unknown filter {name!r}; choose one of: {', '.join(FILTERS)}")
    return key


def padded_length(n_det: int, pad_factor: float = 2.0) -> int:
    """FFT length for a detector row.

    The default, the next power of two >= 2 n, makes the circular convolution a linear one (no
    wrap-around). A smaller ``pad_factor`` takes the next length >= ``pad_factor * n`` that the
    FFT handles fast: at 1.5 the kernel's far tail (distances above ``n / 2``, weights below
    ``1 / (pi n / 2)^2``) wraps around, and 3072-point FFTs of 2048-pixel rows take about half
    the time of 4096-point ones here, which the live preview spends.
    """
    if pad_factor >= 2.0:
        return max(64, 1 << int(np.ceil(np.log2(pad_factor * n_det))))
    if pad_factor < 1.0:
        raise ValueError(f"pad_factor must be >= 1, got {pad_factor}")
    return max(64, _fft.next_fast_len(int(np.ceil(pad_factor * n_det)), real=True))


@lru_cache(maxsize=32)
def _response(n_pad: int, name: str) -> np.ndarray:
    # Spatial ram-lak kernel h[0] = 1/4, h[odd k] = -1/(pi k)^2 (Kak & Slaney eq. 61), so
    # Re(FFT(h)) ~ |f| in cycles per pixel; the factor pi / n_angles is applied after the sum.
    h = np.zeros(n_pad)
    h[0] = 0.25
    idx = np.arange(n_pad)
    dist = np.minimum(idx, n_pad - idx)
    odd = dist % 2 == 1
    h[odd] = -1.0 / (np.pi * dist[odd]) ** 2
    ramp = np.real(np.fft.rfft(h))
    f = np.fft.rfftfreq(n_pad)  # 0 .. 0.5 cycles per pixel
    w = np.pi * f  # 0 .. pi/2 at Nyquist
    window = {
        "ram-lak": np.ones_like(f),
        "shepp-logan": np.sinc(f),  # sin(pi f) / (pi f)
        "cosine": np.cos(w),
        "hamming": 0.54 + 0.46 * np.cos(2 * w),
        "hann": 0.5 + 0.5 * np.cos(2 * w),
    }[name]
    return ramp * window


def filter_response(n_pad: int, filter_name: str = "ram-lak") -> np.ndarray:
    """Frequency response (``rfft`` layout, length ``n_pad // 2 + 1``) of the ramp filter.

    Parameters
    ----------
    n_pad
        FFT length, pixels.
    filter_name
        One of :data:`FILTERS`.

    Returns
    -------
    numpy.ndarray
        float64 response, about ``|f|`` (cycles per pixel) times the window.
    """
    return _response(int(n_pad), check_filter(filter_name))


#: Bytes of complex spectrum filtered per block of rows: blocks stay in cache and their buffers
#: are reused, where one FFT of a whole 2048 x 2048 frame stack allocates (and page-faults)
#: hundreds of MB per call, which cost more than the FFTs themselves in streaming use.
_BLOCK_BYTES = 4 << 20


def filter_projections(proj: np.ndarray, filter_name: str = "ram-lak", *,
                       pad_mode: str = "edge", out: np.ndarray | None = None,
                       pad_factor: float = 2.0) -> np.ndarray:
    """Ramp-filter projections along their last axis (detector columns).

    Parameters
    ----------
    proj
        (..., n_det) line integrals (a sinogram (n_angles, n_det), or projections
        (n_angles, rows, n_det)).
    filter_name
        One of :data:`FILTERS`.
    pad_mode
        ``"edge"`` repeats the border pixels into the padding (suppresses the cupping a sample
        wider than the field of view causes), ``"zero"`` pads with zeros (scikit-image).
    out
        float32 array of the same shape to write into, possibly a view into a larger buffer
        (the streaming reconstruction reuses one, padded for the back-projection); its rows
        must be addressable as one 2-D view.
    pad_factor
        Padded row length relative to the row (see :func:`padded_length`).

    Returns
    -------
    numpy.ndarray
        float32 filtered projections, same shape (``out`` if given).
    """
    if pad_mode not in PAD_MODES:
        raise ValueError(f"unknown pad_mode {pad_mode!r}; choose one of: {', '.join(PAD_MODES)}")
    p = np.asarray(proj, dtype=np.float32)
    n_det = p.shape[-1]
    rows = p.reshape(-1, n_det)
    n_pad = padded_length(n_det, pad_factor)
    # Keep the samples in the middle of the padded row, so the edge padding is split evenly.
    left = (n_pad - n_det) // 2
    response = filter_response(n_pad, filter_name).astype(np.float32)
    result = np.empty(p.shape, np.float32) if out is None else out
    if result.shape != p.shape or result.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {p.shape}, got {result.dtype} {result.shape}")
    dest = result.view()
    dest.shape = rows.shape  # raises AttributeError rather than silently writing to a copy
    block = max(1, min(len(rows), _BLOCK_BYTES // (8 * n_pad)))
    buf = np.zeros((block, n_pad), np.float32)
    # The FFTs use as many threads as the numba kernels (1.5x on 2 cores for 2048-pixel rows).
    threads = {"workers": get_num_threads()} if _fft is not np.fft else {}
    for r0 in range(0, len(rows), block):
        r1 = min(len(rows), r0 + block)
        b = buf[: r1 - r0]
        b[:, left:left + n_det] = rows[r0:r1]
        if pad_mode == "edge":
            b[:, :left] = rows[r0:r1, :1]
            b[:, left + n_det:] = rows[r0:r1, -1:]
        spec = _fft.rfft(b, axis=-1, **threads)
        spec *= response
        dest[r0:r1] = _fft.irfft(spec, n=n_pad, axis=-1, **threads)[:, left:left + n_det]
    return result


def _check(sino: np.ndarray, angles_rad: np.ndarray, ndim: int, what: str) -> np.ndarray:
    s = np.asarray(sino)
    if s.ndim != ndim:
        raise ValueError(f"{what} must be {ndim}-D, got shape {s.shape}")
    if len(angles_rad) != s.shape[0]:
        raise ValueError(f"{len(angles_rad)} angles for {s.shape[0]} projections")
    if s.shape[0] == 0:
        raise ValueError("no projections to reconstruct")
    return s


def fbp_scale(n_angles: int) -> float:
    """Factor turning a sum of back-projected filtered projections into attenuation: pi / n."""
    return float(np.pi / n_angles)


def fbp_slice(sinogram: np.ndarray, angles_rad: np.ndarray, *, center: float | None = None,
              filter_name: str = "ram-lak", pad_mode: str = "edge",
              size: int | None = None) -> np.ndarray:
    """Reconstruct one slice by filtered back-projection.

    Parameters
    ----------
    sinogram
        (n_angles, n_det) line integrals per pixel (-ln transmission).
    angles_rad
        Projection angles, radians, spread evenly over 180 or 360 degrees.
    center
        Detector position of the rotation axis, pixels (default ``n_det // 2``).
    filter_name, pad_mode
        See :func:`filter_projections`.
    size
        Width of the square slice in pixels (default ``n_det``).

    Returns
    -------
    numpy.ndarray
        float32 (size, size) attenuation per pixel; zero outside the reconstruction circle.
    """
    s = _check(sinogram, angles_rad, 2, "sinogram")
    n = s.shape[1] if size is None else int(size)
    c = s.shape[1] // 2 if center is None else float(center)
    q = filter_projections(s, filter_name, pad_mode=pad_mode)
    out = backproject_slice(q, angles_rad, c, n)
    out *= fbp_scale(len(angles_rad))
    return out


def fbp_volume(projections: np.ndarray, angles_rad: np.ndarray, *, center: float | None = None,
               filter_name: str = "ram-lak", pad_mode: str = "edge",
               size: int | None = None) -> np.ndarray:
    """Reconstruct every detector row: (n_angles, nz, n_det) -> float32 (nz, size, size).

    Parameters as :func:`fbp_slice`; slice ``z`` comes from detector row ``z``.
    """
    p = _check(projections, angles_rad, 3, "projections")
    n = p.shape[2] if size is None else int(size)
    c = p.shape[2] // 2 if center is None else float(center)
    q = filter_projections(p, filter_name, pad_mode=pad_mode)
    out = backproject_volume(q, angles_rad, c, n)
    out *= fbp_scale(len(angles_rad))
    return out


def fbp_orthogonal(projections: np.ndarray, angles_rad: np.ndarray, *,
                   index: tuple[int, int, int] | None = None, center: float | None = None,
                   filter_name: str = "ram-lak", pad_mode: str = "edge",
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three orthogonal full-resolution slices without reconstructing the volume.

    Parameters
    ----------
    projections
        (n_angles, nz, n_det) line integrals.
    index
        (z, y, x) where the slices cross (default: the middle).
    center, filter_name, pad_mode
        As :func:`fbp_slice`.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        The axial slice ``vol[z]`` (n, n), the slice ``vol[:, y, :]`` (nz, n) and the slice
        ``vol[:, :, x]`` (nz, n), float32, as :func:`fbp_volume` would give them.
    """
    p = _check(projections, angles_rad, 3, "projections")
    nz, n = p.shape[1], p.shape[2]
    z, y, x = (nz // 2, n // 2, n // 2) if index is None else (int(i) for i in index)
    if not (0 <= z < nz and 0 <= y < n and 0 <= x < n):
        raise ValueError(f"slice index {(z, y, x)} outside the volume {(nz, n, n)}")
    c = n // 2 if center is None else float(center)
    q = filter_projections(p, filter_name, pad_mode=pad_mode)
    scale = fbp_scale(len(angles_rad))
    axial = backproject_slice(q[:, z], angles_rad, c, n) * scale
    xz = backproject_vertical(q, angles_rad, c, n, "y", y) * scale
    yz = backproject_vertical(q, angles_rad, c, n, "x", x) * scale
    return axial, xz, yz
