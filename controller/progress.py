"""Terminal progress for runs: a tqdm bar per run, fed by documents."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from bluesky.callbacks.core import CallbackBase
from tqdm import tqdm


class RunProgress(CallbackBase):
    """A progress bar over a run's events; the total comes from the start document's num_points.

    Parameters
    ----------
    stream
        Where the bar is drawn (stderr by default, so stdout stays parseable).
    disable
        Draw nothing (quiet mode, or output that is not a terminal).
    """

    def __init__(self, stream: TextIO | None = None, disable: bool | None = None) -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self.disable = disable
        self._bar: tqdm | None = None

    def start(self, doc: dict[str, Any]) -> None:
        label = doc.get("timestep") or doc.get("plan_name", "run")
        self._frame_resources: set[str] = set()
        self._bar = tqdm(total=doc.get("num_points"), desc=str(label), unit="frame", file=self.stream,
                         disable=self.disable, dynamic_ncols=True, leave=True)

    # A scan's progress is its frames: counted from the frames' stream datums (fly scans have no
    # events at all); runs without frames count their events.
    def stream_resource(self, doc: dict[str, Any]) -> None:
        if doc.get("data_key", "").endswith("_image"):
            self._frame_resources.add(doc["uid"])

    def stream_datum(self, doc: dict[str, Any]) -> None:
        if self._bar is not None and doc["stream_resource"] in self._frame_resources:
            self._bar.update(doc["indices"]["stop"] - doc["indices"]["start"])

    def event(self, doc: dict[str, Any]) -> None:
        if self._bar is not None and not self._frame_resources:
            self._bar.update(1)

    def event_page(self, doc: dict[str, Any]) -> None:
        if self._bar is not None and not self._frame_resources:
            self._bar.update(len(doc["seq_num"]))

    def stop(self, doc: dict[str, Any]) -> None:
        if self._bar is not None:
            if doc.get("exit_status") != "success":
                self._bar.set_postfix_str(doc.get("exit_status", "?"))
            self._bar.close()
            self._bar = None
