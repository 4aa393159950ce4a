"""``tomocycle bench cracks``: planted cracks found against the truth, and the false level.

Each series is a phantom at three states, pristine, fully lithiated (0.95) and delithiated
(0.12), with calibrated noise; three vertical electrolyte sheets (:class:`sim.series.CrackSpec`,
two along x and one along y, ``width`` voxels) open at the last scan, as 003's mud cracks open
on delithiation. Width 0 plants none: every scan is then uncracked. Printed per phantom, width
and scan: the true and found crack volume fraction and median width
(:func:`analysis.cracks.cracks` on the segmentation the pipeline uses).
"""

from __future__ import annotations

import argparse

#: Pristine, fully lithiated, delithiated (cracks open at the last).
STATES = (("T0", 0.0), ("T1", 0.95), ("T2", 0.12))

#: Default grids per scale (the test phantoms of tests/unit/test_cracks.py are smaller).
GRIDS = {"micro": (64, 256, 256), "nano": (160, 160, 160)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the benchmark."""
    parser.add_argument("--scales", default="micro,nano", help="micro, nano or both")
    parser.add_argument("--seeds", type=int, default=2, help="phantoms per scale")
    parser.add_argument("--widths", default="0,2,3,4,6", help="sheet widths, voxels (0: none)")


def measure_series(preset: str, seed: int, width: int,
                   shape: tuple[int, int, int] | None = None) -> list[tuple[float, float, float, float]]:
    """(true fraction, true width, found fraction, found width) per scan (width in voxels; 0: no cracks)."""
    from analysis.cracks import cracks
    from analysis.segment import segment_volume
    from sim.phantom import make_phantom
    from sim.series import CrackSpec, simulate_series

    shape = GRIDS[preset] if shape is None else shape
    ph = make_phantom(preset, seed, shape=shape)
    c = shape[1] // 2
    spec = CrackSpec(((1, c - 20), (2, c + 10), (1, c + 30)), width, 2) if width else None
    s = simulate_series(ph, STATES, cracks=spec, seed=seed)
    ref = segment_volume(s.volumes[0])
    out = []
    for k, vol in enumerate(s.volumes):
        seg = ref if k == 0 else segment_volume(vol, reference=(ref.matrix, ref.matrix_spread))
        frac, w, _ = cracks(seg.smooth, seg.columns, seg.mask, seg.layers)
        t = s.truth[k]
        out.append((t.crack_fraction, t.crack_width_um / ph.voxel_size_um, frac, w))
    return out


def run(args: argparse.Namespace) -> int:
    """Print one line per phantom and width; returns 0."""
    widths = [int(w) for w in args.widths.split(",") if w.strip()]
    print("tomocycle bench cracks: volume fraction % and median width (voxels), truth -> found, "
          f"scans {[s[0] for s in STATES]}, sheets open at the last", flush=True)
    for preset in [x for x in args.scales.split(",") if x.strip()]:
        if preset not in GRIDS:
            raise ValueError(f"unknown scale {preset!r}; valid: {', '.join(GRIDS)}")
        for seed in range(args.seeds):
            for width in widths:
                cells = [f"{k}: {100 * tf:.2f} -> {100 * ff:.2f} %, w {tw:.0f} -> {fw:.2f}"
                         for k, (tf, tw, ff, fw) in zip(("T0", "T1", "T2"),
                                                        measure_series(preset, seed, width))]
                print(f"  {preset} {GRIDS[preset]} seed {seed} width {width}: " + "; ".join(cells),
                      flush=True)
    return 0
