"""``tomocycle bench live-pipeline``: does the live consumer slow acquisition down?

Runs a protocol (the 002 preset by default) on the simulated beamline twice in fresh data
directories: once publishing its documents to a 0MQ proxy with nobody listening, once with a
``tomocycle consume`` process following it (live previews, full reconstruction and particle
analysis after every scan). It reports the acquisition's wall time (the RunEngine's, from
``run_protocol``) for both, and how long the consumer needed after the acquisition ended to
finish the last timestep. The order alternates over ``--repeat`` rounds so that a warming
machine does not favour one side.

On the simulated beamline acquisition is compute-bound (rendering frames), so the consumer and
the RunEngine compete for the same cores: the difference is an upper bound of what a consumer
costs a real acquisition, which mostly waits on the detector.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``tomocycle bench live-pipeline``."""
    parser.add_argument("--protocol", default="002", help="protocol file or preset (default: 002)")
    parser.add_argument("--projections", type=int, default=None, help="projections per scan (default: the protocol's)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of (without, with) consumer")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR", help="keep the data directories here")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _acquire(protocol: str, data: Path, projections: int | None, in_port: int) -> tuple[float, str]:
    from controller.experiment import run_protocol
    from controller.live_publish import attach_publisher

    overrides = {"projections": projections} if projections else None
    publishers = []

    def configure(engine: object) -> None:
        publishers.append(attach_publisher(engine, f"127.0.0.1:{in_port}"))

    result = run_protocol(protocol, data_dir=data, scan_overrides=overrides, progress=False, handle_sigint=False,
                          configure_engine=configure)
    for p in publishers:
        p.close()
    if not result.ok:
        raise RuntimeError(f"{protocol}: ended in {result.state} ({result.fault})")
    return result.wall_s, result.experiment_id


def run(args: argparse.Namespace) -> int:
    """Measure and print; return the exit code."""
    from controller.live_publish import start_proxy

    base = Path(tempfile.mkdtemp(prefix="tomocycle-bench-live-")) if args.keep is None else args.keep
    base.mkdir(parents=True, exist_ok=True)
    rows = []
    in_port, out_port = _free_port(), _free_port()
    env = {**os.environ}
    with start_proxy(in_port=in_port, out_port=out_port):
        for r in range(args.repeat):
            for with_consumer in ((False, True) if r % 2 == 0 else (True, False)):
                data = base / f"round{r}-{'consumer' if with_consumer else 'alone'}"
                shutil.rmtree(data, ignore_errors=True)
                consumer = None
                if with_consumer:
                    consumer = subprocess.Popen([sys.executable, "-m", "controller.cli", "consume", "--data",
                                                 str(data), "--proxy", f"127.0.0.1:{out_port}",
                                                 "--exit-when-finished"],
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
                    time.sleep(2.0)  # let it subscribe before the first document
                wall, eid = _acquire(args.protocol, data, args.projections, in_port)
                tail = float("nan")
                if consumer is not None:
                    t = time.perf_counter()
                    consumer.wait()
                    tail = time.perf_counter() - t
                rows.append((r, with_consumer, wall, tail))
                print(f"round {r}: {'with consumer   ' if with_consumer else 'without consumer'} "
                      f"acquisition {wall:7.1f} s" + (f"; consumer done {tail:5.1f} s after the end"
                                                      if consumer is not None else ""), flush=True)
    alone = [w for _, c, w, _ in rows if not c]
    withc = [w for _, c, w, _ in rows if c]
    print(f"\n{args.protocol}: acquisition without consumer {min(alone):.1f} s (best of {len(alone)}), "
          f"with consumer {min(withc):.1f} s (best of {len(withc)}); "
          f"ratio {min(withc) / min(alone):.2f}")
    if args.keep is None:
        shutil.rmtree(base, ignore_errors=True)
    return 0
