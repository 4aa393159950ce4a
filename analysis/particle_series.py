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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from analysis.classify import Thresholds, classify_particles, grey_drop, noise_floor
from analysis.dvc import local_strain
from analysis.electrode import (agglomerates, cracks, expansion_vs_charge, region_histograms,
                                region_strain, thickness_map)
from analysis.features import FEATURES, measure_particles
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


def analyze_volumes(volumes: Iterable[np.ndarray], voxel_size_um: float, lithiated_at: int,
                    charges: Sequence[float] | None = None, out_dir: str | Path | None = None,
                    *, noise_pair: tuple[int, int] | None = None,
                    thresholds: Thresholds = Thresholds(), dvc: bool = True,
                    dvc_window: int = 16, labels: Sequence[str] | None = None) -> SeriesResult:
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

    Returns
    -------
    SeriesResult
    """
    it = iter(volumes)
    ref = segment_volume(next(it))
    refm = (ref.matrix, ref.matrix_spread)
    st0 = label_stats(ref.labels, ref.n_labels)
    r0 = np.cbrt(3.0 * np.maximum(st0.volumes, 1.0) / (4.0 * np.pi))
    feats, electrode, strains = [], [], []
    k = 0
    seg = ref
    while True:
        st = label_stats(seg.labels, seg.n_labels)
        tr = track_step(st0, ref.layers, ref.columns, st, seg.layers, seg.columns)
        feats.append(measure_particles(seg.smooth, tr.centres, r0, tr.label, st.volumes,
                                       st.centroids))
        strain = None
        if dvc and k > 0:
            strain = local_strain(ref.smooth, seg.smooth, ref.columns, ref.layers.collector_top,
                                  ref.layers.electrode_top, tr.shift, tr.coeffs,
                                  window=dvc_window)
            strains.append(strain)
        electrode.append(_step_metrics(seg, tr, ref, k, voxel_size_um, strain))
        try:
            nxt = next(it)
        except StopIteration:
            break
        k += 1
        seg = segment_volume(nxt, reference=refm)
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
                       grey_slice=ref.smooth[mid].copy())
    res.summary = paper_summary(res, charges, noise)
    if out_dir is not None:
        from analysis.report import write_report  # lazy: matplotlib
        write_report(res, out_dir)
    return res


def paper_summary(res: SeriesResult, charges: Sequence[float] | None, noise: float = 0.0,
                  min_diameter_um: float = 50.0) -> dict:
    """000's sentence ("N particles above 50 um: x % inactive, y % lithiated, z % delithiated")
    and its check against the capacities.

    The lithiated and delithiated fractions (by Si volume, as charge is) are compared with the
    discharge capacity and the charge capacity over the theoretical 3579 mAh/g, as 000 compared
    87 % lithiated with 3000 / 3500 mAh/g.
    """
    big = (res.diameter_um > min_diameter_um) & (res.classes != "unresolved")
    n = int(big.sum())
    cls = res.classes[big]
    pct = {c: 100.0 * float(np.mean(np.isin(cls, c))) if n else np.nan
           for c in ("inactive", "deactivated", "active")}
    lith = pct["active"] + pct["deactivated"] + (100.0 * float(np.mean(cls == "lithiated")) if n else 0.0)
    out = {"n_particles": int(len(res.classes)), "n_above": n, "min_diameter_um": min_diameter_um,
           "inactive_pct": pct["inactive"], "lithiated_pct": lith, "delithiated_pct": pct["active"],
           "noise_floor": noise,
           "sentence": (f"{n} particles above {min_diameter_um:g} um: {pct['inactive']:.0f} % "
                        f"inactive, {lith:.0f} % lithiated, {pct['active']:.0f} % delithiated")}
    thick = [row["thickness_um"] for row in res.electrode]
    if charges is not None and len(charges) == len(thick):
        q = np.asarray(charges, float)
        w = res.volume_t0_vox[big]
        wl = np.isin(cls, ("active", "deactivated", "lithiated"))
        out.update(expansion_vs_charge(np.asarray(thick), q, res.lithiated_at))
        k = res.lithiated_at
        out["discharge_capacity_pct"] = 100.0 * q[k] / 3579.0
        out["charge_capacity_pct"] = 100.0 * (q[k] - q[-1]) / 3579.0
        out["lithiated_volume_pct"] = 100.0 * float(w[wl].sum() / w.sum()) if n else np.nan
        out["delithiated_volume_pct"] = 100.0 * float(w[cls == "active"].sum() / w.sum()) if n else np.nan
    return out
