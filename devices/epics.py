"""EPICS devices: motor records as ``ophyd.EpicsMotor`` and a potentiostat behind PVs.

Motor records (and caproto's fake one above all) may carry no limits of their own, so
:class:`EpicsAxis` enforces the beamline configuration's soft limits itself, before anything is
written, and gives every move a timeout so a dead IOC fails the move instead of hanging the scan.

The potentiostat PV interface (prefix ``P``):

==================  ====  =====================================================================
PV                  type  meaning
==================  ====  =====================================================================
``P:MODE``          str   ``cc``, ``cv`` or ``ocv``
``P:SETPOINT``      f64   A for cc, V for cv
``P:LIMIT``         f64   compliance: V for cc, A for cv (0: the instrument's maximum)
``P:APPLY``         int   write 1 (with put-completion) to apply MODE/SETPOINT/LIMIT together
``P:OUTPUT``        int   0 opens the output relay (the safe state), 1 closes it
``P:MEASURE``       int   write 1 (with put-completion) to refresh the readbacks
``P:VOLTAGE_RBV``   f64   V
``P:CURRENT_RBV``   f64   A, positive charges
``P:CHARGE_RBV``    f64   Ah counted by the instrument
``P:COMPLIANCE_RBV`` int  1 when the source is in compliance
``P:OUTPUT_RBV``    int   the relay's state
``P:ERROR_RBV``     str   non-empty when the last APPLY was refused
==================  ====  =====================================================================
"""

from __future__ import annotations

from typing import Any

from ophyd import EpicsMotor, EpicsSignal, EpicsSignalRO
from ophyd.utils import LimitError

from devices.potentiostat import Command, CommunicationError, InstrumentReportedError, Measurement
from sim.clock import Clock


def search_now() -> None:
    """Make the Channel Access client repeat its unanswered searches now.

    After an IOC went away the client backs off between searches (about 7 s measured here before
    a restarted IOC was found again); a device about to be checked should not wait for that.
    Only the caproto control layer has this; with pyepics it does nothing.
    """
    import ophyd

    if ophyd.get_cl().name == "caproto":
        from caproto.threading.pyepics_compat import PV

        PV.default_context().broadcaster.search_now()


class EpicsAxis(EpicsMotor):
    """An EPICS motor record with soft limits enforced here and a bounded move time.

    Parameters
    ----------
    prefix
        The motor record's PV name (``SIM:ROT``).
    soft_limits
        (low, high) in the record's units; a move outside raises ``LimitError`` before any write.
    move_timeout_s
        Extra seconds allowed beyond ``distance / velocity`` before a move fails.
    out_position, in_position
        For a sample translation: where flats are taken, and where the sample sits in the beam.
    """

    def __init__(self, prefix: str, *, name: str, soft_limits: tuple[float, float],
                 move_timeout_s: float = 10.0, out_position: float | None = None,
                 in_position: float = 0.0, **kwargs: Any) -> None:
        super().__init__(prefix, name=name, **kwargs)
        low, high = (float(v) for v in soft_limits)
        if not low < high:
            raise ValueError(f"{name}: soft limits must be (low, high) with low < high, got {soft_limits!r}")
        self.soft_limits = (low, high)
        self.move_timeout_s = float(move_timeout_s)
        self.out_position = out_position
        self.in_position = float(in_position)

    @property
    def limits(self) -> tuple[float, float]:
        return self.soft_limits

    def check_value(self, pos: float) -> None:
        low, high = self.soft_limits
        if not low <= float(pos) <= high:
            raise LimitError(f"{self.name} ({self.prefix}): {pos} is outside the soft limits [{low}, {high}]")

    def move(self, position: float, wait: bool = True, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is None:
            velocity = abs(float(self.velocity.get() or 0.0))
            travel = abs(float(position) - float(self.position)) / velocity if velocity > 0 else 0.0
            kwargs["timeout"] = self.move_timeout_s + travel
        return super().move(position, wait=wait, **kwargs)


class EpicsPotentiostatBackend:
    """A ``PotentiostatBackend`` over Channel Access (see the module docstring for the PVs).

    Parameters
    ----------
    prefix
        PV prefix without the trailing colon.
    clock
        The experiment's clock; readings are stamped with it.
    timeout_s
        Connection and put-completion timeout, s.
    name
        Instrument name used in messages.
    """

    def __init__(self, prefix: str, *, clock: Clock, timeout_s: float = 2.0, name: str = "potentiostat") -> None:
        self.prefix, self.clock, self.timeout_s, self.name = prefix, clock, float(timeout_s), name
        self._command = Command.ocv()

        def pv(suffix: str, cls: type = EpicsSignal, **kw: Any) -> Any:
            return cls(f"{prefix}:{suffix}", name=f"{name}_{suffix.lower()}", **kw)

        self.mode, self.setpoint, self.limit = pv("MODE", string=True), pv("SETPOINT"), pv("LIMIT")
        self.apply_pv, self.output, self.measure_pv = pv("APPLY"), pv("OUTPUT"), pv("MEASURE")
        self.voltage, self.current = pv("VOLTAGE_RBV", EpicsSignalRO), pv("CURRENT_RBV", EpicsSignalRO)
        self.charge, self.compliance = pv("CHARGE_RBV", EpicsSignalRO), pv("COMPLIANCE_RBV", EpicsSignalRO)
        self.error = pv("ERROR_RBV", EpicsSignalRO, string=True)
        self.signals = [self.mode, self.setpoint, self.limit, self.apply_pv, self.output, self.measure_pv,
                        self.voltage, self.current, self.charge, self.compliance, self.error]

    @property
    def where(self) -> str:
        return f"{self.name} at PV prefix {self.prefix}"

    def connect(self) -> str:
        """Wait for every PV; raise CommunicationError naming the first one that is missing."""
        search_now()
        for sig in self.signals:
            try:
                sig.wait_for_connection(timeout=self.timeout_s)
            except Exception as err:
                raise CommunicationError(f"{self.where}: PV {sig.pvname} not reachable "
                                         f"within {self.timeout_s:g} s ({type(err).__name__})") from err
        return self.identify()

    def _do(self, what: str, action: Any) -> Any:
        try:
            return action()
        except Exception as err:  # ophyd raises TimeoutError, DisconnectedError, ... per layer
            raise CommunicationError(f"{self.where}: {what} failed: {type(err).__name__}: {err}") from err

    def identify(self) -> str:
        return f"EPICS potentiostat {self.prefix}"

    def apply(self, command: Command) -> None:
        def put() -> None:
            self.mode.put(command.mode, wait=True, timeout=self.timeout_s)
            self.setpoint.put(float(command.value), wait=True, timeout=self.timeout_s)
            self.limit.put(float(command.limit or 0.0), wait=True, timeout=self.timeout_s)
            self.apply_pv.put(1, wait=True, timeout=self.timeout_s)

        self._do(f"setting {command.mode} {command.value:g}", put)
        message = self._do("reading ERROR_RBV", lambda: self.error.get(use_monitor=False))
        if message:
            raise InstrumentReportedError(f"{self.where} refused {command.mode} {command.value:g}: {message}")
        self._command = command

    def measure(self) -> Measurement:
        def read() -> tuple[float, float, float, bool]:
            self.measure_pv.put(1, wait=True, timeout=self.timeout_s)
            return (float(self.voltage.get(use_monitor=False)), float(self.current.get(use_monitor=False)),
                    float(self.charge.get(use_monitor=False)), bool(self.compliance.get(use_monitor=False)))

        volts, amps, charge, compliance = self._do("measuring", read)
        cmd = self._command
        return Measurement(self.clock.now(), volts, amps, charge, cmd.mode, cmd.value, cmd.mode != "ocv",
                           compliance=compliance)

    def safe_state(self) -> None:
        """Output relay open, mode ocv."""
        self._do("opening the output", lambda: self.output.put(0, wait=True, timeout=self.timeout_s))
        self._command = Command.ocv()
