"""The validated protocol: frozen dataclasses of SI floats, walked step by step by the executor.

A :class:`Protocol` is a tree. Its ``steps`` hold four node types:

* :class:`CycleStep`: charge/discharge at a current, hold at a voltage, or rest at open circuit,
  ended by the first of its :class:`Limit` s to be met (each limit carries an :class:`Action`);
* :class:`ScanStep`: an OCV rest, then one or more tomography scans back to back;
* :class:`Loop`: a body of steps repeated up to ``count`` times and/or until one of its limits;
* :class:`ScheduledBlock`: a body of steps interrupted by scans at scheduled times.

A node is addressed by its *path*, the tuple of indices from ``Protocol.steps`` down through loop
and block bodies (``(1, 0)`` is the first step of the second top-level node). Paths are stable for
a given protocol, so a checkpoint can store one. The execution semantics are the contract in
``docs/protocol-language.md`` ("How a protocol runs").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from controller.protocol_errors import ProtocolError

__all__ = ["Action", "CycleStep", "Limit", "Loop", "Protocol", "ProtocolError",
           "SafetyEnvelope", "ScanSettings", "ScanStep", "ScheduleSegment",
           "ScheduledBlock", "Step", "stability_slope", "walk_steps"]

LimitKind = Literal["voltage", "current", "time", "charge", "dvdt", "didt", "scans"]
ActionKind = Literal["next", "repeat", "goto", "stop"]
StepKind = Literal["charge", "discharge", "hold", "rest"]
Control = Literal["current", "voltage", "ocv"]


@dataclass(frozen=True)
class Action:
    """What happens when a limit is met.

    Attributes
    ----------
    kind : {'next', 'repeat', 'goto', 'stop'}
        ``next``: continue with the following step (or leave the loop, for a loop limit);
        ``repeat``: run the same step again from scratch (only after a scan);
        ``goto``: continue at the step labelled ``target``; ``stop``: end the protocol normally.
    scan : bool
        Take a scan (OCV rest first) before doing ``kind``.
    target : str or None
        The label for ``goto``.
    """

    kind: ActionKind = "next"
    scan: bool = False
    target: str | None = None

    def __str__(self) -> str:
        then = f"goto {self.target}" if self.kind == "goto" else self.kind
        return f"scan then {then}" if self.scan else then


@dataclass(frozen=True)
class Limit:
    """One ending condition of a step (or exit condition of a loop/block).

    The measured quantity ``x`` depends on ``kind``: ``voltage``: V (V); ``current``: |I| (A);
    ``time``: elapsed time (s) in the step (in the loop/block for loop limits); ``charge``: |ΔQ|
    (Ah) since the step (loop/block) started; ``dvdt``/``didt``: |least-squares slope| of V (V/s)
    or I (A/s) over the last ``window_s`` seconds of the running step; ``scans``: scans completed
    in this activation of the loop/block.

    Attributes
    ----------
    kind : str
        See above.
    op : {'<', '>'}
        Met when ``x <= value`` (``'<'``) or ``x >= value`` (``'>'``): limits are inclusive.
    value : float
        Threshold in SI units (V, A, s, Ah, V/s, A/s, or a count).
    window_s : float or None
        Slope window (s) for ``dvdt``/``didt``; None otherwise.
    action : Action
        What to do when met.
    text : str
        The limit as written, e.g. ``"4.3 V"``.
    """

    kind: LimitKind
    op: Literal["<", ">"]
    value: float
    window_s: float | None = None
    action: Action = Action()
    text: str = ""

    def met(self, x: float) -> bool:
        """True when the measured ``x`` (see class docstring) satisfies the limit."""
        return x <= self.value if self.op == "<" else x >= self.value

    def polled_during(self, control: str) -> bool:
        """Whether this loop/block limit is checked at the polls of a step with ``control``.

        A condition on the quantity the step itself controls is skipped (current and dI/dt
        are only watched under voltage control; voltage and dV/dt only when the voltage is
        free); scan counts are checked after scans, never at polls.
        """
        if self.kind in ("current", "didt"):
            return control == "voltage"
        if self.kind in ("voltage", "dvdt"):
            return control != "voltage"
        return self.kind != "scans"


@dataclass(frozen=True)
class ScanSettings:
    """Tomography acquisition parameters, fully resolved (protocol defaults plus overrides).

    Attributes
    ----------
    projections : int
        Total projections per scan (all interlaced subsets together).
    range_deg : float
        Rotation range in degrees (180 or 360 usually).
    exposure_s : float
        Exposure per projection (s).
    darks, flats : int
        Dark (shutter closed) and flat (sample out) images per scan.
    flats_at_end : bool
        Take a second set of flats after the projections.
    interlaced : int
        Number of interlaced subsets (1 = a plain scan); subset k starts at k·step/N.
    preset : str or None
        Name of the instrument (beamline) preset that fixes geometry, camera and beam, e.g. the
        simulator's ``micro-halfcell`` (cone beam); None: the instrument's configured default.
    """

    projections: int = 1500
    range_deg: float = 180.0
    exposure_s: float = 0.1
    darks: int = 20
    flats: int = 20
    flats_at_end: bool = False
    interlaced: int = 1
    preset: str | None = None


@dataclass(frozen=True)
class CycleStep:
    """A constant-current, constant-voltage or open-circuit step.

    Attributes
    ----------
    kind : {'charge', 'discharge', 'hold', 'rest'}
    control : {'current', 'voltage', 'ocv'}
        What the potentiostat controls.
    setpoint : float
        Signed current in A (positive charges the cell) for ``current``; V for ``voltage``;
        0.0 for ``ocv``.
    c_rate : float or None
        The C-rate multiple when the setpoint was written as one (signed like ``setpoint``).
    limits : tuple of Limit
        Ending conditions, OR-ed, in the order written (the first met wins). ``for 2 hours`` is a
        time limit like any other. May be empty only inside a loop/block with ``until`` limits.
    label : str or None
    radiography_period_s : float or None
        Take a radiograph at step start and then every this many seconds while the step runs.
    poll_period_s : float
        Poll period for this step (s): the step's ``(... period)`` or the protocol's.
    ocv_rest_s : float
        OCV rest before scans this step's actions trigger (s).
    scan : ScanSettings
        Settings for scans this step's actions trigger.
    line : int
    text : str
    """

    kind: StepKind
    control: Control
    setpoint: float
    limits: tuple[Limit, ...]
    poll_period_s: float
    ocv_rest_s: float
    scan: ScanSettings
    c_rate: float | None = None
    label: str | None = None
    radiography_period_s: float | None = None
    line: int = 0
    text: str = ""

    @property
    def duration_s(self) -> float | None:
        """The shortest time limit (s), or None when only other limits end the step."""
        times = [lim.value for lim in self.limits if lim.kind == "time"]
        return min(times) if times else None


@dataclass(frozen=True)
class ScanStep:
    """Open circuit for ``ocv_rest_s``, then ``count`` scans back to back.

    ``noise`` marks scans taken with no electrochemistry in between (their difference measures
    the scan's own noise floor, as in the 002 paper's T8/T9).
    """

    count: int
    noise: bool
    ocv_rest_s: float
    scan: ScanSettings
    on_failure: Literal["continue", "stop"] = "continue"
    label: str | None = None
    line: int = 0
    text: str = ""


@dataclass(frozen=True)
class Loop:
    """Repeat ``steps`` ``count`` times (None: no count) or until one of ``until`` is met.

    Scan-count limits are checked after every scan that finishes inside the loop; the others at
    every poll of a cycling step inside it; ``count`` at the end of each iteration.
    """

    steps: tuple[Step, ...]
    count: int | None
    until: tuple[Limit, ...]
    ocv_rest_s: float
    scan: ScanSettings
    label: str | None = None
    line: int = 0
    text: str = "loop"


@dataclass(frozen=True)
class ScheduleSegment:
    """Scans every ``period_s`` after ``start_s`` up to ``end_s`` inclusive (None: open-ended)."""

    period_s: float
    start_s: float
    end_s: float | None


@dataclass(frozen=True)
class ScheduledBlock:
    """Run ``steps``; at the scheduled times (from block entry) interrupt them for a scan."""

    steps: tuple[Step, ...]
    segments: tuple[ScheduleSegment, ...]
    until: tuple[Limit, ...]
    ocv_rest_s: float
    scan: ScanSettings
    label: str | None = None
    line: int = 0
    text: str = "schedule"

    def scan_times(self, horizon_s: float) -> list[float]:
        """Scheduled scan times (s from block entry) up to and including ``horizon_s``."""
        times: list[float] = []
        for seg in self.segments:
            end = horizon_s if seg.end_s is None else min(seg.end_s, horizon_s)
            k = 1
            while (t := seg.start_s + k * seg.period_s) <= end + 1e-9:
                times.append(t)
                k += 1
        return times

    def next_scan_time(self, after_s: float) -> float | None:
        """The first scheduled time strictly after ``after_s``; None once the schedule is over."""
        for seg in self.segments:
            if seg.end_s is not None and seg.end_s <= after_s + 1e-9:
                continue
            k = max(1, int((after_s - seg.start_s) // seg.period_s) + 1)
            t = seg.start_s + k * seg.period_s
            if t <= after_s + 1e-9:
                t += seg.period_s
            if seg.end_s is None or t <= seg.end_s + 1e-9:
                return t
        return None


Step = CycleStep | ScanStep | Loop | ScheduledBlock


@dataclass(frozen=True)
class SafetyEnvelope:
    """Bounds checked at every poll, whatever step runs; a violation puts the cell at open circuit.

    Attributes
    ----------
    v_min, v_max : float
        Voltage window (V).
    i_max : float
        Maximum |current| (A).
    q_max : float or None
        Maximum |net charge| since the protocol started (Ah); None: not checked.
    t_max : float
        Maximum protocol duration (s).
    debounce_s : float
        A violation must persist this long (s) before it trips (0: the first poll trips).
    comm_timeout_s : float
        No answer from the potentiostat for this long (s) is a communication fault.
    """

    v_min: float
    v_max: float
    i_max: float
    q_max: float | None
    t_max: float
    debounce_s: float
    comm_timeout_s: float

    def violation(self, voltage: float, current: float, charge: float,
                  elapsed: float) -> str | None:
        """Describe which bound a reading violates (undebounced), or None if it is inside."""
        if not voltage >= self.v_min:  # written so that NaN readings count as violations
            return f"voltage {voltage:.4g} V below {self.v_min:.4g} V"
        if not voltage <= self.v_max:
            return f"voltage {voltage:.4g} V above {self.v_max:.4g} V"
        if not abs(current) <= self.i_max:
            return f"|current| {abs(current):.4g} A above {self.i_max:.4g} A"
        if self.q_max is not None and not abs(charge) <= self.q_max:
            return f"|charge| {abs(charge):.4g} Ah above {self.q_max:.4g} Ah"
        if elapsed > self.t_max:
            return f"duration {elapsed:.0f} s above {self.t_max:.0f} s"
        return None


@dataclass(frozen=True)
class Protocol:
    """A validated operando protocol (all values SI).

    ``source`` is the file it was read from (or ``"<string>"``); ``reference`` cites where the
    protocol comes from (a paper, say); ``capacity_Ah`` is the nominal capacity C-rates refer to.
    """

    name: str
    title: str
    description: str
    reference: str
    source: str
    cell_preset: str | None
    capacity_Ah: float | None
    poll_period_s: float
    ocv_before_scan_s: float
    scan: ScanSettings
    safety: SafetyEnvelope
    steps: tuple[Step, ...]
    on_scan_failure: Literal["continue", "stop"] = "continue"
    scan_retries: int = 1

    def walk(self) -> Iterator[tuple[tuple[int, ...], Step]]:
        """Yield ``(path, node)`` for every node, depth first, in execution order."""
        yield from walk_steps(self.steps)

    def at(self, path: tuple[int, ...]) -> Step:
        """The node at ``path`` (see the module docstring)."""
        steps: tuple[Step, ...] = self.steps
        node: Step | None = None
        for index in path:
            node = steps[index]
            steps = node.steps if isinstance(node, (Loop, ScheduledBlock)) else ()
        if node is None:
            raise IndexError("empty path")
        return node

    def find(self, label: str) -> tuple[int, ...]:
        """The path of the node labelled ``label``; KeyError if there is none."""
        for path, node in self.walk():
            if node.label == label:
                return path
        raise KeyError(label)


def walk_steps(steps: tuple[Step, ...], prefix: tuple[int, ...] = ()
               ) -> Iterator[tuple[tuple[int, ...], Step]]:
    """Yield ``(path, node)`` for ``steps`` and everything nested in them, depth first."""
    for index, node in enumerate(steps):
        path = (*prefix, index)
        yield path, node
        if isinstance(node, (Loop, ScheduledBlock)):
            yield from walk_steps(node.steps, path)


def stability_slope(times: list[float], values: list[float]) -> float:
    """Least-squares slope of ``values`` against ``times`` (units per second).

    The executor feeds the samples of the running step that fall within the limit's window;
    dV/dt and dI/dt limits compare ``abs()`` of this slope.
    """
    n = len(times)
    if n < 2:
        return float("nan")
    mean_t = sum(times) / n
    mean_v = sum(values) / n
    sxx = sum((t - mean_t) ** 2 for t in times)
    sxy = sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True))
    return sxy / sxx if sxx > 0 else float("nan")
