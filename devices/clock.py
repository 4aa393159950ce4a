"""The cell clock as a movable device, so plans wait through the RunEngine on the right clock.

``bps.sleep`` always sleeps in real time; a plan that must wait "10 minutes of cell time" instead
does ``yield from bps.mv(cell_clock, 600)``: the virtual clock jumps, a real clock waits.
"""

from __future__ import annotations

from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import Status

from devices._status import after_clock
from sim.clock import Clock


class CellClock(Device):
    """Readable clock (``time``, s) whose ``set(seconds)`` waits that long on the clock."""

    time = Cpt(Signal, value=0.0, kind="hinted")

    def __init__(self, *, clock: Clock, name: str = "cell_clock", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.clock = clock

    def trigger(self) -> Status:
        self.time.put(self.clock.now())
        status = Status(obj=self)
        status.set_finished()
        return status

    def set(self, seconds: float) -> Status:  # type: ignore[override]
        seconds = float(seconds)
        if not seconds >= 0:
            raise ValueError(f"{self.name}: wait must be >= 0 s, got {seconds!r}")
        return after_clock(self.clock, seconds, lambda: self.time.put(self.clock.now()), obj=self)
