"""One tomography scan on the simulated beamline, stored in the catalog (``tomocycle scan --sim``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.catalog import open_catalog, prepare_data_dir
from controller.engine import make_run_engine
from devices.beamline import make_sim_beamline
from plans.tomo import tomo_scan
from plans.validate import check_scan_parameters
from sim.presets import get_beamline_preset


@dataclass(frozen=True)
class ScanResult:
    """What a finished scan left behind."""

    uid: str
    exit_status: str
    frames_file: Path
    data_dir: Path
    n_frames: int


def run_sim_scan(*, preset: str, data_dir: str | Path, projections: int | None = None,
                 exposure: float | None = None, angle_range: float | None = None,
                 interlaced: int | None = None, darks: int | None = None, flats: int | None = None,
                 seed: int = 0, progress: bool = True, handle_sigint: bool = True) -> ScanResult:
    """Take one scan of the simulated electrode and store it.

    Every parameter is checked before the catalog is opened or a file is created, so bad input
    leaves nothing behind. ``None`` means the preset's value.
    """
    beamline_preset = get_beamline_preset(preset)
    scan = beamline_preset.scan.with_overrides(projections=projections, exposure=exposure,
                                              angle_range=angle_range, interlaced=interlaced,
                                              darks=darks, flats=flats)
    check_scan_parameters(projections=scan.projections, angle_range=scan.angle_range, exposure=scan.exposure,
                          darks=scan.darks, flats=scan.flats, interlaced=scan.interlaced)
    paths = prepare_data_dir(data_dir)
    client = open_catalog(paths.root)
    beamline = make_sim_beamline(beamline_preset, paths.frames, seed=seed)
    engine = make_run_engine(client, progress=progress, handle_sigint=handle_sigint)
    md = {"sample": beamline_preset.description, "preset": beamline_preset.name, "seed": seed,
          "simulated": True, **_cell_md(beamline)}
    uids = engine(tomo_scan(beamline.detector, beamline.rotation, beamline.shutter, beamline.sample,
                            projections=scan.projections, angle_range=scan.angle_range, exposure=scan.exposure,
                            darks=scan.darks, flats=scan.flats, flats_at_end=scan.flats_at_end,
                            interlaced=scan.interlaced, readables=[beamline.potentiostat], md=md))
    uid = uids[0]
    stop = client[uid].metadata.get("stop") or {}
    assert beamline.detector.last_file is not None
    return ScanResult(uid=uid, exit_status=stop.get("exit_status", "unknown"),
                      frames_file=beamline.detector.last_file, data_dir=paths.root,
                      n_frames=scan.darks + scan.flats * (2 if scan.flats_at_end else 1) + scan.projections)


def _cell_md(beamline: Any) -> dict[str, Any]:
    state = beamline.scene.cell_state()
    return {"cell": {"preset": beamline.scene.cell.params.name, "time_s": state.time_s, "voltage": state.voltage,
                     "current": state.current, "charge_Ah": state.charge_Ah, "soc": state.soc,
                     "si_lithiation": state.si_lithiation}}
