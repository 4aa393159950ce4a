"""The interface between the operando plan (which acts) and the controller (which decides).

``plans.operando`` owns the loop under the RunEngine: it measures the cell, hands the reading
to a :class:`Decider`, and carries out the :class:`Decision` it gets back: a potentiostat
command, a scan, a radiograph, the end of the protocol or a fault. The decider never touches a
device and never yields a message; the plan never interprets the protocol. ``controller``
implements the decider, so plans never import the controller (the import layers forbid it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from devices.potentiostat import Command


@dataclass(frozen=True)
class Reading:
    """One poll of the potentiostat (cell time on the experiment clock, SI units)."""

    time_s: float
    voltage: float
    current: float
    charge_Ah: float
    compliance: bool = False


@dataclass(frozen=True)
class ScanRequest:
    """A tomography scan the decider wants now (the cell is already at open circuit and rested).

    Attributes
    ----------
    label : str
        Timestep label, "T0", "T1", ...
    scan : dict
        Keyword arguments of ``plans.tomo.tomo_scan`` (projections, angle_range, exposure,
        darks, flats, flats_at_end, interlaced, fly).
    md : dict
        Metadata for the scan's run: experiment, step, reading and state of charge at the
        trigger, noise flag.
    retries : int
        Further attempts after a failed one.
    on_failure : {'continue', 'stop'}
        After the last failed attempt: record the scan as failed and go on cycling, or stop.
    """

    label: str
    scan: dict[str, Any]
    md: dict[str, Any]
    retries: int = 1
    on_failure: Literal["continue", "stop"] = "continue"


@dataclass(frozen=True)
class ScanOutcome:
    """What became of a :class:`ScanRequest`."""

    ok: bool
    uid: str | None
    attempts: int
    error: str | None = None
    run_uids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    """What the plan does next.

    Attributes
    ----------
    command : Command or None
        Apply this to the potentiostat now (before anything else).
    scan : ScanRequest or None
        Take this scan now; then report with :meth:`Decider.scan_finished`.
    radiograph : bool
        Take one radiograph now (the step's radiography period has come round).
    radiography : bool
        Whether the running step wants radiographs at all; when it turns False the plan closes
        the step's radiography run.
    done : bool
        The protocol ended normally.
    fault : str or None
        The protocol ended in the fault state; the text is the alarm.
    wait_s : float
        Cell time to let pass before the next poll, s.
    status : dict
        Recorded with the poll that led to this decision (state, step, labels, counters).
    transition : bool
        The controller changed state: the plan flushes what it has recorded so far.
    alarms : tuple of str
        Alarms raised by this decision, recorded in the experiment's "alarms" stream.
    """

    command: Command | None = None
    scan: ScanRequest | None = None
    radiograph: bool = False
    radiography: bool = False
    done: bool = False
    fault: str | None = None
    wait_s: float = 1.0
    status: dict[str, Any] = field(default_factory=dict)
    transition: bool = False
    alarms: tuple[str, ...] = ()


class Decider(Protocol):
    """The controller as the operando plan sees it."""

    #: Potentiostat silent for this long (s) is a communication fault.
    comm_timeout_s: float

    def begin(self, reading: Reading) -> Decision:
        """First decision of the experiment, from the first reading."""
        ...

    def poll(self, reading: Reading) -> Decision:
        """Decision after a regular poll."""
        ...

    def scan_finished(self, request: ScanRequest, outcome: ScanOutcome, reading: Reading) -> Decision:
        """Decision after a requested scan ended (well or not)."""
        ...

    def fail(self, reason: str) -> Decision:
        """Enter the fault state for a reason found by the plan (lost potentiostat, ...)."""
        ...

    def status_keys(self) -> dict[str, dict[str, Any]]:
        """Data keys (event-model DataKey dicts) of :attr:`Decision.status` values."""
        ...
