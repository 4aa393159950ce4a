"""The analysis part of the monitor's snapshot: ``analysis/<id>/summary.json`` as the page shows it.

The live consumer and ``tomocycle analyze`` write the summary (layout in docs/live.md); it may be
half-written or replaced while it is read, and its paths are not trusted: only files inside the
data directory are offered to the page.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

#: Names of the three orthogonal slices in an analysis summary, in the order shown.
ORTHOGONAL = ("xy", "xz", "yz")


def read_analysis(data_dir: Path, experiment_id: str) -> dict[str, Any] | None:
    """The live analysis summary of an experiment, or None if there is none (yet).

    ``summary.json`` holds a list of timestep entries, either as the whole file or under the
    key ``"timesteps"``. Slice paths are resolved against the summary's folder, then the data
    directory; only files inside the data directory are offered.

    Returns
    -------
    dict or None
        ``{timesteps: [...], latest_slices: [{name, path, version}], classes: [...], live}``:
        ``live`` is the scan being acquired, ``{timestep, projections, slices}``, when the
        consumer has written a preview of it, else None. ``version`` (the file's modification
        time, ns) changes when a file is rewritten under the same name, as previews are.
    """
    root = Path(data_dir).resolve()
    folder = root / "analysis" / experiment_id
    try:
        raw = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    entries = raw.get("timesteps", []) if isinstance(raw, dict) else raw
    if not isinstance(entries, list):
        return None
    timesteps, classes, latest = [], [], []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        fractions = {str(k): float(v) for k, v in (entry.get("class_fractions") or {}).items()}
        for name in fractions:
            if name not in classes:
                classes.append(name)
        thickness = entry.get("thickness_um")
        resolved = _resolve_slices(root, folder, entry.get("slices"))
        if resolved:
            latest = resolved
        timesteps.append({"timestep": str(entry.get("timestep", "")),
                          "time_s": _num(entry.get("time_s")), "voltage": _num(entry.get("voltage")),
                          "class_fractions": fractions,
                          "thickness_um": _num(thickness), "slices": resolved})
    return {"timesteps": timesteps, "classes": classes, "latest_slices": latest[:3],
            "live": _live(root, folder, raw.get("live") if isinstance(raw, dict) else None)}


def _live(root: Path, folder: Path, live: Any) -> dict[str, Any] | None:
    """The preview of the scan being acquired, as the page shows it, or None."""
    if not isinstance(live, dict):
        return None
    slices = _resolve_slices(root, folder, live.get("slices"))
    if not slices:
        return None
    return {"timestep": str(live.get("timestep", "")), "projections": _num(live.get("projections")),
            "slices": slices[:3]}


def _resolve_slices(root: Path, folder: Path, slices: Any) -> list[dict[str, Any]]:
    out = []
    for name, p in _slice_items(slices):
        path = resolve_data_file(root, folder, str(p))
        if path is not None:
            out.append({"name": str(name), "path": str(path.relative_to(root)), "version": _mtime_ns(path)})
    return out


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _slice_items(slices: Any) -> list[tuple[str, Any]]:
    """(name, path) of the slices to show from a summary entry's ``slices`` (a mapping or a list).

    The live pipeline's mapping also names the arrays file (``npz``) beside the three PNGs; when
    the orthogonal names are there, those three are shown, in the order xy, xz, yz.
    """
    if isinstance(slices, dict):
        items = [(str(k), v) for k, v in slices.items()]
    elif isinstance(slices, list):
        items = [(Path(str(p)).stem, p) for p in slices]
    else:
        return []
    named = dict(items)
    if all(n in named for n in ORTHOGONAL):
        return [(n, named[n]) for n in ORTHOGONAL]
    return items


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def resolve_data_file(root: Path, folder: Path, name: str) -> Path | None:
    """``name`` as an existing file inside ``root`` (tried relative to ``folder``, then ``root``), else None."""
    candidates = [Path(name)] if Path(name).is_absolute() else [folder / name, root / name]
    for candidate in candidates:
        path = candidate.resolve()
        if path.is_file() and path.is_relative_to(root):
            return path
    return None
