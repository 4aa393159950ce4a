"""``tomocycle bench NAME``: peer comparisons and speed/memory measurements.

Benchmarks live in the top-level ``benchmarks`` package; this module only routes to them.
"""

from __future__ import annotations

import argparse
import importlib

#: Benchmark name -> (module, one-line help). Each module has ``add_arguments`` and ``run``.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "recon": ("benchmarks.recon", "per-slice FBP vs astra-toolbox, algotom and scikit-image"),
    "live": ("benchmarks.live", "streaming reconstruction cost against the 002/003 acquisition pace"),
    "classify": ("benchmarks.classify", "particle classes, modes, thickness, strain on simulated series"),
    "cracks": ("benchmarks.cracks", "planted electrode cracks found against the truth, false level"),
    "live-pipeline": ("benchmarks.live_pipeline", "acquisition time of a protocol with and without the live consumer"),
    "instruments": ("benchmarks.instruments", "serial + EPICS vs in-process agreement, wire latencies"),
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``tomocycle bench`` and one sub-command per benchmark."""
    bench = sub.add_parser("bench", help="benchmarks against peer libraries (see README, Performance)")
    names = bench.add_subparsers(dest="benchmark", required=True, metavar="NAME")
    for name, (module, help_text) in BENCHMARKS.items():
        parser = names.add_parser(name, help=help_text)
        parser.set_defaults(func=_runner(module))
        # Benchmark modules keep their heavy imports (numba kernels, peers) inside run(), so
        # importing them here to add their arguments costs little.
        importlib.import_module(module).add_arguments(parser)


def _runner(module: str):
    def run(args: argparse.Namespace) -> int:
        return int(importlib.import_module(module).run(args))
    return run
