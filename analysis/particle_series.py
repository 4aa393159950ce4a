"""One operando series of volumes -> particle table, electrode table, summary (and files).

``analyze_volumes`` is what ``tomocycle classify`` runs on volume files and what
``tomocycle analyze`` runs on the catalog's reconstructions: segment T0 (:mod:`analysis.segment`),
then for every timestep segment with T0's matrix level, register to T0 on the collector and track
every T0 particle (:mod:`analysis.track`), measure its features (:mod:`analysis.features`), and
the electrode's metrics (:mod:`analysis.electrode`, :mod:`analysis.dvc`); finally classify
(:mod:`analysis.classify`). Volumes are consumed one at a time, so an iterator of volumes keeps
one in memory besides T0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from analysis.classify import Thresholds, classify_particles, grey_drop, noise_floor
from analysis.dvc import local_strain
from analysis.electrode import (
    THEORETICAL_CAPACITY_MAH_G,
    agglomerates,
    cracks,
    expansion_vs_charge,
    half_strains,
    region_histograms,
    region_strain,
    thickness_map,
)
from analysis.features import FEATURES, measure_particles
from analysis.morphology import binary_dilate
from analysis.segment import segment_volume
from analysis.track import label_stats, track_step

__all__ = ["SeriesResult", "analyze_volumes", "paper_summary"]


@dataclass
class SeriesResult:
    """Everything the analysis found in a series.

    ``features`` is (n_steps, n_particles, len(FEATURES)); ``electrode`` one dict per step;
    per-particle arrays are indexed like T0's labels (particle id = index + 1).
    """

    voxel_size_um: float
    lithiated_at: int
    centroid_t0: np.ndarray
    volume_t0_vox: np.ndarray
    features: np.ndarray
    drop: np.ndarray
    classes: np.ndarray
    modes: np.ndarray
    electrode: list[dict]
    summary: dict
    strain_maps: list = field(default_factory=list)
    class_slice: np.ndarray | None = None  #: (ny, nx) particle ids of T0's mid-electrode slice
    grey_slice: np.ndarray | None = None
    step_seconds: list = field(default_factory=list)  #: wall time of each timestep's analysis

    @property
    def diameter_um(self) -> np.ndarray:
        """T0 equivalent diameters, µm."""
        return np.cbrt(6.0 * self.volume_t0_vox / np.pi) * self.voxel_size_um


def _step_metrics(seg, track, ref_seg, k: int, v: float, strain) -> dict:
    lay = seg.layers
    diam, flag = agglomerates(seg.mask, v)
    pore = min(lay.above_level, lay.matrix_level)
    frac, width, _ = cracks(seg.smooth, seg.columns, seg.mask, lay, pore)
    tmap = thickness_map(seg.smooth, seg.columns, seg.mask, lay, tile=32)
    row = {"step": k, "thickness_um": lay.thickness_vox * v,
           "thickness_map_std_um": float(np.nanstd(tmap) * v) if np.isfinite(tmap).any() else np.nan,
           "collector_top_vox": lay.collector_top, "electrode_top_vox": lay.electrode_top,
           "shift_z_vox": track.shift[0], "shift_y_vox": track.shift[1],
           "shift_x_vox": track.shift[2],
           "crack_fraction": frac, "crack_median_width_um": width * v,
           "agglomerates": int(diam.size), "agglomerates_over_50um": int(flag.sum()),
           "largest_agglomerate_um": float(diam.max()) if diam.size else 0.0}
    if strain is not None:
        halves = half_strains(strain.displacement[..., 0], strain.valid, strain.height,
                              track.shift[0], ref_seg.layers.thickness_vox, lay.thickness_vox)
        for side, val in halves.items():
            row[f"axial_strain_{side}"] = val
        for name in ("axial", "volumetric"):
            stats = region_strain(getattr(strain, name), strain.valid, strain.height,
                                  ref_seg.layers.thickness_vox)
            for side, val in stats.items():
                row[f"dvc_{name}_{side}"] = val
            hists = region_histograms(getattr(strain, name), strain.valid, strain.height,
                                      ref_seg.layers.thickness_vox)
            for side, h in hists.items():
                for q in ("p10", "p50", "p90"):
                    row[f"dvc_{name}_{side}_{q}"] = h[q]
                # counts over analysis.electrode.STRAIN_BIN_EDGES, ';'-separated
                row[f"dvc_{name}_{side}_hist"] = ";".join(str(int(c)) for c in h["counts"])
    return row


#: Thickest electrode, in voxels, that the DVC correlates at full resolution (see _dvc).
DVC_MAX_THICKNESS_VOX = 128.0


def _dvc(ref, seg, track, feats: list, thresholds: Thresholds, window: int):
    """Local DVC of one timestep against T0 (see :mod:`analysis.dvc`).

    Prior: the uniform stretch of the measured thicknesses. Particles whose grey changed since
    T0 (grey drop of at least ``thresholds.lithiation_min``, or not measured) are left out of
    the correlation, dilated by 2 voxels for their blurred edge: a lithiating particle swells
    about its own centre and, in phase contrast (002), fades into the binder, so it is not a
    texture that moves with the electrode. Unchanged (inactive) particles stay in: they are
    the strongest texture there is. On the (160, 160, 160) nano phantom of ``bench classify
    --quick`` this lowered the largest half-electrode strain error from 0.078 to 0.015, on the
    219-particle one from 0.015 to 0.008 (both against all voxels with a +-6 search;
    docs/particles.md).
    """
    col = FEATURES.index("mean_grey")
    d = grey_drop(np.stack([feats[0][:, col], feats[-1][:, col]]), ref.matrix)[1]
    changed = np.flatnonzero(~(np.abs(d) < thresholds.lithiation_min)) + 1
    exclude = binary_dilate(np.isin(ref.labels, changed), 2)
    stretch = seg.layers.thickness_vox / ref.layers.thickness_vox - 1.0
    # Binning keeps the electrode within ~128 correlation voxels: the +-2 search after the
    # stretch prior was validated there (35-83 voxel electrodes), and the cost of a finer grid
    # buys no detail in a strain field that is smooth over micrometres (local_strain's bin).
    b = max(1, int(np.ceil(ref.layers.thickness_vox / DVC_MAX_THICKNESS_VOX)))
    return local_strain(ref.smooth, seg.smooth, ref.columns, ref.layers.collector_top,
                        ref.layers.electrode_top, track.shift, (stretch, 0.0), window=window,
                        exclude=exclude, bin=b)


def analyze_volumes(volumes: Iterable[np.ndarray], voxel_size_um: float, lithiated_at: int,
                    charges: Sequence[float] | None = None, out_dir: str | Path | None = None,
                    *, noise_pair: tuple[int, int] | None = None,
                    thresholds: Thresholds = Thresholds(), dvc: bool = True,
                    dvc_window: int = 16, labels: Sequence[str] | None = None,
                    min_diameter_um: float | None = None, cache: dict | None = None) -> SeriesResult:
    """Segment, register, track, measure and classify a series of reconstructed volumes.

    Parameters
    ----------
    volumes
        T0, T1, ... as (nz, ny, nx) arrays (or an iterator over them), same shape and grey scale.
    voxel_size_um
        Voxel edge, µm.
    lithiated_at
        Index of the most lithiated scan (000's end of discharge).
    charges
        Net charge passed into Si at each scan, mAh/g (for thickness versus charge, and the
        capacity check of the class fractions); optional.
    out_dir
        When given, CSV tables and PNG plots are written there (:mod:`analysis.report`).
    noise_pair
        Two scans with no electrochemistry between them (002's T8, T9): the noise floor.
    thresholds
        Classification thresholds.
    dvc, dvc_window
        Run local DVC against T0 at each scan, window edge in voxels.
    labels
        Scan labels for the tables (default T0, T1, ...).
    min_diameter_um
        Smallest particle counted in 000's sentence (:func:`paper_summary`; default 50 um, or
        the resolvable size when no particle is that large).
    cache
        A dict kept by the caller across calls on a growing series (the live consumer analyses
        T0..Tk after every scan): T0's segmentation and each step's measurements are stored in
        it and reused, so only new volumes are segmented; the results are the same. A volume
        whose step is cached may be passed as None (it is not read). Use one dict per series
        and the same settings on every call.

    Returns
    -------
    SeriesResult
    """
    cache = {} if cache is None else cache
    it = iter(volumes)
    first = next(it)
    t_step = time.perf_counter()  # per-step wall time, excluding reading the volumes
    if "ref" not in cache:
        cache["ref"] = segment_volume(first)
    ref = cache["ref"]
    refm = (ref.matrix, ref.matrix_spread)
    st0 = label_stats(ref.labels, ref.n_labels)
    r0 = np.cbrt(3.0 * np.maximum(st0.volumes, 1.0) / (4.0 * np.pi))
    feats, electrode, strains, seconds = [], [], [], []
    for k, vol in enumerate(chain([first], it)):
        if k not in cache:
            t_step = t_step if k == 0 else time.perf_counter()
            seg = ref if k == 0 else segment_volume(vol, reference=refm)
            st = label_stats(seg.labels, seg.n_labels)
            tr = track_step(st0, ref.layers, ref.columns, st, seg.layers, seg.columns)
            feat = measure_particles(seg.smooth, tr.centres, r0, tr.label, st.volumes, st.centroids)
            strain = _dvc(ref, seg, tr, [*feats, feat], thresholds, dvc_window) if dvc and k > 0 else None
            cache[k] = (feat, _step_metrics(seg, tr, ref, k, voxel_size_um, strain), strain,
                        time.perf_counter() - t_step)
        feat, metrics, strain, secs = cache[k]
        feats.append(feat)
        electrode.append(dict(metrics))
        if strain is not None:
            strains.append(strain)
        seconds.append(secs)
    n_steps = len(feats)
    if not 0 <= lithiated_at < n_steps:
        raise ValueError(f"--lithiated-at {lithiated_at} is outside the {n_steps} volumes")
    f = np.stack(feats)
    drop = grey_drop(f[:, :, FEATURES.index("mean_grey")], ref.matrix)
    noise = noise_floor(drop, noise_pair)
    classes, modes = classify_particles(drop, f[:, :, FEATURES.index("radial_r2")], 2.0 * r0,
                                        lithiated_at, thresholds, noise)
    for row, lab in zip(electrode, labels or [f"T{i}" for i in range(n_steps)]):
        row["label"] = lab
    if charges is not None:
        q = np.asarray(charges, float)
        for row, qi in zip(electrode, q):
            row["charge_mAh_g"] = float(qi)
    mid = int(0.5 * (ref.layers.collector_top + ref.layers.electrode_top))
    res = SeriesResult(voxel_size_um=voxel_size_um, lithiated_at=lithiated_at,
                       centroid_t0=st0.centroids, volume_t0_vox=st0.volumes, features=f,
                       drop=drop, classes=classes, modes=modes, electrode=electrode, summary={},
                       strain_maps=strains, class_slice=ref.labels[mid].copy(),
                       grey_slice=ref.smooth[mid].copy(), step_seconds=seconds)
    res.summary = paper_summary(res, charges, noise, min_diameter_um)
    if out_dir is not None:
        from analysis.report import write_report  # lazy: matplotlib
        write_report(res, out_dir)
    return res


def _summary_diameter(res: SeriesResult, min_diameter_um: float | None,
                      min_diameter_vox: float) -> float:
    """000's 50 um, or the resolvable size when no particle reaches 50 um (nano-CT, 002)."""
    if min_diameter_um is not None:
        return float(min_diameter_um)
    return 50.0 if np.any(res.diameter_um > 50.0) else min_diameter_vox * res.voxel_size_um


def paper_summary(res: SeriesResult, charges: Sequence[float] | None, noise: float = 0.0,
                  min_diameter_um: float | None = None, *,
                  min_diameter_vox: float = Thresholds.min_diameter_vox,
                  tolerance_pct: float = 5.0) -> dict:
    """000's sentence ("N particles above 50 um: x % inactive, y % lithiated, z % delithiated")
    and its check against the capacities.

    Parameters
    ----------
    res
        The series' result (classes, T0 volumes, thicknesses).
    charges
        Net charge passed into Si at each scan, mAh/g; without them there is no capacity check.
    noise
        Noise floor of the grey drop, reported.
    min_diameter_um
        Particles counted: equivalent diameter above this. Default: 000's 50 um, or, when no
        particle is that large (002's 3-7 um particles), the resolvable size
        ``min_diameter_vox`` voxels; the sentence names the size used.
    tolerance_pct
        Slack of the capacity check, percentage points of the theoretical capacity.

    Returns
    -------
    dict
        ``sentence``, the percentages, and with ``charges``: ``discharge_capacity_pct`` and
        ``charge_capacity_pct`` (charge passed to the most lithiated scan, and back by the last
        one, over the theoretical 3579 mAh/g), ``lithiated_volume_pct`` and
        ``delithiated_volume_pct`` (the classes by Si volume, as charge is counted),
        ``capacity_consistent`` and ``capacity_sentence``.

    Notes
    -----
    000 compared 87 % lithiated particles with 3000 of 3500 mAh/g on discharge, and 24 %
    delithiated with 500 mAh/g on charge: charge can only go where the images see Si react,
    so the lithiated (delithiated) Si volume must be at least the fraction of the theoretical
    capacity passed on discharge (charge). The check states whether it is, within
    ``tolerance_pct``; a fraction far above it means particles reacted only in part.
    """
    d_min = _summary_diameter(res, min_diameter_um, min_diameter_vox)
    big = (res.diameter_um > d_min) & (res.classes != "unresolved")
    n = int(big.sum())
    cls = res.classes[big]
    pct = {c: 100.0 * float(np.mean(np.isin(cls, c))) if n else np.nan
           for c in ("inactive", "deactivated", "active")}
    lith = pct["active"] + pct["deactivated"] + (100.0 * float(np.mean(cls == "lithiated")) if n else 0.0)
    out = {"n_particles": int(len(res.classes)), "n_above": n, "min_diameter_um": d_min,
           "inactive_pct": pct["inactive"], "lithiated_pct": lith, "delithiated_pct": pct["active"],
           "noise_floor": noise,
           "sentence": (f"{n} particles above {d_min:.3g} um: {pct['inactive']:.0f} % "
                        f"inactive, {lith:.0f} % lithiated, {pct['active']:.0f} % delithiated")}
    thick = [row["thickness_um"] for row in res.electrode]
    if charges is not None and len(charges) == len(thick):
        q = np.asarray(charges, float)
        out.update(expansion_vs_charge(np.asarray(thick), q, res.lithiated_at))
        out.update(_capacity_check(res, q, big, cls, tolerance_pct))
    return out


def _capacity_check(res: SeriesResult, q: np.ndarray, big: np.ndarray, cls: np.ndarray,
                    tol: float) -> dict:
    """Class fractions by Si volume against the charge passed (see :func:`paper_summary`)."""
    k = res.lithiated_at
    w = res.volume_t0_vox[big]
    out = {"discharge_capacity_pct": float(100.0 * q[k] / THEORETICAL_CAPACITY_MAH_G),
           "charge_capacity_pct": float(100.0 * (q[k] - q[-1]) / THEORETICAL_CAPACITY_MAH_G)}
    if not w.size or w.sum() <= 0:
        out.update(lithiated_volume_pct=np.nan, delithiated_volume_pct=np.nan,
                   capacity_consistent=False, capacity_sentence="no particles to check")
        return out
    lit = 100.0 * float(w[np.isin(cls, ("active", "deactivated", "lithiated"))].sum() / w.sum())
    deli = 100.0 * float(w[cls == "active"].sum() / w.sum())
    ok = lit >= out["discharge_capacity_pct"] - tol and deli >= out["charge_capacity_pct"] - tol
    out.update(lithiated_volume_pct=lit, delithiated_volume_pct=deli, capacity_consistent=ok,
               capacity_sentence=(
                   f"by Si volume {lit:.0f} % lithiated for {q[k]:.0f} mAh/g on discharge "
                   f"({out['discharge_capacity_pct']:.0f} % of {THEORETICAL_CAPACITY_MAH_G:.0f}), "
                   f"{deli:.0f} % delithiated for {q[k] - q[-1]:.0f} mAh/g back on charge "
                   f"({out['charge_capacity_pct']:.0f} %): "
                   + ("consistent" if ok else "INCONSISTENT")
                   + f" (reacting Si >= charge passed, within {tol:g} points)"))
    return out
