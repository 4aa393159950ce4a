"""``tomocycle queueserver``: start bluesky-queueserver's RE Manager with the tomocycle profile.

A thin layer over :mod:`controller.queueserver`; see docs/queueserver.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from controller.catalog import DEFAULT_DATA_DIR


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``queueserver`` sub-command."""
    from controller.queueserver import DEFAULT_CONTROL, DEFAULT_INFO

    q = sub.add_parser("queueserver", help="serve tomocycle's plans to bluesky-queueserver clients "
                                           "(start-re-manager with the tomocycle profile)")
    q.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, metavar="DIR",
                   help=f"data directory of the catalog the queued plans write (default: ./{DEFAULT_DATA_DIR})")
    q.add_argument("--protocol", default="002", metavar="PROTOCOL",
                   help="protocol (file or preset) of the mounted cell: sets the instrument and the simulated "
                        "cell, and is what `operando` runs by default (default: 002)")
    q.add_argument("--beamline", type=Path, default=None, metavar="CONFIG",
                   help="beamline configuration for real instruments (docs/instruments.md); default: simulator")
    q.add_argument("--seed", type=int, default=0, help="seed of the simulated sample and noise")
    q.add_argument("--redis", default="127.0.0.1:6379", metavar="HOST:PORT", help="Redis server (default: %(default)s)")
    q.add_argument("--control", default=DEFAULT_CONTROL, metavar="ADDR",
                   help="0MQ control address clients connect to (default: %(default)s)")
    q.add_argument("--info", default=DEFAULT_INFO, metavar="ADDR",
                   help="0MQ address of the manager's console/info publisher (default: %(default)s)")
    q.add_argument("--print", dest="print_only", action="store_true",
                   help="print the start-re-manager command and its environment instead of running it")
    q.set_defaults(func=_cmd_queueserver)


def _cmd_queueserver(args: argparse.Namespace) -> int:
    from controller.experiment import resolve_protocol
    from controller.queueserver import (ENV_BEAMLINE, ENV_DATA, ENV_PROTOCOL, ENV_SEED, QueueServerError,
                                        manager_command, manager_environment,
                                        plans_devices_folder)

    # Bad settings fail here, in one line, not in the manager's worker when the environment opens.
    protocol = resolve_protocol(args.protocol)
    if args.beamline is not None and not args.beamline.is_file():
        raise FileNotFoundError(f"--beamline {args.beamline}: no such file")
    try:
        cmd = manager_command(args.data, redis=args.redis, control=args.control, info=args.info)
    except QueueServerError as err:
        print(f"tomocycle queueserver: error: {err}", file=sys.stderr)
        return 2
    env = manager_environment(args.data, protocol=str(protocol.resolve()), beamline=args.beamline, seed=args.seed)
    if args.print_only:
        for key in (ENV_DATA, ENV_PROTOCOL, ENV_BEAMLINE, ENV_SEED, "PYTHONPATH"):
            if key in env:
                print(f"{key}={shlex.quote(env[key])}")
        print(shlex.join(cmd))
        return 0
    plans_devices_folder(args.data).mkdir(parents=True, exist_ok=True)
    print(f"tomocycle queueserver: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    # The manager takes this process's place, so signals (Ctrl-C, a service manager's TERM) reach it.
    os.execve(cmd[0], cmd, env)
    return 0  # not reached
