"""``tomocycle run``, ``resume``, ``check`` and ``protocols``: the operando experiment commands.

Thin layers over :mod:`controller.experiment` and :mod:`controller.protocol`; see
docs/protocol-language.md for the protocol files these commands take.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from controller.catalog import DEFAULT_DATA_DIR

#: ``--detail``: voxel coarsening of the simulated sample (see controller.experiment).
_DETAIL = {"preview": None, "full": 1.0}


def _add_data_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, metavar="DIR",
                        help=f"data directory holding the catalog and frame files (default: ./{DEFAULT_DATA_DIR})")


def _print_result(result) -> int:  # noqa: ANN001 - ExperimentResult, imported lazily
    from controller.experiment import format_scan_table

    hours = (result.cell_time_s - result.t0) / 3600.0
    print(f"experiment:   {result.experiment_id}  ({result.protocol})")
    print(f"final state:  {result.state}" + (f"  -- {result.fault}" if result.fault else ""))
    print(f"cell time:    {hours:.2f} h simulated in {result.wall_s:.1f} s" if result.simulated
          else f"cell time:    {hours:.2f} h")
    print(f"runs:         {len(result.run_uids)} in {result.data_dir}  (tomocycle runs --data {result.data_dir})")
    for alarm in result.alarms:
        print(f"alarm:        {alarm}")
    print()
    print(format_scan_table(result))
    return 0 if result.state == "done" else 1


@contextmanager
def _monitor_process(enabled: bool, data_dir: Path, port: int) -> Iterator[None]:
    """``tomocycle monitor`` for ``data_dir`` in a child process while the block runs.

    A separate process, so the page's reads never hold the RunEngine's interpreter; its URL line
    goes to stderr with the progress. It shows the newest experiment, i.e. the one starting.
    """
    if not enabled:
        yield
        return
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen([sys.executable, "-m", "controller.cli", "monitor", "--data", str(data_dir),
                              "--port", str(port)], stdout=sys.stderr, stderr=sys.stderr)
    try:
        yield
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        print(f"monitor stopped; `tomocycle monitor --data {data_dir}` shows the experiment again", file=sys.stderr)


def _cmd_run(args: argparse.Namespace) -> int:
    from controller.experiment import PREVIEW_COARSEN, run_protocol

    if args.sim == (args.beamline is not None):
        raise ValueError("pass --sim (the simulated beamline) or --beamline CONFIG (docs/instruments.md), one of them")
    overrides = {}
    if args.projections is not None:
        overrides["projections"] = args.projections
    coarsen = _DETAIL[args.detail] or PREVIEW_COARSEN
    with _monitor_process(args.monitor, args.data, args.monitor_port), \
            _publishing(args.publish) as configure_engine:
        result = run_protocol(args.protocol, data_dir=args.data, seed=args.seed, coarsen=coarsen,
                              scan_overrides=overrides or None, poll_period=args.poll_period,
                              progress=not args.quiet, real_time=args.real_time, beamline=args.beamline,
                              configure_engine=configure_engine)
    return _print_result(result)


@contextmanager
def _publishing(address: str | None) -> Iterator[Callable[[Any], None] | None]:
    """``--publish``: a 0MQ proxy (started unless one runs) and a publisher on the RunEngine."""
    if address is None:
        yield None
        return
    from controller.live_publish import DEFAULT_IN_PORT, attach_publisher, ensure_proxy, parse_address

    host, in_port = parse_address(address, DEFAULT_IN_PORT)
    proxy = ensure_proxy(host, in_port, in_port + 1)
    try:
        yield lambda engine: attach_publisher(engine, f"{host}:{in_port}")
    finally:
        if proxy is not None:
            proxy.close()


def _cmd_resume(args: argparse.Namespace) -> int:
    from controller.experiment import resume_experiment

    return _print_result(resume_experiment(args.data, args.experiment, progress=not args.quiet))


def _cmd_check(args: argparse.Namespace) -> int:
    from controller.experiment import resolve_protocol
    from controller.protocol import describe_protocol, load_protocol

    protocol = load_protocol(resolve_protocol(args.protocol))
    print(describe_protocol(protocol))
    return 0


def _cmd_protocols(args: argparse.Namespace) -> int:
    from protocols import list_presets, preset_path

    for name, title in list_presets():
        print(f"{name:28s} {title}")
    print(f"\n(files in {preset_path(list_presets()[0][0]).parent}; "
          "run one with `tomocycle run NAME --sim` or by its number, e.g. `tomocycle run 002 --sim`)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``run``, ``resume``, ``check`` and ``protocols``."""
    run = sub.add_parser("run", help="run an operando protocol (cycling and scans) and store everything")
    run.add_argument("protocol", metavar="PROTOCOL",
                     help="protocol file, preset name or preset number (see `tomocycle protocols`)")
    run.add_argument("--sim", action="store_true", help="use the simulated beamline")
    run.add_argument("--beamline", type=Path, metavar="CONFIG",
                     help="beamline configuration (YAML): the backend and address of each device")
    _add_data_arg(run)
    run.add_argument("--seed", type=int, default=0, help="random seed of the simulated sample and noise")
    run.add_argument("--detail", choices=sorted(_DETAIL), default="preview",
                     help="simulated sample grid: 'preview' (2x coarser, fast; default) or 'full'")
    run.add_argument("--projections", type=int, help="projections per scan (default: the protocol's)")
    run.add_argument("--poll-period", type=float, metavar="S",
                     help="seconds of cell time between potentiostat polls (default: the protocol's)")
    run.add_argument("--real-time", action="store_true",
                     help="run the simulated beamline on the wall clock (a rehearsal at the real pace)")
    run.add_argument("--publish", nargs="?", const="127.0.0.1:5577", default=None, metavar="HOST:PORT",
                     help="publish documents over 0MQ for `tomocycle consume` (docs/live.md); starts a proxy "
                          "taking them on PORT and serving consumers on PORT+1 unless one runs "
                          "(default 127.0.0.1:5577)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    run.add_argument("--monitor", action="store_true",
                     help="serve the live web page (tomocycle monitor) for this run while it runs")
    run.add_argument("--monitor-port", type=int, default=8765, metavar="P",
                     help="port of the --monitor page (default 8765; 0: any free port)")
    run.set_defaults(func=_cmd_run)

    resume = sub.add_parser("resume", help="continue an interrupted experiment from its last checkpoint")
    _add_data_arg(resume)
    resume.add_argument("--experiment", metavar="ID", help="experiment id (default: the only unfinished one)")
    resume.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    resume.set_defaults(func=_cmd_resume)

    check = sub.add_parser("check", help="validate a protocol file and print its expanded plan of steps")
    check.add_argument("protocol", metavar="PROTOCOL", help="protocol file, preset name or preset number")
    check.set_defaults(func=_cmd_check)

    protocols = sub.add_parser("protocols", help="list the preset protocols")
    protocols.set_defaults(func=_cmd_protocols)
