"""``tomocycle consume`` (the live consumer) and ``tomocycle analyze`` (offline, optionally on Dask)."""

from __future__ import annotations

import argparse
from pathlib import Path

from controller.catalog import DEFAULT_DATA_DIR


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``consume`` and ``analyze`` sub-commands."""
    from controller.live_publish import DEFAULT_HOST, DEFAULT_OUT_PORT

    c = sub.add_parser("consume", help="follow experiments live (0MQ proxy) and write their analysis")
    c.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, metavar="DIR",
                   help=f"data directory of the experiment (default: ./{DEFAULT_DATA_DIR})")
    c.add_argument("--proxy", default=f"{DEFAULT_HOST}:{DEFAULT_OUT_PORT}", metavar="HOST:PORT",
                   help=f"the 0MQ proxy's subscriber port (default: {DEFAULT_HOST}:{DEFAULT_OUT_PORT})")
    c.add_argument("--experiment", default=None, metavar="ID", help="follow only this experiment")
    c.add_argument("--exit-when-finished", action="store_true",
                   help="exit once every followed experiment has ended and is analysed")
    c.add_argument("--catchup", type=float, default=5.0, metavar="S",
                   help="look in the catalog for missed scan ends every S seconds (default 5)")
    c.add_argument("--nice", type=int, default=10, metavar="N",
                   help="lower the consumer's CPU priority by N (default 10) so that an acquisition on "
                        "the same machine wins the cores; 0 to keep it")
    _max_side_option(c)
    c.set_defaults(func=_cmd_consume)

    a = sub.add_parser("analyze", help="reconstruct and analyse every timestep of a stored experiment")
    a.add_argument("experiment", metavar="EXPERIMENT", help="experiment id (a unique prefix will do)")
    a.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, metavar="DIR",
                   help=f"data directory (default: ./{DEFAULT_DATA_DIR})")
    a.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the reconstructions on Dask: a scheduler address, or 'local' for a local cluster")
    a.add_argument("--no-record", action="store_true", help="do not write analysis runs into the catalog")
    _max_side_option(a)
    a.set_defaults(func=_cmd_analyze)


def _max_side_option(parser: argparse.ArgumentParser) -> None:
    from controller.experiment_analysis import ANALYSIS_MAX_SIDE

    parser.add_argument("--max-side", type=int, default=ANALYSIS_MAX_SIDE, metavar="PX",
                        help="bin each timestep's reconstruction to at most PX pixels wide (default "
                             f"{ANALYSIS_MAX_SIDE}: a 2048-pixel detector is binned 4x); 0 for full resolution")


def _checked_max_side(value: int) -> int | None:
    if value < 0:
        raise ValueError(f"--max-side must be >= 0 (0: full resolution), got {value}")
    return value or None


def _cmd_consume(args: argparse.Namespace) -> int:
    import logging
    import os

    from controller.live_consumer import serve
    from controller.live_publish import DEFAULT_OUT_PORT, parse_address

    if args.nice > 0:
        # Same machine as the RunEngine: the consumer may fall behind, acquisition must not.
        os.nice(args.nice)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("controller").setLevel(logging.INFO)
    host, port = parse_address(args.proxy, DEFAULT_OUT_PORT)
    print(f"consuming from {host}:{port}; results under {args.data}/analysis/", flush=True)
    try:
        stats = serve(args.data, f"{host}:{port}", experiment_id=args.experiment,
                      exit_when_finished=args.exit_when_finished, catchup_s=args.catchup,
                      max_side=_checked_max_side(args.max_side))
    except KeyboardInterrupt:
        return 0
    print(f"consumer: {stats}", flush=True)
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from controller.catalog import open_catalog
    from controller.experiment_analysis import analyze_experiment, list_experiments

    client = open_catalog(args.data, create=False)
    matches = [e for e in list_experiments(client) if e.startswith(args.experiment)]
    if len(matches) != 1:
        raise ValueError(f"experiment {args.experiment!r}: {len(matches) or 'no'} experiment(s) match "
                         f"in {args.data}")
    del client
    root = analyze_experiment(args.data, matches[0], scheduler=args.scheduler, record=not args.no_record,
                              progress=print, max_side=_checked_max_side(args.max_side))
    print(f"wrote {root}/summary.json, particles.csv, electrode.csv and one folder per timestep")
    return 0
