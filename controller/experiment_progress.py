"""Terminal progress of an operando experiment: one line per state change, scan and alarm.

Fed by the electrochemistry run's documents (its "primary" polls and "alarms" pages), so it
shows exactly what was recorded. Lines go to stderr (stdout stays for the summary table).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from bluesky.callbacks.core import CallbackBase
from tqdm import tqdm

from controller.protocol import Protocol


def _hms(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class ExperimentProgress(CallbackBase):
    """Prints what the controller is doing, as it changes.

    Parameters
    ----------
    protocol
        The protocol being run (for its step texts).
    stream
        Where lines go (stderr by default).
    """

    def __init__(self, protocol: Protocol, stream: TextIO | None = None) -> None:
        super().__init__()
        self.protocol = protocol
        self.stream = stream or sys.stderr
        self._ec_descriptors: dict[str, str] = {}
        self._last: tuple[str, str] | None = None
        self._t0: float | None = None

    def start(self, doc: dict[str, Any]) -> None:
        if doc.get("plan_name") == "operando":
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
                    label = data["step_label"][i]
                    self._print(f"{self._clock(t)} {key[0]:12s} step {key[1] or '-'}"
                                f"{f' [{label}]' if label else ''}  V={data['voltage'][i]:.4f} V  "
                                f"I={data['current'][i]:.3e} A  scans={data['scans'][i]}")

    def stop(self, doc: dict[str, Any]) -> None:
        if doc.get("exit_status") != "success" and doc.get("reason"):
            self._print(f"run ended: {doc.get('exit_status')}: {doc.get('reason')}")

    def _clock(self, t: float | None) -> str:
        if t is None or self._t0 is None:
            return "[-:--:--]"
        return f"[{_hms(t - self._t0)}]"

    def _print(self, line: str) -> None:
        tqdm.write(line, file=self.stream)
