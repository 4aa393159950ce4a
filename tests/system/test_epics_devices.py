"""EPICS devices against the caproto IOCs of sim/ over loopback Channel Access."""

from __future__ import annotations

import os
import uuid

import pytest
from ophyd.utils import LimitError

from devices.epics import EpicsAxis, EpicsPotentiostatBackend
from devices.potentiostat import Command, CommunicationError, Potentiostat
from sim.epics_ioc import IOCServer, MotorIOC, PotentiostatIOC
from sim.presets import build_scene, get_beamline_preset

pytestmark = [pytest.mark.system, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def scene():
    return build_scene(get_beamline_preset("quick"), seed=0, coarsen=2.0)


@pytest.fixture
def prefix() -> str:
    return f"E{uuid.uuid4().hex[:8]}:"


def test_two_iocs_get_distinct_ports_and_both_are_listed(scene, prefix):
    with IOCServer(MotorIOC(prefix, scene=scene)) as motors, \
            IOCServer(PotentiostatIOC(f"{prefix}PS:", scene=scene)) as pots:
        assert motors.port != pots.port
        listed = os.environ["EPICS_CA_ADDR_LIST"].split()
        assert motors.address in listed and pots.address in listed
        assert os.environ["EPICS_CA_AUTO_ADDR_LIST"] == "NO"
    assert motors.address not in os.environ["EPICS_CA_ADDR_LIST"].split()


def test_soft_limits_are_enforced_by_the_device(scene, prefix):
    with IOCServer(MotorIOC(prefix, scene=scene)) as ioc:
        axis = EpicsAxis(f"{prefix}ROT", name="rotation", soft_limits=(-10.0, 10.0), move_timeout_s=2.0)
        axis.wait_for_connection(timeout=5)
        t0 = scene.clock.now()
        axis.set(9.0).wait(5)
        assert scene.angle_deg == 9.0 and scene.clock.now() - t0 == pytest.approx(9.0 / 180.0)
        with pytest.raises(LimitError, match=r"outside the soft limits \[-10.0, 10.0\]"):
            axis.set(45.0)
        assert ioc.group.axes[f"{prefix}ROT"].moves == 1  # nothing reached the record
        axis.destroy()


def test_epics_potentiostat_backend_drives_the_cell(scene, prefix):
    with IOCServer(PotentiostatIOC(f"{prefix}PS:", scene=scene)) as ioc:
        backend = EpicsPotentiostatBackend(f"{prefix}PS", clock=scene.clock)
        backend.connect()
        pot = Potentiostat(backend=backend)
        pot.set(Command.cc(20e-6, voltage_limit=4.4))
        q0 = backend.measure().charge_Ah
        scene.clock.sleep(360.0)
        m = backend.measure()
        assert (m.mode, m.current) == ("cc", pytest.approx(20e-6))
        assert m.charge_Ah - q0 == pytest.approx(20e-6 * 0.1, rel=1e-6)
        assert ioc.group.smu.output_on
        pot.stop()
        assert not ioc.group.smu.output_on
        for sig in backend.signals:
            sig.destroy()


def test_epics_potentiostat_unreachable_names_the_pv(scene):
    backend = EpicsPotentiostatBackend("NOWHERE:PS", clock=scene.clock, timeout_s=0.3)
    with pytest.raises(CommunicationError, match="PV NOWHERE:PS:MODE not reachable"):
        backend.connect()
