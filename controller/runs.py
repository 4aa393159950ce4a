"""Reading stored runs back: listing, loading a scan's frames, exporting to Data Exchange."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.formats import TomoData, split_by_image_key, write_dxfile


class RunNotFound(ValueError):
    """No run (or more than one) matches what the operator typed."""


@dataclass(frozen=True)
class RunSummary:
    """One line of ``tomocycle runs``."""

    uid: str
    time: float
    plan_name: str
    label: str
    num_events: int
    exit_status: str


def list_runs(client: Any, limit: int | None = None) -> list[RunSummary]:
    """Summaries of the runs in a catalog, oldest first (the newest ``limit`` if given)."""
    summaries = []
    for uid, run in client.items():
        start, stop = run.metadata.get("start") or {}, run.metadata.get("stop") or {}
        events = sum((stop.get("num_events") or {}).values())
        label = start.get("timestep") or start.get("preset") or ""
        summaries.append(RunSummary(uid, float(start.get("time", 0.0)), start.get("plan_name", "?"), str(label),
                                    events, stop.get("exit_status", "running or died")))
    summaries.sort(key=lambda s: s.time)
    return summaries[-limit:] if limit else summaries


def format_runs(summaries: list[RunSummary]) -> str:
    """A plain table of run summaries."""
    if not summaries:
        return "no runs stored yet"
    lines = [f"{'uid':10s} {'started (UTC)':19s} {'plan':12s} {'label':16s} {'events':>7s}  status"]
    for s in summaries:
        when = dt.datetime.fromtimestamp(s.time, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{s.uid[:8]:10s} {when:19s} {s.plan_name:12s} {s.label:16s} {s.num_events:7d}  {s.exit_status}")
    return "\n".join(lines)


def get_run(client: Any, uid: str) -> Any:
    """The run whose uid is ``uid`` or starts with it.

    Raises
    ------
    RunNotFound
        If no run, or several, match.
    """
    # Match prefixes ourselves: tiled's own partial-uid lookup rejects short prefixes.
    matches = [key for key in client.keys() if key.startswith(uid)]
    if uid in matches:
        return client[uid]
    if len(matches) != 1:
        what = "no run" if not matches else f"{len(matches)} runs"
        raise RunNotFound(f"run {uid!r}: {what} in the catalog match{'es' if not matches else ''}")
    return client[matches[0]]


def load_scan(client: Any, uid: str) -> TomoData:
    """Frames, image keys and angles of a stored ``tomo_scan``, read through the catalog."""
    run = get_run(client, uid)
    start = run.metadata["start"]
    if start.get("plan_name") != "tomo_scan":
        raise RunNotFound(f"run {uid!r} is a {start.get('plan_name')!r} run, not a tomo_scan")
    det = start["detectors"][0]
    stream = run["primary"]
    frames = stream[f"{det}_image"].read()
    keys = np.asarray(stream[f"{det}_image_key"].read())
    angles = np.asarray(stream[f"{det}_angle"].read(), dtype=np.float64)
    meta = {"uid": start["uid"], "preset": start.get("preset", ""), "sample": start.get("sample", "")}
    return split_by_image_key(np.asarray(frames), keys, angles, meta)


def export_dxfile(client: Any, uid: str, output: Path | None = None) -> Path:
    """Write a stored scan as an APS Data Exchange file; return its path."""
    data = load_scan(client, uid)
    out = Path(output) if output is not None else Path(f"{data.metadata['uid']}.h5")
    write_dxfile(out, data)
    return out
