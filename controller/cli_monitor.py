"""``tomocycle monitor`` and ``tomocycle replay``: watching an experiment, and playing one back.

Thin layers over :mod:`controller.monitor` and :mod:`controller.replay`; see docs/monitor.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from controller.catalog import DEFAULT_DATA_DIR


def _add_data_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, metavar="DIR",
                        help=f"data directory holding the catalog and frame files (default: ./{DEFAULT_DATA_DIR})")


def _cmd_monitor(args: argparse.Namespace) -> int:
    from controller.monitor import serve

    if not args.data.is_dir():
        raise FileNotFoundError(f"--data {args.data}: no such directory")
    try:
        server = serve(args.data, host=args.host, port=args.port, experiment=args.experiment)
    except OSError as err:
        raise ValueError(f"cannot listen on {args.host}:{args.port} ({err.strerror or err}); "
                         "pick another --port (0: any free one)") from None
    print(f"tomocycle monitor: {server.url}  (data {server.data.data_dir}; Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    if args.sim:
        from controller.cli_run import _print_result
        from controller.replay import replay_sim

        result = replay_sim(args.data, args.experiment, to=args.to, progress=not args.quiet)
        print(f"re-ran:       {args.experiment} on the simulated beamline")
        return _print_result(result)
    from controller.replay import describe, replay_documents

    result = replay_documents(args.data, args.experiment, speed=args.speed, publish=args.publish, to=args.to)
    print(describe(result))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``monitor`` and ``replay``."""
    mon = sub.add_parser("monitor", help="serve a live web page of an experiment (voltage, scans, slices, alarms)")
    _add_data_arg(mon)
    mon.add_argument("--host", default="127.0.0.1",
                     help="address to bind (default 127.0.0.1; any other address requires the printed token)")
    mon.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    mon.add_argument("--experiment", metavar="ID", help="experiment shown first (default: the latest)")
    mon.set_defaults(func=_cmd_monitor)

    rep = sub.add_parser("replay", help="re-emit a stored experiment's documents, or re-run it on the simulator")
    rep.add_argument("experiment", metavar="EXPERIMENT", help="experiment id (or a unique prefix)")
    _add_data_arg(rep)
    rep.add_argument("--speed", type=float, default=0.0,
                     help="pace relative to the recording (2: twice as fast; default 0: as fast as possible)")
    rep.add_argument("--publish", metavar="HOST:PORT", help="publish to a 0MQ proxy's in-port")
    rep.add_argument("--to", type=Path, metavar="DIR",
                     help="store the replayed documents in this new data directory (watch it with `tomocycle monitor`);"
                          " with --sim, where the new experiment goes (default: --data)")
    rep.add_argument("--sim", action="store_true", help="re-run the experiment's protocol on the simulated beamline")
    rep.add_argument("-q", "--quiet", action="store_true", help="no progress lines (with --sim)")
    rep.set_defaults(func=_cmd_replay)

