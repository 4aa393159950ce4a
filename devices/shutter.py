"""Simulated X-ray shutter: closed gives dark frames."""

from __future__ import annotations

from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import Status

from devices._status import after_clock
from sim.scene import SimScene

OPEN, CLOSED = "open", "closed"
# True == 1 and False == 0 as dict keys, so 1 and 0 also accept the booleans
_ALIASES = {"open": OPEN, "opened": OPEN, 1: OPEN, "close": CLOSED, "closed": CLOSED, 0: CLOSED}


class Shutter(Device):
    """A two-state shutter; ``set("open")`` / ``set("close")``, reads "open" or "closed".

    Parameters
    ----------
    scene
        The simulated beamline whose beam the shutter blocks.
    travel_s
        Time the blade takes to move, on the scene's clock.
    """

    state = Cpt(Signal, value=CLOSED, kind="normal")

    def __init__(self, *, scene: SimScene, name: str = "shutter", travel_s: float = 0.05, **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.scene = scene
        self.travel_s = float(travel_s)
        self.scene.shutter_open = False

    def set(self, value: object) -> Status:  # type: ignore[override]
        try:
            target = _ALIASES[value.lower() if isinstance(value, str) else value]  # type: ignore[index]
        except (KeyError, TypeError):
            raise ValueError(f"{self.name}: set 'open' or 'close', got {value!r}") from None

        def arrive() -> None:
            self.scene.shutter_open = target == OPEN
            self.state.put(target)

        travel = 0.0 if target == self.state.get() else self.travel_s
        return after_clock(self.scene.clock, travel, arrive, obj=self)
