"""Benchmarks against peer libraries, run as ``tomocycle bench NAME``.

Each module named in :data:`controller.cli_bench.BENCHMARKS` provides ``add_arguments(parser)``
and ``run(args) -> int``. Results are ratios against peers measured in the same run, never
wall-clock assertions.
"""
