"""``tomocycle bench classify``: accuracy and speed of the particle analysis on simulated series.

Series come from :func:`sim.series.simulate_series` (phantom rendered at each scan, blur and
FBP-shaped noise calibrated on the papers' beamline doses, a rigid drift of the sample) at both
scales: "micro" (000, absorption, 125-180 um particles at 5.76 um) and "nano" (002, phase
contrast, 3-7 um particles at 0.25 um). Measured against the phantom's truth:

* class accuracy (active / deactivated / inactive) over particles above the resolvable size,
* mode accuracy (core-shell / network) over particles that lithiate,
* thickness error (largest over scans, %), DVC axial strain error per region (collector and
  separator halves) against the imposed deformation,
* seconds per timestep, and the seconds of one timestep on a 256^3 (and 512^3 without
  ``--quick``) volume, with the process's peak memory;
* per phantom, 000's sentence found and true, and its capacity check.

The full run (no ``--quick``) scores at least 200 particles per scale (:data:`SCALES`). At
002's own 50 nm voxels: ``--scales nano --voxel nano:0.05 --grid nano:720x640x640 --seeds 5``
(240 particles, 74 min and 21 GB on 2 cores; docs/particles.md).
"""

from __future__ import annotations

import argparse

import numpy as np

#: Scans: pristine, part-lithiated, most lithiated (K = 2), part-delithiated, delithiated.
STATES = (("T0", 0.0), ("T1", 0.4), ("T2", 0.95), ("T3", 0.5), ("T4", 0.12))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the benchmark."""
    parser.add_argument("--quick", action="store_true",
                        help="small phantoms, one per scale, 256^3 timing only (a few minutes)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="phantoms per scale (default: 1 quick; full: 2 micro, 1 nano)")
    parser.add_argument("--scales", default="micro,nano",
                        help="accuracy series to run: micro, nano, both (default) or none")
    parser.add_argument("--sizes", default=None, metavar="N,N",
                        help="edges of the cubic volumes timed (default 256,512; quick 256)")
    parser.add_argument("--no-timing", action="store_true", help="skip the per-timestep timing")
    parser.add_argument("--grid", action="append", default=[], metavar="SCALE:NZxNYxNX",
                        help="grid of a scale's accuracy series, e.g. nano:720x256x256")
    parser.add_argument("--voxel", action="append", default=[], metavar="SCALE:UM",
                        help="voxel size of a scale's phantoms, e.g. nano:0.05 (002's 50 nm; "
                             "the preset's default is 0.25 um with the same physical sizes)")


def _truth_strain(series, step: int, heights_um: np.ndarray) -> np.ndarray:
    """The matrix's imposed axial strain at pristine heights above the collector."""
    top = series.phantom.collector_top_um
    d = 1e-3
    return (series.axial_displacement_um(step, top + heights_um + d)
            - series.axial_displacement_um(step, top + heights_um - d)) / (2 * d)


def dvc_truth(series, step: int, strain, thickness_vox: float) -> dict[str, float]:
    """Axial strain per region that a perfect local DVC on ``strain``'s grid would report.

    The phantom's imposed displacement (:func:`sim.series.imposed_displacement_vox`: matrix
    strained along z, particles translated and swollen isotropically) is averaged over each
    node's window (edge = twice the node spacing, 50 % overlap), differentiated on the grid
    exactly as :func:`analysis.dvc.local_strain` does, and averaged over the same valid nodes
    of each half-electrode. The volumes are simulated with the collector at low z (not flipped).
    """
    from scipy import ndimage as ndi

    from analysis.electrode import region_strain
    from sim.series import imposed_displacement_vox

    nodes = strain.nodes
    half = int(nodes[0, 1, 0, 1] - nodes[0, 0, 0, 1])
    uz = ndi.uniform_filter(imposed_displacement_vox(series, step)[0], 2 * half, mode="nearest")
    n = nodes.reshape(-1, 3)
    at_nodes = uz[n[:, 0], n[:, 1], n[:, 2]].reshape(nodes.shape[:3]).astype(np.float64)
    axial = np.gradient(at_nodes, half, axis=0) if nodes.shape[0] > 1 else np.full_like(at_nodes, np.nan)
    return region_strain(axial, strain.valid, strain.height, thickness_vox)


def score(series, res) -> dict:
    """Compare an :class:`analysis.particle_series.SeriesResult` with the series' truth."""
    tr0 = series.truth[0].particles
    found = res.centroid_t0
    n = len(tr0)
    cls_ok, mode_ok, mode_n, cls_n = 0, 0, 0, 0
    for c, r, tc, tm in zip(tr0["centre_vox"], tr0["radius_vox"], tr0["true_class"], tr0["mode"]):
        if not len(found):
            break
        d = np.linalg.norm(found - c, axis=1)
        j = int(np.argmin(d))
        if 2.0 * r < 6.0:
            continue  # below the resolvable size (Thresholds.min_diameter_vox): not scored
        cls_n += 1
        if d[j] > 0.5 * r:
            continue  # a resolvable particle that was missed counts as wrong
        cls_ok += res.classes[j] == tc
        if tc != "inactive":
            mode_n += 1
            mode_ok += res.modes[j] == tm
    thick = [abs(e["thickness_um"] - t.thickness_um) / t.thickness_um
             for e, t in zip(res.electrode, series.truth)]
    strain_err, map_err = _strain_errors(series, res)
    return {"particles": n, "class_correct": cls_ok, "class_n": cls_n, "mode_correct": mode_ok,
            "mode_n": mode_n, "thickness_err_max": max(thick), "strain_err": strain_err,
            "strain_map_err": map_err}


def _strain_errors(series, res) -> tuple[list[float], list[float]]:
    """Errors of the half-electrode strains and of the DVC map means, per scan and half.

    Half-electrode strains (``axial_strain_<side>``) are scored against the phantom's imposed
    axial strain of the electrode averaged over the same half (the mean of
    :func:`_truth_strain` over its pristine heights); the DVC map means (``dvc_axial_<side>``)
    against :func:`dvc_truth`, the imposed field as the windows see it.
    """
    t_um = series.phantom.preset.electrode_um
    halves = {"collector_side": np.linspace(0, t_um / 2, 50),
              "separator_side": np.linspace(t_um / 2, t_um, 50)}
    thick0 = res.electrode[0]["electrode_top_vox"] - res.electrode[0]["collector_top_vox"]
    strain_err, map_err = [], []
    for k, e in enumerate(res.electrode[1:], start=1):
        if "axial_strain_all" not in e or k - 1 >= len(res.strain_maps):
            continue
        windows = dvc_truth(series, k, res.strain_maps[k - 1], thick0)
        for side, h in halves.items():
            got, imposed = e[f"axial_strain_{side}"], float(np.mean(_truth_strain(series, k, h)))
            if np.isfinite(got):
                strain_err.append(abs(got - imposed))
            got = e[f"dvc_axial_{side}"]
            if np.isfinite(got) and np.isfinite(windows[side]):
                map_err.append(abs(got - windows[side]))
    return strain_err, map_err


#: Accuracy series per scale: (quick grid, full grid, full phantoms). The full grids hold
#: 103-104 micro particles (125-180 um at 5.76 um) and 219-232 nano particles (3-7 um at
#: 0.25 um) per phantom, so the full run scores >= 200 particles at each scale.
SCALES = {"micro": ((64, 256, 256), (64, 448, 448), 2),
          "nano": ((160, 160, 160), (160, 256, 256), 1)}

#: 000's count is of particles above 50 um; the nano particles are all smaller, so their
#: sentence counts every particle above the resolvable size (6 voxels, Thresholds).
SENTENCE_DIAMETER_UM = {"micro": 50.0, "nano": None}


def _series(preset: str, shape: tuple[int, int, int], seed: int,
            voxel_size_um: float | None = None):
    from sim.phantom import make_phantom
    from sim.series import simulate_series

    ph = make_phantom(preset, seed, shape=shape, voxel_size_um=voxel_size_um)
    drift = [[0.0, 0.0, 0.0]] + [[0.4 * k, 0.8 * k, -0.6 * k] for k in range(1, len(STATES))]
    return simulate_series(ph, STATES, drift_vox=drift, seed=seed)


def _one(preset: str, shape: tuple[int, int, int], seed: int, voxel_size_um: float | None):
    from analysis.particle_series import analyze_volumes

    series = _series(preset, shape, seed, voxel_size_um)
    res = analyze_volumes(series.volumes, series.phantom.voxel_size_um, series.lithiated_at,
                          series.charges_mAh_g, min_diameter_um=SENTENCE_DIAMETER_UM[preset])
    return series, res


def _truth_sentence(series, d_min_um: float) -> str:
    """000's sentence from the phantom's true classes (same particles, same size cut)."""
    tr = series.truth[0].particles
    d = 2.0 * tr["radius_um"]
    cls = tr["true_class"][d > d_min_um]
    n = len(cls)
    pct = {c: 100.0 * float(np.mean(cls == c)) if n else np.nan
           for c in ("inactive", "deactivated", "active")}
    return (f"{n} particles above {d_min_um:.3g} um: {pct['inactive']:.0f} % inactive, "
            f"{pct['active'] + pct['deactivated']:.0f} % lithiated, {pct['active']:.0f} % "
            "delithiated")


def _time_step(n: int) -> tuple[float, float]:
    """Seconds of the analysis of one timestep (T1, with DVC against T0) of an n^3 micro volume,
    and of T0 (segmentation only, no DVC)."""
    from analysis.particle_series import analyze_volumes
    from sim.phantom import make_phantom
    from sim.series import simulate_series

    ph = make_phantom("micro", 0, shape=(n, n, n))
    s = simulate_series(ph, (("T0", 0.0), ("T1", 0.5)))
    res = analyze_volumes(s.volumes, ph.voxel_size_um, 1)
    return res.step_seconds[1], res.step_seconds[0]


def _peak_rss_gb() -> float:
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0**3 if sys.platform == "darwin" else 1024.0**2)  # bytes on macOS, KiB here


def _empty_total() -> dict:
    return {"particles": 0, "class_correct": 0, "class_n": 0, "mode_correct": 0, "mode_n": 0,
            "thickness_err_max": 0.0, "strain_err": [], "strain_map_err": []}


def _add(tot: dict, sc: dict) -> None:
    for key in ("particles", "class_correct", "class_n", "mode_correct", "mode_n"):
        tot[key] += sc[key]
    tot["thickness_err_max"] = max(tot["thickness_err_max"], sc["thickness_err_max"])
    tot["strain_err"] += sc["strain_err"]
    tot["strain_map_err"] += sc["strain_map_err"]


def _scale_line(preset: str, shape, seeds: int, tot: dict, secs: float, steps: int) -> str:
    se = np.array(tot["strain_err"] or [np.nan])
    sm = np.array(tot["strain_map_err"] or [np.nan])
    enough = "" if tot["particles"] >= 200 else " (fewer than the issue's 200)"
    return (f"{preset:5s} {shape} x{seeds}: {tot['particles']} particles{enough}; class accuracy "
            f"{100 * tot['class_correct'] / max(1, tot['class_n']):.1f} % "
            f"({tot['class_correct']}/{tot['class_n']}); mode accuracy "
            f"{100 * tot['mode_correct'] / max(1, tot['mode_n']):.1f} % "
            f"({tot['mode_correct']}/{tot['mode_n']}); thickness error max "
            f"{100 * tot['thickness_err_max']:.2f} %; half-electrode axial strain error "
            f"against the imposed deformation median {np.median(se):.3f}, max {np.max(se):.3f} "
            f"(n = {se.size}); DVC strain-map means per half against the window-averaged "
            f"imposed field median {np.median(sm):.3f}, max {np.max(sm):.3f}; "
            f"{secs / steps:.1f} s/timestep")


def _run_scale(preset: str, shape, seeds: int, voxel_size_um: float | None) -> None:
    tot, secs, steps = _empty_total(), 0.0, 0
    for seed in range(seeds):
        series, res = _one(preset, shape, seed, voxel_size_um)
        sc = score(series, res)
        _add(tot, sc)
        secs, steps = secs + sum(res.step_seconds), steps + len(res.step_seconds)
        summ = res.summary
        print(f"  {preset} seed {seed} ({series.phantom.voxel_size_um:g} um voxels): "
              f"{sc['particles']} particles, "
              f"{sum(res.step_seconds) / len(res.step_seconds):.1f} s/timestep\n"
              f"    found: {summ['sentence']}\n"
              f"    truth: {_truth_sentence(series, summ['min_diameter_um'])}\n"
              f"    capacity check: {summ.get('capacity_sentence', 'no charges')}", flush=True)
    print(_scale_line(preset, shape, seeds, tot, secs, steps), flush=True)


def _sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _per_scale(items: list[str], convert) -> dict:
    """``["nano:0.05"]`` -> ``{"nano": convert("0.05")}``."""
    out = {}
    for item in items:
        scale, _, value = item.partition(":")
        if scale not in SCALES or not value:
            raise ValueError(f"expected SCALE:VALUE with SCALE in {', '.join(SCALES)}, "
                             f"got {item!r}")
        out[scale] = convert(value)
    return out


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print a table; returns 0."""
    from numba import get_num_threads

    print(f"tomocycle bench classify ({'quick' if args.quick else 'full'}, "
          f"{get_num_threads()} threads); scans {[s[0] for s in STATES]}, K = 2", flush=True)
    scales = [x for x in args.scales.split(",") if x.strip() and x != "none"]
    grids = _per_scale(args.grid, lambda v: tuple(int(n) for n in v.lower().split("x")))
    voxels = _per_scale(args.voxel, float)
    for preset in scales:
        if preset not in SCALES:
            raise ValueError(f"unknown scale {preset!r}; valid: {', '.join(SCALES)}")
        quick_shape, full_shape, full_seeds = SCALES[preset]
        seeds = args.seeds or (1 if args.quick else full_seeds)
        shape = grids.get(preset, quick_shape if args.quick else full_shape)
        _run_scale(preset, shape, seeds, voxels.get(preset))
    sizes = [] if args.no_timing else _sizes(args.sizes or ("256" if args.quick else "256,512"))
    for n in sizes:
        step, t0 = _time_step(n)
        print(f"one timestep of a {n}^3 volume: {step:.1f} s (T0 without DVC: {t0:.1f} s); "
              f"peak memory of the process so far {_peak_rss_gb():.1f} GB", flush=True)
    return 0
