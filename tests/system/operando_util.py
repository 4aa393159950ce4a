"""Helpers for the operando system tests: small protocols, reading back what an experiment stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: Scan settings that keep a simulated scan to a fraction of a second.
TINY_SCANS = {"projections": 8, "darks": 2, "flats": 2}

SHORT_HEADER = """\
name: {name}
title: a short test protocol
cell: {{preset: si-nmc811-full, capacity: 0.033 mAh}}
poll_period: 10 s
ocv_before_scan: 1 minute
scan: {{projections: 8, range: 180, exposure: 20 ms, flats: 2, darks: 2, preset: quick}}
{extra}
safety:
  voltage: [{vmin}, 4.4 V]
  max_current: 1C
  max_charge: 0.05 mAh
  max_duration: 10 hours
  debounce: 2 s
steps:
"""


def write_protocol(folder: Path, steps: str, *, name: str = "short", extra: str = "", vmin: str = "0 V") -> Path:
    """Write a short full-cell protocol (quick instrument, 8-projection scans) with ``steps``."""
    path = folder / f"{name}.yaml"
    path.write_text(SHORT_HEADER.format(name=name, extra=extra, vmin=vmin) + steps, encoding="utf-8")
    return path


def runs_of(data_dir: Path, experiment_id: str) -> tuple[Any, list[Any]]:
    """The experiment's electrochemistry run and its scan runs (oldest first), from the catalog."""
    from controller.catalog import open_catalog

    client = open_catalog(data_dir, create=False)
    ec, scans = None, []
    for uid in client:
        run = client[uid]
        start = run.metadata["start"]
        if start.get("experiment_id") != experiment_id:
            continue
        if start.get("plan_name") == "operando":
            ec = run
        elif start.get("plan_name") == "tomo_scan":
            scans.append(run)
    scans.sort(key=lambda r: r.metadata["start"]["time"])
    assert ec is not None, f"no electrochemistry run for experiment {experiment_id}"
    return ec, scans


def polls(ec_run: Any) -> dict[str, np.ndarray]:
    """The electrochemistry run's polls as arrays (cell_time, voltage, current, charge, state, ...)."""
    ds = ec_run["primary"].read()
    return {name: np.asarray(ds[name].values) for name in ds.data_vars}
