"""``tomocycle classify VOLUME_T0 VOLUME_T1 ... --lithiated-at K``: particle classes from files.

Reads each volume (HDF5 ``/volume``, multi-page TIFF, a folder of TIFF slices, or ``.npy``), runs
:func:`analysis.particle_series.analyze_volumes` and writes ``particles.csv``, ``electrode.csv``,
``summary.txt`` and PNG plots to ``-o DIR``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``classify`` sub-command."""
    p = sub.add_parser("classify", help="segment, track and classify particles in a series of "
                                        "reconstructed volumes (HDF5 /volume or TIFF)")
    p.add_argument("volumes", nargs="+", type=Path, metavar="VOLUME",
                   help="volumes T0 T1 ... in scan order")
    p.add_argument("--lithiated-at", type=int, required=True, metavar="K",
                   help="index of the most lithiated scan (0-based)")
    p.add_argument("--voxel-size", type=float, default=None, metavar="UM",
                   help="voxel edge in um (default: from the first file's attributes)")
    p.add_argument("--charges", type=str, default=None, metavar="Q0,Q1,...",
                   help="charge passed into Si at each scan, mAh/g (thickness vs charge)")
    p.add_argument("--noise-pair", type=str, default=None, metavar="I,J",
                   help="two scans with no cycling between them (noise floor, as 002's T8,T9)")
    p.add_argument("--no-dvc", action="store_true", help="skip local digital volume correlation")
    p.add_argument("-o", "--output", type=Path, default=Path("classify-out"), metavar="DIR")
    p.set_defaults(func=_cmd_classify)


def _floats(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated numbers, got {text!r}") from None


def _cmd_classify(args: argparse.Namespace) -> int:
    from analysis.particle_series import analyze_volumes
    from analysis.volume_read import read_volume

    first, voxel = read_volume(args.volumes[0])
    voxel = args.voxel_size or voxel
    if voxel is None:
        raise ValueError(f"{args.volumes[0]}: no voxel size in the file; pass --voxel-size UM")
    charges = _floats(args.charges, "--charges")
    if charges is not None and len(charges) != len(args.volumes):
        raise ValueError(f"--charges has {len(charges)} values for {len(args.volumes)} volumes")
    pair = _floats(args.noise_pair, "--noise-pair")
    if pair is not None and len(pair) != 2:
        raise ValueError("--noise-pair takes two scan indices, e.g. 8,9")
    if not 0 <= args.lithiated_at < len(args.volumes):
        raise ValueError(f"--lithiated-at {args.lithiated_at} is outside the "
                         f"{len(args.volumes)} volumes")

    def volumes():
        yield first
        for path in args.volumes[1:]:
            vol, _ = read_volume(path)
            if vol.shape != first.shape:
                raise ValueError(f"{path}: shape {vol.shape} differs from T0's {first.shape}")
            yield vol

    res = analyze_volumes(volumes(), voxel, args.lithiated_at, charges, args.output,
                          noise_pair=tuple(int(i) for i in pair) if pair else None,
                          dvc=not args.no_dvc)
    print(res.summary["sentence"])
    if "capacity_sentence" in res.summary:
        print("capacity check: " + res.summary["capacity_sentence"])
    print(f"wrote {args.output}/particles.csv, electrode.csv, summary.txt and plots")
    return 0
