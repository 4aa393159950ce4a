"""A source-measure unit wired to the simulated cell: what the simulated instrument servers drive.

The serial SCPI instrument (:mod:`sim.scpi_server`) and the EPICS potentiostat IOC
(:mod:`sim.epics_ioc`) both translate their wire protocol into calls on :class:`SimSMU`, which
drives the scene's cell on the scene's clock. Its compliance rule is the one the in-process
``SimPotentiostatBackend`` applies (a current source whose voltage reaches the compliance limit
clamps there and reports compliance), so a protocol run through either wire protocol sees the
same cell as one run in-process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

from sim.scene import SimScene

Source = Literal["CURR", "VOLT"]

#: Keithley 2400 ranges: 21 V at up to 1.05 A.
MAX_VOLTAGE = 21.0
MAX_CURRENT = 1.05


@dataclass(frozen=True)
class SMUReading:
    """One reading: cell time (s), V, I (A, positive charges), charge (Ah), compliance, output."""

    time_s: float
    voltage: float
    current: float
    charge_Ah: float
    compliance: bool
    output_on: bool


class SimSMU:
    """Output relay, source function, levels and compliance of one source-measure unit.

    Parameters
    ----------
    scene
        The simulated beamline whose cell is connected to the output.

    Notes
    -----
    Thread-safe: the serial server and an IOC run in their own threads while the test or the
    operator inspects the instrument.
    """

    def __init__(self, scene: SimScene) -> None:
        self.scene = scene
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Power-on state: output off, 0 A current source, wide compliance."""
        with self._lock:
            self.output_on = False
            self.source: Source = "CURR"
            self.current_level = 0.0
            self.voltage_level = 0.0
            self.voltage_compliance = MAX_VOLTAGE
            self.current_compliance = 0.105
            self._tripped = False
            self._drive()

    # The setters only change the instrument's settings; the cell follows when the output is on.
    def configure(self, *, source: Source | None = None, current: float | None = None,
                  voltage: float | None = None, voltage_compliance: float | None = None,
                  current_compliance: float | None = None) -> None:
        """Change any of the source settings; the cell is re-driven at once."""
        with self._lock:
            if source is not None:
                self.source = source
            if current is not None:
                self.current_level = float(current)
            if voltage is not None:
                self.voltage_level = float(voltage)
            if voltage_compliance is not None:
                self.voltage_compliance = abs(float(voltage_compliance))
            if current_compliance is not None:
                self.current_compliance = abs(float(current_compliance))
            self._tripped = False
            self._drive()

    def set_output(self, on: bool) -> None:
        """Close (True) or open (False, high impedance) the output relay."""
        with self._lock:
            self.output_on, self._tripped = bool(on), False
            self._drive()

    def _drive(self) -> None:
        cell = self.scene.cell
        cell.advance_to(self.scene.clock.now())
        if not self.output_on:
            cell.open_circuit()
        elif self.source == "CURR":
            cell.set_current(self.current_level)
        else:
            cell.set_voltage(self.voltage_level, current_limit=self.current_compliance)

    def read(self) -> SMUReading:
        """Measure now: the cell advanced to the clock's time, compliance applied."""
        with self._lock:
            s = self.scene.cell_state()
            if self.output_on and self.source == "CURR" and not self._tripped and self.current_level != 0 \
                    and abs(s.voltage) >= self.voltage_compliance:
                # The current source cannot push the voltage past compliance: it becomes a voltage
                # source at the limit (sign of the cell voltage) with the set current as ceiling.
                self._tripped = True
                limit = self.voltage_compliance if s.voltage >= 0 else -self.voltage_compliance
                self.scene.cell.set_voltage(limit, current_limit=abs(self.current_level))
                s = self.scene.cell_state()
            return SMUReading(s.time_s, s.voltage, s.current, s.charge_Ah,
                              self._tripped, self.output_on)

    @property
    def tripped(self) -> bool:
        """The current source is in voltage compliance."""
        return self._tripped
