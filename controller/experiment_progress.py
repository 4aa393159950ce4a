"""Terminal progress of an operando experiment: one line per state change, scan and alarm, and a status line.

Fed by the electrochemistry run's documents (its "primary" polls and "alarms" pages), so it
shows exactly what was recorded. Lines go to stderr (stdout stays for the summary table).

The status line tells the current step, the cell time elapsed in it and in the experiment
against what is expected (the step's time limit, the protocol's maximum duration), the scans
done, V and I. On a terminal it is redrawn in place; otherwise it is printed every
``status_period`` seconds of wall time.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from bluesky.callbacks.core import CallbackBase
from tqdm import tqdm

from controller.protocol import CycleStep, Protocol


def _hms(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1.0, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n")):
        if abs(value) >= factor or factor == 1e-9:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def step_time_limit(protocol: Protocol, step: str) -> float | None:
    """The shortest time limit (s) of the cycling step numbered ``step`` ("2.1"), if it has one."""
    try:
        node = protocol.at(tuple(int(p) - 1 for p in step.split(".")))
    except (ValueError, IndexError, AttributeError, AssertionError):
        return None
    return node.duration_s if isinstance(node, CycleStep) else None


def status_line(*, elapsed_s: float, max_s: float | None, state: str, step: str, label: str,
                step_elapsed_s: float, step_limit_s: float | None, scans: int, voltage: float,
                current: float, wall_s: float) -> str:
    """The one-line status of a running experiment.

    Parameters
    ----------
    elapsed_s, max_s
        Cell time since the start, and the protocol's maximum duration (s).
    state, step, label
        Controller state, step number ("2.1") and step label.
    step_elapsed_s, step_limit_s
        Cell time in the current step, and its time limit if it has one (s).
    scans
        Scans done.
    voltage, current
        The last reading (V, A).
    wall_s
        Wall time since the start (s).
    """
    step_part = f"step {step or '-'}{f' [{label}]' if label else ''} {state} {_hms(step_elapsed_s)}"
    if step_limit_s is not None:
        step_part += f" of <={_hms(step_limit_s)}"
    total = _hms(elapsed_s) + (f" of <={_hms(max_s)}" if max_s else "")
    return (f"cell {total} | {step_part} | scans {scans} | {voltage:.4f} V {_si(current, 'A')} | "
            f"wall {_hms(wall_s)}")


class ExperimentProgress(CallbackBase):
    """Prints what the controller is doing, as it changes.

    Parameters
    ----------
    protocol
        The protocol being run (for its step texts).
    stream
        Where lines go (stderr by default).
    status_period
        Wall seconds between status lines when ``stream`` is not a terminal (None: no status
        lines there); on a terminal the status line is redrawn in place at every page.
    """

    def __init__(self, protocol: Protocol, stream: TextIO | None = None, status_period: float | None = 10.0) -> None:
        super().__init__()
        self.protocol = protocol
        self.stream = stream or sys.stderr
        self.status_period = status_period
        self._ec_descriptors: dict[str, str] = {}
        self._ec_runs: set[str] = set()
        self._last: tuple[str, str] | None = None
        self._t0: float | None = None
        self._step_started = 0.0
        self._wall0 = time.monotonic()
        self._last_status: float | None = None
        self._status_text = ""
        tty = getattr(self.stream, "isatty", lambda: False)()
        self._bar = tqdm(total=None, bar_format="{desc}", file=self.stream, leave=False,
                         position=0) if tty else None

    def start(self, doc: dict[str, Any]) -> None:
        if doc.get("plan_name") == "operando":
            self._ec_runs.add(doc["uid"])
            self._print(f"experiment {doc.get('experiment_id')} segment {doc.get('segment', 1)}: "
                        f"protocol {doc.get('protocol')}")
        elif doc.get("plan_name") == "tomo_scan" and "timestep" in doc:
            trig = doc.get("trigger", {})
            self._print(f"{self._clock(trig.get('time_s'))} scan {doc['timestep']}"
                        f"{' (noise)' if doc.get('noise') else ''}: {doc.get('step', '')}  "
                        f"V={trig.get('voltage', float('nan')):.4f} V")

    def descriptor(self, doc: dict[str, Any]) -> None:
        if "cell_time" in doc["data_keys"] or "message" in doc["data_keys"]:
            self._ec_descriptors[doc["uid"]] = doc["name"]

    def event_page(self, doc: dict[str, Any]) -> None:
        stream = self._ec_descriptors.get(doc["descriptor"])
        data = doc["data"]
        if stream == "alarms":
            for t, text in zip(data["cell_time"], data["message"]):
                self._print(f"{self._clock(t)} ALARM: {text}")
        elif stream == "primary":
            for i, t in enumerate(data["cell_time"]):
                if self._t0 is None:
                    self._t0 = t
                key = (data["state"][i], data["step"][i])
                if key != self._last:
                    self._last = key
                    self._step_started = t
                    label = data["step_label"][i]
                    self._print(f"{self._clock(t)} {key[0]:12s} step {key[1] or '-'}"
                                f"{f' [{label}]' if label else ''}  V={data['voltage'][i]:.4f} V  "
                                f"I={data['current'][i]:.3e} A  scans={data['scans'][i]}")
            if len(data["cell_time"]):
                self._status({k: v[-1] for k, v in data.items()})

    def _status(self, last: dict[str, Any]) -> None:
        state, step = str(last["state"]), str(last["step"])
        self._status_text = status_line(
            elapsed_s=float(last["cell_time"]) - (self._t0 or 0.0), max_s=self.protocol.safety.t_max,
            state=state, step=step, label=str(last.get("step_label", "")),
            step_elapsed_s=float(last["cell_time"]) - self._step_started,
            step_limit_s=step_time_limit(self.protocol, step) if state not in ("scan_rest", "scanning") else None,
            scans=int(last["scans"]), voltage=float(last["voltage"]), current=float(last["current"]),
            wall_s=time.monotonic() - self._wall0)
        if self._bar is not None:
            self._bar.set_description_str(self._status_text)
            return
        now = time.monotonic()
        if self.status_period is not None and (self._last_status is None
                                               or now - self._last_status >= self.status_period):
            self._last_status = now
            self._print(f"status: {self._status_text}")

    def stop(self, doc: dict[str, Any]) -> None:
        if doc.get("exit_status") != "success" and doc.get("reason"):
            self._print(f"run ended: {doc.get('exit_status')}: {doc.get('reason')}")
        if doc["run_start"] in self._ec_runs:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            if self._status_text:
                self._print(f"status: {self._status_text}")

    def _clock(self, t: float | None) -> str:
        if t is None or self._t0 is None:
            return "[-:--:--]"
        return f"[{_hms(t - self._t0)}]"

    def _print(self, line: str) -> None:
        tqdm.write(line, file=self.stream)
