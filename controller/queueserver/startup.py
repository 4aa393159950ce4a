"""Startup module of the tomocycle profile for bluesky-queueserver (docs/queueserver.md).

``start-re-manager --startup-module controller.queueserver.startup`` imports this module in its
worker each time the environment is opened. It builds what ``tomocycle run`` builds: the
beamline with the cell of one protocol mounted (simulated, or the instruments of a beamline
configuration), the data directory's catalog and a RunEngine that writes every run to it. The
queue then offers two plans:

``tomo_scan(projections, angle_range, exposure, darks, flats, interlaced, md)``
    One tomography scan of the mounted cell (the instrument preset's settings where not given).
``operando(protocol, poll_period, projections, md)``
    An operando experiment of the mounted protocol (or another one for the same instrument and
    cell), stored as ``tomocycle run`` stores it: a new experiment id, its folder under
    ``experiments/``, the checkpoint, so ``tomocycle monitor``, ``consume`` and ``resume`` work as usual.

Settings come from the environment, which the worker inherits from the manager
(``controller.queueserver.manager_environment`` writes them): ``TOMOCYCLE_DATA`` (data
directory, default ``./tomocycle-data``), ``TOMOCYCLE_PROTOCOL`` (the mounted cell's protocol,
a file or preset; default ``002``), ``TOMOCYCLE_BEAMLINE`` (a beamline configuration for real
instruments; the simulator when unset), ``TOMOCYCLE_SEED``, ``TOMOCYCLE_COARSEN``.

No ``from __future__ import annotations`` here: the queue server reads the plans' annotations
as objects to check the parameters that clients send.
"""

import atexit
import os
from typing import Any, Optional

from bluesky.utils import MsgGenerator

from controller.catalog import DEFAULT_DATA_DIR as _DEFAULT_DATA_DIR
from controller.catalog import open_catalog as _open_catalog
from controller.catalog import prepare_data_dir as _prepare_data_dir
from controller.engine import make_run_engine as _make_run_engine
from controller.experiment import PREVIEW_COARSEN as _PREVIEW_COARSEN
from controller.experiment import beamline_header as _beamline_header
from controller.experiment import build_beamline as _build_beamline
from controller.experiment import create_experiment as _create_experiment
from controller.experiment import instrument_preset as _instrument_preset
from controller.experiment import open_segment as _open_segment
from controller.experiment import resolve_protocol as _resolve_protocol
from controller.protocol import Protocol as _Protocol
from controller.protocol import load_protocol as _load_protocol
from controller.queueserver import ENV_BEAMLINE, ENV_COARSEN, ENV_DATA, ENV_PROTOCOL, ENV_SEED
from devices.beamline_config import load_beamline_config as _load_beamline_config
from plans.tomo import tomo_scan as _tomo_scan
from sim.presets import get_beamline_preset as _get_beamline_preset

# Every name without a leading underscore is what the queue server lists (plans and devices);
# helpers are imported under private names so that they are never offered to clients.
_PATHS = _prepare_data_dir(os.environ.get(ENV_DATA) or _DEFAULT_DATA_DIR)
_PROTOCOL_FILE = _resolve_protocol(os.environ.get(ENV_PROTOCOL) or "002")
_MOUNTED = _load_protocol(_PROTOCOL_FILE)
_CONFIG_FILE = os.environ.get(ENV_BEAMLINE) or None
_CONFIG = _load_beamline_config(_CONFIG_FILE) if _CONFIG_FILE else None
_PRESET = _get_beamline_preset(_instrument_preset(_MOUNTED))
_SEED = int(os.environ.get(ENV_SEED) or 0)
_COARSEN = float(os.environ.get(ENV_COARSEN) or _PREVIEW_COARSEN)
_BEAMLINE = _build_beamline(_MOUNTED, _PATHS.frames, seed=_SEED, coarsen=_COARSEN, config=_CONFIG)
atexit.register(_BEAMLINE.close)
_HEADER = _beamline_header(_PRESET.name, seed=_SEED, coarsen=_COARSEN, config=_CONFIG, config_file=_CONFIG_FILE)

db = _open_catalog(_PATHS.root)
# No Ctrl-C handler (the worker is driven through the manager) and no terminal progress bars.
RE = _make_run_engine(db, progress=False, handle_sigint=False)

potentiostat = _BEAMLINE.potentiostat
rotation = _BEAMLINE.rotation
sample = _BEAMLINE.sample
shutter = _BEAMLINE.shutter
detector = _BEAMLINE.detector
cell_clock = _BEAMLINE.cell_clock


def _check_mounted(proto: _Protocol) -> None:
    """A protocol for the mounted cell: same instrument, and on the simulator the same cell."""
    preset = _instrument_preset(proto)
    if preset != _PRESET.name:
        raise ValueError(f"protocol {proto.name!r} is for the instrument {preset!r}; this beamline is "
                         f"{_PRESET.name!r} (restart the manager: tomocycle queueserver --protocol {proto.name})")
    if _BEAMLINE.scene is not None and (proto.cell_preset, proto.capacity_Ah) != (_MOUNTED.cell_preset,
                                                                                  _MOUNTED.capacity_Ah):
        raise ValueError(f"protocol {proto.name!r} needs another simulated cell than the mounted one of "
                         f"{_MOUNTED.name!r} (restart the manager: tomocycle queueserver --protocol {proto.name})")


def tomo_scan(projections: Optional[int] = None, angle_range: Optional[float] = None,
              exposure: Optional[float] = None, darks: Optional[int] = None, flats: Optional[int] = None,
              interlaced: Optional[int] = None, md: Optional[dict] = None) -> MsgGenerator:
    """One tomography scan of the mounted cell: darks, flats, projections (one run, one NXtomo file).

    Parameters
    ----------
    projections, angle_range, exposure, darks, flats, interlaced
        The scan; the instrument preset's values where not given (angle in degrees, exposure in s).
    md
        Extra start-document metadata.
    """
    scan = _PRESET.scan.with_overrides(projections=projections, angle_range=angle_range, exposure=exposure,
                                       darks=darks, flats=flats, interlaced=interlaced)
    meta: dict[str, Any] = {"preset": _PRESET.name, "seed": _SEED, "simulated": _BEAMLINE.scene is not None,
                            "queueserver": True, **(md or {})}
    return (yield from _tomo_scan(detector, rotation, shutter, sample, projections=scan.projections,
                                  angle_range=scan.angle_range, exposure=scan.exposure, darks=scan.darks,
                                  flats=scan.flats, flats_at_end=scan.flats_at_end, interlaced=scan.interlaced,
                                  readables=[potentiostat], md=meta))


def operando(protocol: Optional[str] = None, poll_period: Optional[float] = None,
             projections: Optional[int] = None, md: Optional[dict] = None) -> MsgGenerator:
    """An operando experiment on the mounted cell, stored as ``tomocycle run`` stores one.

    Parameters
    ----------
    protocol
        A protocol file or preset for the mounted cell (default: the one the manager was started with).
    poll_period
        Seconds of cell time between potentiostat polls (default: the protocol's).
    projections
        Projections per scan (default: the protocol's).
    md
        Extra start-document metadata of the electrochemistry run.
    """
    path = _PROTOCOL_FILE if protocol is None else _resolve_protocol(protocol)
    proto = _MOUNTED if protocol is None else _load_protocol(path)
    _check_mounted(proto)
    store = _create_experiment(_PATHS.root, path, proto, {**_HEADER, "queueserver": True},
                               scan_overrides={"projections": projections} if projections else None,
                               poll_period=poll_period)
    segment = _open_segment(proto, _BEAMLINE, store)
    segment.md = {**(md or {}), **segment.md}
    return (yield from segment.plan())
