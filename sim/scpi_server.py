"""A simulated Keithley 2400 source-measure unit that speaks SCPI on a pseudo-terminal.

:class:`SimSCPIInstrument` opens a pty pair, publishes the slave's path under a stable symlink
(as udev's ``/dev/serial/by-id/...`` does for a USB adapter, so a re-plugged cable comes back at
the same name) and answers the documented SCPI subset from a thread, driving :class:`sim.smu.SimSMU`
on the shared scene and clock. pyserial opens the link like any port.

Fault switches (see :class:`Faults`) make it stop answering, garble its answers, reject the next
setting with an error code, or lose the line altogether (unplug / replug); each can be armed to
fire after a number of ``:READ?`` queries made while sourcing current, i.e. in the middle of a
constant-current step.
"""

from __future__ import annotations

import errno
import os
import pty
import re
import select
import tempfile
import threading
import tty
from dataclasses import dataclass
from pathlib import Path

from sim.scene import SimScene
from sim.smu import MAX_CURRENT, MAX_VOLTAGE, SimSMU

IDN = "KEITHLEY INSTRUMENTS INC.,MODEL 2400,SIM0001,tomocycle-sim"
#: The 2400's value for an element it did not (or could not) measure.
NOT_MEASURED = 9.91e37
#: Status word bit 3: the source is in compliance (2400 manual, ``:FORM:ELEM STAT``).
STAT_COMPLIANCE = 1 << 3

# (short, long) forms of every mnemonic of the subset; SCPI accepts either, in any case.
_MNEMONICS = {m: s for s, long in (
    ("SOUR", "SOURCE"), ("FUNC", "FUNCTION"), ("CURR", "CURRENT"), ("VOLT", "VOLTAGE"),
    ("LEV", "LEVEL"), ("SENS", "SENSE"), ("PROT", "PROTECTION"), ("TRIP", "TRIPPED"),
    ("FORM", "FORMAT"), ("ELEM", "ELEMENTS"), ("OUTP", "OUTPUT"), ("SMOD", "SMODE"),
    ("SYST", "SYSTEM"), ("ERR", "ERROR"), ("READ", "READ"), ("RANG", "RANGE"), ("AUTO", "AUTO"),
    ("NPLC", "NPLCYCLES"), ("IMM", "IMMEDIATE"), ("AMPL", "AMPLITUDE"), ("STAT", "STATE"),
    ("MODE", "MODE"), ("NEXT", "NEXT"), ("LEV", "LEV"))
    for m in {s, long}}
#: Optional (bracketed) nodes of the manual's syntax, dropped before matching.
_OPTIONAL = {"IMM", "AMPL", "STAT", "NEXT"}
_ELEMENTS = ("VOLT", "CURR", "RES", "TIME", "STAT")


@dataclass
class Faults:
    """What goes wrong, and when.

    Attributes
    ----------
    mode : str or None
        ``"no_reply"`` (commands are obeyed, queries get no answer: a broken receive line),
        ``"garble"`` (answers arrive as line noise), ``"error"`` (the next setting is rejected
        with ``error_code``; then the instrument behaves), ``"unplug"`` (the line is lost),
        ``"overrange"`` (voltage readings come back as ``+9.91e37``).
    after_reads : int
        Let this many further ``:READ?`` queries (made with the output on as a current source)
        pass; the next one is the first to fail.
    error_code, error_message
        What the error queue reports for ``"error"``.
    """

    mode: str | None = None
    after_reads: int = 0
    error_code: int = -221
    error_message: str = "Settings conflict"
    active: bool = False


class SCPIError(Exception):
    """A command error, queued as ``code,"message"``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f'{code},"{message}"')
        self.code, self.message = code, message


class SimSCPIInstrument:
    """The simulated 2400 on a pty; start with :meth:`start`, stop with :meth:`close`.

    Parameters
    ----------
    scene
        Simulated beamline whose cell is on the output (via a :class:`SimSMU`).
    link
        Stable path of the port (a symlink to the current ``/dev/pts/N``); a temporary one by
        default.
    terminator
        Line terminator the instrument sends (its setting ``CR``, ``LF``, ``CRLF``...). It
        accepts any of CR/LF on input, as the 2400 does.
    """

    def __init__(self, scene: SimScene, link: str | Path | None = None, *, terminator: str = "\n") -> None:
        self.smu = SimSMU(scene)
        self.terminator = terminator
        self._tmp = None if link is not None else tempfile.mkdtemp(prefix="tomocycle-scpi-")
        self.link = Path(link) if link is not None else Path(self._tmp) / "keithley2400"
        self.faults = Faults()
        #: Every command line received, in order (the driver tests check them against the syntax).
        self.received: list[str] = []
        self.errors: list[tuple[int, str]] = []
        self.elements: tuple[str, ...] = ("VOLT", "CURR", "RES", "TIME", "STAT")
        self.output_off_mode = "NORM"
        self.sense = "VOLT"
        self._lock = threading.RLock()
        self._master: int | None = None
        self._slave: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()

    # ------------------------------------------------------------------ line
    def start(self) -> SimSCPIInstrument:
        """Plug the cable in (a new pty behind :attr:`link`) and start answering."""
        self.replug()
        self._thread = threading.Thread(target=self._serve, name="sim-scpi", daemon=True)
        self._thread.start()
        return self

    @property
    def port(self) -> str:
        """The path to give pyserial."""
        return str(self.link)

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def unplug(self) -> None:
        """Pull the cable: the pty goes away, the port path dangles. The instrument keeps its state."""
        with self._lock:
            for fd in (self._master, self._slave):
                if fd is not None:
                    os.close(fd)
            self._master = self._slave = None
            self.link.unlink(missing_ok=True)
        os.write(self._wake_w, b"x")

    def replug(self) -> None:
        """Plug the cable back: a new pty, the same port path."""
        with self._lock:
            if self._master is not None:
                return
            master, slave = pty.openpty()
            # Raw mode: no echo, no CR/LF translation, as a real serial line.
            tty.setraw(slave)
            self._master, self._slave = master, slave
            tmp = self.link.with_name(self.link.name + ".new")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(os.ttyname(slave))
            os.replace(tmp, self.link)
        os.write(self._wake_w, b"x")

    def close(self) -> None:
        """Stop the server thread and remove the port."""
        self._stop.set()
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.unplug()
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self._tmp is not None:
            Path(self._tmp).rmdir()

    def __enter__(self) -> SimSCPIInstrument:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serve(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            master = self._master
            fds = [self._wake_r] + ([master] if master is not None else [])
            try:
                ready, _, _ = select.select(fds, [], [], 1.0)
            except (OSError, ValueError):  # the pty closed while we waited: unplugged
                continue
            if self._wake_r in ready:
                os.read(self._wake_r, 64)
            if master is None or master not in ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError as err:  # the cable was pulled under us
                if err.errno in (errno.EIO, errno.EBADF):
                    buffer = b""
                    continue
                raise
            buffer += chunk
            *lines, buffer = re.split(rb"\r\n|\n|\r", buffer)
            for raw in lines:
                if raw.strip():
                    self._line(raw.decode("ascii", errors="replace").strip())

    def _send(self, text: str) -> None:
        f = self.faults
        if f.active and f.mode == "no_reply":
            return
        data = (text + self.terminator).encode("ascii")
        if f.active and f.mode == "garble":
            data = bytes((b ^ 0x5A) & 0x7F for b in data[:-1]) + b"\x00?#" + self.terminator.encode()
        with self._lock:
            if self._master is not None:
                try:
                    os.write(self._master, data)
                except OSError:
                    pass

    # ------------------------------------------------------------------ SCPI
    def _line(self, line: str) -> None:
        self.received.append(line)
        if line in ("\x03", "\x18"):  # ^C / ^X clear pending operations
            return
        for command in line.split(";"):
            try:
                reply = self._execute(command.strip())
            except SCPIError as err:
                self.errors.append((err.code, err.message))
                continue
            if reply is not None:
                self._send(reply)
        if self.faults.active and self.faults.mode == "unplug":
            # A pulled cable is one event: plugging it back (replug) brings a healthy line.
            self.faults = Faults()
            self.unplug()

    def _execute(self, command: str) -> str | None:
        header, _, arg = command.partition(" ")
        arg = arg.strip()
        if header.upper() in ("*RST", "*CLS", "*IDN?"):
            return self._common(header.upper())
        query = header.endswith("?")
        nodes = tuple(self._node(t) for t in header.rstrip("?").lstrip(":").split(":"))
        nodes = tuple(n for n in nodes if n not in _OPTIONAL)
        if self.faults.active and self.faults.mode == "error" and not query:
            self.faults.active, self.faults.mode = False, None
            raise SCPIError(self.faults.error_code, self.faults.error_message)
        return self._dispatch(nodes, query, arg)

    @staticmethod
    def _node(token: str) -> str:
        try:
            return _MNEMONICS[token.upper()]
        except KeyError:
            raise SCPIError(-113, "Undefined header") from None

    def _common(self, header: str) -> str | None:
        if header == "*RST":
            self.smu.reset()
            self.elements, self.output_off_mode, self.sense = _ELEMENTS, "NORM", "VOLT"
        elif header == "*CLS":
            self.errors.clear()
        else:
            return IDN
        return None

    def _dispatch(self, nodes: tuple[str, ...], query: bool, arg: str) -> str | None:
        smu = self.smu
        if nodes == ("SYST", "ERR") and query:
            code, message = self.errors.pop(0) if self.errors else (0, "No error")
            return f'{code:+d},"{message}"'
        if nodes == ("READ",) and query:
            return self._read()
        if nodes == ("OUTP",):
            if query:
                return "1" if smu.output_on else "0"
            smu.set_output(_bool(arg))
            return None
        if nodes == ("OUTP", "SMOD") and not query:
            self.output_off_mode = _choice(arg, ("HIMP", "NORM", "ZERO", "GUAR"))
            return None
        if nodes == ("SOUR", "FUNC") and not query:
            smu.configure(source=_choice(arg, ("CURR", "VOLT")))  # type: ignore[arg-type]
            return None
        if nodes in (("SOUR", "CURR"), ("SOUR", "CURR", "LEV")) and not query:
            smu.configure(current=_number(arg, MAX_CURRENT))
            return None
        if nodes in (("SOUR", "VOLT"), ("SOUR", "VOLT", "LEV")) and not query:
            smu.configure(voltage=_number(arg, MAX_VOLTAGE))
            return None
        if nodes == ("SOUR", "CURR", "RANG", "AUTO") and not query:
            _bool(arg)
            return None
        if nodes == ("SENS", "FUNC") and not query:
            self.sense = _choice(arg.strip("'\""), ("VOLT", "CURR"))
            return None
        if nodes == ("SENS", "VOLT", "PROT"):
            if query:
                return f"{smu.voltage_compliance:.6e}"
            smu.configure(voltage_compliance=_number(arg, MAX_VOLTAGE))
            return None
        if nodes == ("SENS", "CURR", "PROT"):
            if query:
                return f"{smu.current_compliance:.6e}"
            smu.configure(current_compliance=_number(arg, MAX_CURRENT))
            return None
        if nodes in (("SENS", "VOLT", "PROT", "TRIP"), ("SENS", "CURR", "PROT", "TRIP")) and query:
            in_compliance = smu.tripped if nodes[1] == "VOLT" else False
            return "1" if in_compliance else "0"
        if nodes in (("SENS", "VOLT", "NPLC"), ("SENS", "CURR", "NPLC")) and not query:
            _number(arg, 10.0)
            return None
        if nodes == ("FORM", "ELEM") and not query:
            names = tuple(_choice(e.strip(), _ELEMENTS) for e in arg.split(","))
            if not names or len(set(names)) != len(names):
                raise SCPIError(-224, "Illegal parameter value")
            self.elements = names
            return None
        raise SCPIError(-113, "Undefined header")

    def _read(self) -> str:
        smu = self.smu
        if not smu.output_on:
            raise SCPIError(803, "Output disabled")
        self._count_read()
        r = smu.read()
        status = STAT_COMPLIANCE if r.compliance else 0
        values = {"VOLT": r.voltage, "CURR": r.current, "RES": NOT_MEASURED, "TIME": r.time_s,
                  "STAT": float(status)}
        if self.faults.active and self.faults.mode == "overrange":
            values["VOLT"] = NOT_MEASURED  # what the 2400 sends for a reading over range
        return ",".join(f"{values[e]:+.6e}" for e in self.elements)

    def _count_read(self) -> None:
        f = self.faults
        if f.mode is None or f.active or not (self.smu.output_on and self.smu.source == "CURR"
                                                and self.smu.current_level != 0):
            return
        if f.after_reads <= 0:
            f.active = True
        f.after_reads -= 1

    def arm(self, mode: str, *, after_reads: int = 0, error_code: int = -221,
            error_message: str = "Settings conflict") -> None:
        """Arm a fault (see :class:`Faults`); ``after_reads=0``: the next current-source read fails."""
        if mode not in ("no_reply", "garble", "error", "unplug", "overrange"):
            raise ValueError(f"unknown fault {mode!r}")
        self.faults = Faults(mode, after_reads, error_code, error_message, active=False)

    def clear_faults(self) -> None:
        """Back to a healthy instrument (the line stays as it is: see :meth:`replug`)."""
        self.faults = Faults()


def _bool(arg: str) -> bool:
    value = arg.strip().upper()
    if value in ("ON", "1"):
        return True
    if value in ("OFF", "0"):
        return False
    raise SCPIError(-224, "Illegal parameter value")


def _choice(arg: str, allowed: tuple[str, ...]) -> str:
    value = _MNEMONICS.get(arg.strip().upper(), arg.strip().upper())
    if value not in allowed:
        raise SCPIError(-224, "Illegal parameter value")
    return value


def _number(arg: str, maximum: float) -> float:
    try:
        value = float(arg)
    except ValueError:
        raise SCPIError(-104, "Data type error") from None
    if not abs(value) <= maximum:
        raise SCPIError(-222, "Data out of range")
    return value


def main(argv: list[str] | None = None) -> None:
    """``python -m sim.scpi_server``: a stand-alone simulated 2400 in real time, for rehearsing
    a ``simulate: false`` beamline configuration without the instrument."""
    import argparse
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):  # stop cleanly on kill, and in background jobs
        signal.signal(sig, signal.default_int_handler)

    from sim.clock import RealClock
    from sim.presets import build_scene

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--link", required=True, help="port path to create (a symlink to the pty)")
    parser.add_argument("--preset", default="quick", help="simulated beamline preset (its cell)")
    parser.add_argument("--terminator", choices=("CR", "LF", "CRLF"), default="LF")
    args = parser.parse_args(argv)
    scene = build_scene(args.preset, clock=RealClock(), coarsen=2.0)
    term = {"CR": "\r", "LF": "\n", "CRLF": "\r\n"}[args.terminator]
    with SimSCPIInstrument(scene, args.link, terminator=term) as inst:
        print(f"simulated Keithley 2400 on {inst.port}; Ctrl-C to stop", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
