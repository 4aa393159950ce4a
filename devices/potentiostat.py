"""The potentiostat: one ophyd device, the instrument behind it chosen at construction.

A backend is a small object that measures and applies commands (``PotentiostatBackend``); the
simulated one drives the shared cell model, a serial SCPI one and an EPICS one follow the same
interface. The device turns that into ophyd's vocabulary: ``trigger()`` takes one measurement,
``read()`` reports it, ``set(Command)`` changes what the cell is driven with.

Sign convention: positive current charges the cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import Status

from devices._status import finished_status
from sim.scene import SimScene

Mode = Literal["cc", "cv", "ocv"]


class PotentiostatError(RuntimeError):
    """The potentiostat failed; the message names the instrument and its address.

    The operando plan catches this family: any of them puts the cell in the safe state and the
    experiment in the fault state, with an alarm that carries this message.
    """


class CommunicationError(PotentiostatError):
    """No answer in time, a garbled answer, or a lost connection, after the backend's retries."""


class InstrumentReportedError(PotentiostatError):
    """The instrument accepted the bytes but reported an error (e.g. its SCPI error queue)."""


@dataclass(frozen=True)
class Command:
    """What the cell is driven with.

    Parameters
    ----------
    mode
        "cc" galvanostatic (``value`` in A), "cv" potentiostatic (``value`` in V, ``limit`` the
        current compliance in A), "ocv" open circuit (output off, voltage measured).
    value
        Setpoint in A or V.
    limit
        Compliance: the voltage limit in V for "cc", the current limit in A for "cv".
    """

    mode: Mode
    value: float = 0.0
    limit: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("cc", "cv", "ocv"):
            raise ValueError(f"potentiostat mode must be 'cc', 'cv' or 'ocv', got {self.mode!r}")
        if self.value != self.value:  # NaN never is a setpoint
            raise ValueError(f"potentiostat setpoint is NaN for mode {self.mode!r}")

    @classmethod
    def cc(cls, amps: float, voltage_limit: float | None = None) -> Command:
        """Constant current (positive charges)."""
        return cls("cc", float(amps), voltage_limit)

    @classmethod
    def cv(cls, volts: float, current_limit: float | None = None) -> Command:
        """Constant voltage."""
        return cls("cv", float(volts), current_limit)

    @classmethod
    def ocv(cls) -> Command:
        """Open circuit: output off, voltage read at high impedance."""
        return cls("ocv")


@dataclass(frozen=True)
class Measurement:
    """One reading of the instrument."""

    time_s: float
    voltage: float
    current: float
    charge_Ah: float
    mode: Mode
    setpoint: float
    output_on: bool
    #: The source hit its compliance limit (the voltage limit in "cc", the current limit in "cv").
    compliance: bool = False


class PotentiostatBackend(Protocol):
    """What a potentiostat backend provides.

    ``measure`` and ``apply`` raise :class:`PotentiostatError` subclasses when the instrument
    fails (after whatever retries the backend makes); ``measure`` reports cell time on the
    experiment's clock and the net charge the backend has counted (a real SMU has no coulomb
    counter: its backend integrates I dt between readings).
    """

    def identify(self) -> str: ...

    def measure(self) -> Measurement: ...

    def apply(self, command: Command) -> None: ...

    # Optional: ``safe_state()`` -- output off / relay open, called on faults, aborts and at the
    # end; backends without it get ``apply(Command.ocv())``.


class SimPotentiostatBackend:
    """Drives the shared simulated cell; time is the scene's clock.

    Like a source-measure unit it enforces compliance: a constant current whose voltage reaches
    the command's voltage limit is clamped there (the source turns into a voltage source at the
    limit, as an SMU in compliance does) and measurements report ``compliance``.
    """

    def __init__(self, scene: SimScene) -> None:
        self.scene = scene
        self._command = Command.ocv()
        self._tripped = False

    def identify(self) -> str:
        return f"tomocycle,SimPotentiostat,{self.scene.cell.params.name},0"

    def measure(self) -> Measurement:
        s = self.scene.cell_state()
        cmd = self._command
        if cmd.mode == "cc" and cmd.limit is not None and not self._tripped and (
                (cmd.value > 0 and s.voltage >= cmd.limit) or (cmd.value < 0 and s.voltage <= cmd.limit)):
            self._tripped = True
            self.scene.cell.set_voltage(cmd.limit, current_limit=abs(cmd.value))
            s = self.scene.cell_state()
        return Measurement(s.time_s, s.voltage, s.current, s.charge_Ah, cmd.mode, cmd.value,
                           cmd.mode != "ocv", compliance=self._tripped)

    def apply(self, command: Command) -> None:
        cell = self.scene.cell
        cell.advance_to(self.scene.clock.now())
        self._command, self._tripped = command, False
        if command.mode == "cc":
            cell.set_current(command.value)
        elif command.mode == "cv":
            cell.set_voltage(command.value, current_limit=command.limit)
        else:
            cell.open_circuit()


class _UnitSignal(Signal):
    """A soft signal whose description carries engineering units."""

    def __init__(self, *args, units: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._units = units

    def describe(self) -> dict:
        desc = super().describe()
        if self._units:
            desc[self.name]["units"] = self._units
        return desc


class Potentiostat(Device):
    """A potentiostat / source-measure unit driving a battery cell.

    ``trigger()`` measures once; ``read()`` then gives cell time, voltage, current, charge,
    mode and setpoint. ``set(Command)`` applies a command and returns a finished status.
    """

    cell_time = Cpt(_UnitSignal, value=0.0, units="s", kind="normal")
    voltage = Cpt(_UnitSignal, value=0.0, units="V", kind="hinted")
    current = Cpt(_UnitSignal, value=0.0, units="A", kind="hinted")
    charge = Cpt(_UnitSignal, value=0.0, units="Ah", kind="normal")
    mode = Cpt(Signal, value="ocv", kind="normal")
    setpoint = Cpt(Signal, value=0.0, kind="normal")

    compliance = Cpt(Signal, value=False, kind="normal")

    def __init__(self, *, backend: PotentiostatBackend, name: str = "potentiostat", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.backend = backend
        #: The command the experiment wants; re-applied by :meth:`resume` after a pause.
        self.last_command: Command = Command.ocv()
        self._paused = False

    def trigger(self) -> Status:
        m = self.backend.measure()
        for sig, value in ((self.cell_time, m.time_s), (self.voltage, m.voltage), (self.current, m.current),
                           (self.charge, m.charge_Ah), (self.mode, m.mode), (self.setpoint, m.setpoint),
                           (self.compliance, bool(m.compliance))):
            sig.put(value)
        return finished_status()

    def set(self, command: Command) -> Status:  # type: ignore[override]
        if not isinstance(command, Command):
            raise TypeError(f"{self.name}.set() takes a Command, got {command!r}")
        self.backend.apply(command)
        self.last_command, self._paused = command, False
        self.mode.put(command.mode)
        self.setpoint.put(command.value)
        return finished_status()

    def safe_state(self) -> None:
        """Put the cell at open circuit with the output off (used on abort and on faults).

        A backend with a ``safe_state()`` of its own (a real SMU, whose open-circuit *rest* keeps
        the output on at 0 A to read the voltage) uses it to open the output relay; others apply
        :meth:`Command.ocv`.
        """
        own = getattr(self.backend, "safe_state", None)
        if own is not None:
            own()
        else:
            self.backend.apply(Command.ocv())
        self.mode.put("ocv")
        self.setpoint.put(0.0)

    def stop(self, *, success: bool = False) -> None:
        """Open circuit. The RunEngine calls this on pause, suspension, abort and halt.

        Nobody watches the safety envelope while the plan is not running, so an unattended cell
        must not keep charging; :meth:`resume` puts the experiment's command back.
        """
        self._paused = self.last_command.mode != "ocv"
        self.safe_state()

    def resume(self) -> None:
        """Re-apply the command that :meth:`stop` interrupted (the RunEngine calls this)."""
        if self._paused:
            self.backend.apply(self.last_command)
            self.mode.put(self.last_command.mode)
            self.setpoint.put(self.last_command.value)
            self._paused = False
