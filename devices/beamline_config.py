"""Beamline configuration files: which backend and address each device uses.

A YAML file (see docs/instruments.md and beamlines/sim-serial-epics.yaml)::

    name: sim-serial-epics
    simulate: true          # serve the instruments below from simulators in this process
    epics:
      addr_list: []         # Channel Access servers to search (real IOCs); simulated ones add themselves
      connect_timeout: 2 s
    devices:
      potentiostat: {backend: serial, port: auto, baudrate: 9600, terminator: LF}
      rotation: {backend: epics, prefix: "SIM:ROT", limits: [-720, 720]}
      sample: {backend: epics, prefix: "SIM:SAMX", limits: [-25, 25], out_position: 10}
      shutter: {backend: sim}
      detector: {backend: sim}

:func:`configure_beamline` swaps the devices of a simulated beamline for the configured ones
and checks that every one of them answers (port opened, instrument identified, every PV
connected) before anything is sent that would touch the cell; a device that does not answer
raises :class:`BeamlineConfigError` naming the device and its address.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devices.beamline import Beamline
from devices.epics import EpicsAxis, EpicsPotentiostatBackend, search_now
from devices.keithley2400 import TERMINATORS, Keithley2400Backend
from devices.potentiostat import Potentiostat, PotentiostatError

log = logging.getLogger(__name__)

#: Backends each device can have.
BACKENDS = {"potentiostat": ("sim", "serial", "epics"), "rotation": ("sim", "epics"),
            "sample": ("sim", "epics"), "shutter": ("sim",), "detector": ("sim",)}
_OPTIONS = {
    ("potentiostat", "serial"): {"port", "baudrate", "terminator", "timeout", "retries", "reconnect_attempts",
                                 "reconnect_delay", "safe_state_attempts", "voltage_compliance",
                                 "current_compliance", "model"},
    ("potentiostat", "epics"): {"prefix", "timeout"},
    ("rotation", "epics"): {"prefix", "limits", "move_timeout"},
    ("sample", "epics"): {"prefix", "limits", "move_timeout", "out_position", "in_position"},
}
_TOP = {"name", "description", "simulate", "epics", "devices"}
_SECONDS = re.compile(r"^\s*([0-9.eE+-]+)\s*(s|ms)?\s*$")
#: Scene attribute and speed of the simulated motor behind each EPICS axis (the in-process
#: stages' own speeds, so both paths spend the same cell time moving).
_SIM_AXES = {"rotation": ("angle_deg", 180.0, "deg"), "sample": ("sample_x_mm", 5.0, "mm")}


class BeamlineConfigError(ValueError):
    """A beamline configuration that is malformed or names a device that does not answer."""


@dataclass(frozen=True)
class DeviceConfig:
    """One device: its backend and the backend's options."""

    name: str
    backend: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BeamlineConfig:
    """A parsed beamline configuration file."""

    name: str
    source: str
    simulate: bool
    devices: dict[str, DeviceConfig]
    addr_list: tuple[str, ...] = ()
    connect_timeout_s: float = 2.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary for run metadata."""
        return {"name": self.name, "file": self.source, "simulate": self.simulate,
                "devices": {k: {"backend": d.backend, **d.options} for k, d in self.devices.items()}}


def load_beamline_config(path: str | Path) -> BeamlineConfig:
    """Read and validate a beamline configuration file.

    Raises
    ------
    BeamlineConfigError
        Naming the file and the offending key.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise BeamlineConfigError(f"beamline config {path}: {err}") from err
    return parse_beamline_config(data, source=str(path))


def parse_beamline_config(data: Any, *, source: str = "<config>") -> BeamlineConfig:
    """Validate an already loaded configuration (see :func:`load_beamline_config`)."""
    def fail(message: str) -> BeamlineConfigError:
        return BeamlineConfigError(f"beamline config {source}: {message}")

    if not isinstance(data, dict):
        raise fail("expected a mapping at the top level")
    unknown = set(data) - _TOP
    if unknown:
        raise fail(f"unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_TOP))}")
    raw = data.get("devices") or {}
    if not isinstance(raw, dict):
        raise fail("'devices' must be a mapping of device name to {backend: ..., ...}")
    devices = {}
    for name in BACKENDS:
        entry = raw.get(name, {"backend": "sim"})
        devices[name] = _device(name, entry, fail)
    extra = set(raw) - set(BACKENDS)
    if extra:
        raise fail(f"unknown device(s) {', '.join(sorted(extra))}; known: {', '.join(BACKENDS)}")
    epics = data.get("epics") or {}
    addr = epics.get("addr_list") or []
    return BeamlineConfig(name=str(data.get("name", Path(source).stem)), source=source,
                          simulate=bool(data.get("simulate", False)), devices=devices,
                          addr_list=tuple(str(a) for a in addr),
                          connect_timeout_s=seconds(epics.get("connect_timeout", 2.0), "epics.connect_timeout"))


def _device(name: str, entry: Any, fail: Any) -> DeviceConfig:
    if not isinstance(entry, dict) or "backend" not in entry:
        raise fail(f"devices.{name} needs a 'backend' ({' | '.join(BACKENDS[name])})")
    options = {k: v for k, v in entry.items() if k != "backend"}
    backend = str(entry["backend"])
    if backend not in BACKENDS[name]:
        raise fail(f"devices.{name}: backend {backend!r} is not available; choose {' | '.join(BACKENDS[name])}")
    allowed = _OPTIONS.get((name, backend), set())
    unknown = set(options) - allowed
    if unknown:
        raise fail(f"devices.{name}: unknown option(s) {', '.join(sorted(unknown))}"
                   + (f"; allowed: {', '.join(sorted(allowed))}" if allowed else ""))
    required = {"serial": ("port",), "epics": ("prefix",)}.get(backend, ())
    if name in ("rotation", "sample") and backend == "epics":
        required = ("prefix", "limits")
    missing = [k for k in required if k not in options]
    if missing:
        raise fail(f"devices.{name} ({backend}) needs {', '.join(missing)}")
    terminator = str(options.get("terminator", "LF")).upper()
    if backend == "serial" and terminator not in TERMINATORS:
        raise fail(f"devices.{name}: terminator {options['terminator']!r}; choose {' | '.join(TERMINATORS)}")
    limits = options.get("limits")
    if limits is not None and not (isinstance(limits, list) and len(limits) == 2
                                   and all(isinstance(v, (int, float)) for v in limits) and limits[0] < limits[1]):
        raise fail(f"devices.{name}: limits must be [low, high] numbers with low < high, got {limits!r}")
    return DeviceConfig(name, backend, options)


def seconds(value: Any, what: str) -> float:
    """A duration as a number of seconds or a string like ``"200 ms"``/``"2 s"``."""
    if isinstance(value, (int, float)):
        return float(value)
    match = _SECONDS.match(str(value))
    if match is None:
        raise BeamlineConfigError(f"{what}: expected seconds (e.g. 2 s, 200 ms), got {value!r}")
    return float(match.group(1)) * (1e-3 if match.group(2) == "ms" else 1.0)


def configure_beamline(config: BeamlineConfig, beamline: Beamline) -> Beamline:
    """Replace ``beamline``'s devices by the configured ones and check each answers.

    With ``config.simulate`` the simulated instruments (a 2400 on a pty, caproto IOCs on
    loopback) are started in this process on ``beamline.scene``; with real instruments the
    scene only feeds the devices that remain simulated, and ``beamline.scene`` is cleared when
    the potentiostat is real (the simulated cell is then not the experiment's cell).

    Raises
    ------
    BeamlineConfigError
        A device does not answer at its address; nothing has been sent to the cell.
    """
    if config.addr_list:
        from sim.epics_ioc import add_to_address_list

        for address in config.addr_list:
            add_to_address_list(address)
    try:
        if config.simulate:
            _start_simulators(config, beamline)
        _replace_axes(config, beamline)
        _replace_potentiostat(config, beamline)
    except BaseException:
        beamline.close()
        raise
    return beamline


def _fail(config: BeamlineConfig, device: str, address: str, err: BaseException) -> BeamlineConfigError:
    return BeamlineConfigError(f"beamline config {config.source}: {device} at {address} does not answer: {err}")


def _replace_potentiostat(config: BeamlineConfig, beamline: Beamline) -> None:
    dev = config.devices["potentiostat"]
    clock = beamline.cell_clock.clock
    o = dev.options
    if dev.backend == "sim":
        return
    if dev.backend == "serial":
        port = beamline.sim_ports.get("potentiostat", str(o["port"]))
        backend: Any = Keithley2400Backend(
            port, clock=clock, baudrate=int(o.get("baudrate", 9600)), terminator=str(o.get("terminator", "LF")),
            timeout_s=seconds(o.get("timeout", 1.0), "potentiostat.timeout"), retries=int(o.get("retries", 2)),
            reconnect_attempts=int(o.get("reconnect_attempts", 3)),
            reconnect_delay_s=seconds(o.get("reconnect_delay", 1.0), "potentiostat.reconnect_delay"),
            safe_state_attempts=int(o.get("safe_state_attempts", 30)),
            voltage_compliance=float(o.get("voltage_compliance", 5.0)),
            current_compliance=float(o.get("current_compliance", 0.1)))
        address = f"serial port {port}"
        beamline.closers.append(backend.close)
    else:
        backend = EpicsPotentiostatBackend(str(o["prefix"]), clock=clock,
                                           timeout_s=seconds(o.get("timeout", config.connect_timeout_s),
                                                             "potentiostat.timeout"))
        address = f"EPICS prefix {o['prefix']}"
    try:
        idn = backend.connect()
    except PotentiostatError as err:
        raise _fail(config, "potentiostat", address, err) from err
    log.info("potentiostat: %s (%s)", idn, address)
    beamline.potentiostat = Potentiostat(backend=backend)
    if not config.simulate:
        beamline.scene = None


def _replace_axes(config: BeamlineConfig, beamline: Beamline) -> None:
    for name in ("rotation", "sample"):
        dev = config.devices[name]
        if dev.backend != "epics":
            continue
        o = dev.options
        sim_axis = getattr(beamline, name)
        kwargs: dict[str, Any] = {}
        if name == "sample":
            out = o.get("out_position", getattr(sim_axis, "out_position", None))
            if out is None:
                raise BeamlineConfigError(f"beamline config {config.source}: devices.sample needs out_position")
            kwargs = {"out_position": float(out), "in_position": float(o.get("in_position", 0.0))}
        axis = EpicsAxis(str(o["prefix"]), name=sim_axis.name, soft_limits=tuple(o["limits"]),
                         move_timeout_s=seconds(o.get("move_timeout", 10.0), f"{name}.move_timeout"), **kwargs)
        search_now()
        try:
            axis.wait_for_connection(timeout=config.connect_timeout_s)
        except Exception as err:
            addresses = os.environ.get("EPICS_CA_ADDR_LIST", "") or "(automatic)"
            raise _fail(config, name, f"EPICS motor {o['prefix']} (EPICS_CA_ADDR_LIST {addresses})",
                        err) from err
        axis.check_value(axis.position)  # a stage parked outside its soft limits is a config error
        setattr(beamline, name, axis)
        if name == "rotation":
            beamline.detector.rotation = axis


def _start_simulators(config: BeamlineConfig, beamline: Beamline) -> None:
    from sim.epics_ioc import IOCServer, MotorIOC, PotentiostatIOC
    from sim.scpi_server import SimSCPIInstrument

    scene = beamline.scene
    if scene is None:
        raise BeamlineConfigError(f"beamline config {config.source}: simulate needs the simulated scene")
    pot = config.devices["potentiostat"]
    if pot.backend == "serial":
        port = str(pot.options["port"])
        term = TERMINATORS[str(pot.options.get("terminator", "LF")).upper()]
        inst = SimSCPIInstrument(scene, None if port == "auto" else port, terminator=term).start()
        beamline.simulators["scpi"] = inst
        beamline.sim_ports["potentiostat"] = inst.port
        beamline.closers.append(inst.close)
    axes = {str(config.devices[n].options["prefix"]): _SIM_AXES[n]
            for n in ("rotation", "sample") if config.devices[n].backend == "epics"}
    if axes:
        ioc = IOCServer(MotorIOC("", scene=scene, axes=axes)).start()
        beamline.simulators["motor_ioc"] = ioc
        beamline.closers.append(ioc.stop)
    if pot.backend == "epics":
        ioc = IOCServer(PotentiostatIOC(f"{pot.options['prefix']}:", scene=scene)).start()
        beamline.simulators["potentiostat_ioc"] = ioc
        beamline.closers.append(ioc.stop)
