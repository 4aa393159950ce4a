"""The operando plan: poll the cell, let the controller decide, act, scan when told.

One experiment is one call of :func:`operando` under the RunEngine. It opens the
electrochemistry run (run key ``"ec"``) for the whole experiment and keeps it open while scans
and radiographs open and close their own runs (bluesky's multi-run plans, one run key each).
Every poll is recorded in the electrochemistry run's "primary" stream; readings are buffered and
published as event pages at every controller transition, before every scan, every
``flush_polls`` polls and at least every ``flush_wall_s`` seconds of wall time, so a live
consumer sees them promptly and a crash loses at most that much.

Safety: every way out of the plan (end, fault, exception, abort) goes through a finalizer that
puts the potentiostat at open circuit; the RunEngine's own ``stop()`` on pause, suspension and
abort does the same (see ``devices.potentiostat.Potentiostat.stop``).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable, Iterator

from bluesky import Msg
from bluesky import plan_stubs as bps
from bluesky import preprocessors as bpp
from bluesky.utils import FailedStatus, MsgGenerator, RequestAbort, RequestStop, RunEngineInterrupted

from devices.beamline import Beamline
from devices.potentiostat import Command
from plans.operando_api import Decider, Decision, Reading, ScanOutcome, ScanRequest
from plans.tomo import tomo_scan

log = logging.getLogger(__name__)

#: Exceptions that belong to the RunEngine (abort, stop, pause): never treated as a device fault.
_ENGINE_EXCEPTIONS = (RequestAbort, RequestStop, RunEngineInterrupted, GeneratorExit)

_READING_KEYS = {
    "cell_time": {"dtype": "number", "shape": [], "units": "s", "dtype_numpy": "<f8"},
    "voltage": {"dtype": "number", "shape": [], "units": "V", "dtype_numpy": "<f8"},
    "current": {"dtype": "number", "shape": [], "units": "A", "dtype_numpy": "<f8"},
    "charge": {"dtype": "number", "shape": [], "units": "Ah", "dtype_numpy": "<f8"},
    "compliance": {"dtype": "boolean", "shape": [], "dtype_numpy": "|b1"},
}
_ALARM_KEYS = {
    "cell_time": {"dtype": "number", "shape": [], "units": "s", "dtype_numpy": "<f8"},
    "message": {"dtype": "string", "shape": []},
}


class PageRecorder:
    """Rows buffered in memory and published as one event page per ``collect``.

    It is a bluesky "EventPageCollectable": declared as a stream, collected whenever the plan
    flushes. Not device I/O: the values come from the plan itself.
    """

    def __init__(self, name: str, data_keys: dict[str, dict[str, Any]]) -> None:
        self.name = name
        self.parent = None
        self._keys = {k: {"source": f"tomocycle:{name}", **v} for k, v in data_keys.items()}
        self._rows: list[tuple[float, dict[str, Any]]] = []

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, row: dict[str, Any]) -> None:
        """Buffer one row (keys as declared; missing keys are an error at collect time)."""
        self._rows.append((time.time(), row))

    def describe_collect(self) -> dict[str, dict[str, Any]]:
        return dict(self._keys)

    def collect_pages(self) -> Iterator[dict[str, Any]]:
        rows, self._rows = self._rows, []
        if not rows:
            return
        data = {k: [row[k] for _, row in rows] for k in self._keys}
        stamps = {k: [t for t, _ in rows] for k in self._keys}
        yield {"data": data, "timestamps": stamps, "time": [t for t, _ in rows]}

    def read_configuration(self) -> dict:
        return {}

    def describe_configuration(self) -> dict:
        return {}


def _settle(status: Any, group: str, timeout: float | None) -> MsgGenerator:
    """Wait for ``status`` only if it is not finished yet: most sim statuses are born done, and
    skipping the RunEngine's wait machinery halves the cost of a poll (thousands per hour)."""
    if status is not None and not status.done:
        yield Msg("wait", None, group=group, timeout=timeout)


def _measure(potentiostat: Any, timeout: float) -> MsgGenerator:
    while True:
        status = yield Msg("trigger", potentiostat, group="operando-measure")
        yield from _settle(status, "operando-measure", timeout)
        values = yield Msg("read", potentiostat)
        if values is not None:
            break
        # A suspension (or pause) that lands while the RunEngine awaits the read answers the
        # read with None once it resumes; the cell has moved on meanwhile: take a fresh reading.
    name = potentiostat.name

    def value(key: str) -> Any:
        return values[f"{name}_{key}"]["value"]

    return Reading(time_s=float(value("cell_time")), voltage=float(value("voltage")),
                   current=float(value("current")), charge_Ah=float(value("charge")),
                   compliance=bool(value("compliance")))


def _set(device: Any, value: Any, timeout: float | None = None) -> MsgGenerator:
    status = yield Msg("set", device, value, group="operando-set")
    yield from _settle(status, "operando-set", timeout)


class _Flusher:
    """Decides when buffered polls are published (see the module docstring)."""

    def __init__(self, recorder: PageRecorder, every: int, wall_s: float) -> None:
        self.recorder, self.every, self.wall_s = recorder, every, wall_s
        self._last = time.monotonic()

    def due(self) -> bool:
        return len(self.recorder) >= self.every or time.monotonic() - self._last >= self.wall_s

    def flush(self) -> MsgGenerator:
        if len(self.recorder):
            yield from bps.collect(self.recorder, name="primary")
        # Polls skip the RunEngine's wait when a status is born done; the RunEngine still keeps
        # each status in its group until someone waits on it, so empty the groups now and then.
        for group in ("operando-measure", "operando-set"):
            yield Msg("wait", None, group=group)
        self._last = time.monotonic()


def operando(decider: Decider, beamline: Beamline, *, md: dict[str, Any] | None = None,
             flush_polls: int = 1000, flush_wall_s: float = 2.0,
             on_scan: Callable[[ScanRequest, ScanOutcome], None] | None = None) -> MsgGenerator:
    """Run an operando experiment: cycling and scans as ``decider`` says, until done or fault.

    Parameters
    ----------
    decider
        The controller (see :class:`plans.operando_api.Decider`).
    beamline
        Potentiostat, cell clock, detector, rotation, shutter and sample stage.
    md
        Metadata of the electrochemistry run (experiment id, protocol, cell ...).
    flush_polls, flush_wall_s
        Publish buffered polls after this many polls or this much wall time, whichever first.
    on_scan
        Called (outside the RunEngine's documents) after each requested scan ends.

    Yields
    ------
    bluesky messages. The electrochemistry run ends with exit status "success" when the protocol
    completes and "fail" (with the alarm as reason) when it ends in the fault state.
    """
    recorder = PageRecorder("ec", {**_READING_KEYS, **decider.status_keys()})
    alarms = PageRecorder("alarms", _ALARM_KEYS)
    flusher = _Flusher(recorder, flush_polls, flush_wall_s)
    _md = {"plan_name": "operando", "plan_type": "generator", "hints": {"dimensions": [(["cell_time"], "primary")]},
           **(md or {})}
    state: dict[str, Any] = {"radio": None, "fault": None, "radio_count": 0}

    def body() -> MsgGenerator:
        yield from bps.open_run(md=_md)
        yield from bps.declare_stream(recorder, name="primary", collect=True)
        yield from bps.declare_stream(alarms, name="alarms", collect=True)
        reading = yield from _guarded_measure(beamline, decider, state)
        decision = decider.begin(reading) if reading is not None else decider.fail(state["fault"])
        while True:
            _record(recorder, reading, decision)
            yield from _raise_alarms(alarms, reading, decision)
            if decision.transition or decision.scan or decision.done or decision.fault:
                yield from flusher.flush()
            elif flusher.due():
                yield from flusher.flush()
            if decision.command is not None:
                ok = yield from _guarded_set(beamline, decision.command, state)
                if not ok:
                    decision = decider.fail(state["fault"])
                    continue
            yield from _radiography(beamline, decision, state, decider)
            if decision.done or decision.fault:
                state["fault"] = decision.fault
                break
            if decision.scan is not None:
                yield from _close_radiography(state)
                outcome = yield from _scan_with_retries(beamline, decision.scan, decider.comm_timeout_s)
                if on_scan is not None:
                    on_scan(decision.scan, outcome)
                reading = yield from _guarded_measure(beamline, decider, state)
                decision = (decider.scan_finished(decision.scan, outcome, reading) if reading is not None
                            else decider.fail(state["fault"]))
                continue
            # bps.checkpoint() is a @plan whose wrapper formats the call stack: too dear per poll
            yield Msg("checkpoint")
            yield from _set(beamline.cell_clock, decision.wait_s)
            reading = yield from _guarded_measure(beamline, decider, state)
            decision = decider.poll(reading) if reading is not None else decider.fail(state["fault"])
        yield from flusher.flush()
        yield from _close_radiography(state)
        yield from bps.close_run(exit_status="fail" if state["fault"] else "success",
                                 reason=state["fault"] or "")

    def make_safe() -> MsgGenerator:
        # Whatever ended the plan, the cell is left at open circuit with the output off: the
        # potentiostat's stop() is its safe state (a real SMU's rest at 0 A keeps the output on).
        try:
            yield Msg("stop", beamline.potentiostat)
        except _ENGINE_EXCEPTIONS:
            raise
        except Exception as err:  # a dead instrument cannot be commanded; say so loudly
            log.error("could not put %s at open circuit: %s", beamline.potentiostat.name, err)

    # Not rewindable: replaying the messages since the last checkpoint would advance the cell
    # clock and re-send commands a second time. A pause takes effect where the plan is, and
    # resume carries on from there (the potentiostat sits at open circuit in between).
    plan = bpp.rewindable_wrapper(bpp.set_run_key_wrapper(body(), "ec"), False)
    return (yield from bpp.finalize_wrapper(plan, make_safe()))


def _record(recorder: PageRecorder, reading: Reading | None, decision: Decision) -> None:
    if reading is None:
        return
    recorder.add({"cell_time": reading.time_s, "voltage": reading.voltage, "current": reading.current,
                  "charge": reading.charge_Ah, "compliance": reading.compliance, **decision.status})


def _raise_alarms(alarms: PageRecorder, reading: Reading | None, decision: Decision) -> MsgGenerator:
    if not decision.alarms:
        return
    t = reading.time_s if reading is not None else math.nan
    for text in decision.alarms:
        log.error("ALARM: %s", text)
        alarms.add({"cell_time": t, "message": text})
    yield from bps.collect(alarms, name="alarms")


def _guarded_measure(beamline: Beamline, decider: Decider, state: dict[str, Any]) -> MsgGenerator:
    """A reading, or None with ``state["fault"]`` set when the potentiostat failed."""
    try:
        return (yield from _measure(beamline.potentiostat, decider.comm_timeout_s))
    except _ENGINE_EXCEPTIONS:
        raise
    except Exception as err:
        state["fault"] = f"lost the potentiostat ({beamline.potentiostat.name}): {_describe(err)}"
        return None


def _guarded_set(beamline: Beamline, command: Command, state: dict[str, Any]) -> MsgGenerator:
    try:
        yield from _set(beamline.potentiostat, command, timeout=None)
        return True
    except _ENGINE_EXCEPTIONS:
        raise
    except Exception as err:
        state["fault"] = f"potentiostat refused {command.mode} {command.value:g}: {_describe(err)}"
        return False


def _describe(err: BaseException) -> str:
    # A device that fails inside a status surfaces as FailedStatus(status), which says only
    # which status failed: report the device's own error, and whether it is disconnected.
    status = err.args[0] if isinstance(err, FailedStatus) and err.args else None
    cause = status.exception() if hasattr(status, "exception") else None
    if cause is not None:
        err = cause
    text = str(err) or type(err).__name__
    text = text if type(err).__name__ in text else f"{type(err).__name__}: {text}"
    device = getattr(status, "pos", None) or getattr(status, "obj", None)
    if device is not None and getattr(device, "connected", True) is False:
        text += f" ({device.name} is not connected)"
    return text


def _scan_with_retries(beamline: Beamline, request: ScanRequest, timeout: float) -> MsgGenerator:
    """Take the scan, retrying after a detector or stage failure; never raises device errors."""
    uids: list[str] = []
    error = None
    for attempt in range(request.retries + 1):
        md = {**request.md, "timestep": request.label, "attempt": attempt + 1}
        # The cell as the scan starts (after the command that stopped cycling took effect);
        # a potentiostat that fails here is the next poll's business, not the scan's.
        try:
            r = yield from _measure(beamline.potentiostat, timeout)
        except _ENGINE_EXCEPTIONS:
            raise
        except Exception:
            r = None
        if r is not None:
            md["cell_at_start"] = {"time_s": r.time_s, "voltage": r.voltage, "current": r.current,
                                   "charge_Ah": r.charge_Ah}
        plan = tomo_scan(beamline.detector, beamline.rotation, beamline.shutter, beamline.sample,
                         readables=[beamline.potentiostat], md=md, **request.scan)
        key = f"scan-{request.label}-{attempt + 1}"
        try:
            uid = yield from bpp.set_run_key_wrapper(plan, key)
        except _ENGINE_EXCEPTIONS:
            raise
        except Exception as err:
            error = _describe(err)
            log.warning("scan %s attempt %d failed: %s", request.label, attempt + 1, error)
            uid = _last_uid(beamline)
            if uid:
                uids.append(uid)
            continue
        uids.append(uid)
        return ScanOutcome(ok=True, uid=uid, attempts=attempt + 1, run_uids=tuple(uids))
    return ScanOutcome(ok=False, uid=None, attempts=request.retries + 1, error=error, run_uids=tuple(uids))


def _last_uid(beamline: Beamline) -> str | None:
    # A failed tomo_scan does not return its uid; the detector remembers its file, not the run.
    return None


def _radiography(beamline: Beamline, decision: Decision, state: dict[str, Any],
                 decider: Decider) -> MsgGenerator:
    if not decision.radiography:
        yield from _close_radiography(state)
        return
    if not decision.radiograph:
        return
    if state["radio"] is None:
        state["radio_count"] += 1
        key = f"radiography-{state['radio_count']}"
        md = {"plan_name": "radiography", "plan_type": "generator", "detectors": [beamline.detector.name],
              "image_key": {"projection": 0}, **{k: v for k, v in decision.status.items()}}
        yield from bpp.set_run_key_wrapper(_open_radiography(beamline, md), key)
        state["radio"] = (key, beamline)
    key, _ = state["radio"]
    yield from bpp.set_run_key_wrapper(
        bps.trigger_and_read([beamline.detector, beamline.potentiostat, beamline.cell_clock]), key)


def _open_radiography(beamline: Beamline, md: dict[str, Any]) -> MsgGenerator:
    yield from bps.stage(beamline.detector)
    yield from bps.open_run(md=md)
    yield from _set(beamline.shutter, "open")
    yield from _set(beamline.detector.image_key, 0)


def _close_radiography(state: dict[str, Any]) -> MsgGenerator:
    if state["radio"] is None:
        return
    key, beamline = state["radio"]
    state["radio"] = None

    def close() -> MsgGenerator:
        yield from _set(beamline.shutter, "close")
        yield from bps.close_run()
        yield from bps.unstage(beamline.detector)

    yield from bpp.set_run_key_wrapper(close(), key)
