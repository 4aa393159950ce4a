"""Evaluating limits against readings: step limits, loop/block limits, the safety envelope.

Pure functions over the protocol model, the cursor's frames and a reading, so the decider reads
as a sequence of questions and the rules are tested on their own. What each limit measures is
the contract of ``controller.protocol_model.Limit``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from controller.cursor import ContainerFrame, StepFrame
from controller.protocol_model import Limit, SafetyEnvelope, stability_slope
from plans.operando_api import Reading


def record_sample(step: StepFrame, reading: Reading, keep_s: float) -> None:
    """Add a (t, V, I) sample to the step's stability window, dropping those older than ``keep_s``."""
    step.samples.append((reading.time_s, reading.voltage, reading.current))
    cutoff = reading.time_s - keep_s - 1e-9
    drop = 0
    while drop < len(step.samples) and step.samples[drop][0] < cutoff:
        drop += 1
    if drop:
        del step.samples[:drop]


def _slope(step: StepFrame, limit: Limit, now: float, column: int) -> float:
    window = limit.window_s or 0.0
    if now - step.samples_since < window - 1e-9:
        return math.nan  # not stable "by accident": wait for one full window of this step
    recent = [s for s in step.samples if s[0] >= now - window - 1e-9]
    return abs(stability_slope([s[0] for s in recent], [s[column] for s in recent]))


def step_measure(limit: Limit, step: StepFrame, reading: Reading) -> float:
    """The quantity a step limit compares (see ``Limit``); NaN when not measurable yet."""
    now = reading.time_s
    if limit.kind == "voltage":
        return reading.voltage
    if limit.kind == "current":
        return abs(reading.current)
    if limit.kind == "time":
        return step.elapsed(now)
    if limit.kind == "charge":
        return abs(reading.charge_Ah - step.started_q)
    if limit.kind == "dvdt":
        return _slope(step, limit, now, 1)
    if limit.kind == "didt":
        return _slope(step, limit, now, 2)
    return math.nan  # scan counts are not polled


def container_measure(limit: Limit, frame: ContainerFrame, step: StepFrame | None,
                      reading: Reading) -> float:
    """The quantity a loop/block ``until`` limit compares at a poll."""
    if limit.kind == "time":
        return reading.time_s - frame.entered_s
    if limit.kind == "charge":
        return abs(reading.charge_Ah - frame.entered_q)
    if limit.kind in ("dvdt", "didt"):
        return math.nan if step is None else step_measure(limit, step, reading)
    if limit.kind == "scans":
        return float(frame.scans)
    return step_measure(limit, step, reading) if step is not None else \
        (reading.voltage if limit.kind == "voltage" else abs(reading.current))


def first_met(limits: tuple[Limit, ...], measure) -> Limit | None:
    """The first limit (in the order written) whose measured value meets it."""
    for limit in limits:
        x = measure(limit)
        if not math.isnan(x) and limit.met(x):
            return limit
    return None


@dataclass
class SafetyWatch:
    """Debounced safety envelope: a violation must last ``debounce_s`` before it trips.

    ``t0``/``q0`` are the experiment's start time and charge; readings carry the experiment's
    total charge (the decider corrects the instrument's counter, which restarts on resume).
    """

    envelope: SafetyEnvelope
    t0: float
    q0: float
    since: float | None = None

    def check(self, reading: Reading) -> str | None:
        """The alarm text when the envelope has been violated for long enough, else None."""
        problem = self.envelope.violation(reading.voltage, reading.current, reading.charge_Ah - self.q0,
                                          reading.time_s - self.t0)
        if problem is None:
            self.since = None
            return None
        if self.since is None:
            self.since = reading.time_s
        if reading.time_s - self.since >= self.envelope.debounce_s - 1e-9:
            return f"safety envelope: {problem}"
        return None


#: Fraction of a predicted crossing time waited before polling again: the voltage and current
#: curves bend towards their limits (the knee at the end of a discharge), so a straight-line
#: prediction overshoots; waiting a fraction approaches the threshold geometrically instead.
APPROACH_FRACTION = 0.7


def time_to_limit(limit: Limit, x: float, x_prev: float, dt: float) -> float:
    """Predicted cell time (s) until a voltage or current limit is met, from the last two readings.

    Parameters
    ----------
    limit
        A ``voltage`` or ``current`` limit (others give ``inf``).
    x, x_prev
        The measured quantity (V, or |I|) now and at the previous poll.
    dt
        Cell time between the two readings (s).

    Returns
    -------
    float
        Seconds until the straight line through the two readings reaches the threshold; ``inf``
        when it moves away from it, does not move, or the kind is not predictable.
    """
    if limit.kind not in ("voltage", "current") or not dt > 0 or math.isnan(x) or math.isnan(x_prev):
        return math.inf
    rate = (x - x_prev) / dt
    gap = limit.value - x
    if rate == 0.0 or gap == 0.0 or (gap > 0) != (rate > 0):
        return math.inf
    return gap / rate
