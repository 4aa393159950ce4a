"""Segmentation of a reconstructed electrode volume into layers and labelled particles.

Method (one timestep):

1. :mod:`analysis.layers` finds the sample footprint, the current collector and a first
   electrode top.
2. The background of each slice ``m(z)`` is the mode of its denoised voxels (the matrix, or
   the separator and electrolyte above the electrode: the majority phase of the slice, whose
   narrow peak beats the broad spread of particle grey values). Taking it per slice absorbs
   the collector's blur tail into the first slices above it, so that the tail is not read as a
   sheet of particle and particles touching the collector keep their base. The spread ``s`` is
   a robust (MAD) width of the electrode's matrix; everything brighter than ``m(z) + k s`` is
   *material that is not matrix*: pristine Si, lithiated LixSi in absorption contrast, or
   their blurred edges. This generous mask is split where particles touch by a watershed on
   its distance transform (seeds: h-maxima) and labelled in 3-D.
3. Each label is then cut at half-way between ``m(z)`` and the level of its own outer shell:
   ``(m + Si) / 2`` for a pristine particle, ``(m + LixSi) / 2`` for a lithiated one in
   absorption contrast. A single global threshold cannot do both (a pristine-Si threshold drops
   a lithiated shell; a LixSi threshold inflates pristine particles by their blur). In phase
   contrast, where lithiated Si looks like the binder (002), the outer shell of what remains
   is unreacted Si, so a particle shows its unreacted part, as in the paper.
4. The layers are refitted on the matrix alone (material mask dilated by 2 voxels excluded).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from analysis.layers import Layers, find_layers, orient, otsu_threshold, sample_mask

__all__ = ["Segmentation", "label_particles", "matrix_level", "segment_volume",
           "slice_background", "split_touching"]


@dataclass
class Segmentation:
    """One timestep segmented: layers, sample footprint, particle mask and labels.

    Arrays are in the oriented frame (collector at low z); ``flipped`` says whether the input
    was flipped along z to get there.
    """

    layers: Layers
    columns: np.ndarray  #: (ny, nx) bool sample footprint
    matrix: float  #: grey level of the electrode matrix (mode)
    background: np.ndarray  #: (nz,) per-slice mode of the denoised volume
    matrix_spread: float  #: its robust standard deviation (denoised)
    material_threshold: float  #: grey above which a voxel is not matrix
    mask: np.ndarray  #: (nz, ny, nx) bool particle voxels (per-particle half-way cut)
    labels: np.ndarray  #: (nz, ny, nx) int32 particle labels, touching particles split
    n_labels: int
    smooth: np.ndarray  #: denoised volume (float32), oriented
    flipped: bool


def matrix_level(values: np.ndarray) -> tuple[float, float]:
    """Mode and robust spread of the majority (matrix) phase of electrode grey values.

    The mode comes from a 512-bin histogram smoothed over 5 bins (of the values below the Otsu
    threshold when the overall mode lies above it, i.e. is Si); the spread is 1.4826 times
    the median absolute deviation of the values below the mode (the bright side holds
    particles, the dark side only matrix, pores and noise).
    """
    v = np.asarray(values, dtype=np.float64)
    mode = _histogram_mode(v)
    t = otsu_threshold(v)
    if mode > t:
        # The narrow peak of dense Si can outgrow the matrix's, whose voxels are split between
        # binder and pores (nano-CT, 30 % Si): the matrix is the mode of the dark Otsu class.
        mode = _histogram_mode(v[v <= t])
    below = v[v <= mode]
    spread = 1.4826 * float(np.median(mode - below)) if below.size else float(np.std(v))
    return float(mode), max(spread, 1e-12)


def _histogram_mode(v: np.ndarray) -> float:
    """Centre of the highest bin of a 512-bin histogram smoothed over 5 bins."""
    lo, hi = np.percentile(v, [0.5, 99.5])
    hist, edges = np.histogram(v, bins=512, range=(lo, hi))
    hist = ndi.uniform_filter1d(hist.astype(float), 5)
    i = int(np.argmax(hist))
    return float(0.5 * (edges[i] + edges[i + 1]))


def split_touching(component: np.ndarray, h_vox: float = 1.0,
                   min_distance_vox: float = 1.5) -> tuple[np.ndarray, int]:
    """Watershed split of one binary component into touching convex parts.

    Seeds are the h-maxima of the (slightly smoothed) Euclidean distance transform: a neck
    between two touching spheres lowers the distance map by well over a voxel, whereas the
    maximum of one sphere's distance map is flat to within the voxel discretisation, so
    ``h_vox = 1`` splits touching particles without cutting single ones.

    Returns
    -------
    labels : numpy.ndarray
        int32 labels 1..n (0 outside), same shape as ``component``.
    n : int
    """
    from skimage.segmentation import watershed

    from analysis.morphology import h_maxima  # scikit-image's, without its whole-image sort

    dist = ndi.distance_transform_edt(np.pad(component, 1))[1:-1, 1:-1, 1:-1]
    peaks = h_maxima(ndi.gaussian_filter(dist, 0.5), h_vox).astype(bool)
    peaks &= dist >= min_distance_vox
    markers, n = ndi.label(peaks)
    if n <= 1:
        return component.astype(np.int32), int(component.any())
    return watershed(-dist, markers, mask=component).astype(np.int32), n


def label_particles(mask: np.ndarray, *, min_volume_vox: int = 8, split: bool = True,
                    h_vox: float = 1.0) -> tuple[np.ndarray, int]:
    """3-D labels of a particle mask, touching particles split by watershed.

    Parameters
    ----------
    mask
        bool (nz, ny, nx) particle voxels.
    min_volume_vox
        Components smaller than this are dropped (noise specks).
    split
        Split touching particles (:func:`split_touching`), component by component, so that the
        watershed runs only on the bounding box of each component.
    h_vox
        Depth of a neck that separates two particles, voxels.

    Returns
    -------
    labels : numpy.ndarray
        int32, 0 background, 1..n particles.
    n : int
    """
    comp, _ = ndi.label(mask)
    out = np.zeros(mask.shape, np.int32)
    n = 0
    for i, sl in enumerate(ndi.find_objects(comp), start=1):
        if sl is None:
            continue
        part = comp[sl] == i
        if np.count_nonzero(part) < min_volume_vox:
            continue
        sub, k = split_touching(part, h_vox) if split else (part.astype(np.int32), 1)
        out[sl][sub > 0] = sub[sub > 0] + n
        n += k
    return out, n


def _half_way_cut(excess: np.ndarray, labels: np.ndarray, n: int,
                  min_volume_vox: int) -> tuple[np.ndarray, int]:
    """Cut each label at half-way between the background and the level of its outer shell.

    ``excess`` is the lightly denoised volume minus its slice background, so the cut itself
    adds little blur. The shell is the label's voxels 3 to 4.5 voxels deep (3 voxels clears the
    blurred edge of the generous mask; small particles use their deepest half instead).
    """
    out = np.zeros_like(labels)
    k = 0
    for i, sl in enumerate(ndi.find_objects(labels, n), start=1):
        if sl is None:
            continue
        part = labels[sl] == i
        depth = ndi.distance_transform_edt(np.pad(part, 1))[1:-1, 1:-1, 1:-1]
        vals = excess[sl]
        top = depth.max()
        shell = part & (depth >= min(3.0, 0.5 * top)) & (depth <= max(4.5, 0.5 * top))
        level = float(np.median(vals[shell])) if shell.any() else float(vals[part].max())
        keep = part & (vals > 0.5 * level)
        if np.count_nonzero(keep) >= min_volume_vox:
            k += 1
            out[sl][keep] = k
    return out, k


def slice_background(smooth: np.ndarray, columns: np.ndarray, matrix: float,
                     collector_top: float, blur_vox: float) -> np.ndarray:
    """Background grey of each slice, (nz,) float32: the matrix level, raised near the collector.

    Far from the collector the background is the electrode matrix's level ``matrix`` (one value:
    a per-slice mode would be wrong where particles fill most of a slice, at the height of their
    equators or once they have swollen). Within ``3 * blur + 2`` voxels above the collector top
    the collector's blurred tail lifts every voxel, so the slice's own mode (no lower than
    ``matrix``) is used there, which keeps the tail from being read as a sheet of particle.
    """
    bg = np.full(smooth.shape[0], matrix, dtype=np.float32)
    z0 = max(0, int(np.floor(collector_top)))
    z1 = min(smooth.shape[0], int(np.ceil(collector_top + 3.0 * blur_vox + 2.0)))
    for z in range(z0, z1):
        bg[z] = max(matrix, matrix_level(smooth[z][columns])[0])
    return bg


def segment_volume(volume: np.ndarray, *, smooth_sigma: float = 1.0, k_sigma: float = 5.0,
                   split: bool = True, min_volume_vox: int = 8, h_vox: float = 1.0,
                   reference: tuple[float, float] | None = None) -> Segmentation:
    """Segment one reconstructed volume into collector, electrode (particles, matrix), above.

    Parameters
    ----------
    volume
        (nz, ny, nx) grey values.
    smooth_sigma
        Gaussian denoise before thresholding, voxels (1 voxel removes most reconstruction
        noise and keeps particles a few voxels across).
    k_sigma
        A voxel is material (not matrix) above ``m(z) + k_sigma * spread``; 5 robust sigmas
        keep matrix texture and noise out (about 3e-7 of Gaussian noise exceeds it) while
        staying below LixSi, whose contrast to the binder is several times the spread.
    split, min_volume_vox, h_vox
        See :func:`label_particles`.
    reference
        (matrix level, spread) of the denoised matrix to use instead of measuring them: pass
        T0's for later timesteps, where swollen lithiated particles can outnumber the matrix
        voxels and would otherwise be taken for it (the matrix itself does not change grey).

    Returns
    -------
    Segmentation
    """
    volume, flipped = orient(np.asarray(volume, dtype=np.float32))
    columns = sample_mask(volume)
    coarse = find_layers(volume, columns)
    z0 = min(volume.shape[0] - 1, int(np.ceil(coarse.collector_top)))
    z1 = max(z0 + 2, int(coarse.electrode_top))
    smooth = ndi.gaussian_filter(volume, smooth_sigma) if smooth_sigma > 0 else volume.copy()
    m, s = reference if reference is not None else matrix_level(smooth[z0:z1][:, columns])
    background = slice_background(smooth, columns, m, coarse.collector_top, coarse.blur_vox)
    material = np.zeros(volume.shape, bool)
    material[z0:] = (smooth[z0:] > (background[z0:] + k_sigma * s)[:, None, None]) & columns[None]
    layers = find_layers(volume, columns, material)
    generous, n = label_particles(material, min_volume_vox=min_volume_vox, split=split,
                                  h_vox=h_vox)
    excess = ndi.gaussian_filter(volume, 0.5) - background[:, None, None]
    labels, n = _half_way_cut(excess, generous, n, min_volume_vox)
    return Segmentation(layers=layers, columns=columns, matrix=m, background=background,
                        matrix_spread=s, material_threshold=m + k_sigma * s,
                        mask=labels > 0, labels=labels, n_labels=n, smooth=smooth,
                        flipped=flipped)
