"""The simulated beamline's shared state: one cell, one phantom, one clock, one camera.

The simulated devices (potentiostat, rotation stage, shutter, sample stage, detector) are thin
ophyd wrappers in ``devices/``; the physics they share lives here. The stage and shutter write
where things are, the detector asks for a frame, and the frame shows the phantom in the state the
cell's lithiation has put it in, at the current angle, with the acquisition model's noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from sim.cell import CellModel, CellState
from sim.clock import Clock
from sim.phantom import Phantom, render_volume
from sim.projector import (AcquisitionModel, ConeGeometry, project_cone, project_cone_angle,
                           project_parallel, project_parallel_angle, ring_gains, simulate_frame)

#: Lithiation changes smaller than this do not re-render the phantom (the cell is at open
#: circuit during a scan, so a scan sees one volume).
_RERENDER_STEP = 1e-3
#: Frames simulated per batch in a fly scan: enough to keep both cores busy projecting, small
#: enough that the float64 noise model of a batch stays a few tens of MB.
_BATCH = 64


@dataclass
class SimScene:
    """Mutable state of the simulated beamline.

    Parameters
    ----------
    clock
        Shared clock; exposures and motions advance it.
    cell
        The electrochemical cell model, advanced lazily to the clock's time when read.
    phantom
        The electrode sample.
    acquisition
        Camera and beam model; its photon count is for ``reference_exposure_s``.
    cone
        Cone-beam geometry, or None for a parallel (synchrotron) beam.
    reference_exposure_s
        Exposure at which the flat field has ``acquisition.photons`` counts per pixel.
    sample_out_mm
        The sample is out of the beam when the translation stage is at least this far from 0.
    center_offset_px
        Offset of the rotation axis from the detector centre, in pixels.
    seed
        Seed for noise; the frame sequence is reproducible for a given seed and command sequence.
    """

    clock: Clock
    cell: CellModel
    phantom: Phantom
    acquisition: AcquisitionModel
    cone: ConeGeometry | None = None
    reference_exposure_s: float = 0.1
    sample_out_mm: float = 5.0
    center_offset_px: float = 0.0
    seed: int = 0
    angle_deg: float = 0.0
    shutter_open: bool = False
    sample_x_mm: float = 0.0
    _rng: np.random.Generator = field(init=False, repr=False)
    _gain: np.ndarray = field(init=False, repr=False)
    _volume_key: tuple[float, float] | None = field(default=None, init=False, repr=False)
    _volume: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        rows, cols = self.frame_shape
        # Pixel gain defects belong to the camera, so they are drawn once, not per frame.
        self._gain = ring_gains((rows, cols), self.acquisition, np.random.default_rng(self.seed + 1))

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(rows, cols) of a detector frame."""
        if self.cone is not None:
            return tuple(self.cone.detector_shape)  # type: ignore[return-value]
        nz, _, nx = self.phantom.shape
        return (nz, nx)

    @property
    def sample_in_beam(self) -> bool:
        """Whether the translation stage holds the sample in the beam."""
        return abs(self.sample_x_mm) < self.sample_out_mm

    def cell_state(self) -> CellState:
        """The cell's state at the clock's current time."""
        self.cell.advance_to(self.clock.now())
        return self.cell.snapshot()

    def volume(self) -> np.ndarray:
        """The phantom rendered for the cell's current lithiation (cached)."""
        state = self.cell_state()
        key = (state.si_lithiation, state.si_lithiation_peak)
        if self._volume_key is None or max(abs(a - b) for a, b in zip(key, self._volume_key)) > _RERENDER_STEP:
            self._volume = render_volume(self.phantom, *key)
            self._volume_key = key
        assert self._volume is not None
        return self._volume

    def line_integrals(self) -> np.ndarray:
        """Noise-free line integrals through the sample at the current angle, (rows, cols)."""
        if not self.sample_in_beam:
            return np.zeros(self.frame_shape, dtype=np.float32)
        theta = np.deg2rad(self.angle_deg)
        if self.cone is not None:
            return project_cone_angle(self.volume(), theta, self.cone)
        return project_parallel_angle(self.volume(), theta, center_offset=self.center_offset_px)

    def frames(self, exposure_s: float, count: int, angles_deg: np.ndarray | None = None) -> np.ndarray:
        """Take ``count`` exposures back to back, as a fly scan does; uint16 (count, rows, cols).

        With ``angles_deg`` (one per frame) the rotation sweeps through them, a frame being taken
        as the stage passes each angle (position-compare triggering), and ends at the last one.
        Projections are computed in batches so a 2505-projection scan simulates in seconds;
        the clock advances by ``count * exposure_s``.
        """
        if not exposure_s > 0:
            raise ValueError(f"exposure must be positive, got {exposure_s!r} s")
        if angles_deg is not None and len(angles_deg) != count:
            raise ValueError(f"{len(angles_deg)} angles for {count} frames")
        model = replace(self.acquisition,
                        photons=self.acquisition.photons * exposure_s / self.reference_exposure_s)
        kind = self._frame_kind()
        out = np.empty((count, *self.frame_shape), dtype=np.uint16)
        for lo in range(0, count, _BATCH):
            hi = min(count, lo + _BATCH)
            if kind == "projection":
                angles = np.full(hi - lo, self.angle_deg) if angles_deg is None else angles_deg[lo:hi]
                integrals = self._project(np.deg2rad(np.asarray(angles, dtype=np.float64)))
            else:
                integrals = np.zeros((hi - lo, *self.frame_shape), np.float32)
            out[lo:hi] = simulate_frame(integrals, kind, model, self._rng, ring_gain=self._gain)
        if angles_deg is not None and count:
            self.angle_deg = float(angles_deg[-1])
        self.clock.sleep(count * exposure_s)
        return out

    def _frame_kind(self) -> str:
        if not self.shutter_open:
            return "dark"
        return "projection" if self.sample_in_beam else "flat"

    def _project(self, angles_rad: np.ndarray) -> np.ndarray:
        if self.cone is not None:
            return project_cone(self.volume(), angles_rad, self.cone)
        return project_parallel(self.volume(), angles_rad, center_offset=self.center_offset_px)

    def state_dict(self) -> dict[str, object]:
        """What the simulated hardware would still hold after the software died (JSON-able)."""
        return {"clock_s": self.clock.now(), "cell": self.cell.state_dict(), "angle_deg": self.angle_deg,
                "sample_x_mm": self.sample_x_mm, "shutter_open": self.shutter_open, "seed": self.seed}

    def restore(self, state: dict[str, object]) -> None:
        """Put the scene back in a state saved by :meth:`state_dict` (clock, cell, motors).

        Raises
        ------
        ValueError
            If the saved cell is another chemistry, or the virtual clock is already past the
            saved time (time cannot run backwards).
        """
        self.cell = CellModel.from_state(self.cell.params, state["cell"])  # type: ignore[arg-type]
        target = float(state["clock_s"])  # type: ignore[arg-type]
        if self.clock.is_virtual:
            if target < self.clock.now():
                raise ValueError(f"clock is at {self.clock.now():.1f} s, after the saved {target:.1f} s")
            self.clock.sleep(target - self.clock.now())
        self.angle_deg = float(state["angle_deg"])  # type: ignore[arg-type]
        self.sample_x_mm = float(state["sample_x_mm"])  # type: ignore[arg-type]
        self.shutter_open = bool(state["shutter_open"])
        self._volume_key = None

    def frame(self, exposure_s: float) -> np.ndarray:
        """Take one exposure: advance the clock and return uint16 counts.

        The frame is a dark when the shutter is closed, a flat when the sample is out of the
        beam, and a projection otherwise; what the plan *calls* it is the plan's business.
        """
        if not exposure_s > 0:
            raise ValueError(f"exposure must be positive, got {exposure_s!r} s")
        model = replace(self.acquisition,
                        photons=self.acquisition.photons * exposure_s / self.reference_exposure_s)
        kind = self._frame_kind()
        integrals = self.line_integrals() if kind == "projection" else np.zeros(self.frame_shape, np.float32)
        self.clock.sleep(exposure_s)
        return simulate_frame(integrals, kind, model, self._rng, ring_gain=self._gain)
