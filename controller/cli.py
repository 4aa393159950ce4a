"""The ``tomocycle`` command line.

Each sub-command is a thin layer over a function that tests call directly; this module only
parses arguments, turns bad input into one-line errors, and prints results.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Callable, Sequence

from controller.catalog import DEFAULT_DATA_DIR, CatalogError

EXIT_BAD_INPUT = 2

#: Modules that add their own sub-commands: each has ``register(subparsers)``, which adds parsers
#: whose ``func`` default takes the parsed arguments and returns the exit code. Imports inside
#: each ``func`` stay lazy so ``tomocycle --help`` starts fast.
_COMMAND_MODULES: tuple[str, ...] = (
    "controller.cli_run",
    "controller.cli_bench",
    "controller.cli_recon",
    "controller.cli_classify",
    "controller.cli_monitor",
    "controller.cli_live",
    "controller.cli_queueserver",
)


def _add_data_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, metavar="DIR",
                        help=f"data directory holding the catalog and frame files (default: ./{DEFAULT_DATA_DIR})")


def _cmd_scan(args: argparse.Namespace) -> int:
    from controller.scan_job import run_sim_scan

    if not args.sim:
        raise ValueError("only the simulated beamline exists so far: pass --sim")
    result = run_sim_scan(preset=args.preset, data_dir=args.data, projections=args.projections,
                          exposure=args.exposure, angle_range=args.range, interlaced=args.interlaced,
                          darks=args.darks, flats=args.flats, seed=args.seed, progress=not args.quiet)
    print(f"run uid:      {result.uid}")
    print(f"exit status:  {result.exit_status}")
    print(f"frames:       {result.frames_file}  ({result.n_frames} frames, NXtomo)")
    print(f"catalog:      {result.data_dir}  (tomocycle runs --data {args.data})")
    return 0 if result.exit_status == "success" else 1


def _cmd_runs(args: argparse.Namespace) -> int:
    from controller.catalog import open_catalog
    from controller.runs import format_runs, list_runs

    client = open_catalog(args.data, create=False)
    print(format_runs(list_runs(client, limit=args.limit)))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from controller.catalog import open_catalog
    from controller.runs import export_dxfile

    client = open_catalog(args.data, create=False)
    out = export_dxfile(client, args.uid, args.output)
    print(f"wrote {out} (Data Exchange: /exchange/data, data_white, data_dark, theta)")
    return 0


def _cmd_presets(args: argparse.Namespace) -> int:
    from sim.presets import BEAMLINE_PRESETS

    for preset in BEAMLINE_PRESETS.values():
        s = preset.scan
        print(f"{preset.name:20s} {preset.description}  [{s.projections} proj / {s.angle_range:g} deg, "
              f"{s.exposure * 1e3:g} ms]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for all sub-commands."""
    parser = argparse.ArgumentParser(prog="tomocycle", description="Operando X-ray tomography of battery cells.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    scan = sub.add_parser("scan", help="take one tomography scan and store it in the catalog")
    scan.add_argument("--sim", action="store_true", help="use the simulated beamline")
    scan.add_argument("--preset", default="nano-fullcell", help="simulated beamline preset (see `tomocycle presets`)")
    _add_data_arg(scan)
    scan.add_argument("--projections", type=int, help="number of projections (default: the preset's)")
    scan.add_argument("--exposure", type=float, help="exposure per frame in s")
    scan.add_argument("--range", type=float, help="angular range in degrees (180 or 360)")
    scan.add_argument("--interlaced", type=int, help="number of interlaced sub-scans")
    scan.add_argument("--darks", type=int, help="number of dark frames")
    scan.add_argument("--flats", type=int, help="number of flat frames")
    scan.add_argument("--seed", type=int, default=0, help="random seed of the simulation")
    scan.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    scan.set_defaults(func=_cmd_scan)

    runs = sub.add_parser("runs", help="list the runs stored in a data directory")
    _add_data_arg(runs)
    runs.add_argument("--limit", type=int, default=None, help="show only the newest N runs")
    runs.set_defaults(func=_cmd_runs)

    export = sub.add_parser("export", help="export a stored scan as an APS Data Exchange file")
    export.add_argument("uid", help="run uid (or a unique prefix of it)")
    export.add_argument("-o", "--output", type=Path, default=None, help="output file (default: UID.h5)")
    _add_data_arg(export)
    export.set_defaults(func=_cmd_export)

    presets = sub.add_parser("presets", help="list the simulated beamline presets")
    presets.set_defaults(func=_cmd_presets)

    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tomocycle`` console script."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ValueError, CatalogError, FileNotFoundError) as err:
        # Bad input is the operator's to fix: one line, no traceback.
        print(f"tomocycle {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
