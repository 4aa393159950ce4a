"""Simulated rotation stage and sample translation.

Both are ophyd ``SoftPositioner`` subclasses: they enforce soft limits in ``check_value`` like a
real motor record, take travel time at their velocity on the shared clock, and tell the simulated
scene where they are so the detector renders what a camera would see.
"""

from __future__ import annotations

from ophyd.positioner import SoftPositioner

from devices._status import after_clock
from sim.scene import SimScene


class _SimAxis(SoftPositioner):
    """A positioner whose moves take ``|distance| / velocity`` of the scene's clock."""

    _scene_attr = ""

    def __init__(self, *, scene: SimScene, velocity: float, limits: tuple[float, float],
                 egu: str, name: str, init_pos: float = 0.0, **kwargs) -> None:
        if not velocity > 0:
            raise ValueError(f"{name}: velocity must be positive, got {velocity!r} {egu}/s")
        self.scene = scene
        self.velocity = float(velocity)
        super().__init__(name=name, egu=egu, limits=limits, init_pos=init_pos, **kwargs)

    def _setup_move(self, position, status) -> None:
        self._run_subs(sub_type=self.SUB_START)
        self._started_moving = True
        # The first set (from __init__'s init_pos) has no previous position: it is a homing.
        travel = 0.0 if self.position is None else abs(float(position) - float(self.position)) / self.velocity

        def arrive() -> None:
            setattr(self.scene, self._scene_attr, float(position))
            self._set_position(position)
            self._done_moving()

        # The move status (from PositionerBase.move) finishes in _done_moving.
        after_clock(self.scene.clock, travel, arrive, obj=self)

    def _set_position(self, value, **kwargs) -> None:
        super()._set_position(value, **kwargs)
        if self._scene_attr and value is not None:
            setattr(self.scene, self._scene_attr, float(value))


class RotationStage(_SimAxis):
    """Simulated sample rotation (degrees). Default soft limits allow interlaced 360-degree scans."""

    _scene_attr = "angle_deg"

    def __init__(self, *, scene: SimScene, name: str = "rotation", velocity: float = 180.0,
                 limits: tuple[float, float] = (-720.0, 720.0), **kwargs) -> None:
        super().__init__(scene=scene, velocity=velocity, limits=limits, egu="deg", name=name, **kwargs)


class SampleStage(_SimAxis):
    """Simulated horizontal sample translation (mm); moving it out of the beam gives flats."""

    _scene_attr = "sample_x_mm"

    def __init__(self, *, scene: SimScene, name: str = "sample_x", velocity: float = 5.0,
                 limits: tuple[float, float] = (-25.0, 25.0), out_position: float | None = None,
                 **kwargs) -> None:
        super().__init__(scene=scene, velocity=velocity, limits=limits, egu="mm", name=name, **kwargs)
        #: Where the sample goes for flats (mm).
        self.out_position = float(out_position if out_position is not None else 2 * scene.sample_out_mm)
        #: Where the sample sits in the beam (mm).
        self.in_position = 0.0
