"""The controller: walks a protocol and decides, poll by poll, what the plan does next.

:class:`ProtocolController` implements ``plans.operando_api.Decider``. Each call gets a reading
and returns a ``Decision``; the order of checks at a poll is the contract of
docs/protocol-language.md ("How a protocol runs"): the safety envelope, a due scheduled scan,
the enclosing loops' and blocks' limits (outermost first), then the step's own limits. State
changes go through the transitions machine of :mod:`controller.machine`, whose
``after_state_change`` persists a checkpoint, so a restarted process resumes at the right step
without repeating or skipping scans.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

from controller.cursor import Cursor, Path, step_number
from controller.limit_checks import (APPROACH_FRACTION, SafetyWatch, container_measure, first_met, record_sample,
                                     step_measure, time_to_limit)
from controller.machine import CYCLING, STEP_TRIGGER, State, attach_machine
from controller.protocol_model import (CycleStep, Limit, Loop, Protocol, ScanSettings, ScanStep,
                                       ScheduledBlock)
from devices.potentiostat import Command
from plans.operando_api import Decision, Reading, ScanOutcome, ScanRequest

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1


@dataclass
class PendingScan:
    """A scan (or a group of back-to-back scans) the controller has asked for, and what follows.

    ``then`` is the continuation once the group is done: ``next``, ``repeat``, ``goto``
    (``target``), ``stop``, ``resume`` (a scheduled scan interrupted the step) or ``exit``
    (leave the loop/block at ``container``).
    """

    remaining: int
    noise: bool
    settings: dict[str, Any]
    ocv_rest_s: float
    on_failure: str
    then: str
    origin: str
    trigger: dict[str, Any]
    target: str | None = None
    container: list[int] | None = None
    rest_started_s: float | None = None
    interrupted_at_s: float | None = None


@dataclass
class ScanRecord:
    """One line of the experiment's scan table."""

    label: str
    time_s: float
    step: str
    voltage: float
    current: float
    charge_Ah: float
    soc: float
    noise: bool
    ok: bool
    uid: str | None
    attempts: int
    error: str | None = None


def _settings_kwargs(settings: ScanSettings, fly: bool) -> dict[str, Any]:
    return {"projections": settings.projections, "angle_range": settings.range_deg,
            "exposure": settings.exposure_s, "darks": settings.darks, "flats": settings.flats,
            "flats_at_end": settings.flats_at_end, "interlaced": settings.interlaced, "fly": fly}


@dataclass
class _Out:
    """What the callbacks of one call decided, assembled into a Decision at its end."""

    command: Command | None = None
    scan: ScanRequest | None = None
    transition: bool = False
    alarms: list[str] = field(default_factory=list)
    radiograph: bool = False


class ProtocolController:
    """Decides an operando experiment from a validated :class:`Protocol`.

    Parameters
    ----------
    protocol
        The protocol to run.
    experiment_id
        Links the electrochemistry run, the scan runs and the checkpoint.
    fly
        Whether the instrument takes scans as fly scans (its preset says).
    initial_soc
        State of charge when the experiment starts (for the SoC recorded with each scan).
    checkpoint
        Called with the controller's state (JSON-able) at every transition and after every
        scan; the caller persists it.
    scan_overrides
        Replace scan settings everywhere (e.g. fewer projections for a quick simulation).
    poll_period_s
        Replace the protocol's poll periods.
    """

    def __init__(self, protocol: Protocol, *, experiment_id: str, fly: bool = True,
                 initial_soc: float = 0.0, checkpoint: Callable[[dict[str, Any]], None] | None = None,
                 scan_overrides: dict[str, Any] | None = None, poll_period_s: float | None = None) -> None:
        self.protocol = protocol
        self.experiment_id = experiment_id
        self.fly = fly
        self.initial_soc = initial_soc
        self.comm_timeout_s = protocol.safety.comm_timeout_s
        self._checkpoint = checkpoint
        self._scan_overrides = dict(scan_overrides or {})
        self._poll_override = poll_period_s
        self.cursor = Cursor()
        self.safety: SafetyWatch | None = None
        self.pending: PendingScan | None = None
        self.timesteps = 0
        self.scans: list[ScanRecord] = []
        self.alarms: list[str] = []
        self.fault_reason: str | None = None
        self.charge_offset = 0.0
        self.last: Reading | None = None
        #: (step frame, reading) of the last poll in the running step, and the one before it:
        #: the two points the poll timing extrapolates towards voltage and current limits
        self._recent: tuple[Any, Reading] | None = None
        self._previous: Reading | None = None
        self._out = _Out()
        self._restored = False
        self.state: State
        self.machine = attach_machine(self)

    # ================================================================ Decider API
    def begin(self, reading: Reading) -> Decision:
        """First decision: start the protocol, or pick up where a checkpoint left it."""
        self._out = _Out()
        if self._restored:
            return self._resume(reading)
        r = self._total(reading)
        self.safety = SafetyWatch(self.protocol.safety, t0=r.time_s, q0=r.charge_Ah)
        self.cursor.enter(self.protocol, (0,), r.time_s, r.charge_Ah)
        self._start_leaf(r)
        return self._decision(r)

    def poll(self, reading: Reading) -> Decision:
        """Decision after a regular poll (see the module docstring for the order of checks)."""
        self._out = _Out()
        r = self._total(reading)
        alarm = self._safety_alarm(r)
        if alarm is not None:
            return self._fault(alarm, r)
        if self.state == State.SCAN_REST:
            self._continue_rest(r)
        elif self.state in CYCLING:
            self._cycling_poll(r)
        return self._decision(r)

    def scan_finished(self, request: ScanRequest, outcome: ScanOutcome, reading: Reading) -> Decision:
        """Count the scan, check scan-count limits, then continue the group or move on."""
        self._out = _Out()
        r = self._total(reading)
        pending = self.pending
        assert pending is not None, "scan_finished without a pending scan"
        self._record_scan(request, outcome)
        if not outcome.ok:
            self._out.alarms.append(f"scan {request.label} failed after {outcome.attempts} attempt(s): "
                                    f"{outcome.error}")
            if pending.on_failure == "stop":
                return self._fault(f"scan {request.label} failed and the protocol says stop", r)
        for container in self.cursor.containers():
            self.cursor.frames[container].scans += 1
        self._save()
        self._after_scan(pending, r)
        return self._decision(r)

    def _after_scan(self, pending: PendingScan, r: Reading) -> None:
        """What follows a recorded scan: a scan-count limit, the group's next scan, or the step."""
        limit, container = self._scan_count_limit()
        if limit is not None:
            self._container_action(container, limit, r)
        elif pending.remaining > 0:
            self._issue_scan(r)
        else:
            self.pending = None
            self._continue(pending, r)

    def fail(self, reason: str) -> Decision:
        """Enter the fault state for a reason the plan found (lost potentiostat, ...)."""
        self._out = _Out()
        return self._fault(reason, self.last)

    def status_keys(self) -> dict[str, dict[str, Any]]:
        """Data keys of the values recorded with every poll."""
        text = {"dtype": "string", "shape": []}
        return {"state": dict(text), "step": dict(text), "step_label": dict(text),
                "scans": {"dtype": "integer", "shape": [], "dtype_numpy": "<i8"},
                "soc": {"dtype": "number", "shape": [], "dtype_numpy": "<f8"}}

    # ================================================================ polls
    def _cycling_poll(self, r: Reading) -> None:
        step = self._current_step()
        frame = self.cursor.step
        assert frame is not None
        record_sample(frame, r, self._sample_window(step))
        self._previous = self._recent[1] if self._recent is not None and self._recent[0] is frame else None
        self._recent = (frame, r)
        if self._scheduled_scan_due(r):
            return
        for container in self.cursor.containers():
            node = self.protocol.at(container)
            assert isinstance(node, (Loop, ScheduledBlock))
            polled = tuple(lim for lim in node.until if lim.polled_during(step.control))
            met = first_met(polled, lambda lim: container_measure(lim, self.cursor.frames[container], frame, r))
            if met is not None:
                self._container_action(container, met, r)
                return
        met = first_met(step.limits, lambda lim: step_measure(lim, frame, r))
        if met is not None:
            self._step_action(step, met, r)
            return
        if frame.next_radiograph_s is not None and r.time_s >= frame.next_radiograph_s - 1e-9:
            self._out.radiograph = True
            assert step.radiography_period_s is not None
            frame.next_radiograph_s += step.radiography_period_s

    def _sample_window(self, step: CycleStep) -> float:
        windows = [lim.window_s or 0.0 for lim in step.limits]
        for container in self.cursor.containers():
            node = self.protocol.at(container)
            windows += [lim.window_s or 0.0 for lim in node.until]  # type: ignore[union-attr]
        return max(windows, default=0.0)

    def _scheduled_scan_due(self, r: Reading) -> bool:
        for container in self.cursor.containers():
            node = self.protocol.at(container)
            if not isinstance(node, ScheduledBlock):
                continue
            frame = self.cursor.frames[container]
            since = r.time_s - frame.entered_s
            due = node.next_scan_time(frame.served_s)
            if due is None or since < due - 1e-9:
                continue
            frame.served_s = self._skip_missed(node, due, since)
            self.pending = PendingScan(
                remaining=1, noise=False, settings=self._scan_kwargs(node.scan), ocv_rest_s=node.ocv_rest_s,
                on_failure=self.protocol.on_scan_failure, then="resume",
                origin=f"schedule {step_number(container)}{_tag(node.label)}: {due / 60:g} min",
                trigger=self._trigger_info(r), interrupted_at_s=r.time_s)
            self._request_scan(r)
            return True
        return False

    @staticmethod
    def _skip_missed(node: ScheduledBlock, due: float, since: float) -> float:
        """Serve ``due``; scheduled times that passed during scans are skipped, not queued."""
        served = due
        while (later := node.next_scan_time(served)) is not None and later <= since + 1e-9:
            log.warning("scheduled scan at %.0f s skipped: it fell while another scan was running", later)
            served = later
        return served

    def _continue_rest(self, r: Reading) -> None:
        pending = self.pending
        assert pending is not None and pending.rest_started_s is not None
        if r.time_s - pending.rest_started_s >= pending.ocv_rest_s - 1e-9:
            self._issue_scan(r)

    # ================================================================ actions
    def _step_action(self, step: CycleStep, limit: Limit, r: Reading) -> None:
        action = limit.action
        origin = f"step {step_number(self.cursor.path)}{_tag(step.label)}: {limit.text or limit.kind}"
        log.info("%s met -> %s", origin, action)
        if action.scan:
            self.pending = PendingScan(remaining=1, noise=False, settings=self._scan_kwargs(step.scan),
                                       ocv_rest_s=step.ocv_rest_s, on_failure=self.protocol.on_scan_failure,
                                       then=action.kind, target=action.target, origin=origin,
                                       trigger=self._trigger_info(r))
            self._request_scan(r)
        else:
            self._continue(PendingScan(0, False, {}, 0.0, "continue", action.kind, origin, {},
                                       target=action.target), r)

    def _container_action(self, container: Path, limit: Limit, r: Reading) -> None:
        node = self.protocol.at(container)
        assert isinstance(node, (Loop, ScheduledBlock))
        action = limit.action
        origin = f"{'loop' if isinstance(node, Loop) else 'schedule'} {step_number(container)}" \
                 f"{_tag(node.label)}: {limit.text or limit.kind}"
        log.info("%s met -> %s", origin, action)
        then = "exit" if action.kind == "next" else action.kind
        pending = PendingScan(1, False, self._scan_kwargs(node.scan), node.ocv_rest_s,
                              self.protocol.on_scan_failure, then, origin, self._trigger_info(r),
                              target=action.target, container=list(container))
        if action.scan:
            self.pending = pending
            self._request_scan(r)
        else:
            self.pending = None
            self._continue(pending, r)

    def _continue(self, pending: PendingScan, r: Reading) -> None:
        """Carry out what follows a limit (and its scan, if any)."""
        now, q = r.time_s, r.charge_Ah
        kind = pending.then
        if kind == "stop":
            self.cursor.finished = True
            self.finish()
            return
        if kind == "resume":
            self._resume_interrupted_step(pending, r)
            return
        if kind == "repeat":
            self.cursor.restart_step(now, q)
        elif kind == "goto":
            assert pending.target is not None
            self.cursor.goto(self.protocol, pending.target, now, q)
        elif kind == "exit":
            assert pending.container is not None
            self.cursor.exit_to(self.protocol, tuple(pending.container), now, q)
        else:
            self.cursor.advance(self.protocol, now, q)
        self._start_leaf(r)

    def _resume_interrupted_step(self, pending: PendingScan, r: Reading) -> None:
        frame = self.cursor.step
        assert frame is not None and pending.interrupted_at_s is not None
        frame.interrupted_s += r.time_s - pending.interrupted_at_s
        frame.samples, frame.samples_since = [], r.time_s  # the stability window restarts
        self._recent = self._previous = None  # the open-circuit rest bent the curves
        self._enter_step_state(self._current_step())

    def _start_leaf(self, r: Reading) -> None:
        if self.cursor.finished:
            self.finish()
            return
        node = self.protocol.at(self.cursor.path)
        if isinstance(node, CycleStep):
            frame = self.cursor.step
            assert frame is not None
            if node.radiography_period_s is not None:
                frame.next_radiograph_s = r.time_s
            self._enter_step_state(node)
            return
        assert isinstance(node, ScanStep)
        self.pending = PendingScan(
            remaining=node.count, noise=node.noise, settings=self._scan_kwargs(node.scan),
            ocv_rest_s=node.ocv_rest_s, on_failure=node.on_failure, then="next",
            origin=f"step {step_number(self.cursor.path)}{_tag(node.label)}: "
                   f"{'noise ' if node.noise else ''}scan",
            trigger=self._trigger_info(r))
        self._request_scan(r)

    def _enter_step_state(self, step: CycleStep) -> None:
        getattr(self, STEP_TRIGGER[step.kind])(step=step)

    def _request_scan(self, r: Reading) -> None:
        pending = self.pending
        assert pending is not None
        pending.rest_started_s = r.time_s
        self.prepare_scan()
        if pending.ocv_rest_s <= 0:
            self._issue_scan(r)

    def _issue_scan(self, r: Reading) -> None:
        pending = self.pending
        assert pending is not None
        pending.remaining -= 1
        label = f"T{self.timesteps}"
        self.timesteps += 1
        md = {"experiment_id": self.experiment_id, "protocol": self.protocol.name,
              "step": pending.origin, "noise": pending.noise, "trigger": pending.trigger,
              "at_scan": {"time_s": r.time_s, "voltage": r.voltage, "current": r.current,
                          "charge_Ah": r.charge_Ah}}
        self._out.scan = ScanRequest(label=label, scan=dict(pending.settings), md=md,
                                     retries=self.protocol.scan_retries,
                                     on_failure=pending.on_failure)  # type: ignore[arg-type]
        self.start_scan()

    def _fault(self, reason: str, r: Reading | None) -> Decision:
        if self.state not in (State.DONE, State.FAULT):
            self.fault_reason = reason
            self._out.alarms.append(reason)
            self.fault()
        return self._decision(r)

    # ================================================================ machine callbacks
    # transitions binds ``on_enter_<STATE NAME>`` by convention.
    def on_enter_CHARGING(self, event: Any) -> None:
        self._apply_step(event.kwargs["step"])

    on_enter_DISCHARGING = on_enter_HOLDING = on_enter_RESTING = on_enter_CHARGING

    def on_enter_SCAN_REST(self, event: Any) -> None:
        self._out.command = Command.ocv()

    def on_enter_SCANNING(self, event: Any) -> None:
        self._out.command = Command.ocv()

    def on_enter_DONE(self, event: Any) -> None:
        self._out.command = Command.ocv()
        log.info("protocol %s complete: %d scans", self.protocol.name, len(self.scans))

    def on_enter_FAULT(self, event: Any) -> None:
        self._out.command = Command.ocv()
        log.error("FAULT: %s", self.fault_reason)

    def after_state_change(self, event: Any) -> None:
        self._out.transition = True
        log.info("state %s -> %s at step %s", event.transition.source, self.state.value,
                 step_number(self.cursor.path) or "-")
        self._save()

    def on_machine_exception(self, event: Any) -> None:
        # A bug in a callback must not leave the cell driven: fault, open circuit, keep going.
        self.fault_reason = f"controller error: {type(event.error).__name__}: {event.error}"
        log.exception("controller error", exc_info=event.error)
        self._out.alarms.append(self.fault_reason)
        self._out.command = Command.ocv()
        self.machine.set_state(State.FAULT, model=self)
        self._save()

    def _apply_step(self, step: CycleStep) -> None:
        s = self.protocol.safety
        if step.control == "current":
            limit = s.v_max if step.setpoint > 0 else s.v_min
            self._out.command = Command.cc(step.setpoint, voltage_limit=limit)
        elif step.control == "voltage":
            self._out.command = Command.cv(step.setpoint, current_limit=s.i_max)
        else:
            self._out.command = Command.ocv()

    # ================================================================ helpers
    def _total(self, reading: Reading) -> Reading:
        r = replace(reading, charge_Ah=reading.charge_Ah + self.charge_offset)
        self.last = r
        return r

    def _safety_alarm(self, r: Reading) -> str | None:
        assert self.safety is not None
        if r.compliance:
            return f"compliance trip at {r.voltage:.4g} V, {r.current:.4g} A"
        return self.safety.check(r)

    def _current_step(self) -> CycleStep:
        node = self.protocol.at(self.cursor.path)
        assert isinstance(node, CycleStep)
        return node

    def _scan_kwargs(self, settings: ScanSettings) -> dict[str, Any]:
        return {**_settings_kwargs(settings, self.fly), **self._scan_overrides}

    def _scan_count_limit(self) -> tuple[Limit | None, Path]:
        for container in self.cursor.containers():
            node = self.protocol.at(container)
            frame = self.cursor.frames[container]
            for limit in node.until:  # type: ignore[union-attr]
                if limit.kind == "scans" and limit.met(float(frame.scans)):
                    return limit, container
        return None, ()

    def soc(self, r: Reading) -> float:
        """State of charge from the charge counted since the start (NaN without a capacity)."""
        cap = self.protocol.capacity_Ah
        if not cap or self.safety is None:
            return math.nan
        return self.initial_soc + (r.charge_Ah - self.safety.q0) / cap

    def _trigger_info(self, r: Reading) -> dict[str, Any]:
        return {"time_s": r.time_s, "voltage": r.voltage, "current": r.current, "charge_Ah": r.charge_Ah,
                "soc": self.soc(r), "state": self.state.value}

    def poll_period(self) -> float:
        """Cell time until the next poll (s).

        The poll period, shortened so that the poll lands on the next due event (a time limit,
        a scheduled scan, a radiograph, the end of an open-circuit rest) and closes in on a
        voltage, current or charge limit predicted from the last two readings. Limits are thus
        met within a small fraction of a period (000's thresholds within millivolts) while the
        cell is polled at the protocol's period the rest of the time.
        """
        if self._poll_override is not None:
            base = self._poll_override
        elif self.state in CYCLING:
            base = self._current_step().poll_period_s
        else:
            base = self.protocol.poll_period_s
        if self.last is None:
            return base
        if self.state == State.SCAN_REST and self.pending is not None and self.pending.rest_started_s is not None:
            left = self.pending.ocv_rest_s - (self.last.time_s - self.pending.rest_started_s)
            return min(base, max(left, 1e-3))
        if self.state in CYCLING and self.cursor.step is not None:
            exact, predicted = self._horizon(self.last)
            # The small excess makes a time limit land just after, not a rounding error before.
            wait = min(base, max(exact + 1e-6, 1e-3))
            return min(wait, max(APPROACH_FRACTION * predicted, base / 20.0))
        return base

    def _horizon(self, r: Reading) -> tuple[float, float]:
        """Cell time until the next exactly known event, and until a predicted limit crossing (s)."""
        step = self._current_step()
        frame = self.cursor.step
        assert frame is not None
        now = r.time_s
        prev = self._previous if self._recent is not None and self._recent[0] is frame else None
        exact, predicted = math.inf, math.inf

        def predict(limit: Limit, since_q: float) -> float:
            if limit.kind == "charge":
                amps = abs(r.current)
                return (limit.value - abs(r.charge_Ah - since_q)) * 3600.0 / amps if amps > 0 else math.inf
            if prev is None:
                return math.inf
            pick = (lambda x: x.voltage) if limit.kind == "voltage" else (lambda x: abs(x.current))
            return time_to_limit(limit, pick(r), pick(prev), now - prev.time_s)

        for limit in step.limits:
            if limit.kind == "time":
                exact = min(exact, limit.value - frame.elapsed(now))
            else:
                predicted = min(predicted, predict(limit, frame.started_q))
        for container in self.cursor.containers():
            node = self.protocol.at(container)
            cf = self.cursor.frames[container]
            if isinstance(node, ScheduledBlock):
                due = node.next_scan_time(cf.served_s)
                if due is not None:
                    exact = min(exact, due - (now - cf.entered_s))
            for limit in node.until:  # type: ignore[union-attr]
                if not limit.polled_during(step.control):
                    continue
                if limit.kind == "time":
                    exact = min(exact, limit.value - (now - cf.entered_s))
                else:
                    predicted = min(predicted, predict(limit, cf.entered_q))
        if frame.next_radiograph_s is not None:
            exact = min(exact, frame.next_radiograph_s - now)
        return exact, predicted

    def _decision(self, r: Reading | None) -> Decision:
        out = self._out
        radiography = False
        if self.state in CYCLING and self.cursor.step is not None:
            radiography = self.cursor.step.next_radiograph_s is not None
        status = {"state": self.state.value, "step": step_number(self.cursor.path),
                  "step_label": self._label(), "scans": self.timesteps,
                  "soc": self.soc(r) if r is not None else math.nan}
        self.alarms.extend(out.alarms)
        return Decision(command=out.command, scan=out.scan, radiograph=out.radiograph and radiography,
                        radiography=radiography, done=self.state == State.DONE,
                        fault=self.fault_reason if self.state == State.FAULT else None,
                        wait_s=self.poll_period(), status=status, transition=out.transition,
                        alarms=tuple(out.alarms))

    def _label(self) -> str:
        if not self.cursor.path:
            return ""
        return self.protocol.at(self.cursor.path).label or ""

    def _record_scan(self, request: ScanRequest, outcome: ScanOutcome) -> None:
        trig = request.md["trigger"]
        self.scans.append(ScanRecord(label=request.label, time_s=trig["time_s"], step=request.md["step"],
                                     voltage=trig["voltage"], current=trig["current"],
                                     charge_Ah=trig["charge_Ah"], soc=trig["soc"], noise=request.md["noise"],
                                     ok=outcome.ok, uid=outcome.uid, attempts=outcome.attempts,
                                     error=outcome.error))

    # ================================================================ checkpoints
    def to_dict(self) -> dict[str, Any]:
        """The controller's whole state, JSON-able (see :meth:`restore`)."""
        return {"version": CHECKPOINT_VERSION, "experiment_id": self.experiment_id,
                "protocol": self.protocol.name, "state": self.state.value,
                "cursor": self.cursor.to_dict(),
                "pending": None if self.pending is None else asdict(self.pending),
                "timesteps": self.timesteps, "scans": [asdict(s) for s in self.scans],
                "alarms": list(self.alarms), "fault_reason": self.fault_reason,
                "t0": None if self.safety is None else self.safety.t0,
                "q0": None if self.safety is None else self.safety.q0,
                "total_charge": None if self.last is None else self.last.charge_Ah,
                "last_time": None if self.last is None else self.last.time_s}

    def restore(self, data: dict[str, Any]) -> None:
        """Load a checkpoint written by :meth:`to_dict`; :meth:`begin` then resumes from it.

        Raises
        ------
        ValueError
            If the checkpoint is of another version or another protocol.
        """
        if data.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint version {data.get('version')!r} is not {CHECKPOINT_VERSION}")
        if data.get("protocol") != self.protocol.name:
            raise ValueError(f"checkpoint is for protocol {data.get('protocol')!r}, not {self.protocol.name!r}")
        self.cursor = Cursor.from_dict(data["cursor"])
        self.pending = None if data["pending"] is None else PendingScan(**data["pending"])
        self.timesteps = int(data["timesteps"])
        self.scans = [ScanRecord(**s) for s in data["scans"]]
        self.alarms = list(data["alarms"])
        self.safety = SafetyWatch(self.protocol.safety, t0=float(data["t0"]), q0=float(data["q0"]))
        self._saved_charge = float(data["total_charge"])
        self.machine.set_state(State(data["state"]), model=self)
        self._restored = True

    def _resume(self, reading: Reading) -> Decision:
        # The instrument's charge counter may have restarted: continue the experiment's total.
        self.charge_offset = self._saved_charge - reading.charge_Ah
        r = self._total(reading)
        self._restored = False
        log.info("resuming %s in state %s at step %s", self.experiment_id, self.state.value,
                 step_number(self.cursor.path))
        if self.state in CYCLING:
            self._enter_step_state(self._current_step())
        elif self.state == State.SCANNING and self.timesteps == len(self.scans):
            # Killed after the scan was recorded (scan_finished's checkpoint) and before the
            # decision that follows it: the scan is complete, so make that decision now.
            assert self.pending is not None
            self._after_scan(self.pending, r)
        elif self.state in (State.SCAN_REST, State.SCANNING):
            # An interrupted scan is retaken whole, after its open-circuit rest, under its label.
            assert self.pending is not None
            self.timesteps = len(self.scans)
            self.pending.remaining += 1 if self.state == State.SCANNING else 0
            self._request_scan(r)
        elif self.state == State.IDLE:
            self.cursor.enter(self.protocol, (0,), r.time_s, r.charge_Ah)
            self._start_leaf(r)
        return self._decision(r)

    def _save(self) -> None:
        if self._checkpoint is not None:
            self._checkpoint(self.to_dict())


def _tag(label: str | None) -> str:
    return f" [{label}]" if label else ""
