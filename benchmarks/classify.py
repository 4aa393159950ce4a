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
  ``--quick``) volume.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

#: Scans: pristine, part-lithiated, most lithiated (K = 2), part-delithiated, delithiated.
STATES = (("T0", 0.0), ("T1", 0.4), ("T2", 0.95), ("T3", 0.5), ("T4", 0.12))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the benchmark."""
    parser.add_argument("--quick", action="store_true", help="small phantoms (about a minute)")
    parser.add_argument("--seeds", type=int, default=None, help="phantoms per scale")
    parser.add_argument("--no-timing", action="store_true", help="skip the 256^3/512^3 timing")


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
    t_um = series.phantom.preset.electrode_um
    lower, upper = np.linspace(0, t_um / 2, 50), np.linspace(t_um / 2, t_um, 50)
    strain_err, matrix_err = [], []
    thick0 = res.electrode[0]["electrode_top_vox"] - res.electrode[0]["collector_top_vox"]
    for k, e in enumerate(res.electrode[1:], start=1):
        if "dvc_axial_all" not in e or k - 1 >= len(res.strain_maps):
            continue
        imposed = dvc_truth(series, k, res.strain_maps[k - 1], thick0)
        for side, h in (("collector_side", lower), ("separator_side", upper)):
            got = e[f"dvc_axial_{side}"]
            if np.isfinite(got) and np.isfinite(imposed[side]):
                strain_err.append(abs(got - imposed[side]))
                matrix_err.append(abs(got - float(np.mean(_truth_strain(series, k, h)))))
    return {"particles": n, "class_correct": cls_ok, "class_n": cls_n, "mode_correct": mode_ok,
            "mode_n": mode_n, "thickness_err_max": max(thick), "strain_err": strain_err,
            "strain_err_matrix": matrix_err}


def _one(preset: str, shape: tuple[int, int, int], seed: int) -> tuple[dict, float, int]:
    from analysis.particle_series import analyze_volumes
    from sim.phantom import make_phantom
    from sim.series import simulate_series

    ph = make_phantom(preset, seed, shape=shape)
    drift = [[0.0, 0.0, 0.0]] + [[0.4 * k, 0.8 * k, -0.6 * k] for k in range(1, len(STATES))]
    series = simulate_series(ph, STATES, drift_vox=drift, seed=seed)
    t = time.perf_counter()
    res = analyze_volumes(series.volumes, ph.voxel_size_um, series.lithiated_at,
                          series.charges_mAh_g)
    return score(series, res), time.perf_counter() - t, len(STATES)


def _time_step(n: int) -> float:
    """Seconds for T0 + one timestep of an n^3 micro volume, minus T0 alone: one timestep."""
    from analysis.particle_series import analyze_volumes
    from sim.phantom import make_phantom
    from sim.series import simulate_series

    ph = make_phantom("micro", 0, shape=(n, n, n))
    s = simulate_series(ph, (("T0", 0.0), ("T1", 0.5)))
    t = time.perf_counter()
    analyze_volumes(s.volumes[:1], ph.voxel_size_um, 0)
    t1 = time.perf_counter()
    analyze_volumes(s.volumes, ph.voxel_size_um, 1)
    return (time.perf_counter() - t1) - (t1 - t)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print a table; returns 0."""
    from numba import get_num_threads

    configs = {"micro": (64, 256, 256) if args.quick else (64, 448, 448),
               "nano": (160, 160, 160) if args.quick else (160, 256, 256)}
    seeds = args.seeds or (1 if args.quick else 2)
    print(f"tomocycle bench classify ({'quick' if args.quick else 'full'}, "
          f"{get_num_threads()} threads); scans {[s[0] for s in STATES]}, K = 2")
    for preset, shape in configs.items():
        tot: dict = {"particles": 0, "class_correct": 0, "class_n": 0, "mode_correct": 0,
                     "mode_n": 0, "thickness_err_max": 0.0, "strain_err": [],
                     "strain_err_matrix": []}
        secs, steps = 0.0, 0
        for seed in range(seeds):
            sc, dt, n = _one(preset, shape, seed)
            for key in ("particles", "class_correct", "class_n", "mode_correct", "mode_n"):
                tot[key] += sc[key]
            tot["thickness_err_max"] = max(tot["thickness_err_max"], sc["thickness_err_max"])
            tot["strain_err"] += sc["strain_err"]
            tot["strain_err_matrix"] += sc["strain_err_matrix"]
            secs, steps = secs + dt, steps + n
            print(f"  {preset} seed {seed}: {sc['particles']} particles, {dt / n:.1f} s/timestep",
                  flush=True)
        se = np.array(tot["strain_err"]) if tot["strain_err"] else np.array([np.nan])
        sm = np.array(tot["strain_err_matrix"]) if tot["strain_err_matrix"] else np.array([np.nan])
        print(f"{preset:5s} {shape} x{seeds}: {tot['particles']} particles; class accuracy "
              f"{100 * tot['class_correct'] / max(1, tot['class_n']):.1f} % "
              f"({tot['class_correct']}/{tot['class_n']}); mode accuracy "
              f"{100 * tot['mode_correct'] / max(1, tot['mode_n']):.1f} % "
              f"({tot['mode_correct']}/{tot['mode_n']}); thickness error max "
              f"{100 * tot['thickness_err_max']:.2f} %; DVC axial strain error per region "
              f"against the imposed field median {np.median(se):.3f}, max {np.max(se):.3f} "
              f"(against the matrix strain alone: median {np.median(sm):.3f}, max "
              f"{np.max(sm):.3f}); {secs / steps:.1f} s/timestep", flush=True)
    if not args.no_timing:
        for n in ((256,) if args.quick else (256, 512)):
            print(f"one timestep of a {n}^3 volume: {_time_step(n):.1f} s", flush=True)
    return 0
