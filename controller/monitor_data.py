"""What ``tomocycle monitor`` shows, read from a data directory: one JSON-able snapshot per experiment.

Sources, all of them written by other processes while the monitor runs:

- the catalog (``controller.catalog``): the experiment's electrochemistry run(s) (plan
  ``operando``: a poll per row in stream "primary", alarms in stream "alarms") and its scan runs
  (plan ``tomo_scan``: metadata ``timestep``, ``step``, ``trigger``, ``noise``);
- ``experiments/<id>/``: the protocol as run (for the step texts and the next scan) and the
  checkpoint (experiment list, finished flag);
- ``analysis/<id>/summary.json``: the live analysis (see docs/live.md): per timestep
  ``{timestep, time_s, voltage, class_fractions, thickness_um, slices}``; absent means "no
  analysis yet".

Nothing here writes to the data directory.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from controller.checkpoint import experiments_dir
from controller.cursor import step_number
from controller.monitor_analysis import read_analysis
from controller.protocol_model import CycleStep, Protocol, ScanStep, ScheduledBlock

#: Most points of the V/I curve sent to the page (state changes are always kept).
MAX_CURVE_POINTS = 1500
#: States in which the cell is paused for a scan.
SCAN_STATES = ("scan_rest", "scanning")
FINAL_STATES = ("done", "fault")


# --------------------------------------------------------------------------- experiments
def list_experiments(data_dir: Path) -> list[dict[str, Any]]:
    """The experiments of a data directory, oldest first, from their checkpoint headers.

    Returns
    -------
    list of dict
        ``{id, protocol, created, updated, finished}`` each.
    """
    root = experiments_dir(Path(data_dir))
    found = []
    for path in root.glob("*/checkpoint.json") if root.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue  # being replaced this instant, or not ours: next refresh sees it
        found.append({"id": path.parent.name, "protocol": data.get("protocol_name"),
                      "created": data.get("created", 0.0), "updated": data.get("updated", data.get("created", 0.0)),
                      "finished": bool(data.get("finished")), "replay_of": data.get("replay_of")})
    return sorted(found, key=lambda e: e["created"])


def load_stored_protocol(data_dir: Path, experiment_id: str) -> Protocol | None:
    """The protocol an experiment ran, from ``experiments/<id>/protocol.yaml`` (None if absent or invalid)."""
    from controller.protocol import ProtocolError, parse_protocol

    path = experiments_dir(Path(data_dir)) / experiment_id / "protocol.yaml"
    try:
        return parse_protocol(path.read_text(encoding="utf-8"), source=str(path))
    except (OSError, ProtocolError):
        return None


# --------------------------------------------------------------------------- the curve
def decimate(n: int, keep: np.ndarray, max_points: int = MAX_CURVE_POINTS) -> np.ndarray:
    """Indices of at most about ``max_points`` evenly spread rows, plus every row flagged in ``keep``.

    Parameters
    ----------
    n
        Number of rows.
    keep
        Boolean mask of rows that must stay (state changes, the last row).
    max_points
        Target count of evenly spread rows.
    """
    if n == 0:
        return np.zeros(0, dtype=int)
    stride = max(1, math.ceil(n / max_points))
    mask = np.zeros(n, dtype=bool)
    mask[::stride] = True
    mask |= keep
    mask[-1] = True
    return np.flatnonzero(mask)


def _changes(*columns: np.ndarray) -> np.ndarray:
    """Mask of rows where any column differs from the previous row (the first row included)."""
    n = len(columns[0])
    mask = np.zeros(n, dtype=bool)
    if n:
        mask[0] = True
        for col in columns:
            mask[1:] |= col[1:] != col[:-1]
    return mask


def _step_path(step: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) - 1 for p in step.split(".")) if step else None
    except ValueError:
        return None


def _hms(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def next_scan(protocol: Protocol | None, polls: dict[str, np.ndarray], scans_done: int) -> dict[str, Any] | None:
    """When the next scan will be taken, as far as the protocol and the polls so far tell.

    The current step and its start come from the polls (the step column and the last change
    into a cycling state); time limits whose action scans give a time, other scanning limits a
    condition ("when 4.3 V"); a schedule block gives its next scheduled time; otherwise the next
    scan step in protocol order. Interruptions inside schedule blocks are not subtracted, so a
    time is an estimate.

    Parameters
    ----------
    protocol
        The protocol being run (None: unknown, nothing can be said beyond a scan under way).
    polls
        The electrochemistry polls so far (``cell_time``, ``state``, ``step`` columns).
    scans_done
        Scans finished so far; the next (or running) scan is ``T<scans_done>``.

    Returns
    -------
    dict or None
        ``{label, text, eta_s}`` (``eta_s``: cell time of the scan, or None if it depends on a
        condition); None when the experiment is over or nothing follows.
    """
    n = len(polls.get("cell_time", ()))
    if n == 0:
        return None
    state, step = str(polls["state"][-1]), str(polls["step"][-1])
    label = f"T{scans_done}"
    if state in FINAL_STATES:
        return None
    if state in SCAN_STATES:
        return {"label": label, "text": f"{label} under way ({state.replace('_', ' ')})", "eta_s": None}
    path = _step_path(step)
    if protocol is None or path is None:
        return None
    try:
        node = protocol.at(path)
    except (IndexError, AttributeError, AssertionError):
        return None
    t = polls["cell_time"]
    now = float(t[-1])
    if isinstance(node, ScanStep):
        return {"label": label, "text": f"{label} now (step {step})", "eta_s": now}
    times: list[tuple[float, str]] = []
    conditions: list[str] = []
    if isinstance(node, CycleStep):
        # The step (re)started at the last row where (state, step) changed from something else.
        changed = np.flatnonzero(_changes(polls["state"], polls["step"]))
        started = float(t[changed[-1]])
        for lim in node.limits:
            if not lim.action.scan:
                continue
            if lim.kind == "time":
                times.append((started + lim.value, f"step {step} limit {lim.text}"))
            else:
                conditions.append(f"when {lim.text} (step {step})")
    for depth in range(1, len(path)):
        prefix = path[:depth]
        block = protocol.at(prefix)
        if isinstance(block, ScheduledBlock):
            number = step_number(prefix)
            inside = np.array([s == number or s.startswith(number + ".") for s in polls["step"]])
            outside = np.flatnonzero(~inside)
            entered = float(t[outside[-1] + 1]) if len(outside) else float(t[0])
            nxt = block.next_scan_time(now - entered)
            if nxt is not None:
                times.append((entered + nxt, f"schedule of step {number}"))
    if times:
        eta, why = min(times)
        return {"label": label, "text": f"{label} at {_hms(eta - float(t[0]))} ({why})"
                + (f", or {conditions[0]}" if conditions else ""), "eta_s": eta}
    if conditions:
        return {"label": label, "text": f"{label} {conditions[0]}", "eta_s": None}
    for later_path, later in protocol.walk():
        if later_path > path and isinstance(later, ScanStep):
            name = f" [{later.label}]" if later.label else ""
            return {"label": label, "text": f"{label} at step {step_number(later_path)}{name}, after this step",
                    "eta_s": None}
    return None


# --------------------------------------------------------------------------- snapshots
@dataclass
class _Cache:
    snapshot: dict[str, Any] | None = None
    at: float = 0.0
    cost: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class MonitorData:
    """Reads snapshots of the experiments in a data directory, for the monitor's JSON endpoints.

    The catalog is opened on first use (and retried until it exists, so the monitor can start
    before the experiment). A snapshot is re-read at most every ``min_interval`` seconds, and
    never more often than five times its own read cost, so a long experiment's monitor does not
    take the machine from the acquisition.

    Parameters
    ----------
    data_dir
        The data directory.
    min_interval
        Shortest wall time between two reads of the same experiment (s).
    open_client
        Opens the catalog (``controller.catalog.open_catalog`` with ``create=False``), injectable.
    """

    def __init__(self, data_dir: str | Path, *, min_interval: float = 1.0,
                 open_client: Callable[[Path], Any] | None = None) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.min_interval = min_interval
        self._open_client = open_client
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._caches: dict[str, _Cache] = {}

    # ------------------------------------------------------------ public
    def experiments(self) -> list[dict[str, Any]]:
        """See :func:`list_experiments`."""
        return list_experiments(self.data_dir)

    def default_experiment(self) -> str | None:
        """The most recently created experiment, or None."""
        found = self.experiments()
        return found[-1]["id"] if found else None

    def snapshot(self, experiment_id: str | None = None) -> dict[str, Any]:
        """Everything the page shows about one experiment (the latest one by default)."""
        eid = experiment_id or self.default_experiment()
        if eid is None:
            return {"experiment": None, "experiments": [], "message": f"no experiment in {self.data_dir} yet"}
        cache = self._caches.setdefault(eid, _Cache())
        with cache.lock:
            now = time.monotonic()
            if cache.snapshot is None or now - cache.at >= max(self.min_interval, 5 * cache.cost):
                t0 = time.perf_counter()
                cache.snapshot = self._read(eid)
                cache.cost = time.perf_counter() - t0
                cache.at = time.monotonic()
            snap = dict(cache.snapshot)
        snap["experiments"] = self.experiments()
        snap["analysis"] = read_analysis(self.data_dir, eid)
        return snap

    # ------------------------------------------------------------ reading
    def _catalog(self) -> Any | None:
        with self._client_lock:
            if self._client is None and (self.data_dir / "catalog.db").exists():
                if self._open_client is not None:
                    self._client = self._open_client(self.data_dir)
                else:
                    from controller.catalog import open_catalog

                    self._client = open_catalog(self.data_dir, create=False)
            return self._client

    def _runs(self, eid: str) -> tuple[list[Any], list[Any]]:
        client = self._catalog()
        if client is None:
            return [], []
        from tiled.queries import Key

        ec, scans = [], []
        for run in client.search(Key("start.experiment_id") == eid).values():
            start = run.metadata["start"]
            if start.get("plan_name") == "operando":
                ec.append(run)
            elif start.get("plan_name") == "tomo_scan" and start.get("timestep"):
                scans.append(run)
        ec.sort(key=lambda r: r.metadata["start"]["time"])
        return ec, scans

    def _read(self, eid: str) -> dict[str, Any]:
        header = self._header(eid)
        ec_runs, scan_runs = self._runs(eid)
        polls = _read_polls(ec_runs)
        alarms = _read_alarms(ec_runs)
        n = len(polls.get("cell_time", ()))
        t0 = float(polls["cell_time"][0]) if n else 0.0
        scans = sorted((_scan_entry(r, t0) for r in scan_runs), key=lambda s: (s["time_s"], s["label"]))
        finished = bool(header.get("finished")) or (
            bool(ec_runs) and all(r.metadata.get("stop") for r in ec_runs)
            and n > 0 and str(polls["state"][-1]) in FINAL_STATES)
        protocol = load_stored_protocol(self.data_dir, eid)
        snap: dict[str, Any] = {
            "experiment": eid, "protocol": header.get("protocol_name")
            or (ec_runs[0].metadata["start"].get("protocol") if ec_runs else None),
            "title": protocol.title if protocol is not None else None,
            "finished": finished, "replay_of": header.get("replay_of"),
            "segments": len(ec_runs), "polls": n, "scans": scans, "alarms": alarms,
            "curve": _curve(polls, t0), "t0": t0, "current": None, "next_scan": None,
            "max_duration_s": protocol.safety.t_max if protocol is not None else None,
        }
        if n:
            last = {k: v[-1] for k, v in polls.items()}
            # The scans column counts a scan from its first frame: one still being taken is not done.
            done = int(last.get("scans", len(scans))) - (1 if str(last["state"]) == "scanning" else 0)
            snap["current"] = {
                "state": str(last["state"]), "step": str(last["step"]), "step_label": str(last.get("step_label", "")),
                "step_text": _step_text(protocol, str(last["step"])),
                "elapsed_s": float(last["cell_time"]) - t0, "voltage": float(last["voltage"]),
                "current": float(last["current"]), "charge_Ah": float(last.get("charge", float("nan"))),
                "soc": float(last.get("soc", float("nan"))), "scans_done": done}
            snap["next_scan"] = next_scan(protocol, polls, done)
        return _jsonable(snap)

    def _header(self, eid: str) -> dict[str, Any]:
        path = experiments_dir(self.data_dir) / eid / "checkpoint.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}


def _step_text(protocol: Protocol | None, step: str) -> str | None:
    path = _step_path(step)
    if protocol is None or path is None:
        return None
    try:
        return getattr(protocol.at(path), "text", None)
    except (IndexError, AttributeError, AssertionError):
        return None


def _read_polls(ec_runs: list[Any]) -> dict[str, np.ndarray]:
    parts: list[dict[str, np.ndarray]] = []
    for run in ec_runs:
        if "primary" not in run:
            continue
        ds = run["primary"].read()
        if "cell_time" not in ds:
            continue
        parts.append({name: np.asarray(ds[name].values) for name in ds.data_vars})
    if not parts:
        return {}
    keys = set.intersection(*(set(p) for p in parts))
    polls = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    order = np.argsort(polls["cell_time"], kind="stable")
    return {k: v[order] for k, v in polls.items()}


def _read_alarms(ec_runs: list[Any]) -> list[dict[str, Any]]:
    alarms = []
    for run in ec_runs:
        if "alarms" not in run:
            continue
        ds = run["alarms"].read()
        if "message" not in ds:
            continue
        for t, text in zip(np.asarray(ds["cell_time"].values), np.asarray(ds["message"].values)):
            alarms.append({"time_s": float(t), "message": str(text)})
    return sorted(alarms, key=lambda a: a["time_s"])


def _curve(polls: dict[str, np.ndarray], t0: float) -> dict[str, Any]:
    n = len(polls.get("cell_time", ()))
    if n == 0:
        return {"t_h": [], "voltage": [], "current": [], "state": [], "states": []}
    state = polls["state"].astype(str)
    idx = decimate(n, _changes(state))
    states = list(dict.fromkeys(state.tolist()))
    lookup = {s: i for i, s in enumerate(states)}
    return {"t_h": ((polls["cell_time"][idx] - t0) / 3600.0).round(6).tolist(),
            "voltage": polls["voltage"][idx].astype(float).round(6).tolist(),
            "current": polls["current"][idx].astype(float).tolist(),
            "state": [lookup[s] for s in state[idx]], "states": states}


def _scan_entry(run: Any, t0: float) -> dict[str, Any]:
    start = run.metadata["start"]
    stop = run.metadata.get("stop") or {}
    trig = start.get("trigger") or {}
    time_s = trig.get("time_s")
    return {"label": str(start["timestep"]), "uid": start["uid"],
            "time_s": float(time_s) if time_s is not None else float("nan"),
            "t_h": (float(time_s) - t0) / 3600.0 if time_s is not None else None,
            "voltage": trig.get("voltage"), "step": start.get("step"), "noise": bool(start.get("noise")),
            "status": stop.get("exit_status", "running")}


def _jsonable(value: Any) -> Any:
    """Plain JSON types, with NaN and infinities as None (browsers' JSON.parse rejects NaN)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
