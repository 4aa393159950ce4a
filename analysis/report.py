"""Files a person reads after ``tomocycle classify``: CSV tables and PNG plots.

* ``particles.csv``: id, T0 centroid (voxels), T0 volume (voxels and µm^3), class, mode, and per
  timestep the grey drop, mean and peak grey, core and shell grey, radial r2 and volume;
* ``electrode.csv``: one row per timestep (thickness, registration shift, strains, cracks,
  agglomerates, charge);
* ``summary.txt``: 000's sentence and the capacity check;
* ``class_fractions.png``, ``grey_histograms.png`` (per class, T0 / most lithiated / last,
  like 000's histograms), ``thickness_vs_charge.png``, ``slice_classes.png`` and, with DVC,
  ``strain_histograms.png`` (axial and volumetric strain per region, collector side versus
  separator side, at the most lithiated and the last scan; the counts are also in
  ``electrode.csv`` as ``dvc_<strain>_<side>_hist`` over ``STRAIN_BIN_EDGES``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from analysis.features import FEATURES

__all__ = ["write_report"]

_COLOURS = {"active": "tab:green", "deactivated": "tab:orange", "inactive": "tab:grey",
            "lithiated": "tab:blue", "unresolved": "white"}
_PER_STEP = ("mean_grey", "peak_grey", "core_grey", "shell_grey", "radial_r2", "volume_vox")


def _particles_csv(res, path: Path) -> None:
    n_steps = res.features.shape[0]
    head = ["id", "cz_t0", "cy_t0", "cx_t0", "volume_t0_vox", "volume_t0_um3", "eq_diameter_um",
            "class", "mode"]
    head += [f"{name}_T{k}" for k in range(n_steps) for name in ("drop",) + _PER_STEP]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(head)
        for i in range(len(res.classes)):
            row = [i + 1, *np.round(res.centroid_t0[i], 2), int(res.volume_t0_vox[i]),
                   round(float(res.volume_t0_vox[i] * res.voxel_size_um**3), 3),
                   round(float(res.diameter_um[i]), 3), res.classes[i], res.modes[i]]
            for k in range(n_steps):
                row.append(f"{res.drop[k, i]:.4g}")
                row += [f"{res.features[k, i, FEATURES.index(nm)]:.6g}" for nm in _PER_STEP]
            w.writerow(row)


def _electrode_csv(res, path: Path) -> None:
    keys: list[str] = []
    for row in res.electrode:
        keys += [k for k in row if k not in keys]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for row in res.electrode:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def _plots(res, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(res.drop.shape[0])
    lit = res.drop >= 0.15
    fig, ax = plt.subplots(figsize=(6, 4))
    ok = res.classes != "unresolved"
    for cls in ("active", "deactivated", "inactive"):
        sel = ok & (res.classes == cls)
        ax.plot(steps, 100.0 * (lit[:, sel].sum(1) / max(1, ok.sum())), "o-",
                color=_COLOURS[cls], label=f"{cls} (lithiated at scan)")
    ax.set(xlabel="scan", ylabel="% of particles lithiated", title="Lithiated particles by class")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "class_fractions.png", dpi=110)
    plt.close(fig)

    k, last = res.lithiated_at, res.drop.shape[0] - 1
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.5), sharey=True)
    g = res.features[:, :, FEATURES.index("peak_grey")]
    for ax, cls in zip(axes, ("active", "deactivated", "inactive")):
        sel = res.classes == cls
        for step, style in ((0, "-"), (k, "--"), (last, ":")):
            vals = g[step, sel]
            vals = vals[np.isfinite(vals)]
            if vals.size:
                ax.hist(vals, bins=20, histtype="step", linestyle=style, label=f"T{step}")
        ax.set(title=f"{cls} ({int(sel.sum())})", xlabel="particle grey peak")
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    fig.savefig(out / "grey_histograms.png", dpi=110)
    plt.close(fig)

    t = [row["thickness_um"] for row in res.electrode]
    q = [row.get("charge_mAh_g", np.nan) for row in res.electrode]
    fig, ax = plt.subplots(figsize=(5, 4))
    if np.all(np.isfinite(q)):
        ax.plot(q, t, "o-")
        ax.set(xlabel="charge passed (mAh/g Si)")
    else:
        ax.plot(steps, t, "o-")
        ax.set(xlabel="scan")
    ax.set(ylabel="electrode thickness (um)", title="Thickness vs charge")
    fig.tight_layout()
    fig.savefig(out / "thickness_vs_charge.png", dpi=110)
    plt.close(fig)

    if res.class_slice is not None:
        from matplotlib.colors import to_rgb
        rgb = np.zeros(res.class_slice.shape + (3,))
        grey = res.grey_slice
        lo, hi = np.percentile(grey, [1, 99])
        rgb[:] = np.clip((grey - lo) / max(hi - lo, 1e-12), 0, 1)[..., None]
        for i, cls in enumerate(res.classes):
            rgb[res.class_slice == i + 1] = to_rgb(_COLOURS.get(cls, "white"))
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.imshow(rgb)
        ax.set(title="T0 mid-electrode slice, particles by class")
        ax.axis("off")
        fig.tight_layout()
        fig.savefig(out / "slice_classes.png", dpi=110)
        plt.close(fig)


def _strain_histograms(res, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.electrode import STRAIN_BIN_EDGES, region_histograms

    if not res.strain_maps:
        return
    thick = res.electrode[0]["electrode_top_vox"] - res.electrode[0]["collector_top_vox"]
    steps = sorted({max(1, res.lithiated_at), len(res.strain_maps)})
    fig, axes = plt.subplots(len(steps), 2, figsize=(9, 3.2 * len(steps)), squeeze=False)
    centres = 0.5 * (STRAIN_BIN_EDGES[1:] + STRAIN_BIN_EDGES[:-1])
    for row, k in zip(axes, steps):
        sf = res.strain_maps[k - 1]
        for ax, name in zip(row, ("axial", "volumetric")):
            hists = region_histograms(getattr(sf, name), sf.valid, sf.height, thick)
            for side, colour in (("collector_side", "tab:blue"), ("separator_side", "tab:red")):
                ax.step(centres, hists[side]["counts"], where="mid", color=colour,
                        label=f"{side.replace('_', ' ')} (median {hists[side]['p50']:.2f})")
            ax.set(xlabel=f"{name} strain", ylabel="DVC nodes",
                   title=f"{res.electrode[k].get('label', f'T{k}')}: {name} strain vs T0")
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "strain_histograms.png", dpi=110)
    plt.close(fig)


def write_report(res, out_dir: str | Path) -> list[Path]:
    """Write the CSV tables, summary and plots of a :class:`analysis.particle_series.SeriesResult`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _particles_csv(res, out / "particles.csv")
    _electrode_csv(res, out / "electrode.csv")
    lines = [res.summary.get("sentence", "")] + [f"{k}: {v}" for k, v in res.summary.items()
                                                 if k != "sentence"]
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    _plots(res, out)
    _strain_histograms(res, out)
    return sorted(out.iterdir())
