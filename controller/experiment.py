"""Running and resuming operando experiments (``tomocycle run`` / ``tomocycle resume``).

This module assembles the pieces: the protocol, the beamline (the simulated one here; real
instruments come from a beamline configuration), the catalog, the RunEngine with its
subscribers, the controller with its checkpoint store, and the ``plans.operando`` plan. The
RunEngine runs the plan; nothing here touches a device.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bluesky.utils import MsgGenerator

from controller.catalog import open_catalog, prepare_data_dir
from controller.checkpoint import CheckpointError, CheckpointStore, experiments_dir, find_resumable
from controller.decider import ProtocolController, ScanRecord
from controller.engine import make_run_engine
from controller.experiment_progress import ExperimentProgress
from controller.protocol import Protocol, load_protocol, parse_protocol
from devices.beamline import Beamline, make_sim_beamline
from devices.beamline_config import BeamlineConfig, configure_beamline, load_beamline_config
from plans.operando import operando
from protocols import preset_path
from sim.cell_params import get_preset as get_cell_preset
from sim.cell_params import scaled_to_capacity
from sim.clock import RealClock
from sim.presets import get_beamline_preset

log = logging.getLogger(__name__)

#: The simulated instrument when a protocol names none.
DEFAULT_SIM_PRESET = "nano-fullcell"
#: Default voxel coarsening of the simulated sample: a six-hour protocol with ten 2505-projection
#: scans then simulates in well under a minute. ``--detail full`` renders the preset's own grid.
PREVIEW_COARSEN = 2.0


@dataclass
class ExperimentResult:
    """What an experiment (or one resumed segment of it) left behind."""

    experiment_id: str
    protocol: str
    state: str
    fault: str | None
    scans: list[ScanRecord]
    alarms: list[str]
    data_dir: Path
    cell_time_s: float
    wall_s: float
    run_uids: tuple[str, ...] = ()
    t0: float = 0.0
    simulated: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """The protocol completed (not in the fault state)."""
        return self.state == "done"


def resolve_protocol(ref: str | Path) -> Path:
    """A protocol file from a path, a preset name (``002-cccv-timeouts``) or its number (``002``).

    Raises
    ------
    ValueError
        Naming the reference and listing the presets, when it is neither a file nor a preset.
    """
    path = Path(ref)
    if path.is_file():
        return path
    from protocols import list_presets

    names = [name for name, _ in list_presets()]
    matches = [n for n in names if n == str(ref) or n.startswith(f"{ref}-")]
    if len(matches) == 1:
        return preset_path(matches[0])
    raise ValueError(f"protocol {str(ref)!r}: no such file, and no preset of that name "
                     f"(presets: {', '.join(names)})")


def instrument_preset(protocol: Protocol) -> str:
    """The simulated instrument preset a protocol names (its scans' ``preset``), or the default one.

    Raises
    ------
    ValueError
        If the protocol names several instruments, or an unknown one.
    """
    names = {node.scan.preset for _, node in protocol.walk() if hasattr(node, "scan")}
    names.add(protocol.scan.preset)
    names.discard(None)
    if len(names) > 1:
        raise ValueError(f"{protocol.source}: the simulated beamline is one instrument, but the protocol "
                         f"names several scan presets ({', '.join(sorted(names))})")
    name = names.pop() if names else DEFAULT_SIM_PRESET
    get_beamline_preset(name)
    return name


def _sim_cell(protocol: Protocol, preset: str) -> Any:
    cell = get_cell_preset(protocol.cell_preset or get_beamline_preset(preset).cell)
    return scaled_to_capacity(cell, protocol.capacity_Ah) if protocol.capacity_Ah else cell


def build_sim_beamline(protocol: Protocol, frames_dir: Path, *, seed: int, coarsen: float,
                       real_time: bool = False) -> Beamline:
    """The simulated beamline for ``protocol``: its instrument preset and its cell.

    With ``real_time`` the simulation runs on the wall clock, as real instruments do (a
    rehearsal of the real-time code paths); otherwise on a virtual clock, hours in seconds.
    """
    preset = instrument_preset(protocol)
    clock = RealClock() if real_time else None
    return make_sim_beamline(preset, frames_dir, seed=seed, cell=_sim_cell(protocol, preset), coarsen=coarsen,
                             clock=clock)


def build_beamline(protocol: Protocol, frames_dir: Path, *, seed: int, coarsen: float,
                   config: BeamlineConfig | None = None, real_time: bool = False) -> Beamline:
    """The beamline of a run: simulated, or the devices a beamline configuration names.

    Raises
    ------
    BeamlineConfigError
        A configured device does not answer (before anything touches the cell).
    """
    if config is None:
        return build_sim_beamline(protocol, frames_dir, seed=seed, coarsen=coarsen, real_time=real_time)
    preset = instrument_preset(protocol)
    # Simulated instruments share the scene's virtual clock; real ones run on the wall clock.
    clock = None if config.simulate else RealClock()
    beamline = make_sim_beamline(preset, frames_dir, seed=seed, cell=_sim_cell(protocol, preset),
                                 coarsen=coarsen, clock=clock)
    return configure_beamline(config, beamline)


def run_protocol(protocol: str | Path, *, data_dir: str | Path, seed: int = 0,
                 coarsen: float = PREVIEW_COARSEN, scan_overrides: dict[str, Any] | None = None,
                 poll_period: float | None = None, progress: bool = True, handle_sigint: bool = True,
                 configure_engine: Callable[[Any], None] | None = None,
                 configure_beamline: Callable[[Beamline], None] | None = None,
                 real_time: bool = False, beamline: str | Path | None = None) -> ExperimentResult:
    """Run a protocol file on the simulated beamline (or a configured one), storing everything in ``data_dir``.

    Parameters
    ----------
    protocol
        Path, preset name or preset number.
    data_dir
        Data directory (catalog, frames, experiments).
    seed
        Seed of the simulated sample and noise.
    coarsen
        Voxel coarsening of the simulated sample (1: the preset's full grid).
    scan_overrides
        Replace scan settings of every scan (``projections``, ``exposure`` ...), e.g. for tests.
    poll_period
        Replace the protocol's poll periods (s).
    progress
        Print progress to stderr.
    handle_sigint
        Install bluesky's Ctrl-C handling (pause, then resume/abort).
    configure_engine
        Called with the RunEngine before the plan starts (suspenders, extra subscribers).
    configure_beamline
        Called with the beamline before the plan starts (e.g. to inject instrument faults).
    real_time
        Run the simulated beamline on the wall clock instead of the virtual one.
    beamline
        A beamline configuration file (docs/instruments.md); the simulated beamline if None.
    """
    path = resolve_protocol(protocol)
    proto = load_protocol(path)
    _check_overrides(scan_overrides, poll_period)
    preset = instrument_preset(proto)
    paths = prepare_data_dir(data_dir)
    config = load_beamline_config(beamline) if beamline is not None else None
    # Devices first: a configured device that does not answer fails here, before any record.
    bl = build_beamline(proto, paths.frames, seed=seed, coarsen=coarsen, config=config, real_time=real_time)
    try:
        if configure_beamline is not None:
            configure_beamline(bl)
        client = open_catalog(paths.root)
        beamline_md = beamline_header(preset, seed=seed, coarsen=coarsen, real_time=real_time, config=config,
                                      config_file=beamline)
        store = create_experiment(paths.root, path, proto, beamline_md, scan_overrides=scan_overrides,
                                  poll_period=poll_period)
        return _run_segment(proto, bl, client, store, progress=progress, handle_sigint=handle_sigint,
                            configure_engine=configure_engine, restored=None)
    finally:
        bl.close()


def beamline_header(preset: str, *, seed: int, coarsen: float, real_time: bool = False,
                    config: BeamlineConfig | None = None, config_file: str | Path | None = None) -> dict[str, Any]:
    """The beamline settings an experiment's checkpoint header records (resume and replay rebuild it)."""
    return {"kind": "sim" if config is None else "config", "preset": preset, "seed": seed, "coarsen": coarsen,
            "real_time": real_time,
            **({"config": str(Path(config_file).resolve()), "setup": config.to_dict()}
               if config is not None and config_file is not None else {})}


def create_experiment(data_dir: Path, protocol_file: Path, proto: Protocol, beamline_md: dict[str, Any], *,
                      scan_overrides: dict[str, Any] | None = None,
                      poll_period: float | None = None) -> CheckpointStore:
    """A new experiment's folder ``experiments/<id>/``: the protocol text and the checkpoint header.

    Parameters
    ----------
    data_dir
        The data directory.
    protocol_file
        The protocol file as loaded (its text is stored; ``proto`` is its parsed form).
    proto
        The protocol.
    beamline_md
        The beamline settings recorded in the header (``kind``, ``preset``, ``seed``, ``coarsen`` ...).
    scan_overrides, poll_period
        Options of the run, as :func:`run_protocol` takes them.
    """
    _check_overrides(scan_overrides, poll_period)
    experiment_id = uuid.uuid4().hex[:12]
    store = CheckpointStore(experiments_dir(Path(data_dir)) / experiment_id)
    header = {"experiment_id": experiment_id, "protocol_name": proto.name,
              "protocol_file": str(Path(protocol_file).resolve()), "beamline": beamline_md,
              "options": {"scan_overrides": scan_overrides or {}, "poll_period": poll_period},
              "segments": 0}
    store.create(Path(protocol_file).read_text(encoding="utf-8"), header)
    return store


def resume_experiment(data_dir: str | Path, experiment_id: str | None = None, *, progress: bool = True,
                      handle_sigint: bool = True,
                      configure_engine: Callable[[Any], None] | None = None) -> ExperimentResult:
    """Continue an experiment whose process died, from its last checkpoint, in the same catalog.

    The simulated instrument's state (cell, clock, motors) is restored with the controller's, as a
    real instrument would still hold its cell; the scan that was running (if any) is taken again
    under the same timestep label.

    Raises
    ------
    CheckpointError
        If there is nothing to resume.
    """
    paths = prepare_data_dir(data_dir, create=False)
    store = find_resumable(paths.root, experiment_id)
    data = store.read()
    if "controller" not in data:
        raise CheckpointError(f"{store.path}: the experiment never started; run it again instead")
    proto = parse_protocol(store.protocol_path.read_text(encoding="utf-8"), source=data["protocol_file"])
    bl = data["beamline"]
    config = load_beamline_config(bl["config"]) if bl.get("config") else None
    beamline = build_beamline(proto, paths.frames, seed=int(bl["seed"]), coarsen=float(bl["coarsen"]),
                              config=config, real_time=bool(bl.get("real_time", False)))
    try:
        if beamline.scene is not None and "sim" in data:
            beamline.scene.restore(data["sim"])
        client = open_catalog(paths.root)
        return _run_segment(proto, beamline, client, store, progress=progress, handle_sigint=handle_sigint,
                            configure_engine=configure_engine, restored=data)
    finally:
        beamline.close()


@dataclass
class ExperimentSegment:
    """One stretch of an experiment under a RunEngine: its decider, metadata and checkpoint store.

    :meth:`plan` is ``plans.operando`` under this decider; whatever way the plan ends (done,
    fault, abort, a crash of the RunEngine), the checkpoint is written a last time.
    """

    proto: Protocol
    beamline: Beamline
    store: CheckpointStore
    decider: ProtocolController
    md: dict[str, Any]

    def sim_state(self) -> dict[str, Any]:
        """The simulated instrument's state for the checkpoint (none for a real cell)."""
        scene = self.beamline.scene
        return {"sim": scene.state_dict()} if scene is not None else {}

    def save(self) -> None:
        """Write the checkpoint: the controller's and the simulator's state, finished or not."""
        self.store.update(controller=self.decider.to_dict(),
                          finished=self.decider.state.value in ("done", "fault"), **self.sim_state())

    def plan(self) -> MsgGenerator:
        """The operando plan of this segment (run it with a RunEngine)."""
        try:
            return (yield from operando(self.decider, self.beamline, md=self.md))
        finally:
            self.save()


def open_segment(proto: Protocol, beamline: Beamline, store: CheckpointStore,
                 restored: dict[str, Any] | None = None) -> ExperimentSegment:
    """The next segment of the experiment in ``store`` (the first one, or a resumed one from ``restored``)."""
    header = store.read()
    opts = header["options"]
    # A real cell has no simulated scene: no simulator state is checkpointed then.
    scene = beamline.scene
    preset = get_beamline_preset(header["beamline"]["preset"])
    segment: ExperimentSegment

    def save(state: dict[str, Any]) -> None:
        store.update(controller=state, **segment.sim_state())

    cell_params = scene.cell.params if scene is not None else _sim_cell(proto, preset.name)
    decider = ProtocolController(proto, experiment_id=header["experiment_id"], fly=preset.scan.fly,
                                 initial_soc=cell_params.initial_soc, checkpoint=save,
                                 scan_overrides=opts["scan_overrides"], poll_period_s=opts["poll_period"])
    if restored is not None:
        decider.restore(restored["controller"])
    number = int(header.get("segments", 0)) + 1
    store.update(segments=number)
    md = {"experiment_id": header["experiment_id"], "protocol": proto.name, "protocol_file": header["protocol_file"],
          "protocol_text": store.protocol_path.read_text(encoding="utf-8"), "segment": number,
          "cell": {"preset": cell_params.name, "capacity_Ah": proto.capacity_Ah},
          "beamline": header["beamline"], "simulated": scene is not None}
    segment = ExperimentSegment(proto, beamline, store, decider, md)
    return segment


def _run_segment(proto: Protocol, beamline: Beamline, client: Any, store: CheckpointStore, *,
                 progress: bool, handle_sigint: bool, configure_engine: Callable[[Any], None] | None,
                 restored: dict[str, Any] | None) -> ExperimentResult:
    segment = open_segment(proto, beamline, store, restored)
    decider = segment.decider
    engine = make_run_engine(client, progress=progress, handle_sigint=handle_sigint)
    if progress:
        engine.subscribe(ExperimentProgress(proto))
    if configure_engine is not None:
        configure_engine(engine)
    wall = time.perf_counter()
    try:
        uids = engine(segment.plan())
    finally:
        # Also when the RunEngine returns paused (Ctrl-C) with the plan suspended, not closed.
        segment.save()
    return ExperimentResult(
        experiment_id=segment.md["experiment_id"], protocol=proto.name, state=decider.state.value,
        fault=decider.fault_reason, scans=list(decider.scans), alarms=list(decider.alarms),
        data_dir=store.folder.parents[1], cell_time_s=beamline.cell_clock.clock.now(),
        wall_s=time.perf_counter() - wall, run_uids=tuple(uids or ()),
        t0=decider.safety.t0 if decider.safety else 0.0, simulated=beamline.cell_clock.clock.is_virtual)


def _check_overrides(scan_overrides: dict[str, Any] | None, poll_period: float | None) -> None:
    allowed = {"projections", "angle_range", "exposure", "darks", "flats", "flats_at_end", "interlaced", "fly"}
    unknown = set(scan_overrides or {}) - allowed
    if unknown:
        raise ValueError(f"unknown scan setting(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")
    from plans.validate import check_scan_parameters

    check_scan_parameters(**{k: v for k, v in (scan_overrides or {}).items() if k not in ("flats_at_end", "fly")})
    if poll_period is not None and not poll_period > 0:
        raise ValueError(f"--poll-period must be a positive number of seconds, got {poll_period!r}")


def format_scan_table(result: ExperimentResult) -> str:
    """The end-of-run summary: one line per scan (label, time, step, V, I, Q, SoC)."""
    if not result.scans:
        return "no scans"
    lines = [f"{'scan':5s} {'time':>8s}  {'V':>8s} {'I':>10s} {'Q':>10s} {'SoC':>6s}  {'status':7s} step"]
    for s in result.scans:
        t = s.time_s - result.t0
        hms = f"{int(t // 3600)}:{int(t % 3600 // 60):02d}:{int(t % 60):02d}"
        status = "ok" if s.ok else "FAILED"
        lines.append(f"{s.label:5s} {hms:>8s}  {s.voltage:8.4f} {_si(s.current, 'A'):>10s} "
                     f"{_si(s.charge_Ah, 'Ah'):>10s} {s.soc * 100:5.1f}%  {status:7s} {s.step}"
                     + (" (noise)" if s.noise else ""))
    return "\n".join(lines)


def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1.0, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n")):
        if abs(value) >= factor or factor == 1e-9:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"
