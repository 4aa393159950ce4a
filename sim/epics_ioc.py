"""Simulated EPICS IOCs (caproto) on loopback: motor records and a potentiostat, on the shared scene.

* :class:`MotorIOC` serves motor records (``<prefix>ROT``, ``<prefix>SAMX`` ...) whose moves take
  ``|distance| / VELO`` on the scene's clock and put the scene's rotation angle or sample
  translation where they arrive. Like caproto's ``fake_motor_record`` they enforce no limits:
  soft limits are the devices' business. ``DMOV`` drops to 0 and comes back to 1 on every move,
  as ``ophyd.EpicsMotor`` expects.
* :class:`PotentiostatIOC` serves mode, setpoint, compliance, output and readbacks of a
  :class:`sim.smu.SimSMU` (see ``devices.epics`` for the PV list).

:class:`IOCServer` runs one IOC in a thread of this process (so it shares the scene and the
virtual clock with everything else) on its own server port on 127.0.0.1, and adds that port to
``EPICS_CA_ADDR_LIST`` (with ``EPICS_CA_AUTO_ADDR_LIST=NO``) so Channel Access clients of this
process search it explicitly: several IOCs on one host need distinct ports and a client address
list naming each one, not luck with broadcasts.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from typing import Any

from caproto import ChannelType
from caproto.asyncio.server import Context
from caproto.server import PVGroup, pvproperty

from sim.scene import SimScene
from sim.smu import SimSMU

ADDR_LIST = "EPICS_CA_ADDR_LIST"
_env_lock = threading.Lock()


class _Axis(PVGroup):
    """One motor record moving a scene attribute."""

    motor = pvproperty(value=0.0, name="", record="motor", precision=4)

    def __init__(self, *args: Any, scene: SimScene, attr: str, velocity: float, egu: str,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scene, self.attr, self.velocity, self.egu = scene, attr, float(velocity), egu
        #: Moves still allowed before the IOC dies (None: never): the "IOC killed mid-scan" fault.
        self.die_after_moves: int | None = None
        self.on_death: Any = None
        self.moves = 0

    @motor.startup
    async def motor(self, instance: Any, async_lib: Any) -> None:
        fields = instance.field_inst
        await fields.velocity.write(self.velocity)
        await fields.engineering_units.write(self.egu)
        position = float(getattr(self.scene, self.attr))
        await instance.write(position, verify_value=False)
        await fields.user_readback_value.write(position)
        await fields.done_moving_to_value.write(1)

    @motor.putter
    async def motor(self, instance: Any, value: float) -> float:
        fields = instance.field_inst
        target = float(value)
        await fields.done_moving_to_value.write(0)
        await fields.motor_is_moving.write(1)
        self.moves += 1
        if self.die_after_moves is not None:
            self.die_after_moves -= 1
            if self.die_after_moves < 0:
                self.on_death()
                await asyncio.sleep(3600)  # never arrives: the server is going down
        start = float(fields.user_readback_value.value)
        travel = abs(target - start) / max(float(fields.velocity.value), 1e-9)
        clock = self.scene.clock
        if clock.is_virtual:
            clock.sleep(travel)
        else:
            await asyncio.sleep(travel)
        setattr(self.scene, self.attr, target)
        await fields.user_readback_value.write(target)
        await fields.dial_readback_value.write(target)
        await fields.motor_is_moving.write(0)
        await fields.done_moving_to_value.write(1)
        return target


#: Default axes of :class:`MotorIOC`: record suffix -> (scene attribute, velocity, units).
AXES = {"ROT": ("angle_deg", 180.0, "deg"), "SAMX": ("sample_x_mm", 5.0, "mm")}


class MotorIOC:
    """Motor records ``<prefix>ROT`` (rotation, deg) and ``<prefix>SAMX`` (sample x, mm).

    Parameters
    ----------
    prefix
        PV prefix, e.g. ``"SIM:"``.
    scene
        The simulated beamline the axes move.
    axes
        Record suffix -> (scene attribute, velocity per s, engineering units).
    """

    def __init__(self, prefix: str, *, scene: SimScene,
                 axes: dict[str, tuple[str, float, str]] | None = None) -> None:
        self.axes = {f"{prefix}{suffix}": _Axis(f"{prefix}{suffix}", scene=scene, attr=attr, velocity=velocity,
                                                egu=egu)
                     for suffix, (attr, velocity, egu) in (axes or AXES).items()}
        self.pvdb = {pv: prop for axis in self.axes.values() for pv, prop in axis.pvdb.items()}


class PotentiostatIOC(PVGroup):
    """A potentiostat's PVs: write MODE, SETPOINT, LIMIT then APPLY=1; write MEASURE=1 to read.

    MODE is ``ocv`` (output relay open, voltage still read), ``cc`` or ``cv``; OUTPUT=0 opens
    the relay whatever the mode.
    """

    mode = pvproperty(value="ocv", name="MODE", dtype=ChannelType.STRING)
    setpoint = pvproperty(value=0.0, name="SETPOINT", precision=6)
    limit = pvproperty(value=0.0, name="LIMIT", precision=6)
    apply = pvproperty(value=0, name="APPLY")
    output = pvproperty(value=0, name="OUTPUT")
    measure = pvproperty(value=0, name="MEASURE")
    voltage = pvproperty(value=0.0, name="VOLTAGE_RBV", read_only=True, precision=6)
    current = pvproperty(value=0.0, name="CURRENT_RBV", read_only=True, precision=9)
    charge = pvproperty(value=0.0, name="CHARGE_RBV", read_only=True, precision=12)
    time = pvproperty(value=0.0, name="TIME_RBV", read_only=True, precision=3)
    compliance = pvproperty(value=0, name="COMPLIANCE_RBV", read_only=True)
    output_rbv = pvproperty(value=0, name="OUTPUT_RBV", read_only=True)
    error = pvproperty(value="", name="ERROR_RBV", read_only=True, dtype=ChannelType.STRING)

    def __init__(self, prefix: str, *, scene: SimScene, **kwargs: Any) -> None:
        super().__init__(prefix, **kwargs)
        self.smu = SimSMU(scene)

    @apply.putter
    async def apply(self, instance: Any, value: int) -> int:
        mode, value_, limit = self.mode.value, float(self.setpoint.value), float(self.limit.value)
        if mode == "cc":
            self.smu.configure(source="CURR", current=value_, voltage_compliance=limit or 21.0)
        elif mode == "cv":
            self.smu.configure(source="VOLT", voltage=value_, current_compliance=limit or 1.05)
        elif mode == "ocv":
            self.smu.configure(source="CURR", current=0.0)
        else:
            await self.error.write(f"unknown mode {mode!r}")
            return 0
        self.smu.set_output(mode != "ocv")
        await self.error.write("")
        await self.output_rbv.write(int(self.smu.output_on))
        return 1

    @output.putter
    async def output(self, instance: Any, value: int) -> int:
        self.smu.set_output(bool(value))
        await self.output_rbv.write(int(self.smu.output_on))
        return int(bool(value))

    @measure.putter
    async def measure(self, instance: Any, value: int) -> int:
        # An open relay still lets the voltmeter read the cell (a potentiostat's OCV measurement).
        r = self.smu.read()
        await self.voltage.write(r.voltage)
        await self.current.write(r.current)
        await self.charge.write(r.charge_Ah)
        await self.time.write(r.time_s)
        await self.compliance.write(int(r.compliance))
        return 1


class IOCServer:
    """Run a PVGroup as an IOC on 127.0.0.1:``port`` in a daemon thread.

    Parameters
    ----------
    group
        The IOC: anything with a ``pvdb`` (a PVGroup, a :class:`MotorIOC`).
    port
        Channel Access server port (TCP and UDP); a free one by default.
    """

    def __init__(self, group: Any, port: int | None = None) -> None:
        self.group, self.port = group, int(port) if port is not None else free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> IOCServer:
        """Start serving and register the address with the CA client; wait until it listens."""
        self._thread = threading.Thread(target=self._run, name=f"ioc-{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self.error is not None:
            raise RuntimeError(f"IOC on {self.address} did not start: {self.error}")
        add_to_address_list(self.address)
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop

        async def serve() -> None:
            # caproto's queues belong to the loop they are created in: build the context here.
            ctx = Context(self.group.pvdb, interfaces=["127.0.0.1"])
            ctx.ca_server_port = self.port

            async def ready(async_lib: Any) -> None:
                self._ready.set()

            try:
                await ctx.run(startup_hook=ready)
            finally:
                # caproto cancels its circuits' tasks but leaves their sockets to the garbage
                # collector; close them here, while the loop still runs.
                for circuit in list(ctx.circuits):
                    writer = getattr(circuit.client, "writer", None)
                    if writer is not None:
                        writer.close()
                await asyncio.sleep(0)

        try:
            self._task = loop.create_task(serve())
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except BaseException as err:  # reported by start()
            self.error = err
            self._ready.set()
        finally:
            # Left-over caproto tasks (circuits, queues) would be destroyed pending with the loop.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def kill(self) -> None:
        """Stop serving at once (as a crashed IOC: clients see the circuit drop)."""
        if self._loop is not None and self._task is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._task.cancel)
            except RuntimeError:  # loop already closed
                pass

    def die_after_moves(self, pv: str, moves: int) -> None:
        """Fault switch: the IOC dies when motor ``pv`` is asked for its move number ``moves + 1``."""
        axis = self.group.axes[pv]
        axis.die_after_moves, axis.on_death = int(moves), self.kill

    def stop(self) -> None:
        """Stop serving, wait for the thread, and drop the address from the client's list."""
        self.kill()
        if self._thread is not None:
            self._thread.join(timeout=10)
        remove_from_address_list(self.address)

    def __enter__(self) -> IOCServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    """A port number free for both TCP and UDP on 127.0.0.1 (CA uses the same number for both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port for an IOC on 127.0.0.1")


def add_to_address_list(address: str) -> None:
    """Make this process's CA clients search ``address`` (and only the listed addresses)."""
    with _env_lock:
        entries = os.environ.get(ADDR_LIST, "").split()
        if address not in entries:
            entries.append(address)
        os.environ[ADDR_LIST] = " ".join(entries)
        os.environ["EPICS_CA_AUTO_ADDR_LIST"] = "NO"


def remove_from_address_list(address: str) -> None:
    with _env_lock:
        entries = [e for e in os.environ.get(ADDR_LIST, "").split() if e != address]
        os.environ[ADDR_LIST] = " ".join(entries)


def main(argv: list[str] | None = None) -> None:
    """``python -m sim.epics_ioc``: stand-alone simulated motor (and potentiostat) IOC in real
    time on 127.0.0.1, for rehearsing a ``simulate: false`` beamline configuration."""
    import argparse
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):  # stop cleanly on kill, and in background jobs
        signal.signal(sig, signal.default_int_handler)

    from sim.clock import RealClock
    from sim.presets import build_scene

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--prefix", default="SIM:", help="PV prefix (records <prefix>ROT, <prefix>SAMX)")
    parser.add_argument("--port", type=int, default=None, help="CA server port (default: a free one)")
    parser.add_argument("--potentiostat", metavar="PREFIX", help="also serve potentiostat PVs under PREFIX:")
    args = parser.parse_args(argv)
    scene = build_scene("quick", clock=RealClock(), coarsen=2.0)
    servers = [IOCServer(MotorIOC(args.prefix, scene=scene), args.port).start()]
    if args.potentiostat:
        servers.append(IOCServer(PotentiostatIOC(f"{args.potentiostat}:", scene=scene)).start())
    print("serving on " + " ".join(s.address for s in servers)
          + "; clients need EPICS_CA_ADDR_LIST set to these; Ctrl-C to stop", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    for server in servers:
        server.stop()


if __name__ == "__main__":
    main()
