"""Simulated beamline presets: a cell, a phantom, a beam geometry, a camera and a typical scan.

Each preset mirrors one of the papers' instruments (see ../shared/DOMAIN.md); the scan numbers are
the papers' own, the grids are small so a scan simulates in seconds on two cores.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from sim.artefacts import AcquisitionModel
from sim.cell import CellModel
from sim.cell_params import CellParameters
from sim.cell_params import get_preset as get_cell_preset
from sim.clock import Clock, VirtualClock
from sim.phantom import PHANTOM_PRESETS, make_phantom
from sim.projector import ConeGeometry
from sim.scene import SimScene


@dataclass(frozen=True)
class ScanDefaults:
    """A preset's usual tomogram; any field can be overridden per scan."""

    projections: int
    angle_range: float
    exposure: float
    darks: int
    flats: int
    flats_at_end: bool = False
    interlaced: int = 1
    #: Fly scans (continuous rotation, synchrotron) or step and shoot (lab CT).
    fly: bool = True

    def with_overrides(self, **overrides: Any) -> ScanDefaults:
        """A copy with the given fields replaced; ``None`` values are ignored."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class BeamlinePreset:
    """Everything needed to build a simulated beamline."""

    name: str
    description: str
    paper: str
    cell: str
    phantom: str
    scan: ScanDefaults
    acquisition: AcquisitionModel
    cone: ConeGeometry | None = None
    phantom_options: dict[str, Any] = field(default_factory=dict)


_PRESETS = (
    BeamlinePreset(
        name="nano-fullcell", paper="002",
        description="Si|NMC811 full cell, synchrotron nano-CT (parallel beam, phase contrast)",
        cell="si-nmc811-full", phantom="nano",
        scan=ScanDefaults(projections=2505, angle_range=360.0, exposure=0.020, darks=21, flats=20),
        acquisition=AcquisitionModel(photons=2.0e4)),
    BeamlinePreset(
        name="micro-halfcell", paper="000",
        description="Si vs Li half cell, laboratory micro-CT (cone beam, SOD 58 mm, SDD 500 mm)",
        cell="si-li-half", phantom="micro", cone=ConeGeometry(detector_shape=(128, 128)),
        scan=ScanDefaults(projections=800, angle_range=360.0, exposure=2.1, darks=10, flats=10, fly=False),
        acquisition=AcquisitionModel(photons=8.0e3, blur_sigma_px=0.8, zinger_rate=0.0)),
    BeamlinePreset(
        name="micro-sync-halfcell", paper="003",
        description="Si vs Li half cell, synchrotron micro-CT (parallel beam), interrupted operando",
        cell="si-li-half", phantom="micro",
        scan=ScanDefaults(projections=1501, angle_range=180.0, exposure=0.100, darks=20, flats=20),
        acquisition=AcquisitionModel(photons=1.5e4)),
    BeamlinePreset(
        name="interlaced-fullcell", paper="004",
        description="full cell with Si agglomerates, interlaced acquisition (3 x 100 angles over 180 deg)",
        cell="si-nmc811-full", phantom="micro",
        scan=ScanDefaults(projections=300, angle_range=180.0, exposure=0.100, darks=10, flats=10, interlaced=3),
        acquisition=AcquisitionModel(photons=1.5e4)),
    BeamlinePreset(
        name="quick", paper="002",
        description="small, fast nano-CT variant for tests and demonstrations (0.5 um voxels)",
        cell="si-nmc811-full", phantom="nano", phantom_options={"voxel_size_um": 0.5},
        scan=ScanDefaults(projections=90, angle_range=180.0, exposure=0.020, darks=5, flats=5),
        acquisition=AcquisitionModel(photons=2.0e4)),
)

#: Presets by name.
BEAMLINE_PRESETS: MappingProxyType[str, BeamlinePreset] = MappingProxyType({p.name: p for p in _PRESETS})


def get_beamline_preset(name: str | BeamlinePreset) -> BeamlinePreset:
    """The preset called ``name``.

    Raises
    ------
    ValueError
        Naming the unknown preset and listing the valid ones.
    """
    if isinstance(name, BeamlinePreset):
        return name
    try:
        return BEAMLINE_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(BEAMLINE_PRESETS)}") from None


def build_scene(preset: str | BeamlinePreset, *, seed: int = 0, clock: Clock | None = None,
                cell: CellParameters | None = None, coarsen: float = 1.0) -> SimScene:
    """A fresh simulated beamline state for ``preset``: pristine cell and phantom, shutter closed.

    Parameters
    ----------
    preset
        Preset name or object.
    seed
        Seeds the phantom and the camera noise.
    clock
        Shared clock (a new virtual clock by default).
    cell
        The cell on the stage (default: the preset's); e.g. a protocol's chemistry scaled to its
        capacity with :func:`sim.cell_params.scaled_to_capacity`.
    coarsen
        Voxel size factor (>= 1): the same field of view on a coarser grid, so a long simulated
        experiment with thousands of projections per scan runs in seconds.
    """
    p = get_beamline_preset(preset)
    if not coarsen >= 1.0:
        raise ValueError(f"coarsen must be >= 1, got {coarsen!r}")
    clock = clock or VirtualClock()
    cell_model = CellModel(cell or get_cell_preset(p.cell), time_s=clock.now())
    options = dict(p.phantom_options)
    if coarsen != 1.0:
        base = options.get("voxel_size_um", PHANTOM_PRESETS[p.phantom].voxel_size_um)
        options["voxel_size_um"] = base * coarsen
    phantom = make_phantom(p.phantom, seed=seed, **options)
    cone = p.cone
    if cone is not None and coarsen != 1.0:
        # the camera bins by the same factor, so the cone rays still cover the coarser voxels
        cone = replace(cone, voxel_size_mm=phantom.voxel_size_um / 1000.0,
                       detector_pixel_mm=cone.detector_pixel_mm * coarsen,
                       detector_shape=tuple(max(1, round(n / coarsen)) for n in cone.detector_shape))
    return SimScene(clock=clock, cell=cell_model, phantom=phantom, acquisition=p.acquisition, cone=cone,
                    reference_exposure_s=p.scan.exposure, seed=seed)
