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


class SimPotentiostatBackend:
    """Drives the shared simulated cell; time is the scene's clock."""

    def __init__(self, scene: SimScene) -> None:
        self.scene = scene

    def identify(self) -> str:
        return f"tomocycle,SimPotentiostat,{self.scene.cell.params.name},0"

    def measure(self) -> Measurement:
        s = self.scene.cell_state()
        setpoint = 0.0 if s.setpoint is None else float(s.setpoint)
        return Measurement(s.time_s, s.voltage, s.current, s.charge_Ah, s.mode, setpoint, s.mode != "ocv")

    def apply(self, command: Command) -> None:
        cell = self.scene.cell
        cell.advance_to(self.scene.clock.now())
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

    def __init__(self, *, backend: PotentiostatBackend, name: str = "potentiostat", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.backend = backend

    def trigger(self) -> Status:
        m = self.backend.measure()
        for sig, value in ((self.cell_time, m.time_s), (self.voltage, m.voltage), (self.current, m.current),
                           (self.charge, m.charge_Ah), (self.mode, m.mode), (self.setpoint, m.setpoint)):
            sig.put(value)
        status = Status(obj=self)
        status.set_finished()
        return status

    def set(self, command: Command) -> Status:  # type: ignore[override]
        if not isinstance(command, Command):
            raise TypeError(f"{self.name}.set() takes a Command, got {command!r}")
        self.backend.apply(command)
        self.mode.put(command.mode)
        self.setpoint.put(command.value)
        status = Status(obj=self)
        status.set_finished()
        return status

    def safe_state(self) -> None:
        """Put the cell at open circuit with the output off (used on abort and on faults)."""
        self.backend.apply(Command.ocv())
        self.mode.put("ocv")
        self.setpoint.put(0.0)
