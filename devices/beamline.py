"""A set of devices that make one beamline; the simulated one shares one scene."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from devices.clock import CellClock
from devices.detector import SimFrameSource, TomoDetector
from devices.motion import RotationStage, SampleStage
from devices.potentiostat import Potentiostat, SimPotentiostatBackend
from devices.shutter import Shutter
from sim.cell_params import CellParameters
from sim.clock import Clock
from sim.presets import BeamlinePreset, build_scene, get_beamline_preset
from sim.scene import SimScene


@dataclass
class Beamline:
    """The devices an operando experiment uses."""

    potentiostat: Potentiostat
    rotation: RotationStage
    sample: SampleStage
    shutter: Shutter
    detector: TomoDetector
    cell_clock: CellClock
    #: The simulated scene when the cell is simulated (None with a real potentiostat).
    scene: SimScene | None = None
    #: Called by :meth:`close`, last first: ports to close, simulated servers to stop.
    closers: list[Callable[[], None]] = field(default_factory=list)
    #: Simulated instrument servers started for this beamline, by role (for tests and tools).
    simulators: dict[str, Any] = field(default_factory=dict)
    #: Ports of simulated serial instruments, by device.
    sim_ports: dict[str, str] = field(default_factory=dict)

    def devices(self) -> list[Any]:
        """All devices, for connection checks and safe-state handling."""
        return [self.potentiostat, self.rotation, self.sample, self.shutter, self.detector, self.cell_clock]

    def close(self) -> None:
        """Release ports and stop simulated servers; errors are logged, not raised."""
        while self.closers:
            closer = self.closers.pop()
            try:
                closer()
            except Exception:  # closing one thing must not keep the others open
                logging.getLogger(__name__).exception("closing %r failed", closer)


def make_sim_beamline(preset: str | BeamlinePreset, frames_dir: str | Path, *, seed: int = 0,
                      clock: Clock | None = None, cell: CellParameters | None = None,
                      coarsen: float = 1.0) -> Beamline:
    """Build the simulated beamline of ``preset``, writing frames under ``frames_dir``.

    Parameters
    ----------
    preset
        Beamline preset name (see ``sim.presets.BEAMLINE_PRESETS``).
    frames_dir
        Directory for the detector's NXtomo files.
    seed
        Seed of the phantom and noise.
    clock
        Shared clock; a new virtual clock by default.
    cell, coarsen
        See :func:`sim.presets.build_scene`.
    """
    p = get_beamline_preset(preset)
    scene = build_scene(p, seed=seed, clock=clock, cell=cell, coarsen=coarsen)
    rotation = RotationStage(scene=scene)
    detector = TomoDetector(source=SimFrameSource(scene), frames_dir=frames_dir, rotation=rotation,
                            clock=scene.clock)
    detector.file_attrs = {"sample": p.description, "preset": p.name,
                           "voxel_size_um": float(scene.phantom.voxel_size_um)}
    return Beamline(potentiostat=Potentiostat(backend=SimPotentiostatBackend(scene)), rotation=rotation,
                    sample=SampleStage(scene=scene), shutter=Shutter(scene=scene), detector=detector,
                    cell_clock=CellClock(clock=scene.clock), scene=scene)
