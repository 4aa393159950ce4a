"""A ``PotentiostatBackend`` for Keithley 2400-series source-measure units: SCPI over RS-232.

Only the documented subset is sent (2400 User's Manual; App Note 807 for battery cycling):
``*RST``, ``*IDN?``, ``*CLS``, ``:SYST:ERR?``, ``:SOUR:FUNC CURR|VOLT``, ``:SOUR:CURR:LEV``,
``:SOUR:VOLT:LEV``, ``:SENS:FUNC``, ``:SENS:VOLT:PROT``, ``:SENS:CURR:PROT``,
``:SENS:VOLT:PROT:TRIP?``, ``:FORM:ELEM``, ``:OUTP ON|OFF``, ``:OUTP?`` (to confirm the safe
state), ``:OUTP:SMOD HIMP``,
``:READ?``.

* constant current: current source, voltage compliance;
* constant voltage: voltage source, current compliance (the manual's CC-then-CV battery method);
* open circuit (a rest step): a 0 A current source with the output on, so the voltage is still
  read at high impedance; the *safe state* (faults, aborts, the end) is the output off with the
  relay open (``:OUTP:SMOD HIMP``), which disconnects the cell entirely.

An SMU counts no charge: this backend integrates I dt between readings (trapezoids; across a
command change, each side's current up to the change).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from typing import Callable, TypeVar

import serial

from devices.potentiostat import (Command, CommunicationError, InstrumentReportedError, Measurement,
                                  PotentiostatError)
from sim.clock import Clock

log = logging.getLogger(__name__)

T = TypeVar("T")
#: The 2400's "not measured / over range" value.
NOT_MEASURED = 9.91e37
#: Status word bit 3: in compliance.
STAT_COMPLIANCE = 1 << 3
TERMINATORS = {"CR": "\r", "LF": "\n", "CRLF": "\r\n", "LFCR": "\n\r"}
_ERROR_RE = re.compile(r'^([+-]?\d+),"(.*)"$')
_ELEMENTS = "VOLT,CURR,TIME,STAT"


class _NoReply(Exception):
    pass


class _Garbled(Exception):
    pass


class Keithley2400Backend:
    """Drive a Keithley 2400 over a serial line (or a pyserial URL such as ``rfc2217://``).

    Parameters
    ----------
    port
        Serial device or pyserial URL.
    clock
        The experiment's clock: readings are stamped with it and charge is integrated on it.
    baudrate
        The instrument's RS-232 setting (300-57600; default 9600).
    terminator
        ``"CR"``, ``"LF"``, ``"CRLF"`` or ``"LFCR"``, as set on the instrument.
    timeout_s
        Seconds to wait for a reply line.
    retries
        Further attempts at a query after no reply or a garbled reply.
    reconnect_attempts, reconnect_delay_s
        After a lost line (a pulled cable, a USB adapter that re-enumerates): re-open the port
        this many times, this far apart (real seconds), before giving up.
    safe_state_attempts
        Re-open attempts spent, after giving up, to reach the instrument and turn its output off.
    voltage_compliance, current_compliance
        Compliance (V, A) used where a command gives none (discharge, open circuit, CV).
    name
        Instrument name used in messages.
    """

    def __init__(self, port: str, *, clock: Clock, baudrate: int = 9600, terminator: str = "LF",
                 timeout_s: float = 1.0, retries: int = 2, reconnect_attempts: int = 3,
                 reconnect_delay_s: float = 1.0, safe_state_attempts: int = 30,
                 voltage_compliance: float = 5.0, current_compliance: float = 0.1,
                 name: str = "keithley2400") -> None:
        if terminator.upper() not in TERMINATORS:
            raise ValueError(f"{name}: terminator must be one of {', '.join(TERMINATORS)}, got {terminator!r}")
        self.port, self.clock, self.name = str(port), clock, name
        self.baudrate, self.timeout_s, self.retries = int(baudrate), float(timeout_s), int(retries)
        self.eol = TERMINATORS[terminator.upper()]
        self.reconnect_attempts, self.reconnect_delay_s = int(reconnect_attempts), float(reconnect_delay_s)
        self.safe_state_attempts = int(safe_state_attempts)
        self.voltage_compliance, self.current_compliance = float(voltage_compliance), float(current_compliance)
        #: "closed", "connected", or "lost" (gave up reconnecting; only :meth:`safe_state` retries).
        self.link = "closed"
        self._serial: serial.SerialBase | None = None
        self._lock = threading.RLock()
        self._command = Command.ocv()
        self._q_Ah = 0.0
        self._last: tuple[float, float] | None = None  # (time, current) of the last reading
        self._switched_at: float | None = None
        self._output_on = False
        self.idn = ""

    @property
    def where(self) -> str:
        return f"{self.name} at {self.port}"

    # ------------------------------------------------------------------ connection
    def connect(self) -> str:
        """Open the port, reset the instrument to a known state (output off) and identify it.

        Raises
        ------
        CommunicationError
            The port cannot be opened or the instrument does not answer ``*IDN?``.
        InstrumentReportedError
            The instrument rejected the configuration.
        """
        with self._lock:
            self._open()
            self.idn = self._query("*IDN?", _parse_idn)
            self._write("*RST", "*CLS", ":OUTP:SMOD HIMP", f":FORM:ELEM {_ELEMENTS}")
            self._check_errors("configuring the instrument")
            self._command, self._last, self._switched_at = Command.ocv(), None, None
            self._output_on = False
            return self.idn

    def _open(self) -> None:
        try:
            self._serial = serial.serial_for_url(self.port, baudrate=self.baudrate, bytesize=8, parity="N",
                                                 stopbits=1, timeout=self.timeout_s,
                                                 write_timeout=self.timeout_s)
        except (serial.SerialException, OSError, ValueError) as err:
            raise CommunicationError(f"{self.where}: cannot open the port: {err}") from err
        self.link = "connected"

    def close(self) -> None:
        """Close the port (the instrument keeps its state)."""
        with self._lock:
            if self._serial is not None:
                self._serial.close()
            self._serial, self.link = None, "closed"

    def _reconnect(self, attempts: int) -> bool:
        if self._serial is not None:
            try:
                self._serial.close()
            except (serial.SerialException, OSError):
                pass
            self._serial = None
        for attempt in range(1, attempts + 1):
            # Real time, whatever the experiment clock: the operating system needs it to bring a
            # re-plugged adapter back.
            time.sleep(self.reconnect_delay_s)
            try:
                self._open()
                self._query_once("*IDN?", _parse_idn)
            except (CommunicationError, _NoReply, _Garbled, serial.SerialException, OSError):
                self._serial = None
                continue
            log.warning("%s: reconnected after %d attempt(s)", self.where, attempt)
            return True
        self.link = "lost"
        log.error("%s: line lost; gave up after %d reconnect attempt(s)", self.where, attempts)
        return False

    # ------------------------------------------------------------------ wire
    def _write(self, *lines: str) -> None:
        if self._serial is None:
            raise serial.SerialException("port not open")
        self._serial.write("".join(line + self.eol for line in lines).encode("ascii"))

    def _readline(self) -> str:
        assert self._serial is not None
        raw = self._serial.read_until(self.eol.encode("ascii"))
        if not raw.endswith(self.eol.encode("ascii")):
            raise _NoReply(raw)
        try:
            return raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise _Garbled(raw) from None

    def _query_once(self, command: str, parse: Callable[[str], T]) -> T:
        self._write(command)
        line = self._readline()
        try:
            return parse(line)
        except (ValueError, IndexError):
            raise _Garbled(line) from None

    def _query(self, command: str, parse: Callable[[str], T]) -> T:
        problem = ""
        for _ in range(self.retries + 1):
            try:
                return self._guarded(lambda: self._query_once(command, parse))
            except _NoReply:
                problem = f"no reply within {self.timeout_s:g} s"
            except _Garbled as err:
                problem = f"garbled reply {str(err.args[0])[:40]!r}"
            if self._serial is not None:
                self._serial.reset_input_buffer()  # whatever half-line is left is noise
        raise CommunicationError(f"{self.where}: {problem} to {command} ({self.retries + 1} attempts)")

    def _guarded(self, action: Callable[[], T]) -> T:
        """Run ``action``; on a lost line reconnect (a bounded number of times) and run it again."""
        if self.link == "lost":
            raise CommunicationError(f"{self.where}: line lost (disconnected); not retrying")
        try:
            return action()
        except (serial.SerialException, OSError) as err:
            log.warning("%s: line lost (%s); reconnecting", self.where, err)
            if not self._reconnect(self.reconnect_attempts):
                raise CommunicationError(f"{self.where}: disconnected ({err}); gave up after "
                                         f"{self.reconnect_attempts} reconnect attempts") from err
            return action()

    def _check_errors(self, context: str) -> None:
        errors = []
        for _ in range(10):  # the queue holds at most 10 entries on a 2400
            code, message = self._query(":SYST:ERR?", _parse_error)
            if code == 0:
                break
            errors.append(f'{code:+d},"{message}"')
        if errors:
            raise InstrumentReportedError(f"{self.where} reported {'; '.join(errors)} while {context}")

    # ------------------------------------------------------------------ backend protocol
    def identify(self) -> str:
        with self._lock:
            return self._query("*IDN?", _parse_idn)

    def apply(self, command: Command) -> None:
        with self._lock:
            lines = self._lines(command)
            self._guarded(lambda: self._write(*lines))
            self._check_errors(f"setting {command.mode} {command.value:g}")
            self._command, self._switched_at, self._output_on = command, self.clock.now(), True

    def _lines(self, command: Command) -> list[str]:
        if command.mode == "cv":
            limit = abs(command.limit) if command.limit is not None else self.current_compliance
            return [":SOUR:FUNC VOLT", f":SOUR:VOLT:LEV {command.value:.6g}", ':SENS:FUNC "CURR"',
                    f":SENS:CURR:PROT {limit:.6g}", ":OUTP ON"]
        amps = command.value if command.mode == "cc" else 0.0
        # A 2400's compliance is a magnitude: it can stop a charge at an upper voltage, not a
        # discharge at a lower one (the controller's safety envelope watches that at each poll).
        limit = command.limit if (command.mode == "cc" and command.limit is not None
                                  and command.limit * amps > 0) else self.voltage_compliance
        return [":SOUR:FUNC CURR", f":SOUR:CURR:LEV {amps:.6g}", ':SENS:FUNC "VOLT"',
                f":SENS:VOLT:PROT {abs(limit):.6g}", ":OUTP ON"]

    def measure(self) -> Measurement:
        with self._lock:
            if not self._output_on:
                # Nothing is read through an open relay: measure at open circuit as a rest does,
                # a 0 A current source (no charge flows).
                self.apply(Command.ocv())
            volts, amps, _, status = self._query(":READ?", _parse_reading)
            sensed = amps if self._command.mode == "cv" else volts
            if abs(sensed) >= NOT_MEASURED / 10:
                raise InstrumentReportedError(f"{self.where}: over range (+9.91e37) reading "
                                              f"{'current' if self._command.mode == 'cv' else 'voltage'}")
            compliance = False
            if self._command.mode == "cc" and int(status) & STAT_COMPLIANCE:
                compliance = self._query(":SENS:VOLT:PROT:TRIP?", _parse_bool)
            now = self.clock.now()
            self._integrate(now, amps)
            cmd = self._command
            return Measurement(now, volts, amps, self._q_Ah, cmd.mode, cmd.value, True, compliance=compliance)

    def _integrate(self, now: float, amps: float) -> None:
        if self._last is not None:
            t0, i0 = self._last
            switch = self._switched_at
            if switch is not None and t0 <= switch <= now:
                self._q_Ah += (i0 * (switch - t0) + amps * (now - switch)) / 3600.0
            else:
                self._q_Ah += 0.5 * (i0 + amps) * (now - t0) / 3600.0
        self._last, self._switched_at = (now, amps), None

    def safe_state(self) -> None:
        """Output off, relay open (high impedance): the cell is disconnected.

        Tries hard: after a lost line it re-opens the port up to ``safe_state_attempts`` times.
        Write-only, so it also gets through to an instrument whose replies are lost or garbled.

        Raises
        ------
        CommunicationError
            If the instrument cannot be reached at all.
        """
        with self._lock:
            # A port we closed ourselves (the run is over) gets one try, a lost line the budget.
            attempts = 1 if self.link == "closed" else self.safe_state_attempts
            if self.link != "connected" and not self._reconnect(attempts):
                raise CommunicationError(f"{self.where}: cannot reach the instrument to turn the output off")
            try:
                self._write(":OUTP OFF")
            except (serial.SerialException, OSError) as err:
                if not self._reconnect(self.safe_state_attempts):
                    raise CommunicationError(f"{self.where}: cannot turn the output off: {err}") from err
                self._write(":OUTP OFF")
            self._command, self._switched_at = Command.ocv(), self.clock.now()
            self.link, self._output_on = "connected", False
            self._confirm_output_off()

    def _confirm_output_off(self) -> None:
        # Best effort: an instrument whose replies are lost still obeyed the write.
        try:
            on = self._query_once(":OUTP?", _parse_bool)
        except (_NoReply, _Garbled, serial.SerialException, OSError) as err:
            log.warning("%s: output off sent, not confirmed (%s)", self.where, type(err).__name__)
            return
        if on:
            raise InstrumentReportedError(f"{self.where}: output still on after :OUTP OFF")


def _parse_idn(line: str) -> str:
    if len(line.split(",")) != 4 or not line.isprintable():
        raise ValueError(line)
    return line


def _parse_error(line: str) -> tuple[int, str]:
    match = _ERROR_RE.match(line)
    if match is None:
        raise ValueError(line)
    return int(match.group(1)), match.group(2)


def _parse_bool(line: str) -> bool:
    if line not in ("0", "1"):
        raise ValueError(line)
    return line == "1"


def _parse_reading(line: str) -> tuple[float, float, float, float]:
    values = tuple(float(v) for v in line.split(","))
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(line)
    return values  # type: ignore[return-value]


__all__ = ["Keithley2400Backend", "PotentiostatError", "NOT_MEASURED", "TERMINATORS"]
