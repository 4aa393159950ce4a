"""Serial + EPICS against the in-process simulator: agreement and wire costs.

``python -m benchmarks.instruments`` runs the short CC-CV test protocol twice (``--sim`` and
``--beamline beamlines/sim-serial-epics.yaml``), compares what the catalog holds, and times
``:READ?`` polls over the pty and EPICS moves over loopback Channel Access. Written to be
registered as ``tomocycle bench instruments`` (``add_arguments`` / ``run``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ROOT / "tests" / "system" / "protocols" / "short-cccv.yaml"
CONFIG = ROOT / "beamlines" / "sim-serial-epics.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--polls", type=int, default=500, help="serial polls to time")
    parser.add_argument("--moves", type=int, default=50, help="EPICS moves to time")


def _ec(data: str, experiment_id: str) -> dict:
    import numpy as np

    from controller.catalog import open_catalog

    for _, run in open_catalog(data, create=False).items():
        start = run.metadata["start"]
        if start.get("experiment_id") == experiment_id and start.get("plan_name") == "operando":
            return {k: np.asarray(run["primary"][k].read()) for k in ("cell_time", "voltage", "current",
                                                                       "charge", "state")}
    raise LookupError(experiment_id)


def compare() -> None:
    """Print the differences between the in-process and the wired run of the same protocol."""
    import numpy as np

    from controller.experiment import run_protocol

    runs = []
    for beamline in (None, CONFIG):
        data = tempfile.mkdtemp(prefix="tomocycle-bench-")
        result = run_protocol(PROTOCOL, data_dir=data, progress=False, handle_sigint=False, beamline=beamline)
        runs.append(_ec(data, result.experiment_id))
        print(f"{'in-process' if beamline is None else 'serial+EPICS':13s} state {result.state}, "
              f"{len(runs[-1]['cell_time'])} polls, scans {[s.label for s in result.scans]}, "
              f"{result.wall_s:.2f} s")
    a, b = runs
    qa, qb = a["charge"] - a["charge"][0], b["charge"] - b["charge"][0]
    print(f"states equal: {np.array_equal(a['state'], b['state'])}; "
          f"cell times equal: {np.array_equal(a['cell_time'], b['cell_time'])}")
    print(f"max |dV| {np.abs(a['voltage'] - b['voltage']).max():.2g} V; "
          f"max |dI| {np.abs(a['current'] - b['current']).max():.2g} A; "
          f"charge {qa[-1] * 1e6:.4f} vs {qb[-1] * 1e6:.4f} uAh ({abs(qb[-1] - qa[-1]) / abs(qa[-1]):.2g} rel)")


def wire_costs(polls: int, moves: int) -> None:
    """Print median and p95 latency of serial polls and EPICS moves."""
    from devices.epics import EpicsAxis
    from devices.keithley2400 import Keithley2400Backend
    from devices.potentiostat import Command
    from sim.epics_ioc import IOCServer, MotorIOC
    from sim.presets import build_scene
    from sim.scpi_server import SimSCPIInstrument

    def report(what: str, samples: list[float]) -> None:
        p95 = sorted(samples)[int(0.95 * (len(samples) - 1))]
        print(f"{what}: median {statistics.median(samples) * 1e3:.3g} ms, p95 {p95 * 1e3:.3g} ms "
              f"({len(samples)} samples)")

    scene = build_scene("quick", coarsen=2.0)
    with SimSCPIInstrument(scene) as inst:
        k = Keithley2400Backend(inst.port, clock=scene.clock)
        k.connect()
        k.apply(Command.cc(1e-5, 4.4))
        report("serial :READ? poll", [_timed(k.measure) for _ in range(polls)])
        k.safe_state()
        k.close()
    with IOCServer(MotorIOC("BENCH:", scene=scene)):
        axis = EpicsAxis("BENCH:ROT", name="rot", soft_limits=(-720, 720))
        t = time.perf_counter()
        axis.wait_for_connection(timeout=10)
        print(f"EpicsMotor connect: {time.perf_counter() - t:.2f} s")
        report("EPICS move (virtual clock)", [_timed(lambda i=i: axis.set(float(i % 2)).wait(10))
                                              for i in range(moves)])
        axis.destroy()


def _timed(action) -> float:  # noqa: ANN001 - any callable
    t = time.perf_counter()
    action()
    return time.perf_counter() - t


def run(args: argparse.Namespace) -> int:
    compare()
    wire_costs(args.polls, args.moves)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
